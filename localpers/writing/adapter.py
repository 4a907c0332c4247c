"""Personal adapters as files llama.cpp loads: export, verify, store encrypted, load.

- :func:`export_gguf`: a trained peft LoRA -> the bytes of a GGUF LoRA adapter
  (``general.type = "adapter"``, ``adapter.lora.alpha``, tensors named after llama.cpp's
  base weights + ``.lora_a`` / ``.lora_b``), written through an in-memory file.
- :func:`verify`: llama.cpp with the adapter and peft must agree on the next-token
  logits of a few probe prompts (Pearson correlation >= 0.99), and llama.cpp's logits
  must stay within quantization noise of peft's. An adapter that fails is never installed.
- :func:`install`: store it sealed in the vault (blob ``"adapter"``, one per user) with
  its recipe, base-model hash, data size and evaluation scores.
- :func:`load`: put the user's adapter into an :class:`~localpers.llm.Engine`, refusing
  an adapter trained for another base model with a clear error.

Example::

    >>> from localpers.writing import adapter
    >>> data = adapter.export_gguf(result.model, result.recipe)                  # doctest: +SKIP
    >>> report = adapter.verify(engine, data, result.model, result.tokenizer)    # doctest: +SKIP
    >>> report.correlation >= 0.99                                               # doctest: +SKIP
    True
    >>> adapter.install(vault, data, recipe=result.recipe, base_model_id=..., n_texts=120, scores={})  # doctest: +SKIP
    >>> adapter.load(vault, engine)                                              # doctest: +SKIP
    'user:ada'
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import models
from ..adapters import Recipe
from ..errors import LocalpersError
from ..vault import plaintext_file

if TYPE_CHECKING:
    from ..vault import Vault

ADAPTER_BLOB = "adapter"
MIN_CORRELATION = 0.99
# llama.cpp with the adapter may differ from peft by at most twice what the two engines
# differ by without it (quantization noise: llama.cpp rounds activations to 8 bits), plus
# 30% of the adapter's own effect. A lost, garbled or mis-scaled adapter fails this even
# when its effect is too small to move the correlation below 0.99.
MAX_ERROR_RATIO = 1.0
NOISE_ALLOWANCE = 2.0
EFFECT_ALLOWANCE = 0.3
# (instruction, style line, start of the answer): laid out by each recipe (see probes_for).
PROBE_PARTS = (
    ("Thank Anna for the quick reply and confirm the meeting on Monday.", "", ""),
    ("Ask the team whether the report can be finished by Friday.", "", "Hi all,\n\n"),
    ("Decline the invitation politely.", "Short and friendly.", "Dear"),
    ("Send the slides to Peter.", "", "Hi Peter,\n\nHere are the"),
)
PROBES = (
    "Instruction: Thank Anna for the quick reply and confirm the meeting on Monday.\n\nEmail:\n",
    "Instruction: Ask the team whether the report can be finished by Friday.\n\nEmail:\nHi all,\n\n",
    "About my writing: Short and friendly.\n\nInstruction: Decline the invitation politely.\n\nEmail:\nDear",
    "Instruction: Send the slides to Peter.\n\nEmail:\nHi Peter,\n\nHere are the",
)


def probes_for(recipe: Recipe) -> tuple[str, ...]:
    """The verification probes in ``recipe``'s prompt layout (for Gemma: :data:`PROBES`)."""
    return tuple(recipe.format_prompt(ins, style=style) + start for ins, style, start in PROBE_PARTS)


class AdapterError(LocalpersError):
    """An adapter that cannot be installed or loaded (failed verification, wrong base model)."""


@dataclass
class Verification:
    """How well llama.cpp's view of an adapter matches peft's, per probe and overall.

    ``correlations``: Pearson correlation of the next-token logits (llama.cpp with the
    adapter vs peft); ``error_ratios``: ``|llama - peft| / (2 * noise + 0.3 * effect)``,
    where noise is ``|llama base - peft base|`` and effect ``|peft adapted - peft base|``;
    ``effect_correlations``: correlation of the adapter's effect in both (for reports:
    it is noisy when the effect is small).
    """

    correlations: list[float]
    error_ratios: list[float]
    effect_correlations: list[float]
    passed: bool
    reason: str = ""

    @property
    def correlation(self) -> float:
        return min(self.correlations) if self.correlations else 0.0

    @property
    def error_ratio(self) -> float:
        return max(self.error_ratios) if self.error_ratios else float("inf")

    @property
    def effect_correlation(self) -> float:
        return min(self.effect_correlations) if self.effect_correlations else 0.0


@dataclass
class AdapterInfo:
    """What is stored next to an adapter (sealed with it)."""

    recipe: str
    base_model_id: str
    n_texts: int
    scores: dict
    created: int
    rank: int
    alpha: float
    target_modules: list[str]
    size: int = 0
    digest: str = ""
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------------- export


def lora_pairs(peft_model: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{module name: (A [rank, n_in], B [n_out, rank])}`` of a peft model, as float32 arrays."""
    # deferred: peft imports torch and transformers (seconds)
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(peft_model)
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, tensor in state.items():
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker in key:
                module = key.split(marker)[0]
                pairs.setdefault(module, {})[part] = tensor.detach().float().cpu().numpy()
    missing = [m for m, p in pairs.items() if len(p) != 2]
    if missing or not pairs:
        raise AdapterError(f"the peft model has incomplete LoRA weights ({', '.join(missing) or 'none found'})")
    return {m: (p["lora_A"], p["lora_B"]) for m, p in sorted(pairs.items())}


def export_gguf(peft_model: Any, recipe: Recipe, *, base_model_id: str = "") -> bytes:
    """The GGUF LoRA adapter of ``peft_model`` as bytes (never written to a file in the clear).

    llama.cpp's layout: ``<base>.lora_a`` holds A as [rank, n_in] (ggml shape [n_in, rank]),
    ``<base>.lora_b`` holds B as [n_out, rank]; the scale alpha/rank comes from
    ``adapter.lora.alpha`` and the rank (A's row count), as peft computes it.
    """
    # deferred: gguf loads only when an adapter is exported
    import gguf

    config = next(iter(peft_model.peft_config.values())) if hasattr(peft_model, "peft_config") else None
    alpha = float(config.lora_alpha) if config is not None else float(recipe.alpha)
    if config is not None and getattr(config, "use_rslora", False):
        raise AdapterError("rsLoRA scaling is not supported by llama.cpp's adapter format")
    pairs = lora_pairs(peft_model)
    if recipe.rope_permute:
        config = peft_model.get_base_model().config if hasattr(peft_model, "get_base_model") else peft_model.config
        for module, (a, b) in pairs.items():
            attribute = recipe.rope_permute.get(module.rsplit(".", 1)[-1])
            if attribute:
                pairs[module] = (a, rope_permute(b, int(getattr(config, attribute))))
    with plaintext_file(b"") as path:
        writer = gguf.GGUFWriter(str(path), recipe.architecture)
        writer.add_string("general.type", "adapter")
        writer.add_string("general.name", f"localpers personal adapter ({recipe.name})")
        writer.add_string("adapter.type", "lora")
        writer.add_float32("adapter.lora.alpha", alpha)
        if base_model_id:
            writer.add_string("localpers.base_model_id", base_model_id)
        for module, (a, b) in pairs.items():
            name = recipe.gguf_name(module)
            writer.add_tensor(f"{name}.lora_a", np.ascontiguousarray(a, dtype=np.float32))
            writer.add_tensor(f"{name}.lora_b", np.ascontiguousarray(b, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        with open(path, "rb") as f:
            return f.read()


def rope_permute(rows: np.ndarray, n_heads: int) -> np.ndarray:
    """``rows`` in llama.cpp's order for a llama q/k weight: within each head, the two rope
    halves interleaved (what llama.cpp's HF-to-GGUF conversion does to the base weight).

    >>> rope_permute(np.arange(8).reshape(8, 1), 2).ravel().tolist()
    [0, 2, 1, 3, 4, 6, 5, 7]
    """
    n = rows.shape[0]
    return rows.reshape(n_heads, 2, n // n_heads // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


# ---------------------------------------------------------------------- verification


def peft_logits(model: Any, tokenizer: Any, prompt: str, *, adapter: bool = True) -> np.ndarray:
    """Next-token logits of ``prompt`` from the (peft) model, with or without its adapter."""
    # deferred: torch takes seconds to import; only verification needs it
    import torch

    ids = torch.tensor([tokenizer(prompt).input_ids])
    ctx = contextlib.nullcontext() if adapter or not hasattr(model, "disable_adapter") else model.disable_adapter()
    was_training = model.training
    model.eval()
    with torch.no_grad(), ctx:
        logits = model(input_ids=ids).logits[0, -1].float().numpy()
    model.train(was_training)
    return logits


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64) - a.mean()
    b = b.astype(np.float64) - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def verify(engine: Any, gguf_bytes: bytes, peft_model: Any, tokenizer: Any, probes: tuple[str, ...] = PROBES, *,
           min_correlation: float = MIN_CORRELATION, max_error_ratio: float = MAX_ERROR_RATIO) -> Verification:
    """Load ``gguf_bytes`` into llama.cpp and compare its next-token logits with peft's.

    Passes when, on every probe, the logits correlate >= ``min_correlation`` and the error
    ratio (see :class:`Verification`) is <= ``max_error_ratio``. An adapter file llama.cpp
    refuses fails too.
    """
    la = np.linalg
    name = f"verify-{hashlib.sha256(gguf_bytes).hexdigest()[:12]}"
    correlations, ratios, effects = [], [], []
    with plaintext_file(gguf_bytes) as path:
        try:
            engine.load_adapter(name, path)
        except LocalpersError as exc:
            return Verification([], [], [], False, f"llama.cpp refused the file ({exc})")
    try:
        for probe in probes:
            ours = engine.next_token_logits(probe, adapter=name)
            ours_base = engine.next_token_logits(probe, adapter=None)
            theirs = peft_logits(peft_model, tokenizer, probe, adapter=True)
            theirs_base = peft_logits(peft_model, tokenizer, probe, adapter=False)
            if ours.shape != theirs.shape:
                return Verification([], [], [], False, f"vocabulary sizes differ ({ours.shape} vs {theirs.shape})")
            noise, effect = la.norm(ours_base - theirs_base), la.norm(theirs - theirs_base)
            correlations.append(_corr(ours, theirs))
            ratios.append(float(la.norm(ours - theirs) / (NOISE_ALLOWANCE * noise + EFFECT_ALLOWANCE * effect + 1e-6)))
            effects.append(_corr(ours - ours_base, theirs - theirs_base))
    finally:
        engine.unload_adapter(name)
    check = Verification(correlations, ratios, effects, False)
    if check.correlation < min_correlation:
        check.reason = f"logit correlation {check.correlation:.4f} < {min_correlation}"
    elif check.error_ratio > max_error_ratio:
        check.reason = f"llama.cpp is {check.error_ratio:.2f}x further from peft than quantization noise allows"
    else:
        check.passed = True
    return check


# ---------------------------------------------------------------------- storing and loading


def install(vault: Vault, gguf_bytes: bytes, *, recipe: Recipe, base_model_id: str, n_texts: int,
            scores: dict | None = None, extra: dict | None = None) -> AdapterInfo:
    """Store the adapter sealed in the vault as the user's adapter (replacing the previous one)."""
    if gguf_bytes[:4] != b"GGUF":
        raise AdapterError("not a GGUF file; refusing to install it as an adapter")
    info = AdapterInfo(recipe=recipe.name, base_model_id=base_model_id, n_texts=n_texts, scores=dict(scores or {}),
                       created=int(time.time()), rank=recipe.rank, alpha=float(recipe.alpha),
                       target_modules=list(recipe.target_modules), size=len(gguf_bytes),
                       digest=hashlib.sha256(gguf_bytes).hexdigest(), extra=dict(extra or {}))
    vault.put_blob(ADAPTER_BLOB, gguf_bytes, asdict(info))
    return info


def installed(vault: Vault) -> AdapterInfo | None:
    """The stored adapter's info, or None when the user has none."""
    raw = vault.blob_info(ADAPTER_BLOB)
    if not raw:
        return None
    known = set(AdapterInfo.__dataclass_fields__)
    return AdapterInfo(**{k: v for k, v in raw.items() if k in known})


def remove(vault: Vault) -> bool:
    """Delete the user's adapter (writing falls back to retrieval and profile)."""
    return vault.blobs.delete(ADAPTER_BLOB)


# Which adapter digest each engine holds under each name, so writers share one load.
_loaded: dict[tuple[int, str], str] = {}


def load(vault: Vault, engine: Any, *, name: str | None = None) -> str | None:
    """Load the user's adapter into ``engine``; returns its name there, or None without one.

    Raises :class:`AdapterError` when the adapter was trained for another base model.
    """
    info = installed(vault)
    if info is None:
        return None
    engine_base = models.model_id(engine.model_path)
    if info.base_model_id != engine_base:
        raise AdapterError(
            f"your adapter was trained for another base model ({info.recipe}, {info.base_model_id[:19]}...), "
            f"not for {engine.model_path.name} ({engine_base[:19]}...); switch writer_model back to {info.recipe!r}, "
            "train a new adapter with `localpers train`, or write with --no-adapter")
    name = name or f"user:{vault.user}"
    key = (id(engine), name)
    if _loaded.get(key) == info.digest and name in engine.adapters:
        return name
    with vault.blob_file(ADAPTER_BLOB) as path:
        engine.load_adapter(name, path)  # llama.cpp copies the weights; the memfd may close after
    _loaded[key] = info.digest
    return name


class Adapter:
    """The user's installed adapter, as an object: ``Adapter.of(vault)``.

    Example::

        >>> a = Adapter.of(vault)                  # doctest: +SKIP
        >>> a.info.scores["heldout_loss"]           # doctest: +SKIP
        2.41
        >>> a.load(Engine.shared("gemma3-270m"))    # doctest: +SKIP
        'user:ada'
    """

    def __init__(self, vault: Vault, info: AdapterInfo) -> None:
        self.vault = vault
        self.info = info

    @classmethod
    def of(cls, vault: Vault) -> "Adapter | None":
        info = installed(vault)
        return None if info is None else cls(vault, info)

    def load(self, engine: Any) -> str | None:
        return load(self.vault, engine)

    def remove(self) -> bool:
        return remove(self.vault)

    def gguf_bytes(self) -> bytes:
        data = self.vault.get_blob(ADAPTER_BLOB)
        if data is None:
            raise AdapterError("the adapter was removed")
        return data


# ---------------------------------------------------------------------- after training


def install_verified(vault: Vault, gguf_bytes: bytes, peft_model: Any, tokenizer: Any, engine: Any, *,
                     recipe: Recipe, n_texts: int, scores: dict | None = None, extra: dict | None = None,
                     base_model: str | None = None) -> AdapterInfo:
    """Verify ``gguf_bytes`` against ``peft_model`` in ``engine``, then install it; refuse it otherwise.

    ``base_model`` (registry name or GGUF path; default the recipe's model) is what the
    adapter was trained on. Raises :class:`AdapterError` (nothing installed; any previous
    adapter stays) when the engine runs another base model, or llama.cpp and peft disagree.
    """
    base_id = models.model_id(engine.model_path)
    trained_on = models.ensure(base_model or recipe.name)
    if base_id != models.model_id(trained_on):
        raise AdapterError(f"the adapter was trained on {trained_on.name}; the engine runs {engine.model_path.name}")
    check = verify(engine, gguf_bytes, peft_model, tokenizer, probes_for(recipe))
    if not check.passed:
        raise AdapterError(f"the exported adapter does not behave like the trained one in llama.cpp ({check.reason}); "
                           "it was not installed")
    scores = {**(scores or {}), "logit_correlation": round(check.correlation, 5),
              "error_ratio": round(check.error_ratio, 3), "effect_correlation": round(check.effect_correlation, 4)}
    return install(vault, gguf_bytes, recipe=recipe, base_model_id=base_id, n_texts=n_texts, scores=scores,
                   extra=extra)

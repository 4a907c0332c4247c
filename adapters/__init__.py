"""Recipes for personal LoRA adapters: one TOML file per supported base model.

A recipe says how to train an adapter for one base model (rank, alpha, learning
rate, epochs, max length, target modules), how prompts are laid out (the same
layout is used for training and for writing, so the adapter sees at inference
what it learned on; an instruction-tuned model's layout is wrapped in the chat
template its GGUF carries), and how peft's module names map to llama.cpp's tensor
names (for the GGUF export).

A GGUF file finds its recipe by its ``general.architecture`` (and, where several
recipes share one, its ``general.basename``): :func:`recipe_for_model`.

Example::

    >>> from localpers.adapters import load_recipe
    >>> recipe = load_recipe("gemma3-270m")
    >>> recipe.rank, recipe.target_modules[0]
    (16, 'q_proj')
    >>> recipe.gguf_name("base_model.model.model.layers.3.self_attn.q_proj")
    'blk.3.attn_q.weight'
    >>> print(recipe.format_prompt("Thank Tom for the book.", examples=["Dear Ann,\\nThanks!\\nDavid"]))
    Examples of my writing:
    ---
    Dear Ann,
    Thanks!
    David
    ---
    <BLANKLINE>
    Instruction: Thank Tom for the book.
    <BLANKLINE>
    Email:
    <BLANKLINE>
"""

from __future__ import annotations

import functools
import re
import struct
import tomllib
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from localpers.errors import LocalpersError

MODES = ("compose", "reply", "rewrite", "continue")


@dataclass(frozen=True)
class Recipe:
    """Everything needed to train, export and prompt one base model's adapters."""

    name: str
    architecture: str
    basename: str = ""  # general.basename of the model's GGUF, to choose among recipes of one architecture
    chat: bool = False  # wrap the prompt in the model's own chat template (instruction-tuned models)
    chat_template: str = ""  # that template, read from the GGUF by recipe_for_model
    bos_token: str = ""
    eos_token: str = ""
    # LoRA
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    # training
    learning_rate: float = 2e-4
    weight_decay: float = 0.0
    epochs: int = 2
    max_steps: int = 0
    batch_size: int = 4
    warmup_steps: int = 4
    max_length: int = 320
    heldout_fraction: float = 0.1
    min_heldout: int = 2
    eval_every: int = 20
    checkpoint_every: int = 10
    patience: int = 3
    rag_probability: float = 0.55
    rag_examples: int = 3
    example_chars: int = 360
    min_texts: int = 50
    memory_limit_mb: int = 6144
    seed: int = 0
    precision: str = "auto"  # base weights in bf16 while training: "auto" (where the CPU has bf16), "bf16", "fp32"
    # prompt layout and tensor names
    prompt: dict[str, str] = field(default_factory=dict)
    tensors: dict[str, str] = field(default_factory=dict)
    # module -> the config attribute with its head count, for weights llama.cpp stores
    # with rows permuted for its rope layout (llama's q and k); their LoRA B rows follow.
    rope_permute: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------ names

    def gguf_name(self, module: str) -> str:
        """The llama.cpp weight name of a peft/HF module (``...layers.3.self_attn.q_proj`` -> ``blk.3.attn_q.weight``).

        Raises LocalpersError for a module the recipe does not map.
        """
        module = re.sub(r"^(base_model\.model\.)+", "", module)
        for pattern, target in self.tensors.items():
            regex = "^" + re.escape(pattern).replace(r"\{i\}", r"(\d+)") + "$"
            m = re.match(regex, module)
            if m:
                return (target.replace("{i}", m.group(1)) if m.groups() else target) + ".weight"
        raise LocalpersError(f"recipe {self.name!r} has no llama.cpp name for the module {module!r}")

    # ------------------------------------------------------------------ prompts

    def format_prompt(self, instruction: str, *, examples: list[str] | None = None, style: str = "",
                      facts: str = "", context: str = "", mode: str = "compose") -> str:
        """The prompt that precedes the user's text, identical in training and in writing.

        ``examples`` are the user's own texts (already retrieved; cut to ``example_chars``
        here), ``style`` a one-line style summary, ``facts`` profile facts the caller chose to
        disclose, ``context`` the message replied to or the draft to rewrite.
        """
        if mode not in MODES:
            raise LocalpersError(f"unknown writing mode {mode!r}; use one of: {', '.join(MODES)}")
        p = self.prompt
        parts = []
        if style.strip():
            parts.append(p["style"].format(style=style.strip()))
        if facts.strip():
            parts.append(p["facts"].format(facts=facts.strip()))
        shown = [clip(e, self.example_chars) for e in (examples or []) if e and e.strip()]
        if shown:
            parts.append(p["examples"].format(examples="".join(p["example"].format(text=e) for e in shown)))
        if mode in ("reply", "rewrite") and context.strip():
            parts.append(p[mode].format(context=context.strip()))
        if instruction.strip():
            parts.append(p["instruction"].format(instruction=" ".join(instruction.split())))
        if self.chat and self.chat_template:
            return _chat(self.chat_template, self.bos_token, self.eos_token, "".join(parts).strip()) + p["response"]
        return "".join(parts) + p["response"]

    @property
    def stop(self) -> list[str]:
        """Stop sequences for generation: the start of another prompt block."""
        return ["\n" + self.prompt["instruction"].split("{")[0].strip(), "\n---\n", "\nEmail:\n"]


def clip(text: str, limit: int) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters (marked with ...)."""
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(None, 1)[0] if " " in text[:limit] else text[:limit]
    return cut.rstrip(" ,;:") + " ..."


@functools.lru_cache(maxsize=4)
def _formatter(template: str, bos: str, eos: str) -> Any:
    # Deferred: llama_cpp loads its C library. Its formatter is the one Engine.chat uses, so
    # training, writing and chat render the template alike.
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    return Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos, add_generation_prompt=True)


def _chat(template: str, bos: str, eos: str, user_text: str) -> str:
    """``user_text`` as the user's turn of a chat, ready for the assistant's answer."""
    return _formatter(template, bos, eos)(messages=[{"role": "user", "content": user_text}]).prompt


_REQUIRED_PROMPT_KEYS = ("style", "facts", "examples", "example", "reply", "rewrite", "instruction", "response")


def _from_toml(data: dict[str, Any], origin: str) -> Recipe:
    try:
        model = data["model"]
        flat: dict[str, Any] = {"name": model["name"], "architecture": model["architecture"],
                                "basename": model.get("basename", ""), "chat": bool(model.get("chat", False)),
                                "rope_permute": dict(model.get("rope_permute", {}))}
    except KeyError as exc:
        raise LocalpersError(f"recipe {origin} lacks [model] {exc.args[0]}") from None
    known = {f.name for f in fields(Recipe)}
    for section in ("lora", "training"):
        for key, value in data.get(section, {}).items():
            if key not in known:
                raise LocalpersError(f"recipe {origin}: unknown setting [{section}] {key}")
            flat[key] = tuple(value) if isinstance(value, list) else value
    flat["prompt"] = dict(data.get("prompt", {}))
    missing = [k for k in _REQUIRED_PROMPT_KEYS if k not in flat["prompt"]]
    if missing:
        raise LocalpersError(f"recipe {origin}: [prompt] lacks {', '.join(missing)}")
    flat["tensors"] = dict(data.get("tensors", {}))
    if not flat["tensors"]:
        raise LocalpersError(f"recipe {origin} has no [tensors] map to llama.cpp names")
    return Recipe(**flat)


def available() -> list[str]:
    """Names of the bundled recipes (one per supported base model)."""
    return sorted(p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".toml"))


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A bundled recipe by base-model name (``"gemma3-270m"``), or a recipe TOML file by path."""
    key = str(name_or_path)
    if key in available():
        text = resources.files(__name__).joinpath(f"{key}.toml").read_text(encoding="utf-8")
        origin = f"{key}.toml"
    else:
        path = Path(key).expanduser()
        if not path.is_file():
            raise LocalpersError(f"no adapter recipe for {key!r}; supported base models: {', '.join(available())}")
        text, origin = path.read_text(encoding="utf-8"), str(path)
    try:
        return _from_toml(tomllib.loads(text), origin)
    except tomllib.TOMLDecodeError as exc:
        raise LocalpersError(f"recipe {origin} is not valid TOML: {exc}") from exc


def recipe_for_model(model: str | Path) -> Recipe:
    """The recipe for a base model given by registry name or GGUF path.

    A GGUF file is matched by its ``general.architecture`` (and ``general.basename``
    where several recipes share the architecture), so any GGUF of a supported
    architecture can be trained. A chat recipe gets the file's own chat template.
    An unsupported model gets a clear error naming the supported ones.

    >>> recipe_for_model("gemma3-270m").architecture
    'gemma3'
    """
    from localpers import models

    key = str(model)
    recipe = load_recipe(key) if key in available() else None
    if recipe is not None and not recipe.chat:
        return recipe  # no need to open the file
    path = models.ensure(model)
    if not (path.is_file() and path.suffix.lower() == ".gguf"):
        raise LocalpersError(f"personal adapters need a GGUF base model; {path} is not one")
    meta = gguf_metadata(path, ("general.architecture", "general.basename"))
    if recipe is None:
        arch = str(meta.get("general.architecture", "?"))
        candidates = [r for r in map(load_recipe, available()) if r.architecture == arch]
        if not candidates:
            raise LocalpersError(f"no adapter recipe for {path.name} (architecture {arch!r}); personal adapters "
                                 f"support {supported()}. Writing with it works, without an adapter.")
        basename = str(meta.get("general.basename", "")).lower()
        recipe = next((r for r in candidates if r.basename and r.basename == basename), candidates[0])
    chat = ("tokenizer.chat_template", "tokenizer.ggml.tokens", "tokenizer.ggml.bos_token_id",
            "tokenizer.ggml.eos_token_id")
    meta = gguf_metadata(path, chat) if recipe.chat else {}
    if meta.get("tokenizer.chat_template"):
        tokens = meta.get("tokenizer.ggml.tokens") or []

        def text(key: str) -> str:  # the bos/eos tokens' text, which a template may write out
            i = meta.get(key)
            return tokens[i] if isinstance(i, int) and 0 <= i < len(tokens) else ""

        recipe = replace(recipe, chat_template=str(meta["tokenizer.chat_template"]),
                         bos_token=text("tokenizer.ggml.bos_token_id"), eos_token=text("tokenizer.ggml.eos_token_id"))
    return recipe


def supported() -> str:
    """The supported architectures and their recipes, for messages: ``gemma3 (gemma3-270m), ...``."""
    return ", ".join(f"{r.architecture} ({r.name})" for r in map(load_recipe, available()))


# ---------------------------------------------------------------------- GGUF metadata

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


def gguf_metadata(path: str | Path, keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """The key-value metadata of a GGUF file: numbers and strings (arrays are skipped).

    ``keys``: read only until these are found (an array among them, such as
    ``tokenizer.ggml.tokens``, is kept). Reading only the header takes milliseconds
    where ``gguf.GGUFReader`` spends seconds building views of every tensor and token.
    Raises LocalpersError for a file that is not GGUF.
    """
    st = Path(path).stat()
    return _read_metadata(str(Path(path).resolve()), st.st_size, st.st_mtime_ns, tuple(keys))


@functools.lru_cache(maxsize=8)
def _read_metadata(path: str, size: int, mtime_ns: int, keys: tuple[str, ...]) -> dict[str, Any]:
    import mmap

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if buf[:4] != b"GGUF" or struct.unpack_from("<I", buf, 4)[0] < 2:
            raise LocalpersError(f"{path} is not a GGUF file of version 2 or later")
        n_kv = struct.unpack_from("<Q", buf, 16)[0]
        pos = 24

        def string(pos: int) -> tuple[str, int]:
            n = struct.unpack_from("<Q", buf, pos)[0]
            return buf[pos + 8:pos + 8 + n].decode("utf-8", errors="replace"), pos + 8 + n

        def value(kind: int, pos: int, keep: bool) -> tuple[Any, int]:
            if kind == _STRING:
                return string(pos)
            if kind in _SCALARS:
                return struct.unpack_from(_SCALARS[kind], buf, pos)[0], pos + struct.calcsize(_SCALARS[kind])
            if kind != _ARRAY:
                raise LocalpersError(f"{path}: unknown GGUF value type {kind}")
            inner, count = struct.unpack_from("<IQ", buf, pos)
            pos += 12
            if inner in _SCALARS and not keep:  # fixed size: skip in one jump
                return None, pos + count * struct.calcsize(_SCALARS[inner])
            items = []
            for _ in range(count):
                item, pos = value(inner, pos, keep)
                if keep:
                    items.append(item)
            return (items if keep else None), pos

        out: dict[str, Any] = {}
        for _ in range(n_kv):
            key, pos = string(pos)
            kind = struct.unpack_from("<I", buf, pos)[0]
            found, pos = value(kind, pos + 4, keep=key in keys)
            if found is not None and (key in keys or not keys):
                out[key] = found
            if keys and all(k in out for k in keys):
                break
        return out

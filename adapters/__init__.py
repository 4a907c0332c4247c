"""Recipes for personal LoRA adapters: one TOML file per supported base model.

A recipe says how to train an adapter for one base model (rank, alpha, learning
rate, epochs, max length, target modules), how prompts are laid out (the same
layout is used for training and for writing, so the adapter sees at inference
what it learned on), and how peft's module names map to llama.cpp's tensor names
(for the GGUF export).

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

import re
import tomllib
from dataclasses import dataclass, field, fields
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
        parts.append(p["response"])
        return "".join(parts)

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


_REQUIRED_PROMPT_KEYS = ("style", "facts", "examples", "example", "reply", "rewrite", "instruction", "response")


def _from_toml(data: dict[str, Any], origin: str) -> Recipe:
    try:
        model = data["model"]
        flat: dict[str, Any] = {"name": model["name"], "architecture": model["architecture"]}
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

    A path is matched by its file's identity against the registered models; an
    unsupported model gets a clear error naming the supported ones.
    """
    from localpers import models

    key = str(model)
    if key in available():
        return load_recipe(key)
    path = models.ensure(model)
    wanted = models.model_id(path)
    for name in available():
        if name in models.REGISTRY:
            try:
                if models.model_id(models.ensure(name)) == wanted:
                    return load_recipe(name)
            except LocalpersError:
                continue
    raise LocalpersError(f"no adapter recipe for the base model {path.name}; personal adapters support: "
                         f"{', '.join(available())}")

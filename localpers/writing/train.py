"""Train a personal LoRA adapter on the CPU, from the user's own texts.

The pipeline (:func:`train_adapter`) in five steps:

1. **Texts**: the user's writing in the vault (emails, notes, ...), oldest first.
2. **Playback** (:mod:`localpers.writing.playback`): one instruction per text, cached.
3. **Examples**: prompt = the recipe's layout (style line, with probability
   ``rag_probability`` up to ``rag_examples`` of the user's *other* texts retrieved by
   meaning, the instruction), response = the text + end-of-text. Only the response
   tokens are scored (prompt labels are -100).
4. **Training**: LoRA (peft) on the same weights llama.cpp serves: the GGUF, dequantized
   by transformers. A plain loop you can read top to bottom: AdamW, warmup then cosine,
   gradient clipping, held-out loss every ``eval_every`` steps with early stopping (the
   best weights win), a checkpoint every ``checkpoint_every`` steps.
5. **Install** (:mod:`localpers.writing.adapter`): export to a GGUF LoRA, check llama.cpp and peft
   agree on next-token logits, store it encrypted.

What keeps it fast on a laptop CPU: the output layer (262k words for Gemma) runs only on
response positions, never on the prompt (it is most of the work of a plain loop); bf16
frozen base weights where the CPU computes bf16 natively (``precision``; LoRA weights,
gradients and optimizer stay float32, and export and verification use the exact float32
base); short examples (``max_length``);
attention-only LoRA; one example at a time (no padding).

What keeps it private: texts, instructions, checkpoints and adapters rest only in the
vault, sealed. Checkpoints are serialized with ``torch.save`` into memory, never to a
file. The only files read are the public base weights.

Interrupting: set ``cancel`` (a :class:`threading.Event`; the CLI sets it on Ctrl-C) and
training stops after the current step, saving a checkpoint; the next call with the same
data and settings resumes from it. A memory ceiling (``memory_limit_mb``) stops training
the same way, with advice, before a laptop starts swapping.

Example::

    >>> from localpers.writing.train import TrainConfig, train_adapter
    >>> result = train_adapter(vault, TrainConfig(max_steps=40), progress=print)   # doctest: +SKIP
    >>> result.heldout_loss < result.base_heldout_loss                            # doctest: +SKIP
    True
"""

from __future__ import annotations

import dataclasses
import gc
import io
import math
import os
import random
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from .. import models
from .. import threads as threads_mod
from ..adapters import Recipe, load_recipe, recipe_for_model
from ..errors import LocalpersError
from ..history import History
from ..llm import Engine
from ..paths import DEFAULT_MODEL, models_dir
from ..text import clock_duration as format_seconds
from .adapter import AdapterInfo, export_gguf, install_verified
from .context import CHECKPOINT_BLOB, WRITTEN_KINDS, adapter_readiness, retrieve, style_summary
from .playback import PlaybackConfig, cached_instruction, playback

if TYPE_CHECKING:
    from ..vault import Vault

SPEED_KEY = "train-speed"  # vault.cache row with the last measured tokens/s (for estimates)
DEFAULT_TOKENS_PER_S = 150.0
PLAYBACK_SECONDS_PER_TEXT = 1.5


# ---------------------------------------------------------------------- settings and results


@dataclass
class TrainConfig:
    """What to train. ``None`` means "as the recipe says" (see ``adapters/<model>.toml``).

    Example::

        >>> TrainConfig(max_steps=30, max_length=256).recipe().max_length   # doctest: +SKIP
        256
    """

    model: str = DEFAULT_MODEL
    rank: int | None = None
    alpha: float | None = None
    learning_rate: float | None = None
    epochs: int | None = None
    max_steps: int | None = None
    batch_size: int | None = None
    max_length: int | None = None
    eval_every: int | None = None
    checkpoint_every: int | None = None
    patience: int | None = None
    rag_probability: float | None = None
    min_texts: int | None = None
    memory_limit_mb: int | None = None
    seed: int | None = None
    precision: str | None = None
    kinds: tuple[str, ...] = WRITTEN_KINDS
    max_text_chars: int = 2000
    threads: int | None = None
    playback: PlaybackConfig = field(default_factory=PlaybackConfig)

    def recipe(self) -> Recipe:
        """The model's recipe (found by its GGUF's architecture) with this config's overrides applied."""
        base = recipe_for_model(self.model)
        overrides = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                     if f.name in {r.name for r in dataclasses.fields(Recipe)} and getattr(self, f.name) is not None}
        return dataclasses.replace(base, **overrides)


@dataclass
class TrainProgress:
    """One progress report. ``phase``: loading, playback, training, evaluating, exporting, verifying, done."""

    phase: str
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    heldout_loss: float | None = None
    tokens_per_s: float = 0.0
    eta_s: float | None = None
    message: str = ""

    def __str__(self) -> str:
        if self.phase != "training":
            return f"[{self.phase}] {self.message}"
        eta = f", ETA {format_seconds(self.eta_s)}" if self.eta_s is not None else ""
        held = f", held-out {self.heldout_loss:.3f}" if self.heldout_loss is not None else ""
        loss = f"loss {self.loss:.3f}" if self.loss is not None else "loss -"
        return f"[training] step {self.step}/{self.total_steps}: {loss}{held}, {self.tokens_per_s:.0f} tokens/s{eta}"


ProgressFn = Callable[[TrainProgress], None]


@dataclass
class TrainResult:
    """What a training run did. ``model``/``tokenizer`` hold the trained peft model (best weights)."""

    steps: int
    total_steps: int
    n_texts: int
    n_train: int
    n_heldout: int
    base_heldout_loss: float | None
    heldout_loss: float | None
    train_tokens: int
    seconds: float
    tokens_per_s: float
    peak_rss_mb: float
    resumed_from: int = 0
    cancelled: bool = False
    stopped_early: bool = False
    playback_sources: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    recipe: Recipe | None = None
    base_model: str = ""  # the registry name or GGUF path trained on (the adapter is verified there)
    model: Any = None
    tokenizer: Any = None
    samples: list = field(default_factory=list)  # the training Samples (in memory only)
    style: str = ""  # the style summary the prompts carried
    adapter: Any = None  # localpers.writing.adapter.AdapterInfo once installed

    def summary(self) -> str:
        parts = [f"{self.steps}/{self.total_steps} steps on {self.n_train} texts ({self.n_heldout} held out)",
                 f"{self.tokens_per_s:.0f} tokens/s", f"{format_seconds(self.seconds)}"]
        if self.base_heldout_loss is not None and self.heldout_loss is not None:
            parts.append(f"held-out loss {self.base_heldout_loss:.3f} -> {self.heldout_loss:.3f}")
        if self.cancelled:
            parts.append("cancelled (checkpoint saved; run again to resume)")
        if self.stopped_early:
            parts.append("stopped early (held-out loss stopped improving)")
        return "; ".join(parts)


@dataclass
class Sample:
    """One training example before tokenization."""

    item_id: str
    text: str
    instruction: str
    examples: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------- the base model


def load_base(model: str | Path = DEFAULT_MODEL, *, threads: int | None = None) -> tuple[Any, Any]:
    """The base model and tokenizer in transformers, from the same GGUF llama.cpp serves.

    Dequantizing the GGUF takes most of a minute, so the result is kept next to the
    GGUF (public weights only, under the models directory) and loads in seconds after.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # deferred: torch and transformers take seconds to import; too few texts are refused first
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    threads_mod.set_torch_threads(threads)
    path = models.ensure(model)
    if path.suffix.lower() != ".gguf":
        raise LocalpersError(f"personal adapters need a GGUF base model; {path} is not one")
    folder = models_dir() / "hf" / models.model_id(path).replace("sha256:", "")[:16]
    if not (folder / "model.safetensors").exists():
        _convert(path, folder)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    base = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, local_files_only=True)
    base.eval()
    return base, tokenizer


def _convert(path: Path, folder: Path) -> None:
    # deferred: torch and transformers take seconds to import; only the one-time conversion needs them
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        tokenizer.save_pretrained(str(tmp))
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # the weights below are plain float32 now
        config.save_pretrained(str(tmp))
        # Tied embeddings: lm_head shares token_embd, so only one copy is written.
        state = {k: v.contiguous() for k, v in model.state_dict().items()
                 if not (k == "lm_head.weight" and getattr(config, "tie_word_embeddings", False))}
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished first: theirs is as good as ours
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def attach_lora(base: Any, recipe: Recipe) -> Any:
    """Wrap ``base`` with fresh LoRA layers as the recipe says (peft); returns the peft model."""
    # deferred: peft imports torch and transformers (seconds)
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=recipe.rank, lora_alpha=recipe.alpha, lora_dropout=recipe.dropout,
                        target_modules=list(recipe.target_modules), bias="none", task_type="CAUSAL_LM")
    return get_peft_model(base, config)


# ---------------------------------------------------------------------- data


def collect_texts(vault: Vault, kinds: Sequence[str] = WRITTEN_KINDS, max_chars: int = 2000) -> list[dict]:
    """The user's own texts in the vault, oldest first: ``{"id", "content", "metadata"}``.

    Very short texts (under 3 words) teach nothing and are left out; long ones are cut.
    """
    marks = ", ".join("?" * len(kinds))
    rows = vault.items.rows(f"kind in ({marks})", list(kinds), order_by="created, rowid",
                            columns=["content", "metadata"])
    out = []
    for row in rows:
        content = row["content"] if isinstance(row["content"], str) else ""
        if len(content.split()) >= 3:
            out.append({"id": row["id"], "content": content.strip()[:max_chars], "metadata": row["metadata"] or {}})
    return out


def split_heldout(vault: Vault, texts: list[dict], recipe: Recipe) -> tuple[list[dict], list[dict]]:
    """A stable held-out split: the same texts stay held out across runs (keyed hash order)."""
    n_held = max(recipe.min_heldout, int(round(len(texts) * recipe.heldout_fraction)))
    n_held = min(n_held, max(0, len(texts) - 2))
    ranked = sorted(texts, key=lambda t: vault.keyed_hash(t["id"], "heldout"))
    held_ids = {t["id"] for t in ranked[:n_held]}
    return [t for t in texts if t["id"] not in held_ids], [t for t in texts if t["id"] in held_ids]


def make_samples(texts: list[dict], instructions: list[Any], history: Any, recipe: Recipe) -> list[Sample]:
    """Pair texts with instructions and retrieve each one's examples (never the text itself)."""
    samples = []
    for t, ins in zip(texts, instructions):
        examples = []
        if history is not None and recipe.rag_examples > 0 and recipe.rag_probability > 0:
            hits = retrieve(history, ins.text, recipe.rag_examples, exclude_ids={t["id"]}, exclude_texts=[t["content"]])
            examples = [h.text for h in hits]
        samples.append(Sample(t["id"], t["content"], ins.text, examples))
    return samples


def encode(tokenizer: Any, recipe: Recipe, sample: Sample, *, with_examples: bool, style: str = "") -> tuple[list[int], list[int]]:
    """Token ids and labels of one example: labels are -100 on the prompt (loss on the response only).

    Too long for ``max_length``: retrieved examples go first, then the response is cut.
    """
    examples = list(sample.examples) if with_examples else []
    eos = tokenizer.eos_token_id
    response = tokenizer(sample.text, add_special_tokens=False).input_ids + [eos]
    while True:
        prompt = recipe.format_prompt(sample.instruction, examples=examples, style=style)
        prompt_ids = tokenizer(prompt).input_ids
        if len(prompt_ids) + min(len(response), 48) <= recipe.max_length or not examples:
            break
        examples.pop()
    room = max(1, recipe.max_length - len(prompt_ids))
    response = response[:room]
    return prompt_ids + response, [-100] * len(prompt_ids) + response


# ---------------------------------------------------------------------- the loss


def response_loss(model: Any, input_ids: Any, labels: Any) -> tuple[Any, int]:
    """Summed cross-entropy over the response tokens, and their count.

    The output layer runs on response positions only: for Gemma's 262k-word vocabulary
    that is most of the work a plain ``model(input_ids, labels=labels)`` spends on the prompt.
    """
    # deferred: torch takes seconds to import; only training needs it
    import torch.nn.functional as F

    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = causal_lm.model(input_ids=input_ids).last_hidden_state
    targets = labels[:, 1:]
    mask = targets != -100
    logits = causal_lm.lm_head(hidden[:, :-1][mask])
    cap = getattr(causal_lm.config, "final_logit_softcapping", None)
    if cap:
        logits = (logits / cap).tanh() * cap
    return F.cross_entropy(logits.float(), targets[mask], reduction="sum"), int(mask.sum())


def training_dtype(precision: str = "auto") -> Any:
    """The dtype the frozen base weights train in: bfloat16 when asked for (or "auto" and the
    CPU computes bf16 natively: AVX512-BF16 or AMX), else float32. LoRA weights, gradients and
    optimizer state are float32 either way, and export and verification always use float32."""
    # deferred: torch takes seconds to import; only training needs it
    import torch

    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision != "auto":
        raise LocalpersError(f"unknown precision {precision!r}; use auto, bf16 or fp32")
    try:
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    except AttributeError:  # older torch: no way to ask, stay exact
        native = False
    return torch.bfloat16 if native else torch.float32


def training_model(recipe: Recipe, model: str | Path = DEFAULT_MODEL, *, threads: int | None = None,
                   lora_state: dict | None = None, dtype: Any = None) -> tuple[Any, Any]:
    """The base model with fresh LoRA layers (or ``lora_state``), ready to train: ``(peft model, tokenizer)``.

    ``dtype`` (default: :func:`training_dtype` of the recipe) is the base weights' dtype.
    """
    # deferred: torch takes seconds to import; only training needs it
    import torch

    dtype = dtype or training_dtype(recipe.precision)
    base, tokenizer = load_base(model, threads=threads)
    if dtype != torch.float32:
        base = base.to(dtype)
    torch.manual_seed(recipe.seed)
    peft_model = attach_lora(base, recipe)
    for p in peft_model.parameters():
        if p.requires_grad:
            p.data = p.data.float()  # LoRA weights (and so their gradients and Adam moments) stay float32
    if lora_state is not None:
        # deferred: peft imports torch and transformers (seconds)
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(peft_model, lora_state)
    return peft_model, tokenizer


def heldout_loss(model: Any, encoded: list[tuple[list[int], list[int]]]) -> float | None:
    """Mean per-token loss over held-out examples (dropout off, no gradients)."""
    # deferred: torch takes seconds to import; only training needs it
    import torch

    if not encoded:
        return None
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for ids, labels in encoded:
            loss, n = response_loss(model, torch.tensor([ids]), torch.tensor([labels]))
            total += float(loss)
            count += n
    model.train(was_training)
    return total / max(count, 1)


# ---------------------------------------------------------------------- helpers of the loop


def schedule(step: int, total: int, recipe: Recipe) -> float:
    """Learning rate at ``step``: linear warmup, then cosine down to a tenth."""
    peak = recipe.learning_rate
    if step < recipe.warmup_steps:
        return peak * (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, total - recipe.warmup_steps)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def batch_plan(n: int, recipe: Recipe, total_steps: int) -> list[list[tuple[int, bool]]]:
    """For every optimizer step, the (example index, with retrieved examples?) pairs it trains on.

    Deterministic in the seed, so a resumed run sees exactly the batches it would have.
    """
    order: list[tuple[int, bool]] = []
    epoch = 0
    while len(order) < total_steps * recipe.batch_size:
        rng = random.Random(f"{recipe.seed}:{epoch}")
        idx = list(range(n))
        rng.shuffle(idx)
        order.extend((i, rng.random() < recipe.rag_probability) for i in idx)
        epoch += 1
    bs = recipe.batch_size
    return [order[s * bs:(s + 1) * bs] for s in range(total_steps)]


def total_steps_for(n_train: int, recipe: Recipe) -> int:
    if recipe.max_steps and recipe.max_steps > 0:
        return recipe.max_steps
    return max(1, math.ceil(n_train * recipe.epochs / recipe.batch_size))


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _fingerprint(vault: Vault, recipe: Recipe, samples: list[Sample], style: str) -> str:
    """What a checkpoint belongs to: the data and every setting that changes training."""
    settings = dataclasses.asdict(recipe)
    for ignored in ("eval_every", "checkpoint_every", "patience", "memory_limit_mb", "min_texts"):
        settings.pop(ignored)
    parts = [repr(sorted(settings.items())), style] + [f"{s.item_id}|{s.instruction}|{s.examples}" for s in samples]
    return vault.keyed_hash("\n".join(parts), "checkpoint")


def _lora_state(model: Any) -> dict:
    # deferred: peft imports torch and transformers (seconds)
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}


def _save_checkpoint(vault: Vault, fingerprint: str, state: dict) -> None:
    # deferred: torch takes seconds to import; only training needs it
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)  # into memory: the bytes reach disk only sealed in the vault
    vault.put_blob(CHECKPOINT_BLOB, buffer.getvalue(), {"fingerprint": fingerprint, "step": state["step"],
                                                        "total_steps": state["total_steps"]})


def _load_checkpoint(vault: Vault, fingerprint: str) -> dict | None:
    # deferred: torch takes seconds to import; only training needs it
    import torch

    info = vault.blob_info(CHECKPOINT_BLOB)
    if not info or info.get("fingerprint") != fingerprint:
        return None
    data = vault.get_blob(CHECKPOINT_BLOB)
    return torch.load(io.BytesIO(data), weights_only=False)


def checkpoint_step(vault: Vault) -> int | None:
    """The step of the saved checkpoint, if any (what the next run resumes from)."""
    info = vault.blob_info(CHECKPOINT_BLOB)
    return None if not info else int(info.get("step", 0))


def discard_checkpoint(vault: Vault) -> None:
    vault.blobs.delete(CHECKPOINT_BLOB)


# ---------------------------------------------------------------------- the pipeline


def prepare(vault: Vault, config: TrainConfig, *, progress: ProgressFn | None = None,
            cancel: threading.Event | None = None, engine: Any = None, history: Any = None
            ) -> tuple[Recipe, list[Sample], list[Sample], str, dict] | None:
    """Texts -> playback -> samples with retrieved examples. None when cancelled during playback."""
    recipe = config.recipe()
    texts = collect_texts(vault, config.kinds, config.max_text_chars)
    have, needed = adapter_readiness(vault, min_texts=recipe.min_texts, n_texts=len(texts))
    if needed:
        raise LocalpersError(f"{have} texts in your history; a personal adapter needs {needed} more "
                             f"(at least {recipe.min_texts}). Writing still uses your examples and profile meanwhile.")
    report = (lambda d, t, m: progress(TrainProgress("playback", d, t, message=m))) if progress else None
    instructions = playback(vault, texts, engine, config=config.playback, progress=report, cancel=cancel)
    if any(i is None for i in instructions):
        return None
    sources = dict(Counter(i.source for i in instructions))
    if history is None:
        history = History(vault)
    train_texts, held_texts = split_heldout(vault, texts, recipe)
    by_id = {t["id"]: ins for t, ins in zip(texts, instructions)}
    train = make_samples(train_texts, [by_id[t["id"]] for t in train_texts], history, recipe)
    held = make_samples(held_texts, [by_id[t["id"]] for t in held_texts], history, recipe)
    style = style_summary([t["content"] for t in train_texts])
    return recipe, train, held, style, sources


def train_adapter(vault: Vault, config: TrainConfig | None = None, *, progress: ProgressFn | None = None,
                  cancel: threading.Event | None = None, engine: Any = None, history: Any = None,
                  install: bool = True, writer: Any = None) -> TrainResult:
    """Train (or resume training) the user's adapter; by default export, verify and install it.

    ``engine`` is the playback model (default: shared SmolLM2), ``writer`` the llama.cpp
    engine the adapter is verified on (default: the shared engine for the base model).
    Returns a :class:`TrainResult`; ``result.cancelled`` when ``cancel`` was set (a
    checkpoint is saved; call again to resume). Raises LocalpersError when there are
    too few texts, or when memory passes the ceiling (also after saving a checkpoint).
    """
    config = config or TrainConfig()
    tell = progress or (lambda p: None)
    started = time.monotonic()
    prepared = prepare(vault, config, progress=progress, cancel=cancel, engine=engine, history=history)
    if prepared is None:
        return TrainResult(0, 0, 0, 0, 0, None, None, 0, time.monotonic() - started, 0.0, _rss_mb(), cancelled=True,
                           notes=["cancelled during playback; the instructions made so far are cached"])
    run = start_run(vault, config, *prepared, tell=tell, cancel=cancel)
    outcome = train_loop(run, tell=tell, cancel=cancel)
    result = finish_run(run, outcome, config, started=started)
    if outcome.cancelled or not install:
        return result

    result.adapter = install_trained(vault, result, engine=writer, progress=progress)
    discard_checkpoint(vault)
    tell(TrainProgress("done", result.steps, run.total, message=result.summary()))
    return result


@dataclass
class TrainState:
    """Where a training run stands; the checkpoint saves these fields (with the weights) to resume from."""

    step: int = 0
    total_steps: int = 0
    best_loss: float | None = None
    best_lora: dict | None = None  # the LoRA weights at the best held-out loss so far
    base_loss: float | None = None
    bad_evals: int = 0  # evaluations in a row without improvement (early stopping)
    tokens: int = 0
    seconds: float = 0.0
    last_loss: float | None = None

    def as_dict(self) -> dict:
        """The fields by name, values not copied (``dataclasses.asdict`` would deep-copy the weights)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass
class Run:
    """One training session: the model, its optimizer and data, and the :class:`TrainState` they advance."""

    vault: Vault
    recipe: Recipe
    model: Any
    tokenizer: Any
    optimizer: Any
    params: list
    dtype: Any
    encoded: list  # per training sample: (tokens without examples, tokens with examples)
    held_encoded: list
    plan: list
    total: int
    fingerprint: str
    state: TrainState
    train: list[Sample]
    held: list[Sample]
    style: str
    sources: dict
    notes: list[str] = field(default_factory=list)
    resumed_from: int = 0
    threads: int | None = None  # the most torch threads (TrainConfig.threads; fewer while the machine is busy)

    def checkpoint(self) -> None:
        import torch  # deferred: seconds to import; only a training run needs it

        _save_checkpoint(self.vault, self.fingerprint, {
            **self.state.as_dict(), "lora": _lora_state(self.model), "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state()})


@dataclass
class Outcome:
    """How the loop ended."""

    cancelled: bool = False
    stopped_early: bool = False
    peak_rss_mb: float = 0.0
    session_tokens: int = 0
    session_start: float = 0.0  # time.monotonic() when the loop started


def start_run(vault: Vault, config: TrainConfig, recipe: Recipe, train: list[Sample], held: list[Sample], style: str,
              sources: dict, *, tell: ProgressFn, cancel: threading.Event | None = None) -> Run:
    """Load the model, tokenize the samples, and resume from a matching checkpoint (or start at step 0)."""
    import torch  # deferred: seconds to import, and too few texts must be refused at once
    from peft import set_peft_model_state_dict  # deferred: imports torch and transformers

    tell(TrainProgress("loading", message=f"loading {config.model} for training"))
    dtype = training_dtype(recipe.precision)
    model, tokenizer = training_model(recipe, config.model, threads=config.threads, dtype=dtype)
    model.train()

    encoded = [(encode(tokenizer, recipe, s, with_examples=False, style=style),
                encode(tokenizer, recipe, s, with_examples=True, style=style)) for s in train]
    held_encoded = [encode(tokenizer, recipe, s, with_examples=True, style=style) for s in held]
    total = total_steps_for(len(train), recipe)
    plan = batch_plan(len(train), recipe, total)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.learning_rate, weight_decay=recipe.weight_decay)

    fingerprint = _fingerprint(vault, recipe, train + held, style)
    state = TrainState(total_steps=total)
    notes: list[str] = []
    saved = _load_checkpoint(vault, fingerprint)
    if saved is not None:
        set_peft_model_state_dict(model, saved["lora"])
        optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["torch_rng"])
        state = TrainState(**{f.name: saved.get(f.name, getattr(state, f.name)) for f in dataclasses.fields(TrainState)})
        notes.append(f"resumed from the checkpoint at step {state.step}")
    elif vault.blob_info(CHECKPOINT_BLOB):
        notes.append("the saved checkpoint belongs to other data or settings; starting over")

    if state.base_loss is None and not (cancel is not None and cancel.is_set()):
        tell(TrainProgress("evaluating", 0, total, message="held-out loss of the base model"))
        state.base_loss = heldout_loss(model, held_encoded)  # LoRA B starts at zero: this is the base model
    return Run(vault, recipe, model, tokenizer, optimizer, params, dtype, encoded, held_encoded, plan, total,
               fingerprint, state, train, held, style, sources, notes, resumed_from=state.step, threads=config.threads)


def train_loop(run: Run, *, tell: ProgressFn, cancel: threading.Event | None = None) -> Outcome:
    """Step until done, cancelled, stopped early (held-out loss stopped improving) or over the memory limit."""
    import torch  # deferred: seconds to import; only a training run needs it

    recipe, state, total, model, optimizer = run.recipe, run.state, run.total, run.model, run.optimizer
    out = Outcome(peak_rss_mb=_rss_mb(), session_start=time.monotonic())
    while state.step < total:
        if cancel is not None and cancel.is_set():
            out.cancelled = True
            break
        threads_mod.set_torch_threads(run.threads)  # fewer while another program keeps a core busy
        step = state.step
        for group in optimizer.param_groups:
            group["lr"] = schedule(step, total, recipe)
        batch = [run.encoded[i][1 if rag else 0] for i, rag in run.plan[step]]
        n_response = sum(sum(1 for x in labels[1:] if x != -100) for _, labels in batch)
        loss_sum = 0.0
        for ids, labels in batch:
            loss, _ = response_loss(model, torch.tensor([ids]), torch.tensor([labels]))
            (loss / max(n_response, 1)).backward()
            loss_sum += float(loss.detach())
            out.session_tokens += len(ids)
            state.tokens += len(ids)
        torch.nn.utils.clip_grad_norm_(run.params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state.step = step + 1
        state.last_loss = loss_sum / max(n_response, 1)
        elapsed = time.monotonic() - out.session_start
        rate = out.session_tokens / elapsed if elapsed > 0 else 0.0
        eta = elapsed / (state.step - run.resumed_from) * (total - state.step)
        out.peak_rss_mb = max(out.peak_rss_mb, _rss_mb())
        tell(TrainProgress("training", state.step, total, state.last_loss, state.best_loss, rate, eta))

        if run.held_encoded and (state.step % recipe.eval_every == 0 or state.step == total):
            loss = heldout_loss(model, run.held_encoded)
            if state.best_loss is None or loss < state.best_loss - 1e-4:
                state.best_loss, state.best_lora, state.bad_evals = loss, _lora_state(model), 0
            else:
                state.bad_evals += 1
            tell(TrainProgress("evaluating", state.step, total, state.last_loss, loss, rate, eta,
                               message=f"held-out loss {loss:.3f} (best {state.best_loss:.3f})"))
            if state.bad_evals >= recipe.patience:
                out.stopped_early = True
                break
        if state.step % recipe.checkpoint_every == 0 and state.step < total:
            run.checkpoint()
        if out.peak_rss_mb > recipe.memory_limit_mb:
            run.checkpoint()
            raise LocalpersError(
                f"training uses {out.peak_rss_mb:.0f} MB of memory, above the limit of {recipe.memory_limit_mb} MB; a "
                "checkpoint was saved. Lower max_length (e.g. --max-length 256) or raise memory_limit_mb, then run again.")
    state.seconds += time.monotonic() - out.session_start
    if out.cancelled:
        run.checkpoint()
    return out


def finish_run(run: Run, out: Outcome, config: TrainConfig, *, started: float) -> TrainResult:
    """Put the best held-out weights in the model (in float32, as llama.cpp serves it) and report the run."""
    import torch  # deferred: seconds to import; only a training run needs it
    from peft import set_peft_model_state_dict  # deferred: imports torch and transformers

    state, recipe = run.state, run.recipe
    final_lora = state.best_lora if state.best_lora is not None and not out.cancelled else None
    model, tokenizer = run.model, run.tokenizer
    if run.dtype != torch.float32:
        # Export and verification need the exact float32 base llama.cpp serves: rebuild on it.
        final_lora = final_lora or _lora_state(model)
        run.model = run.optimizer = model = None
        run.params = []
        gc.collect()
        model, tokenizer = training_model(recipe, config.model, threads=config.threads, lora_state=final_lora,
                                          dtype=torch.float32)
    elif final_lora is not None:
        set_peft_model_state_dict(model, final_lora)  # the best held-out weights win
    model.eval()
    elapsed = time.monotonic() - out.session_start
    result = TrainResult(
        steps=state.step, total_steps=run.total, n_texts=len(run.train) + len(run.held), n_train=len(run.train),
        n_heldout=len(run.held), base_heldout_loss=state.base_loss,
        heldout_loss=state.best_loss if state.best_loss is not None else state.base_loss,
        train_tokens=state.tokens, seconds=time.monotonic() - started,
        tokens_per_s=out.session_tokens / elapsed if elapsed > 0 and out.session_tokens else 0.0,
        peak_rss_mb=out.peak_rss_mb, resumed_from=run.resumed_from, cancelled=out.cancelled,
        stopped_early=out.stopped_early, playback_sources=run.sources, notes=run.notes, recipe=recipe, model=model,
        tokenizer=tokenizer, samples=run.train, style=run.style, base_model=str(config.model))
    if out.session_tokens and elapsed > 0:
        run.vault.cache.insert({"key": SPEED_KEY, "kind": "stat", "value": {"tokens_per_s": result.tokens_per_s}},
                               replace=True)
    return result


def install_trained(vault: Vault, result: TrainResult, *, engine: Any = None,
                    progress: Callable[[Any], None] | None = None) -> AdapterInfo:
    """Export a :class:`TrainResult`'s model, verify it, and install it (see :func:`install_verified`)."""
    tell = progress or (lambda p: None)
    recipe = result.recipe or load_recipe(DEFAULT_MODEL)
    base_model = result.base_model or recipe.name
    engine = engine or Engine.shared(base_model)
    tell(TrainProgress("exporting", result.steps, result.total_steps, message="writing the GGUF adapter"))
    data = export_gguf(result.model, recipe, base_model_id=models.model_id(engine.model_path))
    tell(TrainProgress("verifying", result.steps, result.total_steps,
                       message="checking llama.cpp and peft agree on the adapter"))
    scores = {"base_heldout_loss": result.base_heldout_loss, "heldout_loss": result.heldout_loss,
              "steps": result.steps, "train_tokens": result.train_tokens}
    return install_verified(vault, data, result.model, result.tokenizer, engine, recipe=recipe,
                            n_texts=result.n_texts, scores=scores, base_model=base_model,
                            extra={"n_train": result.n_train, "n_heldout": result.n_heldout,
                                   "playback": result.playback_sources})


def estimate_training(vault: Vault, config: TrainConfig | None = None) -> float:
    """Seconds a full :func:`train_adapter` run would take here (playback, training, export).

    Uses the throughput measured by the last run on this vault (default: 150 tokens/s),
    tokens estimated at 4 characters each, and 1.5 s per text not yet played back.

    Example::

        >>> estimate_training(vault)    # doctest: +SKIP
        412.0
    """
    config = config or TrainConfig()
    recipe = config.recipe()
    texts = collect_texts(vault, config.kinds, config.max_text_chars)
    if not texts:
        return 0.0
    uncached = sum(1 for t in texts if cached_instruction(vault, t["content"]) is None)
    row = vault.cache.get(SPEED_KEY)
    rate = float(row["value"]["tokens_per_s"]) if row and isinstance(row["value"], dict) else DEFAULT_TOKENS_PER_S
    n_train = max(1, len(texts) - max(recipe.min_heldout, int(round(len(texts) * recipe.heldout_fraction))))
    steps = total_steps_for(n_train, recipe)
    # An example is the prompt (~60 tokens, more with retrieved examples) plus the text.
    mean_tokens = min(recipe.max_length, 60 + recipe.rag_probability * recipe.rag_examples * recipe.example_chars / 4
                      + sum(len(t["content"]) for t in texts) / len(texts) / 4)
    training = steps * recipe.batch_size * mean_tokens / rate
    return uncached * PLAYBACK_SECONDS_PER_TEXT + training + 30.0


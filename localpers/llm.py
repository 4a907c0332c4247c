"""The local LLM: one llama.cpp model per process, shared by every caller.

:class:`Engine` wraps ``llama_cpp.Llama`` with what a personal assistant needs:

- streaming and non-streaming completion and chat, with stop sequences;
- output constrained by a GBNF grammar or a JSON schema;
- a lock, so two threads (say the TUI and a background job) never interleave tokens;
- per-request LoRA adapters: each adapter file is loaded once and switched in for
  the requests that name it; ``adapter=None`` gives exactly the base model.

What is guaranteed: the same prompt, options and adapter give the same text, whether
streamed or not and whatever this engine generated before. ``seed=None`` means the
engine's own seed, so sampled output (``temperature > 0``) repeats too; pass another
seed for another version. llama.cpp's results depend on how tokens are batched, so
every request evaluates its prompt in the same batches: the prompt but its last token
in chunks of :data:`PROMPT_CHUNK` tokens that start at multiples of it, then the last
token alone, then each new token alone. A request reuses the cached keys and values
only of whole chunks it shares with the previous prompt (a common instruction or set of
examples), which are exactly what it would compute itself. The guarantee holds for one
model file, thread count and llama.cpp build; the build is portable (see the Makefile),
so machines running the same build compute the same kernels, but bit-identical text
across machines is not promised.

Example::

    >>> from localpers.llm import Engine
    >>> engine = Engine.shared("gemma3-270m")                         # doctest: +SKIP
    >>> engine.complete("The capital of France is", max_tokens=5)      # doctest: +SKIP
    ' Paris.'
    >>> for piece in engine.stream("Dear Ada,", max_tokens=20):        # doctest: +SKIP
    ...     print(piece, end="")
    >>> engine.complete("Answer:", schema={"type": "object", "properties": {"ok": {"type": "boolean"}}})  # doctest: +SKIP
    '{"ok": true}'
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import models
from . import threads as threads_mod
from .errors import LocalpersError
from .paths import DEFAULT_MODEL, Config

# Prompt tokens are evaluated in aligned chunks of this many (see the module docstring).
# Small enough that a shared instruction is mostly reused, large enough to batch well.
PROMPT_CHUNK = 64


@dataclass
class _LoadedAdapter:
    path: Path
    handle: Any  # llama_adapter_lora_p
    scale: float


class Engine:
    """A GGUF model loaded once, with a lock and hot-swappable LoRA adapters."""

    _shared: dict[tuple, "Engine"] = {}
    _shared_lock = threading.Lock()

    def __init__(
        self,
        model: str | Path = DEFAULT_MODEL,
        *,
        n_ctx: int | None = None,
        threads: int | None = None,
        seed: int = 0,
        verbose: bool = False,
    ) -> None:
        """``n_ctx`` defaults to ``context_size`` in config.toml. ``threads=None`` adapts: up to
        ``threads`` in config.toml, fewer while other processes keep cores busy, re-checked at
        every request (see :mod:`localpers.threads`); a number fixes the count."""
        import llama_cpp  # deferred: loading the shared library takes a moment

        self.model_path = models.ensure(model)
        if not verbose:
            _silence_llama_logs()
        config = Config.load() if n_ctx is None or threads is None else None
        n_ctx = n_ctx or config.context_size  # type: ignore[union-attr]
        self.most_threads = threads or config.threads  # type: ignore[union-attr]
        self.adaptive = threads is None
        self.threads = threads_mod.available(self.most_threads) if self.adaptive else self.most_threads
        try:
            with amx_off_if_unusable(llama_cpp.llama_cpp):
                self.llm = llama_cpp.Llama(
                    model_path=str(self.model_path),
                    n_ctx=n_ctx,
                    n_threads=self.threads,
                    n_threads_batch=self.threads,
                    seed=seed,
                    swa_full=True,  # keep every cached position of sliding-window layers, so a prefix can be reused
                    verbose=verbose,
                )
        except ValueError as exc:  # llama-cpp-python raises ValueError for unreadable models
            raise LocalpersError(f"llama.cpp could not load {self.model_path}: {exc}") from exc
        self.seed = seed
        self.lock = threading.RLock()
        self._adapters: dict[str, _LoadedAdapter] = {}
        self._active: str | None = None
        # Prompt tokens whose keys/values are in the cache exactly as a fresh evaluation
        # would leave them: whole chunks of the last prompt.
        self._chunks: list[int] = []
        self._end_tokens: list[int] | None = None  # end-of-generation token ids, found on first use

    @classmethod
    def shared(cls, model: str | Path = DEFAULT_MODEL, **kwargs: Any) -> "Engine":
        """The process-wide engine for ``model``: loaded on first call, reused after."""
        key = (str(models.ensure(model)), tuple(sorted(kwargs.items())))
        with cls._shared_lock:
            if key not in cls._shared:
                cls._shared[key] = cls(model, **kwargs)
            return cls._shared[key]

    # ------------------------------------------------------------------ adapters

    def load_adapter(self, name: str, path: str | Path, *, scale: float = 1.0) -> None:
        """Load a GGUF LoRA adapter once; later requests select it with ``adapter=name``.

        llama.cpp reads the file while loading and keeps the weights in memory, so the
        file may be deleted (or was a memfd) as soon as this returns.
        """
        # deferred: llama.cpp takes about a second to import; `import localpers.llm` stays light
        import llama_cpp

        with self.lock:
            if name in self._adapters:
                self.unload_adapter(name)
            handle = llama_cpp.llama_adapter_lora_init(self.llm.model, str(path).encode())
            if not handle:
                raise LocalpersError(f"llama.cpp could not load the LoRA adapter {name!r}: is it a GGUF LoRA for this base model?")
            self._adapters[name] = _LoadedAdapter(Path(path), handle, scale)

    def unload_adapter(self, name: str) -> None:
        # deferred: llama.cpp takes about a second to import; `import localpers.llm` stays light
        import llama_cpp

        with self.lock:
            loaded = self._adapters.pop(name, None)
            if loaded is None:
                return
            if self._active == name:
                self._select(None)
            free = getattr(llama_cpp, "llama_adapter_lora_free", None)
            if free is not None:
                free(loaded.handle)

    @property
    def adapters(self) -> list[str]:
        return sorted(self._adapters)

    @property
    def active_adapter(self) -> str | None:
        return self._active

    def _select(self, name: str | None) -> None:
        """Make ``name`` (or no adapter) active. Caller holds the lock."""
        if name == self._active:
            return
        if name is not None and name not in self._adapters:
            raise LocalpersError(f"no adapter named {name!r} is loaded; loaded: {', '.join(self._adapters) or 'none'}")
        _set_adapters(self.llm.ctx, [] if name is None else [self._adapters[name]])
        self._active = name
        self.reset()

    def reset(self) -> None:
        """Forget the KV cache, so the next request is evaluated from scratch.

        Needed after an adapter swap: cached keys/values were computed with the old weights.
        """
        with self.lock:
            self.llm.reset()
            self.llm._ctx.kv_cache_clear()
            self._chunks = []

    def _evaluate_prompt(self, tokens: list[int]) -> None:
        """Evaluate all of ``tokens`` but the last, in aligned chunks, reusing cached chunks. Caller holds the lock.

        The last token is left to llama-cpp-python, which evaluates it alone (its prefix
        check finds the rest cached) and samples the first new token from its logits.
        """
        body = tokens[:-1]
        keep = 0
        for cached, token in zip(self._chunks, body):
            if cached != token:
                break
            keep += 1
        keep -= keep % PROMPT_CHUNK
        if not self.llm._ctx.kv_cache_seq_rm(-1, keep, -1):
            self.reset()
            keep = 0
        self.llm.n_tokens = keep
        self._chunks = body[:keep]
        for start in range(keep, len(body), PROMPT_CHUNK):
            chunk = body[start:start + PROMPT_CHUNK]
            self.llm.eval(chunk)
            if len(chunk) == PROMPT_CHUNK:
                self._chunks = body[:start + PROMPT_CHUNK]

    # ------------------------------------------------------------------ threads

    def adapt_threads(self) -> int:
        """Use as many threads as cores are free now (adaptive engines only); returns the count.

        The thread count does not change the text: llama.cpp computes each value in one thread.
        """
        if self.adaptive:
            import llama_cpp  # deferred: loading the shared library takes a moment

            n = threads_mod.available(self.most_threads)
            if n != self.threads:
                with self.lock:
                    llama_cpp.llama_set_n_threads(self.llm.ctx, n, n)
                    self.threads = n
        return self.threads

    # ------------------------------------------------------------------ generation

    def _sampling(self, *, temperature: float, top_p: float, top_k: int, repeat_penalty: float,
                  stop: list[str] | None, schema: dict | None, grammar: str | None, seed: int | None) -> dict:
        # deferred: llama.cpp takes about a second to import; `import localpers.llm` stays light
        import llama_cpp

        kwargs: dict[str, Any] = dict(temperature=temperature, top_p=top_p, top_k=top_k,
                                      repeat_penalty=repeat_penalty, stop=stop or [],
                                      # llama-cpp-python draws a new seed per call when given none
                                      seed=self.seed if seed is None else seed)
        if schema is not None and grammar is not None:
            raise LocalpersError("pass either a JSON schema or a grammar, not both")
        if schema is not None:
            kwargs["grammar"] = llama_cpp.LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        elif grammar is not None:
            kwargs["grammar"] = llama_cpp.LlamaGrammar.from_string(grammar, verbose=False)
        return kwargs

    def stream(
        self,
        prompt: str,
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 0.95,
        top_k: int = 40,
        repeat_penalty: float = 1.1,
        stop: list[str] | None = None,
        schema: dict | None = None,
        grammar: str | None = None,
        adapter: str | None = None,
        seed: int | None = None,
        min_tokens: int = 0,
    ) -> Iterator[str]:
        """Yield the completion of ``prompt`` piece by piece.

        ``min_tokens``: the model may not end the text (its end-of-text tokens are held
        back) before this many tokens; a stop sequence still ends it. Ignored with a
        ``schema`` or ``grammar``: they decide where the text is complete, and holding
        back the end there would leave llama.cpp's sampler no token to pick.

        The engine stays locked until the generator finishes or is closed, so other
        callers wait their turn instead of interleaving with this one. The text is the
        same as :meth:`complete` gives (see the module docstring).
        """
        sampling = self._sampling(temperature=temperature, top_p=top_p, top_k=top_k, repeat_penalty=repeat_penalty,
                                  stop=stop, schema=schema, grammar=grammar, seed=seed)
        with self.lock:
            self.adapt_threads()
            self._select(adapter)
            tokens = self.tokenize(prompt)
            self._check_length(len(tokens), max_tokens)
            self._evaluate_prompt(tokens)
            if min_tokens > 0 and schema is None and grammar is None:
                sampling["logits_processor"] = self._hold_back_end(len(tokens), min_tokens)
            # A token list (with its BOS) is taken as is, so llama.cpp sees exactly what was evaluated.
            for n, chunk in enumerate(self.llm.create_completion(tokens, max_tokens=max_tokens, stream=True,
                                                                 **sampling)):
                if n % 32 == 31:
                    self.adapt_threads()  # a long draft follows a competitor that starts or stops mid-way
                text = chunk["choices"][0]["text"]
                if text:
                    yield text

    def _hold_back_end(self, n_prompt: int, min_tokens: int) -> Any:
        """A logits processor that forbids end-of-text tokens until ``min_tokens`` were generated."""
        # deferred: llama.cpp takes about a second to import; `import localpers.llm` stays light
        import llama_cpp

        if self._end_tokens is None:
            vocab = self.llm._model.vocab
            self._end_tokens = [t for t in range(self.llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)]
        ends = self._end_tokens

        def hold_back(input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
            if len(input_ids) - n_prompt < min_tokens:  # input_ids: the prompt and the tokens so far
                scores[ends] = -np.inf
            return scores

        return llama_cpp.LogitsProcessorList([hold_back])

    def complete(self, prompt: str, **kwargs: Any) -> str:
        """The whole completion of ``prompt`` (same options as :meth:`stream`)."""
        return "".join(self.stream(prompt, **kwargs))

    def chat(self, messages: list[dict[str, str]], *, stream: bool = False, **kwargs: Any) -> str | Iterator[str]:
        """Complete a chat with the model's own chat template.

        ``messages`` is a list of ``{"role": "system"|"user"|"assistant", "content": ...}``.
        """
        prompt = self.chat_prompt(messages)
        return self.stream(prompt, **kwargs) if stream else self.complete(prompt, **kwargs)

    @property
    def has_chat_template(self) -> bool:
        """Whether the model ships a chat template (an instruction-tuned model; a pretrained one has none)."""
        return bool(self.llm.metadata.get("tokenizer.chat_template"))

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        """The prompt text the model's chat template makes of ``messages``."""
        # deferred: llama.cpp takes about a second to import; `import localpers.llm` stays light
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            # Base models without a template: a plain, readable transcript.
            lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
            return "\n\n".join(lines) + "\n\nAssistant:"
        formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=self._token_text(self.llm.token_eos()),
            bos_token=self._token_text(self.llm.token_bos()),
            add_generation_prompt=True,
        )
        result = formatter(messages=messages)
        return result.prompt

    def _token_text(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="ignore")

    # ------------------------------------------------------------------ helpers

    def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def _check_length(self, n: int, max_tokens: int) -> None:
        if n + max_tokens > self.llm.n_ctx():
            raise LocalpersError(
                f"prompt is {n} tokens; with max_tokens={max_tokens} it exceeds the context of {self.llm.n_ctx()} "
                "tokens: shorten the input or raise context_size in config.toml"
            )

    def next_token_logits(self, prompt: str, *, adapter: str | None = None) -> np.ndarray:
        """Logits over the vocabulary for the token after ``prompt`` (used to verify adapters)."""
        # deferred: llama.cpp takes about a second to import; `import localpers.llm` stays light
        import llama_cpp

        with self.lock:
            self.adapt_threads()
            self._select(adapter)
            tokens = self.tokenize(prompt)
            self._evaluate_prompt(tokens)
            self.llm.eval(tokens[-1:])  # alone, as generation evaluates it: these are the logits it samples from
            # llama-cpp-python no longer copies logits into .scores unless logits_all; read the last row directly.
            pointer = llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
            return np.ctypeslib.as_array(pointer, shape=(self.llm.n_vocab(),)).astype(np.float32, copy=True)


@contextlib.contextmanager
def amx_off_if_unusable(bindings: Any) -> Iterator[None]:
    """Load without llama.cpp's extra buffer types (its AMX kernels) on CPUs that list AMX.

    Some VMs (Firecracker) list AMX in /proc/cpuinfo without enabling its tile state, and
    llama.cpp's AMX matrix kernels then die with SIGILL at the first token.
    """
    try:
        amx = "amx_tile" in Path("/proc/cpuinfo").read_text()
    except OSError:
        amx = False
    if not amx:
        yield
        return
    original = bindings.llama_model_default_params  # the ctypes module Llama() reads its defaults from

    def params() -> Any:
        p = original()
        p.use_extra_bufts = False
        return p

    bindings.llama_model_default_params = params
    try:
        yield
    finally:
        bindings.llama_model_default_params = original


_log_callback: Any = None


def _silence_llama_logs() -> None:
    """Route llama.cpp's stderr chatter to nowhere (it would scribble over the TUI)."""
    global _log_callback
    if _log_callback is not None:
        return
    # deferred: llama.cpp takes about a second to import; `import localpers.llm` stays light
    import llama_cpp

    @llama_cpp.llama_log_callback
    def _ignore(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        return None

    _log_callback = _ignore  # keep a reference: ctypes callbacks must outlive their registration
    llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))


def _set_adapters(ctx: Any, adapters: list[_LoadedAdapter]) -> None:
    """Attach exactly ``adapters`` to the context, across llama.cpp API versions."""
    # deferred: llama.cpp takes about a second to import; `import localpers.llm` stays light
    import llama_cpp

    plural = getattr(llama_cpp, "llama_set_adapters_lora", None)
    if plural is not None:  # newer llama.cpp: set the whole list at once
        n = len(adapters)
        handles = (llama_cpp.llama_adapter_lora_p_ctypes * max(n, 1))(*[a.handle for a in adapters])
        scales = (ctypes.c_float * max(n, 1))(*[a.scale for a in adapters])
        rc = plural(ctx, handles, n, scales)
    else:  # older llama.cpp: clear, then add one by one
        llama_cpp.llama_clear_adapter_lora(ctx)
        rc = 0
        for a in adapters:
            rc = rc or llama_cpp.llama_set_adapter_lora(ctx, a.handle, a.scale)
    if rc != 0:
        raise LocalpersError(f"llama.cpp refused the LoRA adapter (code {rc}); was it trained for this base model?")

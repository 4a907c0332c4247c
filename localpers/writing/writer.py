"""Write in the user's style: compose, reply, rewrite or continue, streaming.

A prompt for the local writer model combines three personal signals:

- the user's **adapter** (a LoRA trained on their texts, see :mod:`localpers.writing.train`),
  when they have one for this base model;
- **retrieved examples** of their own writing, found by meaning in their history;
- a short **style summary** (greeting, sign-off, length) computed from their texts,
  plus the profile **facts** that minimal disclosure picks for the ``writing-tone``
  decision (:func:`localpers.disclosure.choose_profile_facts`): only the facts needed
  to settle whether the draft should be formal or casual reach the prompt, the rest
  are withheld, and each choice goes to the disclosure ledger.

With no personal adapter yet (a cold start), the default writer, Gemma 3 270M, is a
*pretrained* model that does not follow instructions, so the draft is written instead by
an instruction-tuned model with its chat template (:data:`COLD_START_MODEL`, SmolLM2 135M
Instruct; or the writer model itself when it has a chat template), given the same
examples and style summary, and told which names, days, times and numbers of the
instruction the draft must carry (:func:`key_facts`). ``bench/personalization.py``
measures both writers side by side. :func:`adapter_readiness` says how many more texts
an adapter needs.

Every draft can be saved with the user's final edit (:meth:`Writer.save`): the pair goes
to ``vault.drafts``, and the final text joins the history, where it becomes training
data for the next adapter.

Example::

    >>> from localpers import Vault, Writer
    >>> writer = Writer(Vault.open("ada", "passphrase"))                   # doctest: +SKIP
    >>> draft = writer.compose("Ask Tom to move our meeting to Thursday.")  # doctest: +SKIP
    >>> for piece in draft:                                                 # doctest: +SKIP
    ...     print(piece, end="", flush=True)
    >>> [e.item_id for e in draft.examples]                                 # doctest: +SKIP
    ['3f2a...', '9b1c...']
    >>> writer.save(draft, draft.text.replace("Thursday", "Friday"))        # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..adapters import MODES, Recipe, clip, load_recipe, recipe_for_model
from ..errors import LocalpersError
from ..disclosure import choose_profile_facts, profile_facts
from ..history import History
from ..llm import Engine
from ..paths import DEFAULT_MODEL, Config
from ..vault import coarse_time
from .adapter import load as load_adapter
from .context import WRITTEN_KINDS, Example, key_facts, readiness_message, retrieve, style_summary

if TYPE_CHECKING:
    from ..vault import Vault

# A draft is at least a sentence: the small model sometimes ends after a word ("Yes!").
MIN_DRAFT_TOKENS = 16
MAX_THREAD_CHARS = 3000
# Writes for a user with no personal adapter when the writer model cannot follow instructions.
COLD_START_MODEL = "smollm2-135m-instruct"
COLD_START_SYSTEM = ("You write emails for me, in the first person, in my voice. Do exactly what my instruction "
                     "asks and keep its names, days, times and numbers. Write only the email.")
DEFAULT_INSTRUCTIONS = {
    "reply": "Reply to this message.",
    "rewrite": "Rewrite my draft in my own words and style.",
    "continue": "Continue my draft.",
}


# A draft that opens with a separator line copied from the prompt's examples (see Draft.__iter__).
_OPENING_SO_FAR = re.compile(r"\s*-*\s*")
_SEPARATOR_OPENING = re.compile(r"\A\s*(-{3,}[ \t]*\n)?\s*")

# ---------------------------------------------------------------------- drafts


@dataclass
class Draft:
    """A draft being written: iterate it for text pieces; ``text`` holds what came so far.

    ``examples`` are the retrieved texts in the prompt, ``facts_used`` / ``facts_withheld``
    the profile facts given to / kept from the model (``disclosure`` says why, when the
    facts were chosen by minimal disclosure), ``adapter`` the adapter used (None: base
    model). For ``mode="continue"``, ``text`` is the continuation and ``full_text`` the
    draft with it.
    """

    mode: str
    instruction: str
    context: str
    prompt: str
    examples: list[Example]
    style: str
    facts_used: list[str]
    facts_withheld: list[str]
    adapter: str | None
    disclosure: Any = None  # a localpers.disclosure.FactSelection, or None
    text: str = ""
    finished: bool = False
    _pieces: Iterator[str] | None = field(default=None, repr=False)

    def __iter__(self) -> Iterator[str]:
        if self._pieces is None:
            return
        # A new text's opening is held back while it is only blanks and dashes: the base model
        # sometimes starts by copying the "---" that separates the examples in its prompt.
        held: str | None = "" if self.mode != "continue" and not self.text else None
        for piece in self._pieces:
            if held is not None:
                held += piece
                if _OPENING_SO_FAR.fullmatch(held):
                    continue
                piece, held = _SEPARATOR_OPENING.sub("", held, count=1), None
            self.text += piece
            yield piece
        self.finished = True
        self._pieces = None
        self.text = self.text.rstrip()

    def close(self) -> None:
        """Stop generating (the engine is free for others at once); ``text`` keeps what came."""
        if self._pieces is not None:
            close = getattr(self._pieces, "close", None)
            if close is not None:
                close()
            self._pieces = None
        self.finished = True
        self.text = self.text.rstrip()

    def result(self) -> str:
        """The whole draft (runs the generation to its end if it has not finished)."""
        for _ in self:
            pass
        return self.text

    @property
    def full_text(self) -> str:
        if self.mode == "continue":
            return self.context + self.text
        return self.text


class Writer:
    """Writes drafts for one user. See the module docstring.

    ``engine`` defaults to the shared engine for the configured writer model; ``history``
    to the user's :class:`~localpers.history.History`. ``use_adapter``, ``use_examples`` and
    ``use_style`` switch the three personal signals (the benchmark compares them);
    ``use_facts`` lets minimal disclosure put profile facts in the prompt (``recipient``
    names the model in the disclosure ledger). ``cold_start``: None writes with the
    instruction-tuned cold-start writer while no adapter is in use (see the module
    docstring), False always with ``engine`` and the recipe's plain prompt (the benchmark's
    baseline), True with the cold-start writer even when an adapter is loaded;
    ``cold_start_engine`` overrides the cold-start model.
    """

    def __init__(self, vault: Vault, engine: Any = None, history: Any = None, *, use_adapter: bool = True,
                 use_examples: bool = True, use_style: bool = True, use_facts: bool = True, k: int | None = None,
                 max_tokens: int = 300, temperature: float = 0.0, repeat_penalty: float = 1.1,
                 recipient: str = "local writer model", cold_start: bool | None = None,
                 cold_start_engine: Any = None) -> None:
        self.vault = vault
        if engine is None:
            engine = Engine.shared(Config.load().writer_model)
        self.engine = engine
        if history is None and use_examples:
            history = History(vault)
        self.history = history
        self.use_adapter, self.use_examples, self.use_style = use_adapter, use_examples, use_style
        self.use_facts, self.recipient = use_facts, recipient
        self._facts: dict[str, Any] | None = None
        try:
            self.recipe: Recipe = recipe_for_model(engine.model_path)
            self.supported = True
        except LocalpersError:  # any GGUF can write; only recipe models get adapters
            self.recipe, self.supported = load_recipe(DEFAULT_MODEL), False
        self.k = self.recipe.rag_examples if k is None else k
        self.max_tokens, self.temperature, self.repeat_penalty = max_tokens, temperature, repeat_penalty
        self._style: str | None = None
        self._adapter: str | None = None
        self.notice = ""
        if use_adapter:
            self._adapter = self._load_adapter()
        self.chat_engine: Any = None  # the engine that writes with its chat template, if any
        if cold_start or (cold_start is None and self._adapter is None):
            self.chat_engine = cold_start_engine or self._cold_start_engine()

    def _cold_start_engine(self) -> Any:
        """The writer model itself when it follows instructions (has a chat template), else :data:`COLD_START_MODEL`."""
        if self.engine.has_chat_template:
            return self.engine
        return Engine.shared(COLD_START_MODEL)

    def _load_adapter(self) -> str | None:
        if not self.supported:
            self.notice = "This writer model has no adapter recipe; writing uses your examples and style only."
            return None
        name = load_adapter(self.vault, self.engine)
        self.notice = readiness_message(self.vault, has_adapter=name is not None)
        return name

    @property
    def adapter(self) -> str | None:
        """The name of the adapter in use (None: the base model)."""
        return self._adapter

    @property
    def style(self) -> str:
        """The user's style summary (computed once from their most recent texts)."""
        if self._style is None:
            marks = ", ".join("?" * len(WRITTEN_KINDS))
            rows = self.vault.items.rows(f"kind in ({marks})", list(WRITTEN_KINDS), order_by="created desc",
                                         limit=300, columns=["content"])
            self._style = style_summary([r["content"] for r in rows if isinstance(r["content"], str)])
        return self._style

    def choose_facts(self, *, record: bool = True) -> Any:
        """The profile facts for the next draft, chosen by minimal disclosure (``writing-tone``).

        Returns a :class:`localpers.disclosure.FactSelection`: ``used`` goes into the prompt,
        ``withheld`` stays in the vault. ``record`` logs the choice in the disclosure ledger.
        """
        if self._facts is None:  # read (and derive) once per writer; saving a draft refreshes it
            self._facts = profile_facts(self.vault)
        return choose_profile_facts(self.vault, "writing", recipient=self.recipient, facts=self._facts,
                                    record=record)

    # ------------------------------------------------------------------ the four modes

    def compose(self, instruction: str, **kwargs: Any) -> Draft:
        """A new text from an instruction ("Ask Tom to move the meeting to Thursday")."""
        return self.write("compose", instruction, **kwargs)

    def reply(self, message: str, instruction: str = "", **kwargs: Any) -> Draft:
        """A reply to ``message`` (the thread so far), optionally steered by ``instruction``."""
        return self.write("reply", instruction, context=message, **kwargs)

    def rewrite(self, draft: str, instruction: str = "", **kwargs: Any) -> Draft:
        """``draft`` rewritten in the user's style (plus ``instruction``, e.g. "make it shorter")."""
        return self.write("rewrite", instruction, context=draft, **kwargs)

    def continue_(self, draft: str, instruction: str = "", **kwargs: Any) -> Draft:
        """More of ``draft``, in the user's style."""
        return self.write("continue", instruction, context=draft, **kwargs)

    def write(self, mode: str, instruction: str = "", *, context: str = "", facts: list[str] | None = None,
              available_facts: list[str] | None = None, max_tokens: int | None = None,
              temperature: float | None = None, seed: int | None = None, stop: list[str] | None = None,
              schema: dict | None = None, min_tokens: int | None = None) -> Draft:
        """A streaming :class:`Draft` for ``mode`` (compose, reply, rewrite, continue).

        ``facts``: profile facts to tell the model, as ``"name: value"`` lines, instead of
        the ones minimal disclosure would choose (``[]`` tells none). ``available_facts``:
        all facts that could have been told, so the draft can report what was withheld.
        ``stop``: more stop sequences besides the recipe's; ``schema``: a JSON schema the
        draft must follow (see :meth:`localpers.llm.Engine.stream`).
        ``min_tokens``: the model may not end the draft sooner (default :data:`MIN_DRAFT_TOKENS`,
        at most ``max_tokens``); a stop sequence (the start of another prompt block) still ends it.
        """
        if mode not in MODES:
            raise LocalpersError(f"unknown writing mode {mode!r}; use one of: {', '.join(MODES)}")
        instruction = " ".join((instruction or "").split())
        if mode == "compose" and not instruction:
            raise LocalpersError("say what to write: an instruction such as 'Ask Tom to move the meeting to Thursday'")
        if mode != "compose" and not context.strip():
            raise LocalpersError(f"'{mode}' needs the text to work on (the message or the draft)")
        instruction = instruction or DEFAULT_INSTRUCTIONS[mode]
        if mode == "reply":
            context = clip(context, MAX_THREAD_CHARS)  # a long thread: its start (the latest message) matters
        query = instruction if mode == "compose" else f"{instruction}\n{context[-1000:]}"
        examples = retrieve(self.history, query, self.k, exclude_texts=[context] if context else ()) \
            if self.use_examples else []
        selection = None
        if facts is None and self.use_facts:
            selection = self.choose_facts()
            lines = selection.prompt_lines() + ([selection.instruction] if selection.instruction else [])
            used, withheld = list(selection.used), list(selection.withheld)
        else:
            lines = list(facts or [])
            used = [line.split(":", 1)[0].strip() for line in lines]
            withheld = [f for f in (available_facts or []) if f not in used]
        style = self.style if self.use_style else ""
        prompt = self.recipe.format_prompt(instruction, examples=[e.text for e in examples], style=style,
                                           facts="; ".join(lines), context=context, mode=mode)
        engine, adapter = self.engine, self._adapter
        if mode == "continue":
            prompt += context  # continuing a text is what a base model does best: no chat
        elif self.chat_engine is not None:
            engine, adapter = self.chat_engine, None
            prompt = engine.chat_prompt(self.chat_messages(instruction, mode, examples=[e.text for e in examples],
                                                           style=style, facts="; ".join(lines), context=context))
        max_tokens = max_tokens or self.max_tokens
        pieces = engine.stream(prompt, max_tokens=max_tokens,
                               temperature=self.temperature if temperature is None else temperature,
                               repeat_penalty=self.repeat_penalty, stop=[*self.recipe.stop, *(stop or [])],
                               schema=schema, adapter=adapter, seed=seed,
                               min_tokens=min(MIN_DRAFT_TOKENS if min_tokens is None else min_tokens, max_tokens))
        return Draft(mode, instruction, context, prompt, examples, style, used, withheld, adapter,
                     disclosure=selection, _pieces=pieces)

    def chat_messages(self, instruction: str, mode: str, *, examples: Sequence[str] = (), style: str = "",
                      facts: str = "", context: str = "") -> list[dict[str, str]]:
        """The cold-start writer's chat. The style, profile facts and examples go to the system message,
        marked as the user's voice only (in the user's message, a small model copies an example
        instead of doing what was asked); the instruction ends the user's message, followed by its
        key facts, said once more so that a small model keeps them."""
        p = self.recipe.prompt
        system = [COLD_START_SYSTEM]
        if style.strip():
            system.append(p["style"].format(style=style.strip()).strip())
        if facts.strip():
            system.append(p["facts"].format(facts=facts.strip()).strip())
        shown = [clip(e, self.recipe.example_chars) for e in examples if e and e.strip()]
        if shown:
            system.append("Examples of my writing (for my voice only; never copy them):\n"
                          + "".join(p["example"].format(text=e) for e in shown) + "---")
        user = p[mode].format(context=context.strip()) if mode in ("reply", "rewrite") and context.strip() else ""
        ask = {"compose": "Write a short email", "reply": "Write my short reply",
               "rewrite": "Rewrite my draft as a short email"}[mode]
        ask += f": {instruction.rstrip('.')}."
        if must := key_facts(instruction):
            ask += f" Mention {', '.join(must)}. Keep it brief."
            system.append(f"The email must mention: {', '.join(must)}.")
        return [{"role": "system", "content": "\n\n".join(system)}, {"role": "user", "content": user + ask}]

    # ------------------------------------------------------------------ keeping the result

    def save(self, draft: Draft, final_text: str | None = None, *, kind: str = "email") -> int:
        """Store the draft and the user's final edit; the final text joins the history.

        ``final_text`` None keeps the draft as it is. Returns the drafts row id.
        """
        if not draft.finished:
            draft.result()
        final = (draft.full_text if final_text is None else final_text).strip()
        row_id = self.vault.drafts.insert({
            "mode": draft.mode, "created": coarse_time(), "instruction": draft.instruction,
            "context": draft.context, "draft": draft.full_text, "final": final,
            "examples": [e.item_id for e in draft.examples]})
        if final and len(final.split()) >= 3:
            history = self.history
            if history is None:
                history = self.history = History(self.vault)
            history.add_texts([final], kind=kind, source="draft", metadata={"draft_id": row_id, "mode": draft.mode})
            self._style = self._facts = None
        return row_id

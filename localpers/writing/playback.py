"""Data playback: turn each text the user wrote into the instruction that would produce it.

This is Panza's idea. To teach a model to write like you, pair each of your past
texts with a short instruction ("Ask Tom to reactivate Peter's account so he can run
more experiments."), then fine-tune on (instruction -> your text). The local
instruct model writes the instructions; nobody else sees the texts.

Small models make mistakes, so every instruction is checked (:func:`validate`):
one to three sentences, an imperative, length bounds, no verbatim copying of the
text it summarizes, no names or numbers the text does not contain. A failed
instruction is retried with another prompt, then another seed, and after the last failure a deterministic extractive instruction is used instead
(:func:`fallback_instruction`: recipient, subject, key phrases). Instructions are
cached, sealed, in ``vault.cache`` (kind ``"instruction"``), keyed by a keyed hash of
the text, so playback runs once per text.

Example::

    >>> from localpers.llm import Engine
    >>> from localpers.writing.playback import make_instruction
    >>> engine = Engine.shared("smollm2-135m-instruct")                          # doctest: +SKIP
    >>> make_instruction("Dear Tom,\\nCould you reopen Peter's account?\\nDavid", engine)  # doctest: +SKIP
    Instruction(text="Write an email to Tom asking him to reopen Peter's account.", source='model', attempts=1)
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import LocalpersError
from ..llm import Engine
from ..paths import Config

if TYPE_CHECKING:
    from ..vault import Vault

PLAYBACK_VERSION = "1"  # part of the cache key: bump when the prompt or the checks change

# Verbs an instruction may start with (lower case). The model is steered to "Write ...";
# the others are accepted because they are what people naturally ask for.
IMPERATIVES = frozenset("""write reply respond answer ask thank tell inform send let invite request remind
confirm explain apologize apologise congratulate follow share propose suggest decline accept announce
update notify introduce welcome schedule arrange offer describe summarize summarise draft compose give
provide check encourage recommend express wish agree report""".split())

STOPWORDS = frozenset("""a an the and or but if of to in on at for with from by about as is are was were be been
being it its this that these those i me my we our you your he him his she her they them their there here
have has had do does did not no so too very can could would should will shall may might must just also
than then into over under up down out off again more most some any all each other such only own same
s t don now hi hello dear thanks thank regards best cheers kind sincerely yours please let know would like
what which who whom when where why how am re fwd fw sent get got one two much many well""".split())


# Words a finished sentence does not end with ("Write an email to.").
_DANGLING = frozenset("a an the to for of about and or but with from on in at by that your my their his her".split())


@dataclass(frozen=True)
class PlaybackConfig:
    """How instructions are made and checked.

    ``max_chars_in``: how much of a long text the model reads (its beginning);
    ``max_copied_words``: the longest run of words an instruction may share with its
    text; ``max_overlap``: the largest share of the instruction's word 4-grams found in
    the text; ``attempts``: model tries before the extractive fallback; ``model``: the
    instruct model ("" means ``playback_model`` in config.toml).
    """

    model: str = ""
    attempts: int = 3
    max_tokens: int = 48
    temperature: float = 0.3
    min_chars: int = 15
    min_words: int = 5
    max_chars: int = 300
    max_sentences: int = 3
    max_copied_words: int = 7
    max_overlap: float = 0.5
    max_chars_in: int = 1200
    use_cache: bool = True


@dataclass(frozen=True)
class Instruction:
    """An instruction for one text. ``source`` is "model" or "fallback" (or "cache:..." when cached)."""

    text: str
    source: str
    attempts: int = 0


ProgressFn = Callable[[int, int, str], None]

# Prompts tried in turn (SmolLM2 135M copies any worked example into its answer, so none is given).
_PROMPTS = [
    [("user", "Summarize this email as an instruction to write it, in one sentence starting with "
              "'Write an email'.\n\n{email}")],
    [("system", "You write one short instruction that would lead someone to write the given email. "
                "Say who it is for and what it should say. Use your own words."),
     ("user", "Email:\n{email}")],
]
_PREFIX = "Write an email"


# ---------------------------------------------------------------------- checks


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip()]


def longest_shared_run(a: list[str], b: list[str]) -> int:
    """Length of the longest run of consecutive words that ``a`` and ``b`` share."""
    best = 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def ngram_overlap(instruction: str, text: str, n: int = 4) -> float:
    """Share of the instruction's word n-grams that also occur in ``text`` (0 when it has none)."""
    iw, tw = words(instruction), words(text)
    grams = [tuple(iw[i:i + n]) for i in range(len(iw) - n + 1)]
    if not grams:
        return 0.0
    have = {tuple(tw[i:i + n]) for i in range(len(tw) - n + 1)}
    return sum(g in have for g in grams) / len(grams)


def _names(s: str) -> list[str]:
    """Capitalized words and numbers after the first word: names, places, dates, amounts."""
    tokens = [re.sub(r"'s$", "", t) for t in re.findall(r"[A-Za-z0-9][A-Za-z0-9']*", s)[1:]]
    return [t for t in tokens if (t[0].isupper() and t not in {"I", "I'm", "I'll", "I've", "I'd"}) or t[0].isdigit()]


def validate(instruction: str, text: str, config: PlaybackConfig = PlaybackConfig(), *,
             subject: str = "") -> str | None:
    """Why ``instruction`` is not acceptable for ``text``, or None when it is.

    >>> text = "Dear Tom, can you reopen Peter's account? He needs it."
    >>> validate("Write an email to Tom asking him to reopen Peter's account.", text)
    >>> validate("Dear Tom,", text)
    'too short (9 characters)'
    >>> validate("Write an email to Ann asking her to reopen the account.", text)
    'names what the text does not (Ann)'
    """
    s = instruction.strip()
    if len(s) < config.min_chars:
        return f"too short ({len(s)} characters)"
    if len(s) > config.max_chars:
        return f"too long ({len(s)} characters)"
    if "\n" in s:
        return "more than one line"
    n = len(sentences(s))
    if n > config.max_sentences:
        return f"{n} sentences (at most {config.max_sentences})"
    ws = words(s)
    if not s.endswith((".", "!", "?")) or (ws and ws[-1] in _DANGLING):
        return "unfinished sentence"
    if len(ws) < config.min_words:
        return f"too few words ({len(ws)})"
    first = words(s)[:1]
    if not first or first[0] not in IMPERATIVES:
        return f"does not start with an instruction verb ({first[0] if first else ''!r})"
    tw = words(text)
    run = longest_shared_run(words(s), tw)
    if run > config.max_copied_words:
        return f"copies {run} words in a row from the text"
    overlap = ngram_overlap(s, text)
    if overlap > config.max_overlap:
        return f"copies too much of the text ({overlap:.0%} of its 4-word phrases)"
    if re.search(r"(?i)\b(subject|email|instruction)\s*:", s):
        return "contains a prompt label"
    if '"' in s or "\u201c" in s:
        return "quotes text"
    known = set(re.findall(r"[a-z0-9]+", f"{text} {subject}".lower()))
    invented = [w for w in _names(s) if w.lower() not in known]
    if invented:
        return f"names what the text does not ({', '.join(invented[:3])})"
    counts = Counter(words(s))
    if counts and counts.most_common(1)[0][1] > max(4, len(words(s)) // 3):
        return "repeats itself"
    return None


# ---------------------------------------------------------------------- fallback

_GREETING = re.compile(r"^\s*(?:dear|hi|hello|hey|good (?:morning|afternoon|evening))\s+([^,\n!:]{1,40})[,!:\n]",
                       re.IGNORECASE)


def _recipient(text: str) -> str:
    m = _GREETING.match(text)
    if not m:
        return ""
    name = m.group(1).strip()
    if name.lower() in {"all", "everyone", "team", "there", "both", "you"}:
        return {"there": ""}.get(name.lower(), name.lower() if name.lower() != "you" else "")
    return name


def key_phrases(text: str, k: int = 4) -> list[str]:
    """The ``k`` most frequent content words (first occurrence order breaks ties); deterministic."""
    body = [w for w in re.findall(r"[A-Za-z][A-Za-z'-]+", text)]
    lowered = [w.lower() for w in body]
    counts = Counter(w for w in lowered if w not in STOPWORDS and len(w) > 3)
    first_seen = {w: i for i, w in reversed(list(enumerate(lowered)))}
    ranked = sorted(counts, key=lambda w: (-counts[w], first_seen[w]))
    return ranked[:k]


def fallback_instruction(text: str, subject: str = "") -> str:
    """A deterministic extractive instruction: recipient, subject or key phrases, length.

    >>> fallback_instruction("Dear Tom,\\nCould you reopen Peter's account? He needs the cluster.\\nDavid",
    ...                      subject="Re: Account for Peter")
    "Write a short reply to Tom about 'Account for Peter'."
    >>> fallback_instruction("Budget review moved; budget numbers due Friday.")
    'Write a short note mentioning budget, review, moved and numbers.'
    """
    recipient = _recipient(text)
    clean_subject = " ".join(re.sub(r"^\s*((re|fwd?|aw|wg)\s*:\s*)+", "", subject or "", flags=re.IGNORECASE).split())
    is_reply = bool(re.match(r"^\s*re\s*:", subject or "", re.IGNORECASE))
    n_words = len(words(text))
    size = "short " if n_words < 60 else ("long " if n_words > 250 else "")
    kind = "reply" if is_reply else ("email" if recipient or subject else "note")
    article = "an" if not size and kind[0] in "aeiou" else "a"
    head = f"Write {article} {size}{kind}" + (f" to {recipient}" if recipient else "")
    if clean_subject:
        return f"{head} about '{clean_subject[:80]}'."
    phrases = key_phrases(text)
    if not phrases:
        return f"{head}."
    listed = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return f"{head} mentioning {listed}."


# ---------------------------------------------------------------------- the model


def _clean(raw: str) -> str:
    s = raw.strip().strip('"').strip()
    s = s.split("\n")[0].strip()
    s = re.sub(r"\s+", " ", s)
    return s


def _messages(text: str, attempt: int, config: PlaybackConfig) -> list[dict[str, str]]:
    email = text.strip()[:config.max_chars_in]
    template = _PROMPTS[(attempt - 1) % len(_PROMPTS)]
    return [{"role": role, "content": content.format(email=email)} for role, content in template]


def make_instruction(text: str, engine: Any, *, subject: str = "", config: PlaybackConfig = PlaybackConfig(),
                     seed: int = 0) -> Instruction:
    """One validated instruction for ``text`` from ``engine`` (an instruct model), or the fallback.

    The answer is started for the model with "Write an email", which small models need
    to stay on task; retries switch prompt, then sample with another seed.
    """
    if not text or not text.strip():
        raise LocalpersError("cannot make an instruction for an empty text")
    for attempt in range(1, config.attempts + 1):
        prompt = engine.chat_prompt(_messages(text, attempt, config)) + _PREFIX
        raw = engine.complete(prompt, max_tokens=config.max_tokens,
                              temperature=0.0 if attempt <= len(_PROMPTS) else config.temperature,
                              seed=seed + attempt, stop=["\n", "<|im_end|>"])
        candidate = _finish(_clean(_PREFIX + raw))
        if validate(candidate, text, config, subject=subject) is None:
            return Instruction(candidate, "model", attempt)
    return Instruction(fallback_instruction(text, subject), "fallback", config.attempts)


def _finish(s: str) -> str:
    """Cut a rambling answer after its last complete sentence (within three); close a bare one."""
    parts = sentences(s)
    if not parts:
        return s
    kept = [p for p in parts[:3] if p.endswith((".", "!", "?"))]
    if kept:
        return " ".join(kept)
    return s + "." if re.search(r"[A-Za-z0-9)]$", s) else s


# ---------------------------------------------------------------------- many texts, cached


def cache_key(vault: Vault, text: str) -> str:
    return "instruction:" + vault.keyed_hash(PLAYBACK_VERSION + "\0" + text, "playback")


def cached_instruction(vault: Vault, text: str) -> Instruction | None:
    row = vault.cache.get(cache_key(vault, text))
    if row is None or not isinstance(row["value"], dict):
        return None
    v = row["value"]
    return Instruction(v["text"], v.get("source", "model"), v.get("attempts", 0))


def playback(vault: Vault, items: Iterable[Any], engine: Any = None, *, config: PlaybackConfig = PlaybackConfig(),
             progress: ProgressFn | None = None, cancel: threading.Event | None = None) -> list[Instruction | None]:
    """Instructions for many texts, in order, using and filling the vault's cache.

    ``items`` are strings, dicts with ``content`` (and optional ``metadata.subject``) or
    objects with ``.content``/``.metadata`` (history items). ``engine`` defaults to the
    shared engine for the playback model (``config.model``, else ``playback_model`` in
    config.toml), loaded only if some text is not cached yet. ``progress(done,
    total, message)`` is called after each text. When ``cancel`` is set, the texts not done
    yet get ``None`` (what was done stays cached, so a rerun continues).

    Example::

        >>> instructions = playback(vault, ["Dear Tom, ..."], progress=print)   # doctest: +SKIP
    """
    todo = [_text_and_subject(x) for x in items]
    out: list[Instruction | None] = [None] * len(todo)
    started = time.monotonic()
    made = 0
    for i, (text, subject) in enumerate(todo):
        if cancel is not None and cancel.is_set():
            break
        found = cached_instruction(vault, text) if config.use_cache else None
        if found is not None:
            out[i] = found
        else:
            if engine is None:
                engine = Engine.shared(config.model or Config.load().playback_model)
            out[i] = make_instruction(text, engine, subject=subject, config=config, seed=i * 7)
            made += 1
            vault.cache.insert({"key": cache_key(vault, text), "kind": "instruction",
                                "value": {"text": out[i].text, "source": out[i].source,
                                          "attempts": out[i].attempts}}, replace=True)
        if progress is not None:
            elapsed = time.monotonic() - started
            rate = f", {made / elapsed:.2f} texts/s" if made and elapsed > 0 else ""
            progress(i + 1, len(todo), f"playback {i + 1}/{len(todo)}{rate}")
    return out


def _text_and_subject(item: Any) -> tuple[str, str]:
    if isinstance(item, str):
        return item, ""
    if isinstance(item, dict):
        content, metadata = item.get("content", ""), item.get("metadata") or {}
    else:
        content, metadata = getattr(item, "content", ""), getattr(item, "metadata", None) or {}
    subject = metadata.get("subject", "") if isinstance(metadata, dict) else ""
    if not isinstance(content, str) or not content.strip():
        raise LocalpersError("playback needs texts; got an empty or non-text item")
    return content, subject if isinstance(subject, str) else ""

"""What a draft is written from, besides the instruction: the user's own texts and how they write.

- :func:`retrieve`: the user's texts closest in meaning to the request (the examples in the prompt);
- :func:`style_summary`: one deterministic line on greeting, sign-off and length;
- :func:`adapter_readiness`: how many written texts the user has, and how many more an adapter needs;
- :data:`WRITTEN_KINDS`: the item kinds the user wrote themselves (training data, examples, style);
- :func:`key_facts` / :func:`has_fact`: the names, days, times and numbers a draft must carry.

Training (:mod:`.train`) and writing (:mod:`.writer`) both build on this module; it imports neither.

Example::

    >>> adapter_readiness(None, min_texts=50, n_texts=12)
    (12, 38)
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..adapters import clip, load_recipe
from ..errors import LocalpersError
from ..paths import DEFAULT_MODEL
from ..vault import WRITTEN_KINDS

if TYPE_CHECKING:
    from ..history import History
    from ..vault import Vault

DEFAULT_MIN_TEXTS = 50
# The training checkpoint (a blob in the vault): derived from the texts, so erasing a text discards it.
CHECKPOINT_BLOB = "checkpoint/adapter"

__all__ = ["CHECKPOINT_BLOB", "DEFAULT_MIN_TEXTS", "WRITTEN_KINDS", "Example", "adapter_readiness",
           "has_fact", "key_facts", "readiness_message", "retrieve", "style_summary"]


@dataclass
class Example:
    """One of the user's texts shown to the model as an example of their writing."""

    item_id: str
    text: str
    score: float

    @property
    def snippet(self) -> str:
        return clip(" ".join(self.text.split()), 80)


# ---------------------------------------------------------------------- key facts

_DAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
_MONTHS = "january february march april may june july august september october november december".split()
_CALENDAR = "|".join([*_DAYS, *_MONTHS, *(m[:3] for m in _MONTHS if m != "may"), "sept"])
_FACT = re.compile(
    r"(?P<address>[\w.+-]+@[\w-]+(?:\.[\w-]+)+|https?://\S+|www\.\S+)"
    r"|(?P<number>\d+(?:[.,:/-]\d+)*(?:\s?(?:am|pm)\b)?)"
    rf"|(?P<calendar>\b(?:{_CALENDAR})\b\.?)"
    r"|(?P<word>\b[A-Z][\w'-]*)", re.IGNORECASE)
# Capitalized words that are not names however they are placed.
_NOT_NAMES = frozenset("i i'm i'll i've i'd ok okay dear hi hello hey thanks thank best regards please".split())


def key_facts(text: str) -> list[str]:
    """The facts a reader checks first in a text: names, numbers, dates, weekdays, times, addresses.

    Four kinds, found by pattern: e-mail addresses and URLs; numbers, with their separators
    ("10/24", "3:30", "2,500") and a following am/pm; weekday and month names (also
    abbreviated), wherever they stand; and capitalized words that do not open a sentence
    or line (names of people, places, products). Returned as written, each once, in order.

    >>> key_facts("Thank Priya for the launch and propose drinks on Friday at 6 pm.")
    ['Priya', 'Friday', '6 pm']
    >>> key_facts("Dear Tom,\\nCan we move it to Thu, Oct 3? Mail ann@x.org")
    ['Tom', 'Thu', 'Oct', '3', 'ann@x.org']
    """
    out: list[str] = []
    for m in _FACT.finditer(text):
        kind, value = m.lastgroup, m.group()
        if kind == "word":
            if not value[0].isupper() or value.lower() in _NOT_NAMES:
                continue
            before = text[:m.start()].rstrip(" \t\"'(")
            if not before or before[-1] in ".!?:\n" or before.endswith("\n"):
                continue  # the first word of a sentence or line says nothing by its capital
        value = " ".join(value.split()).rstrip(".")
        if value.lower() not in {o.lower() for o in out}:
            out.append(value)
    return out


def has_fact(text: str, fact: str) -> bool:
    """Whether ``fact`` (from :func:`key_facts`) appears in ``text`` as a word of its own.

    A number also counts with an ordinal ending ("4" in "March 4th").

    >>> has_fact("See you on Friday at 6PM!", "6 pm"), has_fact("Fridays", "Friday"), has_fact("May 4th", "4")
    (True, False, True)
    """
    def flat(s: str) -> str:
        return re.sub(r"(\d)\s+(am|pm)\b", r"\1\2", s.lower())

    ordinal = "(?:st|nd|rd|th)?" if fact[-1:].isdigit() else ""
    return re.search(rf"(?<![\w@]){re.escape(flat(fact))}{ordinal}(?![\w@])", flat(text)) is not None


# ---------------------------------------------------------------------- retrieval and style


def _normal(text: str) -> str:
    return " ".join(text.split()).lower()


def retrieve(history: History | None, query: str, k: int, *, exclude_ids: set[str] | frozenset = frozenset(),
             exclude_texts: Sequence[str] = (), kinds: Sequence[str] = WRITTEN_KINDS) -> list[Example]:
    """Up to ``k`` of the user's texts closest in meaning to ``query``, never an excluded one.

    Excluded texts are matched by id and by content (a text must never be its own example).
    """
    if history is None or k <= 0 or not query.strip():
        return []
    banned = {_normal(t) for t in exclude_texts}
    hits = history.search(query, k=k + len(exclude_ids) + len(banned) + 2, kinds=list(kinds))
    out: list[Example] = []
    seen: set[str] = set()
    for hit in hits:
        norm = _normal(hit.content)
        if hit.item_id in exclude_ids or norm in banned or norm in seen:
            continue
        seen.add(norm)
        out.append(Example(hit.item_id, hit.content, float(hit.score)))
        if len(out) == k:
            break
    return out


_OPENER = re.compile(r"^\s*(dear|hi|hello|hey|good morning|good afternoon|greetings)\b[^\n]*", re.IGNORECASE)


def style_summary(texts: Sequence[str]) -> str:
    """One line about how the user writes: greeting, sign-off, typical length. Deterministic.

    >>> style_summary(["Dear Ann,\\n\\nSee you soon.\\n\\nBest regards,\\nDavid",
    ...                "Dear Bob,\\n\\nThanks for the notes.\\n\\nBest regards,\\nDavid"])
    'Opens with "Dear <name>,"; signs off "Best regards, David"; about 8 words.'
    """
    texts = [t.strip() for t in texts if t and t.strip()]
    if not texts:
        return ""
    parts = []
    openers = Counter()
    for t in texts:
        m = _OPENER.match(t)
        if m:
            openers[m.group(1).capitalize()] += 1
    if openers:
        word, n = openers.most_common(1)[0]
        if n >= 0.3 * len(texts):
            parts.append(f'Opens with "{word} <name>,"')
    closings = Counter()
    for t in texts:
        lines = [ln.strip() for ln in t.splitlines() if ln.strip()]
        if len(lines) >= 3 and len(lines[-1].split()) <= 3 and len(lines[-2].split()) <= 4:
            closings[f"{lines[-2]} {lines[-1]}"] += 1
        elif len(lines) >= 2 and len(lines[-1].split()) <= 3:
            closings[lines[-1]] += 1
    if closings:
        closing, n = closings.most_common(1)[0]
        if n >= 0.25 * len(texts):
            parts.append(f'signs off "{closing}"')
    n_words = statistics.median(len(t.split()) for t in texts)
    parts.append(f"about {int(n_words)} words")
    line = "; ".join(parts) + "."
    return line[0].upper() + line[1:]


def adapter_readiness(vault: Vault | None, *, min_texts: int | None = None, n_texts: int | None = None) -> tuple[int, int]:
    """``(texts the user has, texts still needed)`` for a personal adapter; needed 0 = ready.

    >>> adapter_readiness(None, min_texts=50, n_texts=12)
    (12, 38)
    """
    if min_texts is None:
        try:
            min_texts = load_recipe(DEFAULT_MODEL).min_texts
        except LocalpersError:
            min_texts = DEFAULT_MIN_TEXTS
    if n_texts is None:
        marks = ", ".join("?" * len(WRITTEN_KINDS))
        n_texts = vault.items.count(f"kind in ({marks})", list(WRITTEN_KINDS))
    return n_texts, max(0, min_texts - n_texts)


def readiness_message(vault: Vault, *, has_adapter: bool = False) -> str:
    """What the app tells the user about their adapter, in one line."""
    have, needed = adapter_readiness(vault)
    if has_adapter:
        return f"Writing with your personal adapter ({have} texts in your history)."
    if needed:
        return (f"{needed} more texts needed for a personal adapter ({have} so far); "
                "meanwhile writing uses your examples and style.")
    return f"Enough texts ({have}) for a personal adapter: run `localpers train`."

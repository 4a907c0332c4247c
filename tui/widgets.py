"""Small widgets and helpers every screen shares: the top bar and text formatting.

Example::

    >>> relative_day(0, now=86400 * 3)
    '3 days ago'
    >>> passphrase_strength("correct horse battery staple").label
    'strong'
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from localpers.text import clip, first_line, human_bytes, human_duration  # noqa: F401  (re-exported for the screens)
from localpers.vault import MIN_PASSPHRASE

# The task screens, in the order of their keys (F2..F6).
TASKS: list[tuple[str, str, str]] = [
    ("write", "F2", "Write"),
    ("recommend", "F3", "Recommend"),
    ("history", "F4", "History"),
    ("adapter", "F5", "Adapter"),
    ("privacy", "F6", "Privacy"),
]


class NavBar(Horizontal):
    """One line at the top: the app name, a clickable tab per task, and whose vault is open."""

    def __init__(self, current: str) -> None:
        super().__init__(id="nav")
        self.current = current

    def compose(self) -> ComposeResult:
        yield Static("localpers", id="nav-title")
        tabs = []
        for mode, key, title in TASKS:
            label = f" {key} {title} "
            if mode == self.current:
                label = f"[reverse b]{label}[/]"
            tabs.append(f"[@click=app.goto('{mode}')]{label}[/]")
        yield Static("".join(tabs), id="nav-tabs")
        vault = getattr(self.app, "vault", None)
        demo = vault is not None and vault.is_demo
        who = "DEMO" if demo else (vault.user if vault is not None else "locked")
        yield Static(who, id="nav-user", classes="-demo" if demo else "")
        yield Static("DEMO · synthetic data" if demo else who, id="nav-user-long", classes="-demo" if demo else "")


def relative_day(t: float | int | None, *, now: float | None = None) -> str:
    """A day-rounded time said the way people say it: 'today', 'yesterday', '5 days ago'."""
    if not t:
        return ""
    days = int(((time.time() if now is None else now) - t) // 86400)
    if days <= 0:
        return "today"
    if days == 1:
        return "yesterday"
    if days < 60:
        return f"{days} days ago"
    return f"{days // 30} months ago"


_KEY_NAMES = {"escape": "Esc", "slash": "/", "delete": "Del", "enter": "Enter", "space": "Space"}


def key_label(key: str) -> str:
    """A binding's first key as the app writes it: 'ctrl+g' -> 'Ctrl+G', 'slash' -> '/', 'delete,x' -> 'Del'."""
    first = key.split(",")[0].strip()
    *mods, name = first.split("+")
    name = _KEY_NAMES.get(name, name.upper() if mods else name)
    return "+".join([m.capitalize() for m in mods] + [name])


def cell(text: str) -> Text:
    """A table cell that ends with '…' when its column is too narrow (the full text is shown elsewhere)."""
    return Text(" ".join(str(text or "").split()), overflow="ellipsis", no_wrap=True)


def split_width(total: int, fixed: list[int], shares: list[float], minimum: int = 8) -> list[int]:
    """Widths for a table's flexible columns: what ``fixed`` columns and cell padding leave, by ``shares``.

    Each column has one space of padding on either side, and 2 columns go to the scrollbar.

    >>> split_width(80, [3, 6], [0.4, 0.6])
    [23, 36]
    """
    free = total - sum(fixed) - 2 * (len(fixed) + len(shares)) - 2
    widths = [max(minimum, int(free * share)) for share in shares]
    return widths


@dataclass(frozen=True)
class Strength:
    bits: float
    label: str  # "too short", "weak", "fair", "good", "strong"
    hint: str


_COMMON = {"password", "passphrase", "letmein", "qwerty", "123456", "iloveyou", "admin", "welcome", "monkey",
           "dragon", "sunshine", "football", "localpers"}


def passphrase_strength(passphrase: str) -> Strength:
    """A rough guess of how hard a passphrase is to guess, with a hint to make it better.

    Counts words for multi-word phrases (about 11 bits each, like a diceware list of
    2,000 common words) and the character set otherwise; repeats, runs and common
    passwords count for little.
    """
    p = passphrase
    if len(p) < MIN_PASSPHRASE:
        return Strength(0, "too short", f"use at least {MIN_PASSPHRASE} characters; a few unrelated words work well")
    words = [w for w in re.split(r"[\s\-_.]+", p) if w]
    pool = sum(size for pattern, size in ((r"[a-z]", 26), (r"[A-Z]", 26), (r"[0-9]", 10), (r"[^a-zA-Z0-9]", 33))
               if re.search(pattern, p))
    distinct = len(set(p.lower()))
    by_chars = min(len(p), distinct * 2) * math.log2(max(pool, 2))
    by_words = 11.0 * len(words) if len(words) >= 3 else 0.0
    bits = max(by_chars, by_words)
    if p.lower().strip("0123456789!") in _COMMON or distinct <= 3:
        bits = min(bits, 10.0)
    if bits < 35:
        return Strength(bits, "weak", "easy to guess: add more unrelated words")
    if bits < 50:
        return Strength(bits, "fair", "add another word or two for a strong passphrase")
    if bits < 65:
        return Strength(bits, "good", "good; one more word makes it strong")
    return Strength(bits, "strong", "strong passphrase; keep it somewhere safe, it cannot be recovered")

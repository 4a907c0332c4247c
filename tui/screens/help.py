"""F1: every key binding of the app and of each screen, in one scrollable list."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

if TYPE_CHECKING:
    from ..app import LocalpersApp


def _bindings(cls: type) -> list[Binding]:
    """The bindings a class declares (its own BINDINGS only, with strings and tuples made Bindings)."""
    out = []
    for item in cls.__dict__.get("BINDINGS", []):
        out.append(item if isinstance(item, Binding) else Binding(*item))
    return out


def key_display(key: str) -> str:
    """'ctrl+g,f9' -> 'Ctrl+G / F9'; a plain letter stays as typed ('t', not 'T', which would mean Shift+T).

    >>> key_display("ctrl+g,f9"), key_display("t"), key_display("delete,x")
    ('Ctrl+G / F9', 't', 'Del / x')
    """
    names = {"escape": "Esc", "delete": "Del", "enter": "Enter", "slash": "/", "space": "Space"}
    shown = []
    for k in key.split(","):
        parts = k.strip().split("+")
        if len(parts) == 1 and len(parts[0]) == 1:
            shown.append(parts[0])
            continue
        shown.append("+".join(names.get(p, p.upper() if len(p) == 1 or re.fullmatch(r"f\d+", p) else p.capitalize())
                              for p in parts))
    return " / ".join(shown)


def help_sections(app: "LocalpersApp") -> list[tuple[str, list[tuple[str, str]]]]:
    """(section title, [(keys, what they do)]) for the app and every screen it has."""
    from .unlock import UnlockScreen

    sections: list[tuple[str, list[tuple[str, str]]]] = []
    everywhere = [(key_display(b.key), b.description) for b in _bindings(type(app)) if b.description]
    everywhere += [("Ctrl+P", "Command palette: every command by name"), ("Ctrl+Q", "Quit")]
    sections.append(("Everywhere", everywhere))
    screens: list[Any] = [UnlockScreen, *type(app).MODES.values()]
    seen = set()
    for screen_cls in screens:
        if screen_cls in seen:
            continue
        seen.add(screen_cls)
        rows = [(key_display(b.key), b.description) for b in _bindings(screen_cls) if b.description]
        if rows:
            sections.append((screen_cls.HELP_TITLE or screen_cls.__name__, rows))
    return sections


class HelpScreen(ModalScreen):
    """Every binding of the app, grouped by screen. Esc or F1 closes it."""

    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close help")]

    def __init__(self, app: "LocalpersApp") -> None:
        super().__init__()
        self._sections = help_sections(app)

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Static("[b]Keys[/b]   (Esc closes; Ctrl+P finds any command by name)", id="help-title")
            with VerticalScroll(id="help-scroll"):
                for title, rows in self._sections:
                    lines = [f"[b]{title}[/b]"]
                    lines += [f"  [b $accent]{keys:<14}[/] {what}" for keys, what in rows]
                    yield Static("\n".join(lines), classes="help-section", markup=True)

"""What every task screen shares: the top bar, the footer, and error reporting from workers."""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual import work

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.screen import Screen
from textual.widgets import Footer

from ..widgets import NavBar, key_label

if TYPE_CHECKING:
    from ..app import LocalpersApp
    from ..session import Session


def vault_work(*, group: str, exclusive: bool = False) -> Callable[[Callable], Callable]:
    """``@work(thread=True)`` for code that uses the open vault.

    The session's :meth:`~localpers.tui.session.Session.close` waits for these to finish,
    so locking the app never closes the vault under a running worker; a worker that
    starts after the vault was closed does nothing.
    """

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def body(self: "TaskScreen", *args: Any, **kwargs: Any) -> Any:
            from ..session import SessionClosed

            session = self.localpers.session
            if session is None:
                return None
            try:
                with session.busy():
                    return fn(self, *args, **kwargs)
            except SessionClosed:
                return None  # the vault closed (lock, erase, quit) before this work could start

        return work(thread=True, group=group, exclusive=exclusive, exit_on_error=False)(body)

    return decorate


class TaskScreen(Screen):
    """A screen of the unlocked app: the NavBar on top, ``compose_body()`` in the middle, the Footer below."""

    MODE = ""  # the app mode this screen is the base of
    HELP_TITLE = ""  # a line for the F1 help screen
    PALETTE: list[tuple[str, str, str]] = []  # (name, help, action) for the command palette

    @classmethod
    def palette(cls) -> list[tuple[str, str, str]]:
        """The palette entries, each help text ending with the action's key from ``BINDINGS`` ("... (Ctrl+G)")."""
        keys = {b.action: b.key for b in cls.BINDINGS if isinstance(b, Binding)}
        return [(name, f"{help_text} ({key_label(keys[action])})" if action in keys else help_text, action)
                for name, help_text, action in cls.PALETTE]

    @property
    def localpers(self) -> "LocalpersApp":
        return self.app  # type: ignore[return-value]

    @property
    def session(self) -> "Session":
        session = self.localpers.session
        if session is None:
            raise RuntimeError("no vault is open")
        return session

    def compose(self) -> ComposeResult:
        yield NavBar(self.MODE)
        with Container(id="body"):
            yield from self.compose_body()
        yield Footer(compact=True)

    def compose_body(self) -> ComposeResult:
        yield from ()

    def report(self, exc: BaseException, doing: str) -> None:
        """Show an error as a notification; safe to call from a worker thread."""
        self.localpers.report(exc, doing)

    def from_thread(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` on the UI thread from a worker thread (and wait for it)."""
        return self.app.call_from_thread(fn, *args, **kwargs)


def describe_error(exc: BaseException, doing: str) -> str:
    """One message for a notification: what failed, why, and what to do."""
    from localpers.errors import LocalpersError

    if isinstance(exc, LocalpersError):
        return f"{doing} failed: {exc}"
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    at = f" (at {where[0].name})" if where else ""
    return (f"{doing} failed with an unexpected {type(exc).__name__}{at}: {exc}. "
            "Try again; if it keeps failing, run `localpers doctor` and report the message.")

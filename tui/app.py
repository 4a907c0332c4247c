"""The localpers terminal app: one screen per task, a command palette, help, themes.

Run it with ``localpers tui`` (or ``localpers tui --demo`` for the synthetic demo profile),
or from Python::

    from localpers.tui import LocalpersApp
    LocalpersApp(demo=True).run()

Layout: every task screen is the base of an app *mode* (see ``App.MODES``), so
switching with F2..F6 keeps each screen's state (a half-written draft stays put).
Model work (generation, embedding, training) runs in thread workers; the UI thread
only ever updates widgets.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.driver import Driver


from .screens.adapter import AdapterScreen
from .screens.base import TaskScreen, describe_error
from .screens.help import HelpScreen
from .screens.history import HistoryScreen
from .screens.privacy import PrivacyScreen
from .screens.recommend import RecommendScreen
from .screens.unlock import UnlockScreen
from .screens.write import WriteScreen
from .session import Session
from .widgets import TASKS

if TYPE_CHECKING:
    from localpers.vault import Vault

TASK_SCREENS: dict[str, type[TaskScreen]] = {
    "write": WriteScreen,
    "recommend": RecommendScreen,
    "history": HistoryScreen,
    "adapter": AdapterScreen,
    "privacy": PrivacyScreen,
}

# Themes Ctrl+T cycles through (all built into Textual); the palette's "Theme" command offers every one.
THEME_CYCLE = ["textual-dark", "textual-light", "nord", "gruvbox", "tokyo-night", "catppuccin-latte",
               "dracula", "solarized-light"]


class LocalpersCommands(Provider):
    """The app's own commands in the command palette (Ctrl+P): go to a screen, and each screen's actions."""

    def _commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        app: LocalpersApp = self.app  # type: ignore[assignment]
        commands: list[tuple[str, str, Callable[[], Any]]] = []
        if app.session is not None:
            for mode, key, title in TASKS:
                commands.append((f"Go to {title}", f"Open the {title} screen ({key})", partial(app.goto, mode)))
            for mode, screen_cls in TASK_SCREENS.items():
                for name, help_text, action in screen_cls.palette():
                    commands.append((name, help_text, partial(app.run_on_screen, mode, action)))
            commands.append(("Lock", "Close this vault and go back to the unlock screen (Ctrl+L)", app.action_lock))
            commands.append(("Writing model", "Choose the model that writes drafts (F7)", app.action_choose_model))
        commands.append(("Help: keys", "List every key binding (F1)", app.action_help))
        commands.append(("Next theme", "Switch to the next color theme (Ctrl+T)", app.action_next_theme))
        return commands

    async def discover(self) -> Hits:
        for name, help_text, callback in self._commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)


class LocalpersApp(App):
    """The localpers terminal app.

    Args:
        user: open this user's vault (asks for the passphrase); None shows the user chooser.
        demo: open the demo profile straight away (no passphrase; synthetic data).
        home: the data directory (default: $LOCALPERS_HOME or the platform's).
        engine_model: the writer model (default: ``writer_model`` in config.toml).
        kdf_seconds: how long key derivation takes for new users (0 = fastest safe setting, for tests).
        max_tokens: the longest draft the Write screen asks for.
        train_config: a :class:`localpers.writing.train.TrainConfig` for the Adapter screen (default: the recipe's).
        driver_class: Textual's terminal driver (default: the platform's; see :func:`terminal_driver`).
    """

    CSS_PATH = "app.tcss"
    TITLE = "localpers"
    MODES = {"unlock": UnlockScreen, **TASK_SCREENS}
    DEFAULT_MODE = "unlock"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]  # classes on each screen, for app.tcss
    COMMANDS = App.COMMANDS | {LocalpersCommands}
    BINDINGS = [
        Binding("f1", "help", "Help", tooltip="List every key binding"),
        # Priority, so they work even while a text box that knows F6 has focus.
        *[Binding(key.lower(), f"goto('{mode}')", title, show=False, priority=True) for mode, key, title in TASKS],
        Binding("f7", "choose_model", "Model", tooltip="Choose the writing model"),
        Binding("ctrl+t", "next_theme", "Theme", show=False),
        Binding("ctrl+l", "lock", "Lock", show=False),
    ]

    def __init__(self, user: str | None = None, demo: bool = False, home: Path | str | None = None,
                 engine_model: str | None = None, *, kdf_seconds: float = 0.5, max_tokens: int = 200,
                 train_config: Any = None, driver_class: type[Driver] | None = None) -> None:
        from localpers.paths import Config, data_dir

        self.home = Path(home).expanduser() if home else data_dir()
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.config = Config.load(self.config_path)
        self.initial_user = user
        self.start_demo = demo
        self.engine_model = engine_model or self.config.writer_model
        self.kdf_seconds = kdf_seconds
        self.max_tokens = max_tokens
        self.train_config = train_config
        self.session: Session | None = None
        super().__init__(driver_class=driver_class)
        if self.config.theme in self.available_themes:
            self.theme = self.config.theme

    # ------------------------------------------------------------------ paths and state

    @property
    def config_path(self) -> Path:
        return self.home / "config.toml"

    @property
    def users_root(self) -> Path:
        path = self.home / "users"
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    @property
    def vault(self) -> Any:
        return self.session.vault if self.session else None

    def on_mount(self) -> None:
        self.theme_changed_signal.subscribe(self, self._remember_theme)

    def _remember_theme(self, theme: Any) -> None:
        if self.config.theme != theme.name:
            self.config.theme = theme.name
            with contextlib.suppress(OSError):
                self.config.save(self.config_path)

    def report(self, exc: BaseException, doing: str) -> None:
        """Show an error as a notification that says what to do; callable from any thread."""
        message = describe_error(exc, doing)
        if threading.get_ident() == self._thread_id:
            self.notify(message, title="Error", severity="error", timeout=10)
        else:
            self.call_from_thread(self.notify, message, title="Error", severity="error", timeout=10)

    # ------------------------------------------------------------------ unlocking

    def unlocked(self, vault: Vault) -> None:
        """A vault is open: start a session and show the Write screen."""
        vault.program = "the app"  # what a CLI command waiting for the vault is told
        self.session = Session(vault, engine_model=self.engine_model, home=self.home, train_config=self.train_config,
                               config=self.config)
        self.sub_title = "demo profile" if vault.is_demo else vault.user
        self.switch_mode("write")
        # A mode's first screen is mounted after the switch; without a full repaint then,
        # a real terminal is left showing only the parts that changed later.
        self.call_after_refresh(self.refresh, repaint=True, layout=True)
        # Load the writer model once the Write screen is up: importing llama.cpp in a thread holds the
        # GIL for a second, which would otherwise delay the screen itself.
        self.set_timer(0.3, partial(self.session.warm_up, self))

    def action_lock(self) -> None:
        """Close the vault and go back to the unlock screen; every screen starts fresh next time."""
        if self.session is None:
            return
        session, self.session = self.session, None
        session.cancel_all()  # training, imports and generation stop at their next step
        self._back_to_unlock()
        unlock = self.screen
        if isinstance(unlock, UnlockScreen):
            unlock.set_busy(True, "Closing the vault…")
        self._close_session(session)

    def erased(self, user: str) -> None:
        """The Privacy screen erased the open user: nothing is left to close."""
        self.session = None
        self._back_to_unlock()
        self.notify(f"Erased {user!r}: the vault files were overwritten and removed.", title="Erased", timeout=8)

    def _back_to_unlock(self) -> None:
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.sub_title = ""
        self.switch_mode("unlock")
        self.call_after_refresh(self.refresh, repaint=True, layout=True)
        for mode, screen_cls in TASK_SCREENS.items():
            self.remove_mode(mode)
            self.add_mode(mode, screen_cls)
        screen = self.screen
        if isinstance(screen, UnlockScreen):
            screen.refresh_users()

    @work(thread=True, group="close", exit_on_error=False)
    def _close_session(self, session: Session) -> None:
        try:
            session.close()
        except Exception as exc:
            self.report(exc, "Closing the vault")
        self.call_from_thread(self._lock_finished)

    def _lock_finished(self) -> None:
        screen = self.screen
        if isinstance(screen, UnlockScreen):
            screen.set_busy(False, "Vault closed.")

    def on_unmount(self) -> None:
        if self.session is not None:
            self.session.close(timeout=30)
            self.session = None

    # ------------------------------------------------------------------ navigation

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("goto", "lock", "choose_model") and self.session is None:
            return False  # nothing to go to before a vault is open
        return True

    def action_goto(self, mode: str) -> None:
        self.goto(mode)

    def goto(self, mode: str) -> None:
        if self.session is None:
            self.notify("Unlock a vault first (or open the demo profile).", severity="warning")
            return
        # A modal dialog (help, confirm) belongs to the screen under it: close it first.
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.switch_mode(mode)

    def run_on_screen(self, mode: str, action: str) -> None:
        """Go to ``mode`` and run one of its screen's actions (for the command palette)."""
        self.goto(mode)
        self.call_after_refresh(self.screen.run_action, action)

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
            return
        self.push_screen(HelpScreen(self))

    def model_choices(self) -> list[tuple[str, str]]:
        """The writing models on this machine: installed registry models, then the configured GGUF file."""
        from localpers import models

        choices = [(name, models.REGISTRY[name].description) for name in models.installed_ggufs()]
        for extra in (self.config.writer_model, self.engine_model):
            if extra not in [name for name, _ in choices]:
                choices.append((extra, "GGUF file"))
        return choices

    def action_choose_model(self) -> None:
        """Pick the writing model; the choice is saved to config.toml and loaded in a worker."""
        from .screens.dialogs import ModelScreen

        if self.session is None:
            return
        self.push_screen(ModelScreen(self.engine_model, self.model_choices()), self._model_chosen)

    def _model_chosen(self, model: str | None) -> None:
        if model is None or self.session is None or model == self.engine_model:
            return
        self.notify(f"Loading {model}…", timeout=3)
        self._load_model(self.session, model)

    @work(thread=True, group="model", exclusive=True, exit_on_error=False)
    def _load_model(self, session: Session, model: str) -> None:
        try:
            session.use_model(model)
            self.config.set("writer_model", model)
            self.config.save(self.config_path)
        except Exception as exc:
            self.report(exc, f"Loading {model}")
            return
        self.engine_model = model
        self.call_from_thread(self.notify, f"Drafts are now written by {model} (saved in config.toml).",
                              title="Writing model", timeout=5)

    def action_next_theme(self) -> None:
        names = [t for t in THEME_CYCLE if t in self.available_themes]
        current = names.index(self.theme) if self.theme in names else -1
        self.theme = names[(current + 1) % len(names)]
        self.notify(f"Theme: {self.theme}", timeout=2)


@contextlib.contextmanager
def own_terminal() -> Iterator[None]:
    """Give the app a private handle on the terminal while it runs.

    llama.cpp silences its loading messages by pointing file descriptors 1 and 2 at
    /dev/null for a moment (from a worker thread); Textual draws through descriptor 2,
    so frames drawn meanwhile would be lost and the screen left half painted. Here the
    app draws through its own duplicate of the terminal, and descriptors 1 and 2 point
    at /dev/null until it exits, so stray output from C libraries cannot scribble over
    the screen either.
    """
    stream = sys.__stderr__
    if stream is None or not stream.isatty():
        yield
        return
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    terminal = os.fdopen(os.dup(2), "w", encoding=stream.encoding or "utf-8", errors="replace")
    devnull = os.open(os.devnull, os.O_WRONLY)
    streams = sys.stdout, sys.stderr
    # Python-level output (a crash report after the app stops, say) still reaches the terminal.
    sys.__stderr__ = sys.stdout = sys.stderr = terminal
    try:
        for fd in (1, 2):
            os.dup2(devnull, fd)
        yield
    finally:
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)
        sys.__stderr__ = stream
        sys.stdout, sys.stderr = streams
        terminal.close()


def terminal_driver() -> type[Driver] | None:
    """Textual's driver for this platform, measuring the terminal it draws on.

    Textual's own driver asks for the size of descriptor 1, which :func:`own_terminal`
    points at /dev/null, and would fall back to 80x24; this one asks the terminal
    handle it writes to, so the app fills the window and follows every resize.
    None on Windows, where Textual's default driver is used as it is.
    """
    if sys.platform == "win32":
        return None
    from textual.drivers.linux_driver import LinuxDriver

    class TerminalDriver(LinuxDriver):
        def _get_terminal_size(self) -> tuple[int, int]:
            try:
                size = os.get_terminal_size(self._file.fileno())
            except (AttributeError, ValueError, OSError):
                return super()._get_terminal_size()
            return size.columns or 80, size.lines or 24

    return TerminalDriver


def run(user: str | None = None, demo: bool = False, home: Path | None = None) -> int:
    """Open the app in this terminal (what ``localpers tui`` does); returns its exit code."""
    with own_terminal():
        # Made inside own_terminal, so the driver draws on (and measures) the private terminal handle.
        app = LocalpersApp(user=user, demo=demo, home=home, driver_class=terminal_driver())
        app.run()
    return app.return_code or 0

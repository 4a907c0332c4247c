"""Shared helpers of the TUI tests: a demo data directory built once per test run, and waiting.

Building the demo profile embeds 61 texts and a 98-item catalog (tens of seconds on
2 busy cores), so it is built once per process and copied for each test.
"""

from __future__ import annotations

import atexit
import io
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_TEMPLATE: Path | None = None


def demo_template() -> Path:
    """A data directory holding a populated, closed demo vault and the demo catalog."""
    global _TEMPLATE
    if _TEMPLATE is None:
        from localpers.catalog import Catalog
        from localpers.recommend import Recommender
        from localpers.demo import open_demo

        root = Path(tempfile.mkdtemp(prefix="localpers-tui-template-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)  # one per process; gone when it exits
        home = root / "home"
        home.mkdir()
        vault = open_demo(home=home / "users")
        # One list now caches the embedded interests (sealed), so tests start without the embedding model.
        # Not a user's request: no profile facts, so the demo's disclosure ledger starts empty.
        Recommender(Catalog.demo(home)).recommend(vault, n=5, use_profile=False)
        vault.close()
        _TEMPLATE = home
    return _TEMPLATE


def copy_demo_home(tmp_path: Path) -> Path:
    """A private copy of the demo data directory for one test."""
    home = tmp_path / "home"
    shutil.copytree(demo_template(), home)
    return home


async def wait_for(pilot: Any, condition: Callable[[], Any], timeout: float = 30.0, step: float = 0.05,
                   message: Callable[[], Any] | None = None) -> Any:
    """Let the app run until ``condition()`` is true; fail with a clear message after ``timeout`` seconds.

    ``message()`` adds what the app shows (its notifications, say) to the failure.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f": {message()}" if message else f"; notifications: {notifications(pilot.app)}"
            extra += "\nthe screen:\n" + screen_text(pilot.app)
            raise AssertionError(f"timed out after {timeout} s waiting for {getattr(condition, '__name__', condition)}"
                                 + extra)
        await pilot.pause(step)


def send_key(pilot: Any, key: str) -> float:
    """Send one key the way a terminal does, through the app's driver; return when it was sent.

    ``pilot.press`` waits until the process goes idle (up to two seconds a key), which
    never happens while a worker generates: keys sent this way arrive while it works.
    """
    from textual import events

    event = events.Key(key, key if len(key) == 1 else None)
    event.set_sender(pilot.app)
    sent = time.monotonic()
    pilot.app._driver.send_message(event)
    return sent


async def unlocked(pilot: Any, timeout: float = 120.0) -> None:
    """Wait until the app has a vault open and shows a task screen."""
    await wait_for(pilot, lambda: pilot.app.session is not None and pilot.app.current_mode != "unlock", timeout)
    await pilot.pause()


def record_actions(screen: Any, *names: str) -> list[tuple[str, float]]:
    """Record ``(action, time.monotonic())`` each time one of the screen's ``action_<name>`` methods runs.

    Textual looks a key binding's action up on the screen object, so wrapping the method on this
    instance times every key the app handles, without a hook in the product code.
    """
    handled: list[tuple[str, float]] = []
    for name in names:
        method = getattr(screen, f"action_{name}")

        def timed(*args: Any, _name: str = name, _method: Callable = method, **kwargs: Any) -> Any:
            handled.append((_name, time.monotonic()))
            return _method(*args, **kwargs)

        setattr(screen, f"action_{name}", timed)
    return handled


def screen_text(app: Any) -> str:
    """What the terminal shows right now, as plain text."""
    from rich.console import Console

    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True, color_system="truecolor",
                      record=True, legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens, simplify=True))
    return console.export_text()


def notifications(app: Any) -> list[str]:
    return [n.message for n in app._notifications]

"""Snapshot tests: every screen at 80x24 and at 120x40, compared with the accepted SVGs in __snapshots__/.

The views are static states with nothing that changes from run to run (relative
days, no model output). Regenerate after an intended change with::

    .venv/bin/python -m pytest tests/test_tui_snapshots.py --snapshot-update

and look at the pictures before committing them.
"""

from __future__ import annotations

import pytest

from localpers.tui import LocalpersApp
from tui_support import copy_demo_home, unlocked, wait_for

SIZES = [(80, 24), (120, 40)]


def _text(widget) -> str:
    return str(widget.render())


def _still(pilot) -> None:
    """Stop cursors blinking, so the picture does not depend on when it is taken."""
    for widget in pilot.app.screen.query("Input, TextArea"):
        widget.cursor_blink = False


async def _ready_write(pilot):
    await unlocked(pilot)


async def _ready_recommend(pilot):
    await unlocked(pilot)
    await pilot.press("f3")
    await wait_for(pilot, lambda: pilot.app.screen.recs, timeout=60)


async def _ready_history(pilot):
    await unlocked(pilot)
    await pilot.press("f4")
    await wait_for(pilot, lambda: len(pilot.app.screen.rows) == 61, timeout=60)


async def _ready_adapter(pilot):
    await unlocked(pilot)
    await pilot.press("f5")
    await wait_for(pilot, lambda: "would take" in _text(pilot.app.screen.query_one("#adapter-data")), timeout=60)


async def _ready_privacy(pilot):
    await unlocked(pilot)
    await pilot.press("f6")
    await wait_for(pilot, lambda: "On disk" in _text(pilot.app.screen.query_one("#stored-total")), timeout=60)


async def _ready_help(pilot):
    await unlocked(pilot)
    await pilot.press("f1")
    await pilot.pause(0.3)


SCREENS = {
    "write": _ready_write,
    "recommend": _ready_recommend,
    "history": _ready_history,
    "adapter": _ready_adapter,
    "privacy": _ready_privacy,
    "help": _ready_help,
}


@pytest.fixture
def demo_home(tmp_path, monkeypatch):
    home = copy_demo_home(tmp_path)
    monkeypatch.setenv("LOCALPERS_HOME", str(home))
    return home


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_unlock_screen(snap_compare, demo_home, size):
    async def ready(pilot):
        await pilot.pause(0.3)
        _still(pilot)
        await pilot.pause()

    assert snap_compare(LocalpersApp(home=demo_home), terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("screen", list(SCREENS))
def test_task_screen(snap_compare, demo_home, screen, size):
    async def ready(pilot):
        await SCREENS[screen](pilot)
        # Tables size their columns when idle after rows arrive: let every table settle first.
        await wait_for(pilot, lambda: not any(t._require_update_dimensions for t in pilot.app.screen.query("DataTable")),
                       timeout=10)
        await pilot.pause(0.3)
        _still(pilot)
        await pilot.pause()

    assert snap_compare(LocalpersApp(home=demo_home, demo=True), terminal_size=size, run_before=ready)

"""The app's writing-model picker (F7, or "Writing model" in the command palette), driven by Textual's pilot."""

from __future__ import annotations

import tomllib

import pytest

from localpers import models
from localpers.tui import LocalpersApp
from tui_support import copy_demo_home, notifications, unlocked, wait_for

pytestmark = pytest.mark.model


@pytest.fixture
def demo_home(tmp_path, monkeypatch):
    home = copy_demo_home(tmp_path)
    monkeypatch.setenv("LOCALPERS_HOME", str(home))
    return home


async def test_picking_a_model_saves_it_and_the_next_draft_uses_it(demo_home):
    from textual.widgets import OptionList

    from localpers.tui.screens.dialogs import ModelScreen

    app = LocalpersApp(home=demo_home, demo=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await unlocked(pilot)
        assert app.engine_model == "gemma3-270m"
        await wait_for(pilot, lambda: app.screen.focused is not None)  # the Write screen is ready for keys
        await pilot.press("f7")
        await wait_for(pilot, lambda: isinstance(app.screen, ModelScreen))
        options = app.screen.query_one("#model-list", OptionList)
        offered = [options.get_option_at_index(i).id for i in range(options.option_count)]
        assert offered[:2] == ["gemma3-270m", "smollm2-135m-instruct"]  # installed registry models
        assert options.highlighted == 0  # the current one
        await pilot.press("down")
        await pilot.pause()
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.engine_model == "smollm2-135m-instruct", timeout=120)
        config = tomllib.loads((demo_home / "config.toml").read_text())
        assert config["writer_model"] == "smollm2-135m-instruct"
        assert any("now written by smollm2-135m-instruct" in n for n in notifications(app))
        writer = app.session.writer()
        assert writer.engine.model_path == models.ensure("smollm2-135m-instruct")

        # Esc leaves everything as it is; the palette offers the same dialog.
        await pilot.press("f7")
        await wait_for(pilot, lambda: isinstance(app.screen, ModelScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, ModelScreen))
        assert app.engine_model == "smollm2-135m-instruct"


async def test_the_picker_offers_a_configured_gguf_file(demo_home, tmp_path):
    from localpers.paths import Config

    gguf = models.ensure("smollm2-135m-instruct")
    Config(writer_model=str(gguf)).save(demo_home / "config.toml")
    app = LocalpersApp(home=demo_home, demo=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await unlocked(pilot)
        names = [name for name, _ in app.model_choices()]
        assert names[-1] == str(gguf) and "gemma3-270m" in names

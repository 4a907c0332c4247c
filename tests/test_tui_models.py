"""Pilot tests of the model work in the app: writing with streaming, and training with cancel and resume.

These run the real writer model (Gemma 3 270M through llama.cpp), the real playback
model (SmolLM2) and real LoRA training on a real vault; drafts are kept short so the
file stays quick. They also measure that the UI keeps handling keys while a worker
generates or trains.
"""

from __future__ import annotations

import statistics
import time

import pytest

from localpers.tui import LocalpersApp
from tui_support import copy_demo_home, notifications, record_actions, send_key, unlocked, wait_for

pytestmark = pytest.mark.model

MESSAGE = "Hi Nora, are you coming to the party on Saturday? Love, Mum"
# A text the model goes on continuing for a hundred tokens or so: long enough to press keys meanwhile.
RIDE_LOG = "Ride log\nMonday: lake loop, 48 km.\nTuesday: hill route, 30 km.\nWednesday:"


@pytest.fixture
def demo_home(tmp_path, monkeypatch):
    home = copy_demo_home(tmp_path)
    monkeypatch.setenv("LOCALPERS_HOME", str(home))
    return home


async def _start_long_draft(pilot, screen) -> None:
    screen.query_one("#write-mode").value = "continue"
    await pilot.pause()
    screen.query_one("#context").text = RIDE_LOG
    screen.query_one("#instruction").value = "Keep listing the rides"
    screen.query_one("#instruction").focus()
    await pilot.pause()
    send_key(pilot, "enter")


async def _start_reply(pilot, screen) -> None:
    screen.query_one("#write-mode").value = "reply"
    await pilot.pause()
    assert screen.query_one("#context").display, "reply mode shows the box for the message"
    screen.query_one("#context").text = MESSAGE
    screen.query_one("#instruction").value = "Say yes and offer to bring a cake"
    screen.query_one("#instruction").focus()
    await pilot.pause()
    send_key(pilot, "enter")


# ---------------------------------------------------------------------- writing


async def test_draft_streams_in_with_examples_then_is_saved_and_copied(demo_home):
    from localpers.history import History

    app = LocalpersApp(home=demo_home, demo=True, max_tokens=24)
    async with app.run_test(size=(100, 30)) as pilot:
        await unlocked(pilot)
        screen = app.screen
        assert app.current_mode == "write"
        await _start_reply(pilot, screen)
        # Watch the draft grow: streaming shows it in several steps, not all at once at the end.
        seen = set()
        await wait_for(pilot, lambda: seen.add(len(screen.query_one("#draft").text)) or
                       (screen.generating is None and screen.current is not None), timeout=120, step=0.01)
        draft = screen.query_one("#draft").text
        assert draft.strip()
        lengths = sorted(n for n in seen if 0 < n < len(draft))
        assert len(lengths) >= 3, f"the draft arrived in too few steps: {lengths} of {len(draft)}"
        assert screen.query_one("#draft").read_only is False

        # The user's own texts that shaped it are listed, and can be hidden.
        titles = [str(w.render()) for w in screen.query(".example-title") if not w.has_class("facts-title")]
        assert titles and all("(" in t for t in titles), titles
        # So are the profile facts the model was told, and those minimal disclosure kept back.
        told = str(screen.query_one(".facts").render())
        entry = app.session.ledger()[0]
        assert entry["purpose"] == "writing" and entry["recipient"] == "local writer model"
        shown, kept = told.removeprefix("Told: ").split("\nWithheld: ")
        assert all(f"{name}: " in shown for name in entry["revealed"]), (told, entry)
        assert kept == (", ".join(entry["withheld"]) or "nothing")
        assert "age" in entry["withheld"] and "38" not in told  # a withheld fact is named, its value never shown
        examples = screen.query_one("#examples")
        assert examples.display
        await pilot.press("ctrl+b")
        assert not examples.display
        await pilot.press("ctrl+b")
        assert examples.display

        # Copy, then edit and save: the edit joins the history.
        await pilot.press("ctrl+o")
        assert app.clipboard == draft
        edited = draft + "\n\nP.S. I will bring the lemon cake. Nora"
        screen.query_one("#draft").text = edited
        drafts_before = app.vault.drafts.count()
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.vault.drafts.count() == drafts_before + 1, timeout=60)
        row = next(app.vault.drafts.rows(order_by="id desc", limit=1))
        assert row["final"] == edited.strip() and row["draft"] == draft and row["mode"] == "reply"
        assert edited.strip() in History(app.vault).texts()
        await wait_for(pilot, lambda: any("Saved" in m for m in notifications(app)))


async def test_regenerate_and_stop(demo_home):
    app = LocalpersApp(home=demo_home, demo=True, max_tokens=400)
    async with app.run_test(size=(80, 24)) as pilot:
        await unlocked(pilot)
        screen = app.screen
        await _start_long_draft(pilot, screen)
        await wait_for(pilot, lambda: len(screen.query_one("#draft").text) > 10, timeout=120, step=0.01)
        await pilot.press("escape")  # stop mid-draft
        await wait_for(pilot, lambda: screen.generating is None, timeout=30)
        stopped = screen.query_one("#draft").text
        assert stopped.strip() and "Stopped" in str(screen.query_one("#write-status").render())
        assert screen.current.finished

        # The engine is free again: another version (sampled) comes out.
        app.max_tokens = 16
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: screen.generating is None and screen.attempt == 1 and
                       "Done" in str(screen.query_one("#write-status").render()), timeout=120)
        assert screen.query_one("#draft").text.strip()


async def test_keys_are_handled_quickly_while_a_draft_is_generated(demo_home):
    app = LocalpersApp(home=demo_home, demo=True, max_tokens=400)
    async with app.run_test(size=(80, 24)) as pilot:
        await unlocked(pilot)
        screen = app.screen
        await _start_long_draft(pilot, screen)
        await wait_for(pilot, lambda: len(screen.query_one("#draft").text) > 0, timeout=120, step=0.01)
        latencies = []
        handled_keys = record_actions(screen, "toggle_examples")
        at_start = len(screen.query_one("#draft").text)
        while screen.generating is not None and len(latencies) < 8:
            before = len(handled_keys)
            pressed = send_key(pilot, "ctrl+b")
            await wait_for(pilot, lambda: len(handled_keys) > before, timeout=10, step=0.002)
            if screen.generating is not None:  # only count keys handled while the worker was still writing
                latencies.append(handled_keys[-1][1] - pressed)
                grown = len(screen.query_one("#draft").text)
            await pilot.pause(0.05)
        await pilot.press("escape")
        await wait_for(pilot, lambda: screen.generating is None, timeout=30)
    assert len(latencies) >= 3, f"the draft finished too soon to measure ({latencies})"
    assert grown > at_start, "the draft kept streaming while keys were handled"
    assert max(latencies) < 0.2, f"key handling took {latencies} s while generating"
    assert statistics.median(latencies) < 0.1


# ---------------------------------------------------------------------- training


async def test_training_cancels_resumes_and_keeps_the_ui_responsive(demo_home):
    from localpers.writing.playback import cached_instruction
    from localpers.writing.train import collect_texts

    app = LocalpersApp(home=demo_home, demo=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await unlocked(pilot)
        await pilot.press("f5")
        screen = app.screen
        await wait_for(pilot, lambda: "Training would take about" in str(screen.query_one("#adapter-data").render()),
                       timeout=60)
        assert not screen.query_one("#train").disabled and screen.query_one("#resume").disabled
        reports = []  # (when, phase, step) of every progress report the screen shows
        show = screen._progress

        def spy(state):
            reports.append((time.monotonic(), state.phase, state.step))
            show(state)

        screen._progress = spy
        started = time.monotonic()
        await pilot.press("t")
        await wait_for(pilot, lambda: screen.last_progress is not None and screen.last_progress.step >= 2,
                       timeout=180)
        assert screen.query_one("#train").disabled and not screen.query_one("#cancel").disabled

        latencies = []  # keys while the worker plays back texts with the instruct model
        handled_keys = record_actions(screen, "toggle_adapter")
        for _ in range(5):
            pressed = time.monotonic()
            await pilot.press("s")
            latencies.append(handled_keys[-1][1] - pressed)
            await pilot.pause(0.05)

        await pilot.press("c")
        await wait_for(pilot, lambda: screen.training is None, timeout=120)
        done = screen.last_progress.step
        seconds_per_text = (reports[-1][0] - started) / done
        assert "cancelled" in str(screen.query_one("#train-stats").render())
        assert any("Training cancelled" in m for m in notifications(app))
        texts = collect_texts(app.vault)
        cached = sum(cached_instruction(app.vault, t["content"]) is not None for t in texts)
        assert done <= cached < len(texts), "what was done is kept, the rest is not"
        assert app.vault.blob_info("adapter") is None
        await wait_for(pilot, lambda: not screen.query_one("#resume").disabled)

        # Resume: the texts already played back come from the cache, not from the model again.
        reports.clear()
        resumed = time.monotonic()
        await pilot.press("u")
        await wait_for(pilot, lambda: reports and reports[-1][2] >= cached, timeout=120)
        caught_up = next(t for t, phase, step in reports if step >= cached) - resumed
        assert caught_up < 0.5 * cached * seconds_per_text, (caught_up, cached, seconds_per_text)
        await pilot.press("ctrl+c")  # Ctrl+C pauses too, as in `localpers train`
        await wait_for(pilot, lambda: screen.training is None, timeout=120)
        assert "cancelled" in str(screen.query_one("#train-stats").render())
        await pilot.press("ctrl+c")  # not training: the app's own Ctrl+C (it says how to quit), nothing breaks
        assert screen.training is None and app.is_running
    assert max(latencies) < 0.2, f"key handling took {latencies} s while training"


@pytest.fixture
def demo_home_with_adapter(demo_home):
    """The demo profile with a real GGUF LoRA adapter installed: freshly initialised, so it leaves the base
    model's output unchanged, stored with the held-out scores a training run would record."""
    from localpers import models
    from localpers.writing import adapter
    from localpers.adapters import load_recipe
    from localpers.writing.train import attach_lora, load_base
    from localpers.demo import open_demo

    recipe = load_recipe("gemma3-270m")
    base, _ = load_base("gemma3-270m")
    data = adapter.export_gguf(attach_lora(base, recipe), recipe)
    base_id = models.model_id(models.ensure("gemma3-270m"))
    with open_demo(home=demo_home / "users") as vault:
        adapter.install(vault, data, recipe=recipe, base_model_id=base_id, n_texts=55,
                        scores={"base_heldout_loss": 3.1, "heldout_loss": 2.7})
    return demo_home


@pytest.mark.slow
async def test_adapter_scores_and_switch_compare_with_the_base_model(demo_home_with_adapter):
    app = LocalpersApp(home=demo_home_with_adapter, demo=True, max_tokens=8)
    async with app.run_test(size=(100, 30)) as pilot:
        await unlocked(pilot)
        await pilot.press("f5")
        screen = app.screen
        current = screen.query_one("#adapter-current")
        await wait_for(pilot, lambda: "Trained" in str(current.render()), timeout=60)
        shown = str(current.render())
        assert "55 texts" in shown and "2.700" in shown and "3.100" in shown and "perplexity 14.9 vs 22.2" in shown
        switch = screen.query_one("#use-adapter")
        assert not switch.disabled and switch.value and app.session.use_adapter

        async def draft_uses() -> str:
            await pilot.press("f2")
            write = app.screen
            write.query_one("#instruction").value = "Thank Jonas for the stone"
            write.query_one("#instruction").focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: write.generating is None and write.current is not None
                           and write.current.finished, timeout=120)
            return write.current.adapter

        assert await draft_uses() == "user:demo"
        await pilot.press("f5")
        await pilot.press("s")  # adapter off: drafts come from the base model, to compare
        await wait_for(pilot, lambda: not app.session.use_adapter)
        assert any("base model" in m for m in notifications(app))
        assert await draft_uses() is None

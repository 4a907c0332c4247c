"""Adapter: your own LoRA adapter, trained on this machine from your texts.

Shows how much there is to learn from and what training would cost, trains in a
worker (progress bar, loss, ETA; cancel keeps a checkpoint, resume continues from
it), shows the held-out scores of the current adapter against the base model, and
switches the adapter on or off for the Write screen so the two can be compared.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Label, ProgressBar, Static, Switch

from ..widgets import human_duration, relative_day
from .base import TaskScreen, vault_work

if TYPE_CHECKING:
    from localpers.writing.train import TrainProgress, TrainResult


class AdapterScreen(TaskScreen):
    """What training costs, training itself, and the adapter's scores."""

    MODE = "adapter"
    HELP_TITLE = "Adapter"
    BINDINGS = [
        Binding("t", "train", "Train"),
        Binding("c", "cancel_training", "Cancel"),
        Binding("ctrl+c", "pause_training", "Pause", show=False),  # as in `localpers train`
        Binding("u", "resume", "Resume"),
        Binding("s", "toggle_adapter", "Adapter on/off"),
        Binding("r", "refresh_info", "Refresh", show=False),
    ]
    # The command palette's entries: (name, help, action); the key comes from BINDINGS.
    PALETTE = [
        ("Train the adapter", "Adapter: learn your style from your texts", "train"),
        ("Cancel training", "Adapter: stop and keep a checkpoint to resume from", "cancel_training"),
        ("Resume training", "Adapter: continue from the last checkpoint", "resume"),
        ("Switch the adapter on or off", "Adapter: compare drafts with and without it", "toggle_adapter"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.training: threading.Event | None = None  # set it to cancel the running training
        self.last_progress: Any = None
        self.resumable = False  # a cancelled run (or a saved checkpoint) can go on

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="adapter-body"):
            with Vertical(classes="adapter-section"):
                yield Static("Your data", classes="section-title")
                yield Static("Counting your texts…", id="adapter-data")
            with Vertical(classes="adapter-section"):
                yield Static("Current adapter", classes="section-title")
                yield Static("…", id="adapter-current")
                with Horizontal(id="use-row"):
                    yield Switch(value=False, disabled=True, id="use-adapter")
                    yield Label("Use it when writing (off: the base model, to compare)", id="use-label")
            with Vertical(classes="adapter-section"):
                yield Static("Training", classes="section-title")
                yield ProgressBar(total=100, id="train-bar", show_eta=False)
                yield Static("not running", id="train-stats")  # its own line: the phase text is read in full
                with Horizontal(id="train-buttons"):
                    yield Button("Train (t)", variant="primary", id="train")
                    yield Button("Cancel (c)", id="cancel", disabled=True)
                    yield Button("Resume (u)", id="resume", disabled=True)

    def on_mount(self) -> None:
        self.refresh_info()

    def on_screen_resume(self) -> None:
        if self.is_mounted and self.training is None:
            self.refresh_info()

    # ------------------------------------------------------------------ information

    @vault_work(group="adapter-info", exclusive=True)
    def refresh_info(self) -> None:
        try:
            data = self.session.training_data()
            current = self.session.adapter_info()
            step = self.session.checkpoint_step()
        except Exception as exc:
            self.report(exc, "Reading the adapter state")
            return
        self.from_thread(self._show_info, data, current, step)

    def _show_info(self, data: dict, current: Any, checkpoint: int | None) -> None:
        lines = [f"{data['texts']} texts of yours, about {data['tokens']:,} tokens, to learn from."]
        if data["needed"]:
            lines.append(f"A personal adapter needs [b]{data['needed']} more texts you wrote[/b]: import sent mail "
                         "or notes on F4 History (press i), then come back and press t. Until then drafts use "
                         "your examples and style.")
            self.query_one("#train", Button).disabled = True
        else:
            lines.append(f"Training would take about [b]{human_duration(data['estimate_seconds'])}[/b] on this "
                         "machine: instructions for each text, then the LoRA steps.")
            self.query_one("#train", Button).disabled = self.training is not None
        self.query_one("#adapter-data", Static).update("\n".join(lines))
        self.query_one("#adapter-current", Static).update(describe_adapter(current))
        switch = self.query_one("#use-adapter", Switch)
        switch.disabled = current is None
        with switch.prevent(Switch.Changed):  # showing the state is not the user switching it
            switch.value = current is not None and self.session.use_adapter
        self.resumable = checkpoint is not None or self.resumable
        resume = self.query_one("#resume", Button)
        resume.disabled = not self.resumable or self.training is not None
        resume.label = f"Resume (u) from step {checkpoint}" if checkpoint else "Resume (u)"

    # ------------------------------------------------------------------ training

    @on(Button.Pressed, "#train")
    def action_train(self) -> None:
        self._start(resume=False)

    @on(Button.Pressed, "#resume")
    def action_resume(self) -> None:
        self._start(resume=True)

    def _start(self, resume: bool) -> None:
        if self.training is not None:
            self.notify("Training is already running; c cancels it.", severity="warning")
            return
        self.training = self.session.stop_event()
        self.query_one("#train", Button).disabled = True
        self.query_one("#resume", Button).disabled = True
        self.query_one("#cancel", Button).disabled = False
        self.query_one("#train-bar", ProgressBar).update(total=None, progress=0)
        self.query_one("#train-stats", Static).update("preparing the training data…")
        self._train(resume, self.training)

    class Progress(Message):
        """The training worker's report of where it stands (a :class:`localpers.writing.train.TrainProgress`)."""

        def __init__(self, state: TrainProgress) -> None:
            super().__init__()
            self.state = state

    class Trained(Message):
        """The training worker ended: its result (None after an error), and whether it was cancelled."""

        def __init__(self, result: TrainResult | None, cancelled: bool) -> None:
            super().__init__()
            self.result, self.cancelled = result, cancelled

    @vault_work(group="train")
    def _train(self, resume: bool, cancel: threading.Event) -> None:
        result = None
        try:
            result = self.session.train(progress=lambda state: self.post_message(self.Progress(state)), cancel=cancel,
                                        resume=resume)
        except Exception as exc:
            self.report(exc, "Training")
        self.post_message(self.Trained(result, cancel.is_set()))

    def on_adapter_screen_progress(self, message: Progress) -> None:
        self._progress(message.state)

    def on_adapter_screen_trained(self, message: Trained) -> None:
        self._trained(message.result, message.cancelled)

    def _progress(self, state: Any) -> None:
        self.last_progress = state
        bar = self.query_one("#train-bar", ProgressBar)
        bar.update(total=state.total_steps or None, progress=state.step)
        self.query_one("#train-stats", Static).update(describe_progress(state))

    def _trained(self, result: Any, cancelled: bool) -> None:
        self.training = None
        self.query_one("#train", Button).disabled = False
        self.query_one("#cancel", Button).disabled = True
        stats = self.query_one("#train-stats", Static)
        if result is not None and result.cancelled:
            self.resumable = True
            where = f"at step {result.steps}" if result.steps else "while preparing (instructions made so far are kept)"
            stats.update(f"cancelled {where}; u resumes")
            self.notify(f"Training cancelled {where}. Press u to resume.", timeout=5)
        elif result is not None:
            self.resumable = False
            stats.update(f"finished: {result.summary()}")
            self.notify("Training finished: the new adapter is verified and in use.", title="Adapter ready",
                        timeout=6)
        else:
            self.resumable = True
            stats.update("stopped by an error (see the message); u resumes")
        self.refresh_info()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Ctrl+C pauses training only while it runs; otherwise it falls through to the app's (how to quit).
        return self.training is not None if action == "pause_training" else True

    def action_pause_training(self) -> None:
        self.action_cancel_training()

    def action_cancel_training(self) -> None:
        if self.training is None:
            self.notify("Training is not running.", severity="warning")
            return
        self.training.set()
        self.query_one("#train-stats", Static).update("cancelling after this step…")

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel_training()

    # ------------------------------------------------------------------ on / off

    def action_toggle_adapter(self) -> None:
        switch = self.query_one("#use-adapter", Switch)
        if switch.disabled:
            self.notify("There is no adapter yet: train one first (t).", severity="warning")
            return
        switch.toggle()

    @on(Switch.Changed, "#use-adapter")
    def _switched(self, event: Switch.Changed) -> None:
        self.session.use_adapter = event.value
        self.notify("Drafts now use your adapter." if event.value else
                    "Drafts now use the base model (adapter off).", timeout=3)

    def action_refresh_info(self) -> None:
        self.refresh_info()


def describe_adapter(info: Any) -> str:
    """What the screen says about the installed adapter (an AdapterInfo, or None)."""
    if info is None:
        return "None yet: drafts use the base model, your examples and your style. Train one to sound more like you."
    text = f"Trained {relative_day(info.created)} on {info.n_texts} texts (LoRA rank {info.rank})."
    scores = info.scores or {}
    base, mine = scores.get("base_heldout_loss"), scores.get("heldout_loss")
    if base is not None and mine is not None:
        text += (f"\nOn held-out texts it never saw: loss [b]{mine:.3f}[/b] vs {base:.3f} for the base model "
                 f"(perplexity {math.exp(mine):.1f} vs {math.exp(base):.1f}; lower is better).")
    return text


def describe_progress(state: Any) -> str:
    """One line for a :class:`localpers.writing.train.TrainProgress`."""
    if state.phase == "playback":
        return f"writing an instruction for each text: {state.step}/{state.total_steps}"
    if state.phase == "training":
        parts = [f"step {state.step}/{state.total_steps}"]
        if state.loss is not None:
            parts.append(f"loss {state.loss:.3f}")
        if state.eta_s is not None:
            parts.append(f"ETA {human_duration(state.eta_s)}")
        return " · ".join(parts)
    return state.message or state.phase

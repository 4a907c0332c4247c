"""Write: ask for a draft in your own style, watch it stream in, edit it, save it.

Modes: *compose* (a new text from an instruction), *reply* (to the message pasted in
the context box), *rewrite* (the context box's text, as the instruction says) and
*continue* (go on from the context box's text). The texts of yours that the writer
retrieved as examples are listed on the right (Ctrl+B hides them). Saving keeps the
draft and your edit in the vault; the edit joins your history, so the next draft
and the next adapter learn from it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Input, Select, Static, TextArea

from ..widgets import clip, first_line
from .base import TaskScreen, vault_work

MODES = [("Compose", "compose"), ("Reply", "reply"), ("Rewrite", "rewrite"), ("Continue", "continue")]
CONTEXT_HINTS = {
    "reply": "Paste the message you are replying to",
    "rewrite": "Paste the text to rewrite",
    "continue": "Paste the text to continue",
}
INSTRUCTION_HINTS = {
    "compose": "What should the text say? e.g. Ask Priya to move Thursday's site visit",
    "reply": "What should the reply say? e.g. Yes, Tuesday works",
    "rewrite": "How to rewrite it? e.g. Shorter and friendlier",
    "continue": "Optional: where should it go next?",
}


class WriteScreen(TaskScreen):
    """An instruction box, a mode, and the draft streaming in."""

    MODE = "write"
    HELP_TITLE = "Write"
    BINDINGS = [
        Binding("ctrl+g", "generate", "Generate"),
        Binding("ctrl+r", "regenerate", "Again"),
        Binding("escape", "stop", "Stop", show=False),
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+o", "copy", "Copy"),
        Binding("ctrl+b", "toggle_examples", "Examples"),
    ]
    # The command palette's entries: (name, help, action); the key comes from BINDINGS.
    PALETTE = [
        ("Generate a draft", "Write: draft from the instruction", "generate"),
        ("Regenerate the draft", "Write: another version", "regenerate"),
        ("Stop generating", "Write: stop the draft where it is", "stop"),
        ("Save the draft", "Write: keep it; your edit goes to history", "save"),
        ("Copy the draft to the clipboard", "Write: copy", "copy"),
        ("Show or hide the examples", "Write: the texts of yours that shaped the draft",
         "toggle_examples"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.generating: threading.Event | None = None  # set it to stop the running generation
        self.current: Any = None  # the draft being shown (a localpers.writing.writer.Draft)
        self.attempt = 0
        self.tokens = 0
        self.notice_shown = False  # the writer's note about the adapter is shown once

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="write-top"):
            yield Select(MODES, value="compose", allow_blank=False, id="write-mode")
            yield Input(placeholder=INSTRUCTION_HINTS["compose"], id="instruction")
        yield TextArea(id="context", soft_wrap=True)
        with Horizontal(id="write-main"):
            yield TextArea(id="draft", soft_wrap=True)
            yield VerticalScroll(id="examples")
        yield Static("Type an instruction and press Enter or Ctrl+G.", id="write-status")

    def on_mount(self) -> None:
        self.query_one("#context", TextArea).display = False
        self.query_one("#draft", TextArea).border_title = "Draft"
        self.query_one("#examples").border_title = "Your texts it drew on"
        self.query_one("#examples").mount(Static("Examples of your own writing appear here when you generate.",
                                                 classes="example"))
        self.query_one("#instruction", Input).focus()
        self.show_guide()

    @vault_work(group="write-guide", exclusive=True)
    def show_guide(self) -> None:
        """Say, before the first draft, what the drafts draw on and what makes them better."""
        try:
            have, needed = self.session.readiness()
            has_adapter = self.session.adapter_info() is not None
        except Exception:
            return  # only a hint: the screen works without it
        self.from_thread(self._guide, write_guide(self.session.vault.is_demo, have, needed, has_adapter))

    def _guide(self, text: str) -> None:
        self.query_one("#draft", TextArea).placeholder = text  # shown while the draft box is empty

    # ------------------------------------------------------------------ inputs

    @property
    def mode(self) -> str:
        return str(self.query_one("#write-mode", Select).value)

    @on(Select.Changed, "#write-mode")
    def _mode_changed(self) -> None:
        mode = self.mode
        context = self.query_one("#context", TextArea)
        context.display = mode != "compose"
        context.border_title = CONTEXT_HINTS.get(mode, "")
        self.query_one("#instruction", Input).placeholder = INSTRUCTION_HINTS[mode]

    @on(Input.Submitted, "#instruction")
    def _instruction_entered(self) -> None:
        self.action_generate()

    def status(self, text: str) -> None:
        self.query_one("#write-status", Static).update(text)

    # ------------------------------------------------------------------ generating

    def action_generate(self, again: bool = False) -> None:
        if self.generating is not None:
            self.notify("A draft is being written; Esc stops it.", severity="warning")
            return
        instruction = self.query_one("#instruction", Input).value.strip()
        context = self.query_one("#context", TextArea).text.strip()
        mode = self.mode
        if mode == "compose" and not instruction:
            self.notify("Type what the text should say first.", severity="warning")
            self.query_one("#instruction", Input).focus()
            return
        if mode != "compose" and not context:
            self.notify(f"{CONTEXT_HINTS[mode]} into the box below the instruction first.", severity="warning")
            self.query_one("#context", TextArea).focus()
            return
        self.attempt = self.attempt + 1 if again else 0
        draft = self.query_one("#draft", TextArea)
        draft.text = ""
        draft.read_only = True
        self.current = None
        self.tokens = 0
        self.generating = self.session.stop_event()
        self.status("Finding examples of your writing…  (Esc stops)")
        self._generate(mode, instruction, context, self.attempt, self.generating)

    def action_regenerate(self) -> None:
        self.action_generate(again=True)

    @vault_work(group="generate")
    def _generate(self, mode: str, instruction: str, context: str, attempt: int, stop: threading.Event) -> None:
        started = time.monotonic()
        try:
            writer = self.session.writer()  # loads the model and the adapter the first time
            # A second try samples (a different seed each time); the first is the model's best guess.
            draft = writer.write(mode, instruction, context=context, max_tokens=self.localpers.max_tokens,
                                 temperature=0.8 if attempt else 0.0, seed=attempt or None)
            examples = self.session.describe_examples(draft.examples)
            self.from_thread(self._show_examples, draft, examples, writer.adapter)
            pieces = iter(draft)
            try:
                for piece in pieces:
                    self.from_thread(self._append, piece, started)
                    if stop.is_set():
                        break
            finally:
                if not draft.finished:  # stopped, or failed midway: free the engine for the next draft
                    self.session.stop_draft(draft, pieces)
            self.from_thread(self._finished, draft, stop.is_set(), started, self._notice(writer))
        except Exception as exc:
            self.report(exc, "Writing the draft")
            self.from_thread(self._finished, None, True, started, "")

    def _notice(self, writer: Any) -> str:
        """The writer's note about the adapter, with the app's keys instead of CLI commands."""
        if writer.adapter or "recipe" in (writer.notice or ""):
            return writer.notice
        have, needed = self.session.readiness()
        if needed:
            return (f"A personal adapter needs {needed} more texts you wrote ({have} so far): import them on "
                    "F4 History (press i); meanwhile drafts use your examples and style.")
        return f"You have enough texts ({have}) for a personal adapter: press F5, then t to train it."

    def _show_examples(self, draft: Any, examples: list[dict], adapter: str | None) -> None:
        self.current = draft
        self.status(f"Writing with {'your adapter' if adapter else 'the base model'}…  (Esc stops)")
        box = self.query_one("#examples", VerticalScroll)
        box.remove_children()
        widgets = []
        if not examples:
            widgets.append(Static("No texts of yours matched; the draft uses the base style.", classes="example"))
        for example in examples:
            title = example.get("title") or first_line(example.get("text", ""), 40)
            score = example.get("score")
            head = f"{title}" + (f"  ({score:.2f})" if isinstance(score, float) else "")
            widgets.append(Static(head, classes="example-title", markup=False))
            widgets.append(Static(clip(example.get("text", ""), 300), classes="example", markup=False))
        widgets += self._facts_widgets(draft)
        box.mount_all(widgets)

    def _facts_widgets(self, draft: Any) -> list[Static]:
        """What the model was told about the user, and what was withheld (minimal disclosure)."""
        selection = getattr(draft, "disclosure", None)
        if selection is None:
            return []
        told = ", ".join(selection.prompt_lines()) or "nothing"
        if selection.instruction:
            told += f"  ->  {selection.decision} tone"
        lines = [f"Told: {told}", f"Withheld: {', '.join(selection.withheld) or 'nothing'}"]
        return [Static("Profile facts", classes="example-title facts-title"),
                Static("\n".join(lines), classes="example facts", markup=False)]

    def _append(self, piece: str, started: float) -> None:
        draft = self.query_one("#draft", TextArea)
        draft.insert(piece, draft.document.end)
        self.tokens += 1
        elapsed = max(time.monotonic() - started, 1e-6)
        self.status(f"Writing… {self.tokens} pieces, {self.tokens / elapsed:.0f}/s  (Esc stops)")

    def _finished(self, draft: Any, stopped: bool, started: float, notice: str) -> None:
        self.generating = None
        area = self.query_one("#draft", TextArea)
        area.read_only = False
        if draft is None:
            self.status("No draft. Fix what the message says and press Ctrl+G again.")
            return
        seconds = time.monotonic() - started
        word = "Stopped" if stopped else "Done"
        self.status(f"{word} in {seconds:.1f} s: edit it, Ctrl+S saves, Ctrl+R tries again.")
        if notice and not self.notice_shown:
            self.notice_shown = True
            self.notify(notice, timeout=6)
        area.focus()

    def action_stop(self) -> None:
        if self.generating is not None:
            self.generating.set()
            self.status("Stopping…")

    # ------------------------------------------------------------------ after

    def action_save(self) -> None:
        text = self.query_one("#draft", TextArea).text.strip()
        if self.generating is not None:
            self.notify("Wait for the draft to finish (or press Esc) before saving.", severity="warning")
            return
        if not text:
            self.notify("Nothing to save yet: generate a draft (Ctrl+G) or type one.", severity="warning")
            return
        if self.current is None:
            self.notify("Generate a draft first (Ctrl+G); saving keeps the draft together with your edit.",
                        severity="warning")
            return
        self._save(self.current, text)

    @vault_work(group="save")
    def _save(self, draft: Any, text: str) -> None:
        try:
            self.session.writer().save(draft, text, kind="note" if draft.mode == "continue" else "email")
        except Exception as exc:
            self.report(exc, "Saving the draft")
            return
        self.app.call_from_thread(self.notify, "Saved. Your edit is in your history and will shape future drafts.",
                                  timeout=4)

    def action_copy(self) -> None:
        text = self.query_one("#draft", TextArea).text
        if not text.strip():
            self.notify("Nothing to copy yet.", severity="warning")
            return
        from ..clipboard import copy_with_tool

        self.app.copy_to_clipboard(text)  # the terminal's clipboard (OSC 52), where the terminal accepts it
        tool = copy_with_tool(text)
        if tool:
            self.notify(f"Copied {len(text)} characters to the clipboard (with {tool}).", timeout=3)
        else:
            self.notify(f"Sent {len(text)} characters to the terminal's clipboard, but this terminal may not accept "
                        "it and no clipboard tool (wl-copy, xclip, xsel) was found. If pasting gives nothing, "
                        "select the draft with the mouse (Shift+drag in most terminals); Ctrl+S keeps it in your "
                        "vault.", title="Maybe not copied", severity="warning", timeout=10)

    def action_toggle_examples(self) -> None:
        self.query_one("#examples").toggle_class("-hidden")


def write_guide(demo: bool, have: int, needed: int, has_adapter: bool) -> str:
    """What the empty draft box says: what drafts draw on, and the next step.

    >>> print(write_guide(False, 0, 50, False).splitlines()[0])
    Your vault has no texts yet, so drafts use only the base model's style.
    """
    if demo:
        return ("Demo profile: drafts draw on the texts of Nora Quill, a fictional writer, not on yours.\n\n"
                "For your own vault: Ctrl+L, then Ctrl+N (New user).")
    if have == 0:
        return ("Your vault has no texts yet, so drafts use only the base model's style.\n\n"
                "Drafts improve once they can learn how you write:\n"
                "1. F4 History, then i: import sent mail or a folder of notes.\n"
                f"2. F5 Adapter, then t: train your adapter (it needs {needed} texts you wrote).")
    if needed:
        return (f"Drafts draw on your {have} texts as examples.\n\n"
                f"Import {needed} more texts you wrote (F4 History, then i) to train a personal adapter "
                "(F5 Adapter, then t).")
    if not has_adapter:
        return (f"Drafts draw on your {have} texts as examples.\n\n"
                "You have enough texts to train your personal adapter: F5 Adapter, then t.")
    return "Your draft appears here, written with your adapter and your own texts as examples."

"""Small modal dialogs: confirm (optionally by typing a word), ask for a path, read a text."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static


class ConfirmScreen(ModalScreen[bool]):
    """Ask before something that cannot be undone. With ``type_to_confirm``, the user must type that word."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, *, confirm_label: str = "Delete", type_to_confirm: str | None = None) -> None:
        super().__init__()
        self.question = question
        self.confirm_label = confirm_label
        self.type_to_confirm = type_to_confirm

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, classes="dialog-question")
            if self.type_to_confirm:
                yield Input(placeholder=f"type {self.type_to_confirm} to confirm", id="confirm-word")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.confirm_label, variant="error", id="yes")
                yield Button("Cancel", id="no")

    def on_mount(self) -> None:
        if self.type_to_confirm:
            self.query_one("#confirm-word", Input).focus()
        else:
            self.query_one("#no", Button).focus()

    @on(Button.Pressed, "#yes")
    @on(Input.Submitted, "#confirm-word")
    def _yes(self) -> None:
        if self.type_to_confirm:
            typed = self.query_one("#confirm-word", Input).value.strip()
            if typed != self.type_to_confirm:
                self.notify(f"Type {self.type_to_confirm!r} exactly to confirm, or press Esc to cancel.",
                            severity="warning")
                return
        self.dismiss(True)

    @on(Button.Pressed, "#no")
    def action_cancel(self) -> None:
        self.dismiss(False)


class PathScreen(ModalScreen[str | None]):
    """Ask for a file or folder path (import source, export destination)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, *, value: str = "", action: str = "OK") -> None:
        super().__init__()
        self.question = question
        self.value = value
        self.action_label = action

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, classes="dialog-question")
            yield Input(value=self.value, placeholder="path, e.g. ~/Mail/sent.mbox", id="path")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.action_label, variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#path", Input).focus()

    @on(Button.Pressed, "#ok")
    @on(Input.Submitted, "#path")
    def _ok(self) -> None:
        value = self.query_one("#path", Input).value.strip()
        if not value:
            self.notify("Type a path, or press Esc to cancel.", severity="warning")
            return
        self.dismiss(value)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class TextScreen(ModalScreen[None]):
    """Read one text (a history item, a recommendation's details). Esc closes."""

    BINDINGS = [Binding("escape,q", "close", "Close")]

    def __init__(self, title: str, body: str, *, footer: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.footer_text = footer

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog reader"):
            yield Static(self.title_text, classes="dialog-question", markup=False)
            with VerticalScroll(classes="reader-body"):
                yield Static(self.body, markup=False, id="reader-text")
            yield Static(self.footer_text or "Esc closes", classes="reader-footer", markup=False)

    def action_close(self) -> None:
        self.dismiss(None)


class ModelScreen(ModalScreen[str | None]):
    """Choose the writing model: the installed registry models and the configured GGUF file, if any.

    Dismisses with the chosen name or path (None when cancelled).
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, current: str, choices: list[tuple[str, str]]) -> None:
        super().__init__()
        self.current = current
        self.choices = choices  # (name or path, description)

    def compose(self) -> ComposeResult:
        from rich.text import Text
        from textual.widgets import OptionList
        from textual.widgets.option_list import Option

        with Vertical(classes="dialog", id="model-dialog"):
            yield Static("Writing model (Enter chooses, Esc cancels)", classes="dialog-question")
            yield OptionList(*[Option(Text.assemble("● " if name == self.current else "  ", name, "  ", (about, "dim")),
                                      id=name) for name, about in self.choices], id="model-list")

    def on_mount(self) -> None:
        from textual.widgets import OptionList

        options = self.query_one("#model-list", OptionList)
        names = [name for name, _ in self.choices]
        options.highlighted = names.index(self.current) if self.current in names else 0
        options.focus()

    def on_option_list_option_selected(self, event) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)

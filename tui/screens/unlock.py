"""The first screen: choose a user and unlock their vault, create a new user, or open the demo profile.

Unlocking derives a key from the passphrase with Argon2id, which takes about half a
second on purpose, so it runs in a worker while a spinner shows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, LoadingIndicator, OptionList, Static, Tab, Tabs
from textual.widgets.option_list import Option

from localpers.errors import WrongPassphrase
from localpers.session import MIN_PASSPHRASE, open_vault
from localpers.vault import DEMO_USER, Vault

from ..widgets import passphrase_strength
from .base import describe_error

if TYPE_CHECKING:
    from ..app import LocalpersApp

DEMO_OPTION = "\x00demo"  # the option id of the demo profile (no real user name can start with NUL)


class UnlockScreen(Screen):
    """Choose or create a user; or open the demo profile, which needs no passphrase."""

    HELP_TITLE = "Unlock: open a vault"
    BINDINGS = [
        Binding("ctrl+o", "demo", "Open demo"),
        Binding("ctrl+n", "new_user", "New user"),
        Binding("ctrl+u", "unlock_mode", "Unlock existing", show=False),
    ]
    AUTO_FOCUS = "#user"

    @property
    def localpers(self) -> "LocalpersApp":
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static("[b]localpers[/b]  ·  locked", id="nav")
        with Center(id="unlock-center"):
            with Vertical(id="unlock-box"):
                yield Static("Your writing and recommendations, on this machine. "
                             "Everything personal is encrypted with your passphrase.", id="unlock-intro")
                with Horizontal(id="unlock-columns"):
                    yield OptionList(id="users")
                    with Vertical(id="unlock-form"):
                        yield Tabs(Tab("Unlock", id="tab-unlock"), Tab("New user", id="tab-create"), id="unlock-tabs")
                        yield Input(placeholder="user name", id="user")
                        yield Input(placeholder="passphrase", password=True, id="passphrase")
                        yield Input(placeholder="type the passphrase again", password=True, id="confirm")
                        yield Static("", id="strength")
                        with Horizontal(id="unlock-buttons"):
                            yield Button("Unlock", variant="primary", id="submit")
                            yield Button("Open demo", id="demo")
                yield LoadingIndicator(id="unlock-busy")
                yield Static("", id="unlock-status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#users", OptionList).border_title = "Users"
        self.query_one("#user", Input).border_title = "User"
        self.query_one("#passphrase", Input).border_title = "Passphrase"
        self.query_one("#confirm", Input).border_title = "Confirm"
        self.refresh_users()
        self.set_creating(False)
        self.set_busy(False)
        app = self.localpers
        if app.start_demo:
            app.start_demo = False
            self.action_demo()
        elif app.initial_user:
            self.query_one("#user", Input).value = app.initial_user
            self.query_one("#passphrase", Input).focus()
        if not self._existing_users() and not app.initial_user:
            self.set_creating(True)

    # ------------------------------------------------------------------ state

    def _existing_users(self) -> list[str]:
        return [u for u in Vault.users(self.localpers.users_root) if u != DEMO_USER]

    def refresh_users(self) -> None:
        options = self.query_one("#users", OptionList)
        options.clear_options()
        options.add_option(Option("Demo profile\n[dim]synthetic data, no passphrase[/dim]", id=DEMO_OPTION))
        for user in self._existing_users():
            options.add_option(Option(user, id=user))

    @property
    def creating(self) -> bool:
        return self.query_one("#unlock-tabs", Tabs).active == "tab-create"

    def set_creating(self, creating: bool) -> None:
        self.query_one("#unlock-tabs", Tabs).active = "tab-create" if creating else "tab-unlock"

    @on(Tabs.TabActivated, "#unlock-tabs")
    def _tab_changed(self) -> None:
        creating = self.creating
        self.query_one("#confirm").display = creating
        self.query_one("#strength").display = creating
        self.query_one("#submit", Button).label = "Create user" if creating else "Unlock"
        self._update_strength()

    def set_busy(self, busy: bool, message: str = "") -> None:
        self.query_one("#unlock-busy").display = busy
        self.query_one("#unlock-columns").disabled = busy
        self.query_one("#unlock-status", Static).update(message)
        if not busy and (self.focused is None or self.focused.disabled):
            # Disabling the form took the focus away: give it back where typing continues.
            self.focus_form()

    def focus_form(self) -> None:
        """Focus the user name box, or the passphrase box once a name is in."""
        name = self.query_one("#user", Input)
        (self.query_one("#passphrase", Input) if name.value.strip() else name).focus()

    def action_new_user(self) -> None:
        self.set_creating(True)
        self.query_one("#user", Input).focus()

    def action_unlock_mode(self) -> None:
        self.set_creating(False)

    # ------------------------------------------------------------------ events

    @on(OptionList.OptionSelected, "#users")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        if event.option.id == DEMO_OPTION:
            self.action_demo()
            return
        self.set_creating(False)
        self.query_one("#user", Input).value = event.option.id or ""
        self.query_one("#passphrase", Input).focus()

    @on(Input.Changed, "#passphrase")
    def _update_strength(self) -> None:
        if not self.creating:
            return
        value = self.query_one("#passphrase", Input).value
        strength = passphrase_strength(value)
        widget = self.query_one("#strength", Static)
        widget.update("" if not value else f"Strength: [b]{strength.label}[/b]: {strength.hint}")
        widget.set_classes(f"-{strength.label.replace(' ', '-')}")

    @on(Input.Submitted, "#user")
    def _user_entered(self) -> None:
        self.query_one("#passphrase", Input).focus()

    @on(Input.Submitted, "#passphrase")
    def _passphrase_entered(self) -> None:
        if self.creating:
            self.query_one("#confirm", Input).focus()
        else:
            self.submit()

    @on(Input.Submitted, "#confirm")
    @on(Button.Pressed, "#submit")
    def submit(self) -> None:
        user = self.query_one("#user", Input).value.strip().lower()
        passphrase = self.query_one("#passphrase", Input).value
        if not user:
            self.notify("Type a user name first (or press Ctrl+O for the demo profile).", severity="warning")
            self.query_one("#user", Input).focus()
            return
        if user == DEMO_USER:
            self.action_demo()
            return
        if self.creating:
            confirm = self.query_one("#confirm", Input).value
            if len(passphrase) < MIN_PASSPHRASE:
                self.notify(f"Choose a passphrase of at least {MIN_PASSPHRASE} characters; a few unrelated words work well.",
                            severity="error")
                return
            if confirm != passphrase:
                self.notify("The two passphrases differ: type the same passphrase in both boxes.", severity="error")
                self.query_one("#confirm", Input).value = ""
                self.query_one("#confirm", Input).focus()
                return
        elif not passphrase:
            self.notify(f"Type the passphrase of {user!r}.", severity="warning")
            self.query_one("#passphrase", Input).focus()
            return
        self.set_busy(True, "Creating the vault…" if self.creating else "Unlocking…")
        self._open(user, passphrase, self.creating)

    @on(Button.Pressed, "#demo")
    def action_demo(self) -> None:
        self.set_busy(True, "Opening the demo profile (the first start prepares the sample data)…")
        self._open(None, None, False)

    # ------------------------------------------------------------------ work

    @work(thread=True, exclusive=True, group="unlock", exit_on_error=False)
    def _open(self, user: str | None, passphrase: str | None, create: bool) -> None:
        app = self.localpers
        try:
            if user is None:
                vault = open_vault(None, None, home=app.users_root)
            elif create:
                vault = Vault.create(user, passphrase or "", home=app.users_root, kdf_seconds=app.kdf_seconds)
            else:
                vault = Vault.open(user, passphrase or "", home=app.users_root)
        except WrongPassphrase:
            self.post_message(self.Failed(f"Wrong passphrase for {user!r}. Check Caps Lock and try again."))
            return
        except Exception as exc:  # shown to the user, who can fix the input and retry
            self.post_message(self.Failed(describe_error(exc, "Opening the vault")))
            return
        self.post_message(self.Opened(vault))

    class Opened(Message):
        """The unlock worker opened a vault."""

        def __init__(self, vault: Vault) -> None:
            super().__init__()
            self.vault = vault

    class Failed(Message):
        """The unlock worker could not open the vault; ``reason`` says why and what to do."""

        def __init__(self, reason: str) -> None:
            super().__init__()
            self.reason = reason

    def on_unlock_screen_opened(self, message: Opened) -> None:
        self._opened(message.vault)

    def on_unlock_screen_failed(self, message: Failed) -> None:
        self._failed(message.reason)

    def _failed(self, message: str) -> None:
        self.set_busy(False)
        self.notify(message, title="Could not open", severity="error", timeout=10)
        passphrase = self.query_one("#passphrase", Input)
        passphrase.value = ""
        passphrase.focus()

    def _opened(self, vault: object) -> None:
        self.set_busy(False)
        for field in ("#passphrase", "#confirm"):
            self.query_one(field, Input).value = ""
        self.localpers.unlocked(vault)

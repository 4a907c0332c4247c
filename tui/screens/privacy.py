"""Privacy: what is stored (counts by kind, sizes), the disclosure ledger, export, and erasing the user."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Button, DataTable, Static

from localpers.vault import export_jsonl, write_backup

from ..widgets import cell, human_bytes, relative_day, split_width
from .base import TaskScreen, vault_work
from .dialogs import ConfirmScreen, PathScreen

# What each vault table holds, in words a user knows.
TABLE_WORDS = {
    "items": "texts, all kinds",
    "interactions": "ratings, feedback",
    "features": "profile facts",
    "drafts": "drafts, your edits",
    "ledger": "disclosures",
    "blobs": "index and adapters",
    "cache": "embeddings, caches",
    "imports": "imports in progress",
    "fingerprints": "duplicate checks",
}


class PrivacyScreen(TaskScreen):
    """Everything the vault holds, every disclosure, and the ways out: export and erase."""

    MODE = "privacy"
    HELP_TITLE = "Privacy"
    BINDINGS = [
        Binding("b", "backup", "Backup"),
        Binding("e", "export", "Export plain"),
        Binding("x", "erase", "Erase user"),
        Binding("r", "refresh_stats", "Refresh"),
    ]
    # The command palette's entries: (name, help, action); the key comes from BINDINGS.
    PALETTE = [
        ("Back up the vault (encrypted)", "Privacy: write an encrypted backup file", "backup"),
        ("Export everything as plain text", "Privacy: decrypted JSON Lines, for you to keep", "export"),
        ("Erase this user", "Privacy: delete the vault for good", "erase"),
    ]

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="privacy-columns"):
            yield DataTable(id="stored", cursor_type="none", show_cursor=False)
            yield DataTable(id="ledger", cursor_type="row")
        yield Static("", id="stored-total")
        with Horizontal(id="privacy-buttons"):
            yield Button("Backup (b)", id="backup")
            yield Button("Export plain (e)", id="export")
            yield Button("Erase user (x)", variant="error", id="erase")

    def on_mount(self) -> None:
        stored = self.query_one("#stored", DataTable)
        stored.border_title = "Stored, all encrypted"
        stored.add_column("Count", key="count", width=5)
        stored.add_column("What", key="what", width=19)  # fits the narrow layout's 32 columns
        self.query_one("#ledger", DataTable).border_title = "Disclosure ledger (Enter: in full)"
        self.ledger_rows: list[dict] = []
        self._fill_ledger()
        self.load()

    def on_resize(self) -> None:
        self._fill_ledger()

    def _fill_ledger(self) -> None:
        """(Re)build the ledger table so its columns fit its width; long cells end with '…'."""
        table = self.query_one("#ledger", DataTable)
        row = table.cursor_row
        # The ledger gets what the "stored" table (32 or 40 wide, see app.tcss) leaves, less its border.
        width = max(self.size.width, 80) - (32 if self.size.width < 100 else 40) - 2
        why, to = split_width(width, [9, 7], [0.45, 0.55], minimum=6)
        table.clear(columns=True)
        table.add_column("When", key="when", width=9)
        table.add_column("Why", key="why", width=why)
        table.add_column("To", key="to", width=to)
        table.add_column("Shared", key="shared", width=7)
        for entry in self.ledger_rows:
            table.add_row(cell(relative_day(entry.get("time"))), cell(entry.get("purpose") or ""),
                          cell(entry.get("recipient") or ""), _shared(entry), key=str(entry.get("id")))
        if self.ledger_rows:
            table.move_cursor(row=min(max(row, 0), len(self.ledger_rows) - 1))

    def on_screen_resume(self) -> None:
        if self.is_mounted:
            self.load()

    # ------------------------------------------------------------------ loading

    @vault_work(group="privacy", exclusive=True)
    def load(self) -> None:
        try:
            stats = self.session.vault.stats()
            ledger = self.session.ledger()
        except Exception as exc:
            self.report(exc, "Reading the vault")
            return
        self.from_thread(self._show, stats, ledger)

    def _show(self, stats: dict, ledger: list[dict]) -> None:
        stored = self.query_one("#stored", DataTable)
        stored.clear()
        for kind, n in sorted(stats["items_by_kind"].items()):
            stored.add_row(Text(str(n), justify="right"), Text(f"  {kind or 'other'} texts", overflow="ellipsis", no_wrap=True))
        for table, n in stats["tables"].items():
            stored.add_row(Text(str(n), justify="right"), cell(TABLE_WORDS.get(table, table)))
        demo = " Demo profile: synthetic data." if stats.get("demo") else ""
        self.query_one("#stored-total", Static).update(
            f"On disk: [b]{human_bytes(stats['bytes'], coarse=True)}[/b], sealed with AES-256-GCM; only ids, kinds "
            f"and days are in the clear.{demo} " + (
                "Nothing has been disclosed yet." if not ledger else "Enter on a disclosure shows it in full."))
        self.ledger_rows = ledger
        self._fill_ledger()

    @on(DataTable.RowSelected, "#ledger")
    def _open_entry(self, event: DataTable.RowSelected) -> None:
        from .dialogs import TextScreen

        row = next((r for r in self.ledger_rows if str(r.get("id")) == event.row_key.value), None)
        if row is None:
            return
        lines = [f"When: {relative_day(row.get('time'))}.", *row.get("sentences", [])]
        self.app.push_screen(TextScreen("Disclosure", "\n\n".join(lines)))

    def action_refresh_stats(self) -> None:
        self.load()

    # ------------------------------------------------------------------ export and erase

    @on(Button.Pressed, "#backup")
    def action_backup(self) -> None:
        self._ask_path("Write an encrypted backup to (restore it with your passphrase):", ".backup", "Back up",
                       plaintext=False)

    @on(Button.Pressed, "#export")
    def action_export(self) -> None:
        self._ask_path("Export every record DECRYPTED to this file (anyone who can read the file can read your "
                       "data):", "-export.jsonl", "Export", plaintext=True)

    def _ask_path(self, prompt: str, suffix: str, action: str, *, plaintext: bool) -> None:
        """Ask where to write (a file in the home folder by default), then export or back up there."""
        default = str(Path.home() / f"localpers-{self.session.vault.user}{suffix}")

        def chosen(path: str | None) -> None:
            if path:
                self._export(path, plaintext=plaintext)

        self.app.push_screen(PathScreen(prompt, value=default, action=action), chosen)

    @vault_work(group="export")
    def _export(self, path: str, plaintext: bool) -> None:
        vault = self.session.vault
        target = Path(path).expanduser()
        try:
            if plaintext:
                n = export_jsonl(vault, target)
                message = f"Exported {n} records to {target}. It is plain text: keep it safe or delete it."
            else:
                written = write_backup(vault, target)
                message = f"Encrypted backup written to {written}."
        except Exception as exc:
            self.report(exc, "Exporting" if plaintext else "Backing up")
            return
        self.app.call_from_thread(self.notify, message, title="Done", timeout=8)

    @on(Button.Pressed, "#erase")
    def action_erase(self) -> None:
        user = self.session.vault.user

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._erase()

        self.app.push_screen(ConfirmScreen(
            f"Erase everything of {user!r}: texts, feedback, drafts, adapters, the ledger? "
            "The files are overwritten and cannot be recovered.", confirm_label="Erase for good",
            type_to_confirm=user), confirmed)

    @work(thread=True, group="erase", exclusive=True, exit_on_error=False)
    def _erase(self) -> None:  # not vault_work: erasing waits for every vault worker to finish
        user = self.session.vault.user
        try:
            self.session.erase_user()
        except Exception as exc:
            self.report(exc, "Erasing the user")
            return
        self.app.call_from_thread(self.localpers.erased, user)


def _shared(row: dict) -> str:
    revealed = row.get("revealed")
    withheld = row.get("withheld")
    n_rev = len(revealed) if isinstance(revealed, (list, dict)) else 0
    n_all = n_rev + (len(withheld) if isinstance(withheld, (list, dict)) else 0)
    return f"{n_rev} of {n_all}" if n_all else "none"

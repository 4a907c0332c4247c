"""History: browse what you wrote, search it by meaning or by keyword, open, delete, import.

Deleting is for good: the item, its embedding and its index entry are removed and
the vault file is scrubbed (see :meth:`localpers.history.History.delete`). Imports
run in a worker with a progress bar and can be cancelled; importing the same source
again resumes where it stopped.
"""

from __future__ import annotations

import threading
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, ProgressBar, Select, Static

from localpers.history import heading

from ..widgets import first_line, relative_day
from .base import TaskScreen, vault_work
from .dialogs import ConfirmScreen, PathScreen, TextScreen

EMPTY_HISTORY = """[b]Your history is empty.[/b] Drafts and your adapter learn from texts you wrote.

Press [b]i[/b] to import them: sent mail (an mbox file, a Maildir folder, .eml files) or a folder of notes
(.txt, .md); JSONL and a ratings CSV work too. Importing the same source again adds nothing twice.
From a shell: [b]localpers import ~/Mail/sent.mbox --from you@example.org --user {user}[/b]

Then train your adapter: [b]F5[/b] Adapter, then [b]t[/b]."""

SEARCH_MODES = [("Meaning", "dense"), ("Keyword", "keyword"), ("Both", "hybrid")]
PAGE = 500  # items listed when browsing (newest first); search finds the rest


def item_title(kind: str, content: str, metadata: dict) -> str:
    """What a list shows for an item: its subject or title, else its first line."""
    return heading(metadata) or first_line(content, 80)


class HistoryScreen(TaskScreen):
    """Your texts, newest first; search narrows the list."""

    MODE = "history"
    HELP_TITLE = "History"
    BINDINGS = [
        Binding("slash", "focus_search", "Search"),
        Binding("enter", "open_item", "Open", show=False),
        Binding("delete,x", "delete_item", "Delete"),
        Binding("i", "import_source", "Import"),
        Binding("c", "cancel_import", "Cancel import", show=False),
        Binding("escape", "clear_search", "Show all", show=False),
    ]
    # The command palette's entries: (name, help, action); the key comes from BINDINGS.
    PALETTE = [
        ("Search history", "History: find texts by meaning or keyword", "focus_search"),
        ("Import a source into history", "History: mbox, Maildir, .eml, notes folder, JSONL, CSV",
         "import_source"),
        ("Delete the selected history item", "History: erase it for good", "delete_item"),
        ("Cancel the running import", "History: stop after the current batch; importing again resumes",
         "cancel_import"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict] = {}  # item id -> {"title", "content", "kind", "created", "metadata"}
        self.importing: threading.Event | None = None
        self.query_text = ""

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="history-top"):
            yield Input(placeholder="search your history (Enter)", id="history-query")
            yield Select(SEARCH_MODES, value="dense", allow_blank=False, id="history-mode")
        yield Static(EMPTY_HISTORY, id="history-empty", classes="-hidden")
        yield DataTable(id="history-items", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="import-row", classes="-hidden"):
            yield ProgressBar(id="import-bar", show_eta=True)
            yield Static("", id="import-label")
        yield Static("", id="history-status")

    def on_mount(self) -> None:
        table = self.query_one("#history-items", DataTable)
        table.add_column("When", key="when", width=12)
        table.add_column("Kind", key="kind", width=6)
        table.add_column("Title", key="title")
        table.focus()
        self.load()

    # ------------------------------------------------------------------ listing and searching

    @vault_work(group="history-list", exclusive=True)
    def load(self) -> None:
        try:
            history = self.session.history()
            items = [(i.id, i.kind, i.created, i.content, i.metadata) for i in history.items(limit=PAGE)]
            total = history.count()
        except Exception as exc:
            self.report(exc, "Reading the history")
            return
        status = f"{total} texts" + (f", newest {PAGE} shown; search finds the rest" if total > PAGE else "")
        if self.session.vault.is_demo:
            status += " (demo: synthetic texts of a fictional writer)"
        self.from_thread(self._show, items, status + ". / search · Enter open · Del delete · i import")
        self.from_thread(self._show_empty, total == 0)

    def _show_empty(self, empty: bool) -> None:
        guide = self.query_one("#history-empty", Static)
        guide.update(EMPTY_HISTORY.format(user=self.session.vault.user))
        guide.set_class(not empty, "-hidden")

    @vault_work(group="history-list", exclusive=True)
    def search(self, text: str, mode: str) -> None:
        try:
            history = self.session.history()
            if mode == "keyword":
                found = history.bm25.search(text, 50)
                items = []
                for item_id, _ in found:
                    item = history.get(item_id)
                    if item is not None:
                        items.append((item.id, item.kind, item.created, item.content, item.metadata))
            else:
                hits = history.search(text, k=20, mode=mode)
                items = [(h.item_id, h.kind, h.created, h.content, h.metadata) for h in hits]
        except Exception as exc:
            self.report(exc, "Searching")
            return
        how = dict((v, k) for k, v in SEARCH_MODES)[mode].lower()
        self.from_thread(self._show, items, f"{len(items)} found for {text!r} (by {how}), best first. "
                                            "Esc shows everything.")

    def _show(self, items: list[tuple], status: str) -> None:
        table = self.query_one("#history-items", DataTable)
        table.clear()
        self.rows = {}
        for item_id, kind, created, content, metadata in items:
            title = item_title(kind, content, metadata or {})
            self.rows[item_id] = {"title": title, "content": content, "kind": kind, "created": created,
                                  "metadata": metadata or {}}
            table.add_row(relative_day(created), kind, title, key=item_id)
        self.query_one("#history-status", Static).update(status)

    @on(Input.Submitted, "#history-query")
    def _submitted(self) -> None:
        self.run_search()

    @on(Select.Changed, "#history-mode")
    def _mode_changed(self) -> None:
        if self.query_one("#history-query", Input).value.strip():
            self.run_search()

    def run_search(self) -> None:
        text = self.query_one("#history-query", Input).value.strip()
        if not text:
            self.load()
            return
        mode = str(self.query_one("#history-mode", Select).value)
        self.query_one("#history-status", Static).update("Searching…")
        self.search(text, mode)
        self.query_one("#history-items", DataTable).focus()

    def action_focus_search(self) -> None:
        self.query_one("#history-query", Input).focus()

    def action_clear_search(self) -> None:
        self.query_one("#history-query", Input).value = ""
        self.query_one("#history-items", DataTable).focus()
        self.load()

    # ------------------------------------------------------------------ open and delete

    @property
    def selected_id(self) -> str | None:
        table = self.query_one("#history-items", DataTable)
        if not self.rows or table.cursor_row < 0:
            return None
        try:
            return table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        except Exception:
            return None

    @on(DataTable.RowSelected, "#history-items")
    def action_open_item(self) -> None:
        item_id = self.selected_id
        if item_id is None:
            return
        row = self.rows[item_id]
        meta = row["metadata"]
        header = [f"{row['kind']} · {relative_day(row['created'])}"]
        if meta.get("to"):
            header.append(f"to {meta['to']}")
        self.app.push_screen(TextScreen(row["title"], row["content"], footer=" · ".join(header) + "   (Esc closes)"))

    def action_delete_item(self) -> None:
        item_id = self.selected_id
        if item_id is None:
            self.notify("Nothing selected to delete.", severity="warning")
            return
        title = self.rows[item_id]["title"]

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._delete(item_id, title)

        self.app.push_screen(ConfirmScreen(f"Delete {title!r} for good? Its text, embedding and index entry are "
                                           "erased and the vault is scrubbed.", confirm_label="Delete"), confirmed)

    @vault_work(group="history-delete")
    def _delete(self, item_id: str, title: str) -> None:
        try:
            found = self.session.history().delete(item_id)
        except Exception as exc:
            self.report(exc, "Deleting")
            return
        self.from_thread(self._deleted, item_id, title, found)

    def _deleted(self, item_id: str, title: str, found: bool) -> None:
        table = self.query_one("#history-items", DataTable)
        if item_id in self.rows:
            del self.rows[item_id]
            table.remove_row(item_id)
        self.notify(f"Deleted {title!r}." if found else f"{title!r} was already gone.", timeout=4)

    # ------------------------------------------------------------------ importing

    def action_import_source(self) -> None:
        if self.importing is not None:
            self.notify("An import is running; press c to cancel it first.", severity="warning")
            return

        def chosen(path: str | None) -> None:
            if path:
                self.start_import(path)

        self.app.push_screen(PathScreen("Import from (an mbox file, a Maildir, .eml, a notes folder, JSONL or a "
                                        "ratings CSV):", action="Import"), chosen)

    def start_import(self, path: str) -> None:
        self.importing = self.session.stop_event()
        row = self.query_one("#import-row")
        row.remove_class("-hidden")
        bar = self.query_one("#import-bar", ProgressBar)
        bar.update(total=None, progress=0)
        self.query_one("#import-label", Static).update(f"Importing {path}… (c cancels)")
        self._import(path, self.importing)

    @vault_work(group="history-import")
    def _import(self, path: str, cancel: threading.Event) -> None:
        def progress(done: int, total: int | None, message: str) -> None:
            self.from_thread(self._progress, done, total, message)

        report = None
        try:
            history = self.session.history()
            # Loading the embedding model takes a while the first time: say so, rather than "0%" for all of it.
            self.from_thread(self._loading_model)
            history.embedder  # noqa: B018 (loads the model once per process)
            report = history.import_path(path, progress=progress, cancel=cancel)
        except Exception as exc:
            self.report(exc, f"Importing {path}")
        self.from_thread(self._imported, report)

    def _loading_model(self) -> None:
        self.query_one("#import-bar", ProgressBar).update(total=None)
        self.query_one("#import-label", Static).update("Loading the embedding model (once per session)…  (c cancels)")

    def _progress(self, done: int, total: int | None, message: str) -> None:
        bar = self.query_one("#import-bar", ProgressBar)
        bar.update(total=total or None, progress=done)
        self.query_one("#import-label", Static).update(message + "  (c cancels)")

    def _imported(self, report: Any) -> None:
        self.importing = None
        self.query_one("#import-row").add_class("-hidden")
        if report is not None:
            word = "Import finished" if report.finished else "Import stopped (run it again to resume)"
            self.notify(f"{word}: {report.summary()}", timeout=8,
                        severity="information" if report.finished else "warning")
        self.load()

    def action_cancel_import(self) -> None:
        if self.importing is None:
            self.notify("No import is running.", severity="warning")
            return
        self.importing.set()
        self.query_one("#import-label", Static).update("Cancelling after the current batch…")

"""Recommend: a ranked list with reasons; like / dislike / not interested with one key each.

Feedback is stored sealed in the vault and the list is recomputed at once (in a
worker), so the next list reflects it without a restart. Filters narrow the list
to a kind (book, film...) or a tag. One line under the list says which profile
facts the list used and which it withheld (see localpers.disclosure).
"""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, Select, Static

from ..widgets import cell, split_width
from .base import TaskScreen, vault_work

SIGNAL_WORDS = {"like": "Liked", "dislike": "Disliked", "not_interested": "Hidden (not interested)"}


class RecommendScreen(TaskScreen):
    """A ranked list from the catalog, with the reason for each item."""

    MODE = "recommend"
    HELP_TITLE = "Recommend"
    BINDINGS = [
        Binding("l", "feedback('like')", "Like"),
        Binding("d", "feedback('dislike')", "Dislike"),
        Binding("n", "feedback('not_interested')", "Not interested"),
        Binding("r", "refresh_list", "Refresh"),
        Binding("slash", "focus_filter", "Filter"),
        Binding("escape", "focus_list", "Back to list", show=False),
    ]
    # The command palette's entries: (name, help, action); the key comes from BINDINGS.
    PALETTE = [
        ("Like the selected item", "Recommend: more like this", "feedback('like')"),
        ("Dislike the selected item", "Recommend: less like this", "feedback('dislike')"),
        ("Not interested in the selected item", "Recommend: hide it", "feedback('not_interested')"),
        ("Refresh recommendations", "Recommend: compute the list again", "refresh_list"),
    ]
    LIST_SIZE = 20
    DEFAULT_CSS = """
    #rec-profile { height: auto; max-height: 2; padding: 0 1; color: $text-muted; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.recs: list[Any] = []
        self._shown_filters: tuple = (None, None)
        self.catalog: str | None = None  # the catalog the list comes from
        self._table_width = 0

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="rec-filters"):
            yield Select([], prompt="Catalog", id="rec-catalog", allow_blank=True)
            yield Select([], prompt="All kinds", id="rec-kind", allow_blank=True)
            yield Input(placeholder="tag filter, e.g. horror (Enter applies)", id="rec-tag")
        table: DataTable = DataTable(id="recs", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static("", id="rec-profile")
        yield Static("", id="rec-detail")

    def on_mount(self) -> None:
        self.query_one("#rec-catalog", Select).tooltip = "The catalog to recommend from (remembered)"
        self._fill_table()
        self.query_one("#recs", DataTable).focus()
        self.query_one("#rec-detail", Static).update("Preparing the catalog…")
        self.load(initial=True)

    def on_resize(self) -> None:
        if self.size.width != self._table_width:
            self._fill_table()

    def _fill_table(self) -> None:
        """(Re)build the table with its Title and Why columns sharing the screen's width."""
        table = self.query_one("#recs", DataTable)
        row = table.cursor_row
        self._table_width = self.size.width
        title, why = split_width(max(self.size.width, 80), [3, 6], [0.45, 0.55])
        table.clear(columns=True)
        table.add_column("#", key="rank", width=3)
        table.add_column("Title", key="title", width=title)
        table.add_column("Kind", key="kind", width=6)
        table.add_column("Why", key="why", width=why)  # fixed: an auto width is measured late and can show as 3
        for rank, rec in enumerate(self.recs, 1):
            table.add_row(str(rank), cell(rec.item.label()), rec.item.kind, cell(rec.reason), key=rec.item.id)
        if self.recs:
            table.move_cursor(row=min(max(row, 0), len(self.recs) - 1))

    # ------------------------------------------------------------------ computing the list

    def filters(self) -> tuple[list[str] | None, list[str] | None]:
        kind = self.query_one("#rec-kind", Select).value
        tag = self.query_one("#rec-tag", Input).value.strip()
        kinds = [str(kind)] if isinstance(kind, str) else None
        return kinds, ([tag] if tag else None)

    @vault_work(group="recommend", exclusive=True)
    def load(self, initial: bool = False, note: str = "") -> None:
        try:
            names, chosen = self.session.catalog_choice()
            if chosen is None:
                self.from_thread(self._ask_catalog, names)
                return
            kinds, tags = self.filters()
            recs = self.session.recommend(self.LIST_SIZE, kinds=kinds, tags=tags)
            kind_counts = self.session.catalog_kinds() if initial else None
        except Exception as exc:
            self.from_thread(self._failed, exc)
            return
        self.from_thread(self._show, recs, kind_counts, note, (kinds, tags), (names, chosen))

    def _failed(self, exc: BaseException) -> None:
        self.query_one("#rec-detail", Static).update("No recommendations: see the message in the corner.")
        self.report(exc, "Recommending")

    def _set_catalogs(self, names: list[str], chosen: str | None) -> None:
        select = self.query_one("#rec-catalog", Select)
        self.catalog = chosen
        with select.prevent(Select.Changed):  # showing the choice is not the user making one
            select.set_options([(name, name) for name in names])
            if chosen is not None:
                select.value = chosen

    def _ask_catalog(self, names: list[str]) -> None:
        """Several catalogs and none picked yet: ask, instead of failing."""
        self._set_catalogs(names, None)
        self.recs = []
        self.query_one("#recs", DataTable).clear()
        self.query_one("#rec-profile", Static).display = False
        self.query_one("#rec-detail", Static).update(
            f"There are {len(names)} catalogs ({_escape(', '.join(names))}). Choose the one to recommend from "
            "in the Catalog box above (Enter opens it); your choice is remembered.")
        self.query_one("#rec-catalog", Select).focus()

    @on(Select.Changed, "#rec-catalog")
    def _catalog_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str) and event.value != self.catalog:
            self.catalog = event.value
            self.query_one("#rec-detail", Static).update(f"Recommending from {_escape(event.value)}…")
            self._switch_catalog(event.value)

    @vault_work(group="recommend-catalog", exclusive=True)
    def _switch_catalog(self, name: str) -> None:
        try:
            self.session.choose_catalog(name)
        except Exception as exc:
            self.from_thread(self._failed, exc)
            return
        self.from_thread(self._catalog_switched, name)

    def _catalog_switched(self, name: str) -> None:
        with self.query_one("#rec-kind", Select).prevent(Select.Changed):
            self.query_one("#rec-kind", Select).clear()
        self.load(True, f"Recommending from the catalog {name!r} (remembered).")
        self.action_focus_list()

    def _show(self, recs: list[Any], kind_counts: dict[str, int] | None, note: str, used: tuple,
              catalogs: tuple[list[str], str]) -> None:
        self._set_catalogs(*catalogs)
        if kind_counts is not None:
            select = self.query_one("#rec-kind", Select)
            select.set_options([(f"{kind or 'other'} ({n})", kind) for kind, n in kind_counts.items()])
        self._shown_filters = used
        self.recs = recs
        line = profile_line(getattr(recs, "disclosure", None))
        if catalogs[1] == "demo" and not self.session.vault.is_demo:
            line = ("From the bundled demo catalog (public-domain books and films); import your own with "
                    "`localpers catalog import FILE`. " + line)
        self.query_one("#rec-profile", Static).update(_escape(line))
        self.query_one("#rec-profile", Static).display = bool(line)
        self._fill_table()
        table = self.query_one("#recs", DataTable)
        if recs:
            self._describe(table.cursor_row)
        else:
            kinds, tags = self.filters()
            self.query_one("#rec-detail", Static).update(
                "Nothing matches these filters: clear the tag or kind filter." if (kinds or tags) else
                "Nothing left to recommend from this catalog.")
        if note:
            self.notify(note, timeout=3)

    # ------------------------------------------------------------------ selection and details

    @property
    def selected(self) -> Any:
        table = self.query_one("#recs", DataTable)
        if not self.recs or table.cursor_row < 0 or table.cursor_row >= len(self.recs):
            return None
        return self.recs[table.cursor_row]

    @on(DataTable.RowHighlighted, "#recs")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._describe(event.cursor_row)

    def _describe(self, row: int) -> None:
        if not (0 <= row < len(self.recs)):
            return
        rec = self.recs[row]
        item = rec.item
        extra = []
        if item.tags:
            extra.append(", ".join(item.tags))
        for key in ("author", "director"):
            if item.attrs.get(key):
                extra.append(f"{key}: {item.attrs[key]}")
        text = item.text.replace("\n", " ")
        self.query_one("#rec-detail", Static).update(
            f"[b]{_escape(item.label())}[/b]  [dim]{_escape(' · '.join(extra))}[/dim]\n"
            f"{_escape(text)}\n[i]{_escape(rec.reason)}[/i]")

    # ------------------------------------------------------------------ actions

    def action_feedback(self, signal: str) -> None:
        rec = self.selected
        if rec is None:
            self.notify("No item selected: move to one with the arrow keys.", severity="warning")
            return
        self._record(rec.item.id, rec.item.label(), signal)

    @vault_work(group="feedback")
    def _record(self, item_id: str, title: str, signal: str) -> None:
        try:
            self.session.feedback(item_id, signal)
        except Exception as exc:
            self.report(exc, "Saving your feedback")
            return
        self.from_thread(self.load, False, f"{SIGNAL_WORDS[signal]}: {title}. The list is updated.")

    def action_refresh_list(self) -> None:
        self.load()

    def action_focus_filter(self) -> None:
        self.query_one("#rec-tag", Input).focus()

    def action_focus_list(self) -> None:
        self.query_one("#recs", DataTable).focus()

    @on(Select.Changed, "#rec-kind")
    def _kind_changed(self) -> None:
        if self.filters() != self._shown_filters:
            self.load()

    @on(Input.Submitted, "#rec-tag")
    def _tag_changed(self) -> None:
        self.load()
        self.action_focus_list()


def profile_line(chosen: Any) -> str:
    """What the list used from the profile, e.g. ``Profile used: classic_share → classic titles · withheld: age``."""
    if chosen is None:
        return ""
    used = ", ".join(chosen.used) or "none"
    settled = f" → {chosen.decision} titles" if chosen.guaranteed else " (era not settled)"
    return f"Profile used: {used}{settled} · withheld: {', '.join(chosen.withheld) or 'none'}"


def _escape(text: str) -> str:
    from textual.markup import escape

    return escape(text or "")

"""Ratings and other interactions from a CSV (or TSV, or RecBole ``.inter``) file.

Each row becomes a row of ``vault.interactions``: ``signal`` (clear: a short word such
as "rating", "like", "read"), ``time`` (clear, rounded to the day), and sealed
``item`` (the item's id in its catalog), ``value`` (the rating, a number) and
``metadata`` (the row's other columns). This is the table the recommender reads.

Columns are found by name (case-insensitive; RecBole's ``name:type`` headers work):

=========  ========================================================================
role       first column found among
=========  ========================================================================
item       item_id, item, movie_id, movieid, product_id, book_id, track_id, asin, isbn, title, name, id
value      rating, value, score, stars, count
signal     signal, event, action, interaction, type, event_type
time       timestamp, time, date, datetime, created, created_at, watched_at
user       user_id, user, userid, customer_id, reviewer_id
=========  ========================================================================

or named explicitly with ``columns={"item": "asin", "value": "overall"}``. Without a
signal column the signal is "rating" for a rating/score/stars column, else "interaction".
When the file has rows of several users, ``user_id`` picks the user's own rows (the
others are skipped); without it the import stops and asks.

Example::

    >>> from localpers.sources.interactions import CsvSource
    >>> src = CsvSource(Path("ml-100k.inter"), user_id="196")    # doctest: +SKIP
    >>> row = next(o for o in src.scan() if hasattr(o, "item"))  # doctest: +SKIP
    >>> row.item, row.signal, row.value                          # doctest: +SKIP
    ('242', 'rating', 3.0)
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import ratings
from ..errors import LocalpersError
from . import Interaction, Outcome, Rejected, Skipped, Source, at_line_start, decode_text, file_identity, parse_time, read_lines

COLUMN_GUESSES: dict[str, tuple[str, ...]] = {
    "item": ("item_id", "item", "movie_id", "movieid", "product_id", "book_id", "track_id", "asin", "isbn", "title",
             "name", "id"),
    "value": ("rating", "value", "score", "stars", "count"),
    "signal": ("signal", "event", "action", "interaction", "type", "event_type"),
    "time": ("timestamp", "time", "date", "datetime", "created", "created_at", "watched_at"),
    "user": ("user_id", "user", "userid", "customer_id", "reviewer_id"),
}
SIGNAL = re.compile(r"^[a-z][a-z0-9_-]{0,23}$")
MAX_ROW_BYTES = 1024 * 1024
MAX_ROW_LINES = 64  # a quoted field may span lines, up to this many
USER_SAMPLE = 2000


def _some(names: list[str], n: int = 8, width: int = 24) -> str:
    """The first column names, each cut short: a binary "header" must not flood the error line."""
    shown = [name if len(name) <= width else name[:width] + "…" for name in names[:n]]
    return ", ".join(shown) + (f" and {len(names) - n} more" if len(names) > n else "")


def _column_name(raw: str) -> str:
    return raw.strip().lstrip("\ufeff").split(":", 1)[0].strip().lower()


class CsvSource(Source):
    """A table of interactions, row by row. Position: ``{"offset": byte after the row, "n": rows done}``."""

    format = "csv"
    unit = "bytes"

    def __init__(self, path: Path, *, columns: dict[str, str] | None = None, user_id: str | None = None,
                 rating_scale: str | tuple[float, float] | None = None) -> None:
        super().__init__(path)
        self.rating_scale = ratings.parse_scale(rating_scale)  # ratings are stored as stars (localpers.ratings)
        self.user_id = None if user_id is None else str(user_id).strip()
        self._wanted = {role: _column_name(name) for role, name in (columns or {}).items() if name}
        unknown = set(self._wanted) - set(COLUMN_GUESSES)
        if unknown:
            raise LocalpersError(f"unknown column role(s) {', '.join(sorted(unknown))}; use {', '.join(COLUMN_GUESSES)}")
        self._layout: tuple[str, list[str], int, dict[str, str]] | None = None

    def identity(self) -> dict:
        return file_identity(self.path)

    def can_resume(self, position: Any) -> bool:
        return isinstance(position, dict) and at_line_start(self.path, position.get("offset"))

    def layout(self) -> tuple[str, list[str], int, dict[str, str]]:
        """(delimiter, column names, byte offset after the header, role -> column)."""
        if self._layout is None:
            with open(self.path, "rb") as f:
                header = next(((end, line) for _, end, line in read_lines(f, 0, MAX_ROW_BYTES)
                               if line is None or line.strip()), None)
            if header is None or header[1] is None:
                raise LocalpersError(f"{self.path.name} has no header line naming its columns")
            end, line = header
            text = decode_text(line).rstrip("\r\n")
            if self.path.suffix.lower() in (".tsv", ".inter"):
                delimiter = "\t"
            else:
                delimiter = max("\t,;|", key=text.count) if any(c in text for c in "\t,;|") else ","
            try:
                names = [_column_name(c) for c in next(csv.reader([text], delimiter=delimiter))]
            except csv.Error as exc:
                raise LocalpersError(f"{self.path.name} is not a CSV file: its header line cannot be split into "
                                     "columns (binary data?); check the file, or name another --format") from None
            roles = {}
            for role, guesses in COLUMN_GUESSES.items():
                if role in self._wanted:
                    if self._wanted[role] not in names:
                        raise LocalpersError(f"{self.path.name} has no column {self._wanted[role]!r} "
                                             f"(its columns: {', '.join(names)})")
                    roles[role] = self._wanted[role]
                else:
                    found = next((g for g in guesses if g in names and g not in roles.values()), None)
                    if found:
                        roles[role] = found
            if "item" not in roles:
                raise LocalpersError(f"cannot find the item column of {self.path.name} (its columns: "
                                     f"{_some(names)}); name it with --column item=NAME")
            if self.user_id is not None and "user" not in roles:
                raise LocalpersError(f"{self.path.name} has no user column, so --user-id cannot pick rows")
            self._layout = (delimiter, names, end, roles)
        return self._layout

    def _check_users(self) -> None:
        """Refuse to mix several people's rows into one vault unless told whose rows to keep."""
        _, _, _, roles = self.layout()
        if "user" not in roles or self.user_id is not None:
            return
        users = set()
        for i, outcome in enumerate(self._rows(None, check=False)):
            if i >= USER_SAMPLE:
                break
            if isinstance(outcome, Interaction):
                users.add(outcome.metadata.get("_user"))
        if len(users) > 1:
            raise LocalpersError(f"{self.path.name} has rows of several users (column {roles['user']!r}); "
                                 "pass --user-id to import yours")

    def scan(self, position: Any = None) -> Iterator[Outcome]:
        self._check_users()
        for outcome in self._rows(position):
            if isinstance(outcome, Interaction):
                outcome.metadata.pop("_user", None)
            yield outcome

    def _rows(self, position: Any, check: bool = True) -> Iterator[Outcome]:
        delimiter, names, header_end, roles = self.layout()
        start = int(position["offset"]) if position else header_end
        n = int(position["n"]) if position else 0
        pending: list[str] = []
        with open(self.path, "rb") as f:
            for _, end, line in read_lines(f, start, MAX_ROW_BYTES):
                if line is None:
                    n += 1
                    pending = []
                    yield Rejected(f"{self.path.name} row {n}", "row longer than 1 MB", {"offset": end, "n": n}, end)
                    continue
                pending.append(decode_text(line))
                joined = "".join(pending)
                # An odd number of quotes: a quoted field goes on to the next line.
                if delimiter != "\t" and joined.count('"') % 2 and len(pending) < MAX_ROW_LINES:
                    continue
                pending = []
                if not joined.strip():
                    continue
                n += 1
                yield self.parse_row(joined, f"{self.path.name} row {n}", {"offset": end, "n": n}, end)
            if pending and "".join(pending).strip():  # an unterminated quote at the end of the file
                n += 1
                yield Rejected(f"{self.path.name} row {n}", "unterminated quoted field", {"offset": f.tell(), "n": n},
                               f.tell())

    def parse_row(self, text: str, ref: str, position: Any = None, done: int = 0) -> Outcome:
        """One row's text to an Interaction, a Skipped or a Rejected (used by :meth:`scan` and the fuzz tests)."""
        delimiter, names, _, roles = self.layout()
        try:
            quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
            cells = next(csv.reader([text.rstrip("\r\n")], delimiter=delimiter, quoting=quoting), [])
        except csv.Error as exc:
            return Rejected(ref, f"malformed row ({exc})", position, done)
        if len(cells) != len(names):
            return Rejected(ref, f"expected {len(names)} columns, found {len(cells)}", position, done)
        row = {name: cell.strip() for name, cell in zip(names, cells)}
        user = row.get(roles.get("user", ""), "")
        if self.user_id is not None and user != self.user_id:
            return Skipped(ref, "another user's row", position, done)
        item = row[roles["item"]]
        if not item:
            return Rejected(ref, f"empty {roles['item']!r}", position, done)
        if len(item) > 500:
            return Rejected(ref, f"{roles['item']!r} longer than 500 characters", position, done)
        value: Any = None
        if "value" in roles and row[roles["value"]]:
            try:
                value = float(row[roles["value"]])
            except ValueError:
                return Rejected(ref, f"{roles['value']!r} is not a number", position, done)
            if not math.isfinite(value):
                return Rejected(ref, f"{roles['value']!r} is not a finite number", position, done)
        metadata: dict[str, Any] = {}
        if "signal" in roles:
            signal = row[roles["signal"]].lower()
            if not signal:
                return Rejected(ref, f"empty {roles['signal']!r}", position, done)
            if not SIGNAL.match(signal):  # the signal is stored in the clear: only short words qualify
                metadata["signal"], signal = row[roles["signal"]], "interaction"
        else:
            signal = "rating" if roles.get("value") in ("rating", "stars", "score") else "interaction"
        if signal == "rating" and value is not None:
            try:
                value = ratings.to_stars(value, self.rating_scale)
            except LocalpersError as exc:
                return Rejected(ref, f"{exc} (declare the file's scale with --rating-scale LOW-HIGH)", position, done)
        when = None
        if "time" in roles and row[roles["time"]]:
            when = parse_time(row[roles["time"]])
            if when is None:
                return Rejected(ref, f"unreadable {roles['time']!r}", position, done)
        used = set(roles.values())
        metadata.update({k: v for k, v in row.items() if k not in used})
        metadata["_user"] = user
        return Interaction(item, signal, ref, position, done, value=value, time=when, metadata=metadata)

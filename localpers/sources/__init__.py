"""Importers that stream a user's own writing and activity out of files.

Each importer is a :class:`Source`: ``scan(position)`` yields one *outcome* per
record it meets, in file order, without ever holding the whole archive in memory:

- :class:`Record` -- a text to keep (an email the user sent, a note, a JSONL line);
- :class:`Interaction` -- a rating or other signal from a CSV of activity;
- :class:`Rejected` -- a record that could not be used, with the reason
  (malformed, forwarded, near-empty, not UTF-8, ...);
- :class:`Skipped` -- a record that is fine but not the user's (mail someone else
  sent, another user's ratings), counted by reason.

Every outcome carries ``position``: a small JSON value to hand back to
``scan`` to continue right after it (an interrupted import resumes there), and
``done``: how far through the source it is, in ``source.unit`` (bytes or files),
for progress bars.

=============  ==========================================  ==============
format         what                                        module
=============  ==========================================  ==============
``mbox``       one mbox file (Thunderbird, Gmail Takeout)  :mod:`.mail`
``maildir``    a Maildir folder (cur/ new/, Maildir++)      :mod:`.mail`
``eml``        one ``.eml`` message file                    :mod:`.mail`
``notes``      a folder of ``.txt`` / ``.md`` files (or one) :mod:`.notes`
``jsonl``      one JSON object a line, with a text field    :mod:`.jsonl`
``csv``        ratings / interactions (CSV, TSV, RecBole)   :mod:`.interactions`
=============  ==========================================  ==============

Example::

    >>> from localpers.sources import open_source
    >>> source = open_source("~/notes")                           # doctest: +SKIP
    >>> for outcome in source.scan(None):                         # doctest: +SKIP
    ...     print(type(outcome).__name__, outcome.ref)
    Record journal/2023-01-02.md
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Union

from ..errors import LocalpersError

# A record bigger than this is rejected rather than read (one JSONL line, one note, one CSV row).
MAX_RECORD_BYTES = 16 * 1024 * 1024
# Text longer than this is cut (and the cut noted in the metadata): nobody writes a 200k-character email.
MAX_TEXT_CHARS = 200_000


@dataclass
class Record:
    """A text to import as a vault item."""

    content: str
    kind: str
    ref: str  # where it came from, for messages: "sent.mbox#12", "notes/a.md", "emails.jsonl:40"
    position: Any
    done: int
    created: float | None = None  # seconds since the epoch; None = now
    metadata: dict = field(default_factory=dict)


@dataclass
class Interaction:
    """One row of activity: the user rated, liked or read ``item``."""

    item: str
    signal: str
    ref: str
    position: Any
    done: int
    value: Any = None
    time: float | None = None
    metadata: dict = field(default_factory=dict)


@dataclass
class Rejected:
    """A record that could not be imported, and why."""

    ref: str
    reason: str
    position: Any
    done: int


@dataclass
class Skipped:
    """A sound record that is not the user's (counted by reason, not listed)."""

    ref: str
    reason: str
    position: Any
    done: int


Outcome = Union[Record, Interaction, Rejected, Skipped]


class Source:
    """Base class of the importers. Subclasses set the attributes and implement :meth:`scan`."""

    format: str = ""
    unit: str = "bytes"  # what ``done`` and :meth:`total` count: "bytes" or "files"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.notes: list[str] = []  # things worth telling the user (an inferred address, ...)

    def total(self) -> int | None:
        """How many units the whole source holds (for progress and ETA)."""
        return self.path.stat().st_size if self.path.is_file() else None

    def identity(self) -> dict:
        """What must not change for a saved position to stay valid (checked before resuming)."""
        return {}

    def can_resume(self, position: Any) -> bool:
        """Whether ``position`` (saved from an earlier scan) is still a valid place to continue from."""
        return False

    def scan(self, position: Any = None) -> Iterator[Outcome]:
        """Yield one outcome per record, starting right after ``position`` (None: the beginning)."""
        raise LocalpersError(f"{type(self).__name__} cannot be scanned")

    def describe(self) -> str:
        return f"{self.format} {self.path}"


class FileListSource(Source):
    """A source of one record per file, read in sorted order (Maildir, a notes folder).

    Position: ``{"last": relative path of the last file done, "n": files done}``; the rest
    of the source is exactly the files that sort after ``last``. Subclasses list the files.
    """

    unit = "files"

    def files(self) -> list[str]:
        """Relative paths of the files, sorted."""
        raise LocalpersError(f"{type(self).__name__} cannot list its files")

    def total(self) -> int | None:
        return len(self.files())

    def can_resume(self, position: Any) -> bool:
        return isinstance(position, dict) and isinstance(position.get("last"), str)

    def remaining(self, position: Any = None) -> Iterator[tuple[int, str, dict]]:
        """``(n, relative path, position after it)`` for every file after ``position``."""
        files = self.files()
        start = bisect.bisect_right(files, position["last"]) if position else 0
        for i in range(start, len(files)):
            yield i + 1, files[i], {"last": files[i], "n": i + 1}


# ---------------------------------------------------------------------- shared helpers


def read_lines(f: BinaryIO, start: int = 0, max_len: int = MAX_RECORD_BYTES) -> Iterator[tuple[int, int, bytes | None]]:
    """Yield ``(start_offset, end_offset, line)`` for each line of a binary file from ``start``.

    A line longer than ``max_len`` comes back as ``None`` (its bytes are skipped, never held),
    so one runaway line cannot exhaust memory. The last line may lack its newline.
    """
    f.seek(start)
    offset = start
    while True:
        line = f.readline(max_len + 1)
        if not line:
            return
        if len(line) > max_len and not line.endswith(b"\n"):
            size = len(line)
            del line
            while True:  # skip the rest of the runaway line a megabyte at a time
                part = f.readline(1 << 20)
                size += len(part)
                if not part or part.endswith(b"\n"):
                    break
            yield offset, offset + size, None
            offset += size
            continue
        yield offset, offset + len(line), line
        offset += len(line)


def decode_text(data: bytes, charset: str | None = None) -> str:
    """Bytes to text, trying the declared charset, then UTF-8, then Windows-1252; never raises."""
    for candidate in (charset, "utf-8", "cp1252"):
        if not candidate:
            continue
        try:
            return data.decode(candidate)
        except (LookupError, UnicodeDecodeError, TypeError, ValueError):
            continue
    return data.decode("latin-1")


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufeff]")


def clean_text(text: str) -> str:
    """Unix newlines, no control characters or lone surrogates, no runs of blank lines, trimmed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def parse_time(value: Any) -> float | None:
    """A timestamp from epoch seconds (or milliseconds), an ISO date, or a datetime; None if unreadable."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        t = value.timestamp() if value.tzinfo else value.replace(tzinfo=timezone.utc).timestamp()
    elif isinstance(value, date):
        t = datetime(value.year, value.month, value.day, tzinfo=timezone.utc).timestamp()
    elif isinstance(value, (int, float)):
        t = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 64:
            return None
        try:
            t = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("/", "-"))
            except ValueError:
                return None
            return parse_time(parsed)
    else:
        return None
    if t > 1e11:  # milliseconds
        t /= 1000.0
    # Outside 1970 .. 2200 is a broken value, not a date.
    if not (0 <= t < 7258118400) or t != t:
        return None
    return t


def open_source(path: str | Path, *, format: str | None = None, kind: str | None = None,
                sent_from: list[str] | str | None = None, text_field: str | None = None,
                columns: dict[str, str] | None = None, user_id: str | None = None,
                min_words: int = 3, rating_scale: str | None = None) -> Source:
    """Pick the importer for ``path`` (or the one named by ``format``) and configure it.

    ``kind`` overrides the kind stored with each item ("email", "note", ...).
    ``sent_from`` lists the user's own addresses (mail importers keep only what they sent).
    ``text_field`` names the JSONL field holding the text. ``columns`` and ``user_id``
    configure the CSV importer (see :mod:`localpers.sources.interactions`), ``rating_scale``
    declares its ratings' scale (``"1-10"``; default: 0.5-5 stars, see :mod:`localpers.ratings`).

    Raises :class:`LocalpersError` when the path is missing or its format unknown.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise LocalpersError(f"{path} does not exist")
    path = path.resolve()
    if not (path.is_file() or path.is_dir()):
        # A FIFO, socket or device (/dev/zero) could block or never end: refuse before reading a byte.
        raise LocalpersError(f"{path} is not a regular file or folder (a pipe, socket or device); "
                             "save what it holds to a file and import that")
    addresses = [sent_from] if isinstance(sent_from, str) else list(sent_from or [])
    fmt = (format or "").lower() or _guess_format(path, is_maildir, NOTE_SUFFIXES)
    if fmt == "mbox":
        return MboxSource(path, sent_from=addresses, kind=kind, min_words=min_words)
    if fmt == "maildir":
        return MaildirSource(path, sent_from=addresses, kind=kind, min_words=min_words)
    if fmt == "eml":
        return EmlSource(path, sent_from=addresses, kind=kind, min_words=min_words)
    if fmt == "notes":
        return NotesSource(path, kind=kind)
    if fmt == "jsonl":
        return JsonlSource(path, text_field=text_field, kind=kind)
    if fmt == "csv":
        return CsvSource(path, columns=columns, user_id=user_id, rating_scale=rating_scale)
    raise LocalpersError(f"unknown import format {fmt!r}; use one of: mbox, maildir, eml, notes, jsonl, csv")


def _guess_format(path: Path, is_maildir: Any, note_suffixes: tuple[str, ...]) -> str:
    if path.is_dir():
        return "maildir" if is_maildir(path) else "notes"
    suffix = path.suffix.lower()
    by_suffix = {".mbox": "mbox", ".mbx": "mbox", ".eml": "eml", ".jsonl": "jsonl", ".ndjson": "jsonl",
                 ".csv": "csv", ".tsv": "csv", ".inter": "csv"}
    if suffix in by_suffix:
        return by_suffix[suffix]
    if suffix in note_suffixes:
        return "notes"
    with open(path, "rb") as f:
        head = f.read(4096)
    stripped = head.lstrip()
    if head.startswith(b"From "):
        return "mbox"
    if stripped.startswith(b"{"):
        return "jsonl"
    raise LocalpersError(f"cannot tell what {path.name} holds; name the format with --format "
                         "(mbox, maildir, eml, notes, jsonl, csv)")


def file_identity(path: Path) -> dict:
    """A digest of a file's first 64 KiB: if it changed, a saved position no longer means anything."""
    with open(path, "rb") as f:
        return {"head": hashlib.sha256(f.read(65536)).hexdigest()}


def at_line_start(path: Path, offset: Any) -> bool:
    """True when ``offset`` is within ``path`` and right after a newline (or at 0)."""
    try:
        offset = int(offset)
        if offset == 0:
            return True
        if not 0 < offset <= path.stat().st_size:
            return False
        with open(path, "rb") as f:
            f.seek(offset - 1)
            return f.read(1) == b"\n"
    except (TypeError, ValueError, OSError):
        return False


# The readers, last: each of them builds on the names defined above.
from .interactions import CsvSource  # noqa: E402
from .jsonl import JsonlSource  # noqa: E402
from .mail import EmlSource, MaildirSource, MboxSource, is_maildir  # noqa: E402
from .notes import NOTE_SUFFIXES, NotesSource  # noqa: E402

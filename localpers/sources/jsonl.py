"""JSONL: one JSON object a line, the text in a named field.

The text field is ``text_field`` when given, else the first of ``email``, ``text``,
``content``, ``body``, ``message``, ``note`` that the object has (the Panza emails use
``email``). Every other field goes into the item's metadata (``subject``, ...). A
string ``kind`` field sets the item's kind; else it is "email" when the text came from
an ``email`` field and "text" otherwise. The date is read from ``date``, ``created``,
``timestamp``, ``time`` or ``sent`` when present.

Blank lines are ignored; every other line is either a Record or a Rejected with the
reason (not UTF-8, invalid JSON, not an object, no text field, empty text).

Example::

    >>> from localpers.sources.jsonl import JsonlSource
    >>> src = JsonlSource(Path("david.jsonl"))                  # doctest: +SKIP
    >>> next(src.scan()).metadata["subject"]                     # doctest: +SKIP
    "Follow-up from Last Week's event Event"
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import (MAX_RECORD_BYTES, MAX_TEXT_CHARS, Outcome, Record, Rejected, Source, at_line_start, clean_text,
               file_identity, parse_time, read_lines)

TEXT_FIELDS = ("email", "text", "content", "body", "message", "note")
TIME_FIELDS = ("date", "created", "created_at", "timestamp", "time", "sent", "sent_at")
KIND = re.compile(r"^[a-z][a-z0-9_-]{0,23}$")


class JsonlSource(Source):
    """A JSONL file, line by line. Position: ``{"offset": byte after the line, "n": lines done}``."""

    format = "jsonl"
    unit = "bytes"

    def __init__(self, path: Path, *, text_field: str | None = None, kind: str | None = None) -> None:
        super().__init__(path)
        self.text_field = text_field
        self.kind = kind

    def identity(self) -> dict:
        return file_identity(self.path)

    def can_resume(self, position: Any) -> bool:
        return isinstance(position, dict) and at_line_start(self.path, position.get("offset"))

    def scan(self, position: Any = None) -> Iterator[Outcome]:
        start = int(position["offset"]) if position else 0
        n = int(position["n"]) if position else 0
        with open(self.path, "rb") as f:
            for _, end, line in read_lines(f, start, MAX_RECORD_BYTES):
                n += 1
                if line is not None and not line.strip():
                    continue
                yield self.parse_line(line, f"{self.path.name}:{n}", {"offset": end, "n": n}, end)

    def parse_line(self, line: bytes | None, ref: str, position: Any = None, done: int = 0) -> Outcome:
        """One line's bytes to a Record or a Rejected (used by :meth:`scan` and the fuzz tests)."""
        if line is None:
            return Rejected(ref, f"line longer than {MAX_RECORD_BYTES // (1024 * 1024)} MB", position, done)
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Rejected(ref, f"not UTF-8 (byte {exc.start})", position, done)
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            return Rejected(ref, f"invalid JSON ({exc.msg} at column {exc.colno})", position, done)
        except (ValueError, RecursionError) as exc:
            return Rejected(ref, f"invalid JSON ({type(exc).__name__})", position, done)
        if not isinstance(obj, dict):
            return Rejected(ref, f"not a JSON object (a {type(obj).__name__})", position, done)
        field = self.text_field or next((f for f in TEXT_FIELDS if f in obj), None)
        if field is None:
            return Rejected(ref, f"no text field (looked for {', '.join(TEXT_FIELDS)}; use --text-field)", position, done)
        if field not in obj:
            return Rejected(ref, f"no {field!r} field", position, done)
        if not isinstance(obj[field], str):
            return Rejected(ref, f"{field!r} is not text", position, done)
        content = clean_text(obj[field])
        if not content:
            return Rejected(ref, f"empty {field!r}", position, done)
        metadata = {k: v for k, v in obj.items() if k not in (field, "kind")}
        if len(content) > MAX_TEXT_CHARS:
            content, metadata["truncated"] = content[:MAX_TEXT_CHARS], True
        own_kind = obj.get("kind")
        kind = self.kind or (own_kind if isinstance(own_kind, str) and KIND.match(own_kind) else None) \
            or ("email" if field == "email" else "text")
        created = next((t for t in (parse_time(obj.get(f)) for f in TIME_FIELDS if f in obj) if t is not None), None)
        return Record(content, kind, ref, position, done, created=created, metadata=metadata)

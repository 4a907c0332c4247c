"""Notes: a folder of ``.txt`` / ``.md`` files (searched recursively), or a single one.

Hidden files and folders (``.obsidian``, ``.git``) are left out. Each file is one item
of kind "note"; a Markdown front-matter block (``---`` ... ``---``) goes into the
metadata (its ``title``, ``date``, ``tags``), and the note's date is the front
matter's ``date`` or else the file's modification time.

Files are read in sorted order; the position after each is ``{"last": relative path,
"n": files done}``, so an interrupted import goes on with the files that sort after it.

Example::

    >>> from localpers.sources.notes import NotesSource
    >>> src = NotesSource(Path("~/notes").expanduser())      # doctest: +SKIP
    >>> [o.ref for o in src.scan()]                           # doctest: +SKIP
    ['2023/january.md', 'ideas.txt']
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from stat import S_ISREG
from typing import Any

from . import (MAX_RECORD_BYTES, MAX_TEXT_CHARS, FileListSource, Outcome, Record, Rejected, clean_text, decode_text,
               parse_time)

NOTE_SUFFIXES = (".txt", ".md", ".markdown", ".text")
_HEADING = re.compile(r"^#{1,6}\s+(.{1,200})$", re.MULTILINE)


def split_front_matter(text: str) -> tuple[dict[str, str], str]:
    """Pull a ``---`` front-matter block off the top of a note (simple ``key: value`` lines only).

    Example::

        >>> split_front_matter("---\\ntitle: Trip\\n---\\nPack light.")
        ({'title': 'Trip'}, 'Pack light.')
    """
    first = text.find("\n")
    if not text.startswith("---") or first < 0 or text[:first].strip() != "---":
        return {}, text
    end = text.find("\n---", first, 8192)
    if end < 0:
        return {}, text
    meta = {}
    for line in text[first + 1:end].splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and len(key) < 64:
            meta[key.strip().lower()] = value.strip().strip("'\"")[:1000]
    rest = text[end + 4:]
    newline = rest.find("\n")
    return meta, rest[newline + 1:] if newline >= 0 else ""


class NotesSource(FileListSource):
    """Text and Markdown files under a folder, one item each."""

    format = "notes"

    def __init__(self, path: Path, *, kind: str | None = None) -> None:
        super().__init__(path)
        self.kind = kind or "note"
        self._listing: list[str] | None = None

    @property
    def root(self) -> Path:
        return self.path.parent if self.path.is_file() else self.path

    def files(self) -> list[str]:
        """Relative paths (POSIX style) of the notes, sorted."""
        if self._listing is None:
            if self.path.is_file():
                self._listing = [self.path.name]
            else:
                names = []
                for folder, dirs, files in os.walk(self.path):
                    dirs[:] = [d for d in dirs if not d.startswith(".")]
                    rel = Path(folder).relative_to(self.path)
                    names.extend((rel / f).as_posix() for f in files
                                 if not f.startswith(".") and Path(f).suffix.lower() in NOTE_SUFFIXES)
                self._listing = sorted(names)
        return self._listing

    def scan(self, position: Any = None) -> Iterator[Outcome]:
        for n, rel, pos in self.remaining(position):
            yield self.read_note(rel, pos, n)

    def read_note(self, rel: str, position: Any, done: int) -> Outcome:
        path = self.root / rel
        try:
            stat = path.stat()
            if not S_ISREG(stat.st_mode):  # a FIFO or device named like a note would block or never end
                return Rejected(rel, "not a regular file (a pipe, socket or device)", position, done)
            if stat.st_size > MAX_RECORD_BYTES:
                return Rejected(rel, f"file too large ({stat.st_size // (1024 * 1024)} MB)", position, done)
            data = path.read_bytes()
        except OSError as exc:
            return Rejected(rel, f"cannot read file ({exc.strerror or exc})", position, done)
        return self.parse(data, rel, position, done, mtime=stat.st_mtime)

    def parse(self, data: bytes, rel: str, position: Any = None, done: int = 0, *, mtime: float | None = None) -> Outcome:
        """One file's bytes to a Record or a Rejected (used by :meth:`scan` and the fuzz tests)."""
        if b"\x00" in data[:8192]:
            return Rejected(rel, "binary file, not text", position, done)
        metadata: dict[str, Any] = {"path": rel}
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = decode_text(data)
            metadata["encoding"] = "cp1252"
        front, body = split_front_matter(text)
        content = clean_text(body)
        if not content:
            return Rejected(rel, "empty note", position, done)
        if len(content) > MAX_TEXT_CHARS:
            content, metadata["truncated"] = content[:MAX_TEXT_CHARS], True
        heading = _HEADING.search(content[:5000])
        metadata["title"] = front.get("title") or (heading.group(1).strip() if heading else Path(rel).stem)
        if front:
            metadata["front_matter"] = front
        created = parse_time(front.get("date") or front.get("created")) or mtime
        return Record(content, self.kind, rel, position, done, created=created, metadata=metadata)

"""Catalogs: the public lists of things to recommend (books, films, articles, products).

A catalog is not personal, so it is stored in the clear under the data directory,
one folder per catalog::

    <data dir>/catalogs/<name>/catalog.db      items (SQLite, via sqlite-utils)
    <data dir>/catalogs/<name>/vectors.usearch item embeddings (a usearch index)
    <data dir>/catalogs/<name>/item2item.npz   optional item-to-item model shipped with the catalog (sparse top-k)
    <data dir>/catalogs/<name>/item2item.mapped/ the same model as memory-mapped arrays (large catalogs)

What the user *does* with catalog items (likes, ratings, clicks) is personal and lives
sealed in the vault's ``interactions`` table, never here.

An item-to-item model carries collaborative signal computed elsewhere from many
people's aggregate data (EASE weights, item-kNN neighbour lists). Loading one sends
nothing anywhere: the device only reads the weights.

Example::

    >>> from localpers.catalog import Catalog
    >>> catalog = Catalog("films")                            # doctest: +SKIP
    >>> report = catalog.import_file("films.jsonl")           # doctest: +SKIP
    >>> print(report.summary())                               # doctest: +SKIP
    98 items imported into 'films' (2 broken rows skipped)
    >>> catalog.get("nosferatu-1922").title                   # doctest: +SKIP
    'Nosferatu'
    >>> catalog.load_item_model("item2item.npz")              # doctest: +SKIP

Input rows (JSONL objects, CSV rows or JSON arrays of objects) need an id (``id``,
``item_id``, ``movieId``, ``asin``, ``isbn``... or the field ``columns={"id": ...}`` names)
and a ``title``; ``kind``/``type``, text fields (``text``, ``description``, ``summary``,
``overview``, ``abstract``, ``body``) and tags (``tags``, ``genres``, ``categories``,
``keywords``; a list or a ``|``/``;``/``,``-separated string) are understood; every
other field is kept as an attribute.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import mmap
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlite_utils
from scipy import sparse

from .embed import Embedder
from .errors import LocalpersError
from .index import VectorIndex
from .mapped import write_mapped
from .paths import data_dir, private_dir, private_file

if TYPE_CHECKING:
    from .vault import Vault

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,59}$")
TEXT_FIELDS = ("text", "description", "summary", "overview", "abstract", "body")
TAG_FIELDS = ("tags", "genres", "categories", "keywords")
# The id headers of common public data sets (MovieLens movieId, Amazon asin, Book-Crossing ISBN...).
ID_FIELDS = ("id", "item_id", "itemid", "movieid", "movie_id", "asin", "isbn", "product_id", "book_id", "track_id",
             "article_id", "sku")
COLUMN_ROLES = ("id", "title", "kind", "text", "tags")
TITLE_FIELDS = ("title", "name")
KIND_FIELDS = ("kind", "type")
MAX_ID = 200
# Above this many items, requests rank candidates (localpers.candidates). Measured with
# `bench/recommend.py --scale --quick`: at 10,000 items scoring everything is still faster.
LARGE_CATALOG = 20_000
# An installed item model keeps each item's strongest neighbours, both ways: as many as fit in
# MODEL_WEIGHTS weights (about 16 MB; all of them on a small catalog), but at least MAX_NEIGHBOURS.
MODEL_WEIGHTS = 2_000_000
MAX_NEIGHBOURS = 200
EMBED_CHARS = 1000  # MiniLM reads 256 word pieces; more text only costs time
# Public-domain books and films; the short descriptions were written for localpers.
DEMO_CATALOG = Path(__file__).parent / "demo_data" / "catalog.jsonl"
CHOICE_BLOB = "catalog-choice"  # the vault blob naming the catalog a user picked (see Catalog.remembered)


@dataclass(frozen=True)
class Item:
    """One catalog entry."""

    id: str
    title: str
    kind: str = ""
    text: str = ""
    tags: tuple[str, ...] = ()
    attrs: dict = field(default_factory=dict)

    def embed_text(self) -> str:
        """The text its embedding is computed from: title, tags, description."""
        parts = [self.title]
        if self.tags:
            parts.append(", ".join(self.tags))
        if self.text:
            parts.append(self.text)
        return ". ".join(parts)[:EMBED_CHARS]

    def label(self) -> str:
        """A short human label: the title, with the year when the item has one."""
        year = self.attrs.get("year")
        return f"{self.title} ({year})" if year not in (None, "") and str(year) not in self.title else self.title


def year_of(value: Any) -> int | None:
    """A year from an attribute value (1927, "1927", "1927-03-01"), or None."""
    if isinstance(value, bool) or value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        return int(value) if np.isfinite(value) else None
    match = re.match(r"\s*(-?\d{1,4})\b", str(value))
    return int(match.group(1)) if match else None


class CatalogItems(Sequence):
    """A catalog's items in catalog order, each read from the catalog only when first asked for.

    A full-scan request needs the arrays of every item but the details of a dozen (the list
    and the items its reasons cite), so parsing all of them would cost more than scoring.
    """

    def __init__(self, catalog: Catalog, ids: list[str]) -> None:
        self.catalog, self.ids = catalog, ids
        self._read: dict[int, Item] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(len(self)))]
        k = int(k)
        if k < 0:
            k += len(self.ids)
        if k not in self._read:
            item = self.catalog.get(self.ids[k])
            if item is None:  # removed since the arrays were made: a placeholder, never recommended twice
                item = Item(self.ids[k], self.ids[k])
            self._read[k] = item
        return self._read[k]

    def __iter__(self) -> Any:
        missing = [k for k in range(len(self.ids)) if k not in self._read]
        for start in range(0, len(missing), 500):  # all of them (a kind or tag filter): 500 a query
            chunk = missing[start:start + 500]
            by_id = {item.id: item for item in self.catalog.get_many([self.ids[k] for k in chunk])}
            self._read.update({k: by_id.get(self.ids[k]) or Item(self.ids[k], self.ids[k]) for k in chunk})
        return (self._read[k] for k in range(len(self.ids)))


@dataclass
class BadRow:
    """A row that could not be imported, and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class CatalogImport:
    """What an import did."""

    catalog: str
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    embedded: int = 0
    shipped: int = 0  # items whose embedding came with the catalog
    skipped: list[BadRow] = field(default_factory=list)

    @property
    def imported(self) -> int:
        return self.added + self.updated + self.unchanged

    def summary(self) -> str:
        text = f"{self.imported} items imported into {self.catalog!r}"
        details = []
        if self.added != self.imported:
            details.append(f"{self.added} new, {self.updated} changed, {self.unchanged} unchanged")
        if self.shipped:
            details.append(f"{self.shipped} with shipped vectors")
        if self.skipped:
            details.append(f"{len(self.skipped)} broken row{'s' if len(self.skipped) != 1 else ''} skipped")
        return text + (f" ({'; '.join(details)})" if details else "")


# ---------------------------------------------------------------------- reading files


def check_catalog_file(path: str | Path) -> Path:
    """``path`` if it is a regular file in a catalog format, else :class:`LocalpersError` saying why."""
    path = Path(path).expanduser()
    if not path.exists():
        raise LocalpersError(f"no such catalog file: {path}")
    if not path.is_file():  # a folder, pipe or device: reading it could block or never end
        raise LocalpersError(f"{path} is not a regular file; give the catalog's .jsonl, .json or .csv file")
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".json", ".csv", ".tsv"):
        raise LocalpersError(f"{path.name}: unknown catalog format {suffix or '(none)'}; use .jsonl, .json or .csv")
    return path


def read_rows(path: str | Path, columns: dict[str, str] | None = None) -> Iterator[tuple[int, dict | BadRow]]:
    """Yield ``(line number, row dict)`` from a JSONL, JSON or CSV file, or a :class:`BadRow`.

    File-level problems (missing file, unknown format, CSV without the needed header)
    raise :class:`LocalpersError`; row-level problems are yielded, so an import can
    report them and carry on. ``columns`` maps a role (id, title, kind, text, tags) to
    the field that plays it, e.g. ``{"id": "ean", "title": "product_name"}``.
    """
    rename = _column_map(columns or {})
    for n, row in _read_any(path, rename):
        yield n, row if isinstance(row, BadRow) or not rename else _renamed(row, rename)


def _read_any(path: str | Path, rename: dict[str, str]) -> Iterator[tuple[int, dict | BadRow]]:
    path = check_catalog_file(path)
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LocalpersError(f"{path.name} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if suffix in (".csv", ".tsv"):
        yield from _read_csv(text, path.name, "\t" if suffix == ".tsv" else ",", rename)
    elif suffix == ".json" and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LocalpersError(f"{path.name} is not valid JSON ({exc.msg}, line {exc.lineno})") from exc
        for n, row in enumerate(rows, 1):
            yield n, row if isinstance(row, dict) else BadRow(n, "not a JSON object")
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield n, BadRow(n, f"not valid JSON ({exc.msg})")
                continue
            yield n, row if isinstance(row, dict) else BadRow(n, "not a JSON object")


_EXTRA = "\0extra"  # where csv puts the values of a row longer than the header


def _read_csv(text: str, name: str, delimiter: str, rename: dict[str, str]) -> Iterator[tuple[int, dict | BadRow]]:
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter, restkey=_EXTRA)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing_named = [n for n in rename if n not in header]
    if missing_named:
        raise LocalpersError(f"{name} has no column {missing_named[0]!r} (its columns: {', '.join(header)})")
    header = [rename.get(h, h) for h in header]
    if not header:
        return
    missing = [f"{names[0]!r}" for names in (ID_FIELDS, TITLE_FIELDS) if not set(names) & set(header)]
    if missing:
        raise LocalpersError(f"{name}: the header needs {' and '.join(missing)} columns (found: {', '.join(header)}); "
                             f"name them with --column id=NAME --column title=NAME")
    reader.fieldnames = header
    for row in reader:
        line = reader.line_num
        if _EXTRA in row:
            yield line, BadRow(line, f"{len(header) + len(row[_EXTRA])} fields, the header has {len(header)}")
        elif any(v is None for v in row.values()):
            yield line, BadRow(line, f"{sum(v is not None for v in row.values())} fields, the header has {len(header)}")
        else:
            yield line, {k: v for k, v in row.items() if v != ""}


def _column_map(columns: dict[str, str]) -> dict[str, str]:
    """``{role: field}`` -> ``{field (lower case): canonical name}``, refusing unknown roles."""
    unknown = sorted(set(columns) - set(COLUMN_ROLES))
    if unknown:
        raise LocalpersError(f"unknown column role(s) {', '.join(unknown)}; use {', '.join(COLUMN_ROLES)}")
    return {name.strip().lower(): role for role, name in columns.items() if name}


def _renamed(row: dict, rename: dict[str, str]) -> dict:
    lowered = {str(k).strip().lower(): v for k, v in row.items()}
    out = {k: v for k, v in lowered.items() if k not in rename}
    out.update({role: lowered[name] for name, role in rename.items() if name in lowered})  # the mapped field wins
    return out


def parse_item(row: dict, *, default_kind: str = "") -> Item:
    """Turn one input row into an :class:`Item`; raises ValueError saying what is wrong."""
    row = {str(k).strip().lower(): v for k, v in row.items()}
    item_id = _first(row, ID_FIELDS)
    if item_id is None or (isinstance(item_id, str) and not item_id.strip()):
        raise ValueError("missing 'id'")
    if isinstance(item_id, bool) or not isinstance(item_id, (str, int)):
        raise ValueError(f"'id' must be text or a whole number, not {type(item_id).__name__}")
    item_id = str(item_id).strip()
    if len(item_id) > MAX_ID:
        raise ValueError(f"'id' is longer than {MAX_ID} characters")
    title = _first(row, TITLE_FIELDS)
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"item {item_id!r}: missing 'title'" if title in (None, "") else
                         f"item {item_id!r}: 'title' must be text")
    kind = _first(row, KIND_FIELDS) or default_kind
    if not isinstance(kind, str):
        raise ValueError(f"item {item_id!r}: 'kind' must be text")
    texts = []
    for name in TEXT_FIELDS:
        value = row.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ValueError(f"item {item_id!r}: {name!r} must be text")
        if value.strip():
            texts.append(value.strip())
    tags: list[str] = []
    for name in TAG_FIELDS:
        value = row.get(name)
        if value is None:
            continue
        if isinstance(value, str):
            tags.extend(t.strip() for t in re.split(r"[|;,]", value))
        elif isinstance(value, list) and all(isinstance(t, (str, int, float)) for t in value):
            tags.extend(str(t).strip() for t in value)
        else:
            raise ValueError(f"item {item_id!r}: {name!r} must be a list of words or a '|'-separated string")
    known = {*ID_FIELDS, *TITLE_FIELDS, *KIND_FIELDS, *TEXT_FIELDS, *TAG_FIELDS}
    attrs = {k: v for k, v in row.items() if k not in known and v is not None}
    seen: set[str] = set()
    unique_tags = tuple(t for t in tags if t and not (t.lower() in seen or seen.add(t.lower())))
    return Item(item_id, title.strip(), kind.strip().lower(), "\n\n".join(texts), unique_tags, attrs)


def _first(row: dict, names: tuple[str, ...]) -> Any:
    for name in names:
        if row.get(name) is not None:
            return row[name]
    return None


# ---------------------------------------------------------------------- the catalog


class Catalog:
    """A named catalog on disk: items in SQLite, their embeddings in a usearch index.

    Opening a name that does not exist yet creates an empty catalog.
    """

    def __init__(self, name: str = "default", *, home: Path | None = None) -> None:
        if not _NAME.match(name):
            raise LocalpersError(f"invalid catalog name {name!r}: use 1-60 lowercase letters, digits, '.', '_' or '-'")
        self.name = name
        self.folder = private_dir(self.root(home) / name)
        path = self.folder / "catalog.db"
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))  # SQLite gives its -wal/-shm the same mode
        private_file(path)
        self.db = sqlite_utils.Database(path)
        if "items" not in self.db.table_names():
            self.db["items"].create({"id": str, "position": int, "kind": str, "title": str, "text": str,
                                     "tags": str, "attrs": str, "digest": str, "text_digest": str, "embedded": int},
                                    pk="id")
            self.db["items"].create_index(["position"], unique=True)
            self.db["meta"].create({"key": str, "value": str}, pk="key")
        self._index: VectorIndex | None = None
        self._mapped: VectorIndex | None = None  # read-only, see vectors(mapped=True)
        self._item_model: ItemModel | None = None
        self._items: list[Item] | None = None
        self.version = self._version()

    @staticmethod
    def root(home: Path | None = None) -> Path:
        return (home or data_dir()) / "catalogs"

    @classmethod
    def names(cls, home: Path | None = None) -> list[str]:
        """The catalogs on this machine."""
        root = cls.root(home)
        return sorted(p.name for p in root.iterdir() if (p / "catalog.db").exists()) if root.exists() else []

    @classmethod
    def exists(cls, name: str, home: Path | None = None) -> bool:
        return (cls.root(home) / name / "catalog.db").exists()

    @classmethod
    def find(cls, name: str | None = None, home: Path | None = None, *, chosen: str | None = None) -> "Catalog":
        """The catalog called ``name``; without a name, the only one there is, else ``chosen`` (the
        user's earlier pick, see :meth:`remembered`) or the one called 'default'."""
        names = cls.names(home)
        if name:
            if name not in names:
                raise LocalpersError(f"no catalog named {name!r}" + (f"; there is {', '.join(names)}" if names else
                                     "; import one with: localpers catalog import FILE"))
            return cls(name, home=home)
        if not names:
            raise LocalpersError("no catalog yet; import one with: localpers catalog import FILE "
                                 "(or try the bundled one: localpers catalog import --demo)")
        if len(names) == 1:
            return cls(names[0], home=home)
        for pick in (chosen, "default"):
            if pick in names:
                return cls(pick, home=home)
        raise LocalpersError(f"several catalogs ({', '.join(names)}): choose one with --catalog NAME "
                             "(it is remembered for next time)")

    @classmethod
    def demo(cls, home: Path | None = None, *, embedder: Any = None) -> "Catalog":
        """The bundled demo catalog (public-domain books and films), imported on first use."""
        catalog = cls("demo", home=home)
        if len(catalog) == 0 or catalog.pending():
            catalog.import_file(DEMO_CATALOG, embedder=embedder)
        return catalog

    @staticmethod
    def remembered(vault: Vault) -> str | None:
        """The catalog this vault's user last chose to get recommendations from, or None.

        Which catalog someone uses says something about them, so the pick is sealed in their vault.
        """
        data = vault.get_blob(CHOICE_BLOB)
        return data.decode("utf-8") if data else None

    @staticmethod
    def remember(vault: Vault, name: str) -> None:
        """Make catalog ``name`` this vault's user's pick (see :meth:`find`)."""
        vault.put_blob(CHOICE_BLOB, name.encode("utf-8"))

    @classmethod
    @contextmanager
    def importing(cls, name: str, home: Path | None = None) -> Iterator["Catalog"]:
        """Open catalog ``name`` for an import; a new catalog that ends up with no item is removed again.

        So a failed import (a missing file, a file of broken rows) leaves nothing behind::

            >>> with Catalog.importing("films") as catalog:            # doctest: +SKIP
            ...     catalog.import_file("films.jsonl")
        """
        new = not cls.exists(name, home)
        catalog = cls(name, home=home)
        try:
            yield catalog
        finally:
            if new and len(catalog) == 0:
                catalog.delete()

    def check_kinds(self, kinds: Iterable[str]) -> None:
        """Raise :class:`LocalpersError` naming the kinds there are if one of ``kinds`` has no item here."""
        there = [k for k in self.kinds() if k]
        missing = [k for k in kinds if k.lower() not in there]
        if missing:
            raise LocalpersError(f"no item of kind {missing[0]!r} in catalog {self.name!r}; "
                                 + (f"its kinds: {', '.join(sorted(there))}" if there else "its items have no kind"))

    def __len__(self) -> int:
        return self.db["items"].count

    def __repr__(self) -> str:
        return f"Catalog({self.name!r}, {len(self)} items)"

    def meta(self, key: str) -> str | None:
        rows = list(self.db.query("select value from meta where key = ?", [key]))
        return rows[0]["value"] if rows else None

    def _set_meta(self, key: str, value: str) -> None:
        self.db["meta"].upsert({"key": key, "value": value}, pk="key")

    def _version(self) -> str:
        return self.meta("version") or "0"

    def refresh_version(self) -> str:
        """The version stored now (another process may have changed the catalog); stale caches are dropped."""
        version = self._version()
        if version != self.version:
            self.version, self._items, self._index, self._item_model = version, None, None, None
            self._mapped = None
        return version

    def _touch(self) -> None:
        # Anything that caches catalog-derived arrays compares this to notice changes.
        self.version = f"{time.time():.6f}"
        self._set_meta("version", self.version)
        self._items = self._mapped = None

    # ------------------------------------------------------------------ items

    @staticmethod
    def item_from_row(row: dict) -> Item:
        """An :class:`Item` from a row of the catalog's ``items`` table."""
        return _item(row)

    def get(self, item_id: str) -> Item | None:
        rows = list(self.db.query("select * from items where id = ?", [str(item_id)]))
        return _item(rows[0]) if rows else None

    def get_many(self, ids: list[str]) -> list[Item]:
        """The items of ``ids`` that exist (in no particular order)."""
        out: list[Item] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            out.extend(_item(r) for r in self.db.query(f"select * from items where id in ({','.join('?' * len(chunk))})",
                                                       chunk))
        return out

    def items(self) -> list[Item]:
        """Every item, in catalog order (the order they were first imported)."""
        if self._items is None or self._version() != self.version:
            self.version = self._version()
            self._items = [_item(r) for r in self.db.query("select * from items order by position")]
        return self._items

    def ids(self) -> list[str]:
        return [item.id for item in self.items()]

    def kinds(self) -> dict[str, int]:
        """How many items of each kind."""
        return {r["kind"]: r["n"] for r in self.db.query("select kind, count(*) n from items group by kind order by n desc")}

    def pending(self) -> int:
        """How many items still wait for their embedding."""
        return self.db["items"].count_where("embedded = 0")

    def add_items(self, rows: Iterable[dict | Item], *, default_kind: str = "", report: CatalogImport | None = None,
                  lines: Iterable[int] | None = None) -> CatalogImport:
        """Validate and store items (new ids are added, known ids updated); embeddings come later.

        Rows that fail validation are listed in ``report.skipped``; nothing stored is lost.
        """
        report = report or CatalogImport(self.name)
        line_numbers = iter(lines) if lines is not None else iter(range(1, 1 << 62))
        existing = {r["id"]: r for r in self.db.query("select id, digest, text_digest from items")}
        next_position = (self.db.execute("select coalesce(max(position), 0) + 1 from items").fetchone()[0])
        first_line: dict[str, int] = {}
        batch: list[dict] = []
        for row in rows:
            line = next(line_numbers)
            if isinstance(row, BadRow):
                report.skipped.append(row)
                continue
            try:
                item = row if isinstance(row, Item) else parse_item(row, default_kind=default_kind)
            except ValueError as exc:
                report.skipped.append(BadRow(line, str(exc)))
                continue
            if item.id in first_line:
                report.skipped.append(BadRow(line, f"duplicate id {item.id!r} (first on line {first_line[item.id]})"))
                continue
            first_line[item.id] = line
            text = item.embed_text()
            text_digest = _digest(text)
            digest = _digest(json.dumps([text, item.kind, item.attrs], sort_keys=True, default=str))
            old = existing.get(item.id)
            if old is not None and old["digest"] == digest:
                report.unchanged += 1
                continue
            values = {"id": item.id, "kind": item.kind, "title": item.title, "text": item.text,
                      "tags": json.dumps(list(item.tags), ensure_ascii=False),
                      "attrs": json.dumps(item.attrs, ensure_ascii=False, default=str), "digest": digest,
                      "text_digest": text_digest}
            if old is None:
                values.update(position=next_position, embedded=0)
                next_position += 1
                report.added += 1
            else:
                if old["text_digest"] != text_digest:
                    values["embedded"] = 0  # only a changed text needs a new embedding
                report.updated += 1
            existing[item.id] = {"digest": digest, "text_digest": text_digest}
            batch.append(values)
        # One call each: sqlite-utils writes them in large transactions (row by row is one fsync per row).
        new = [values for values in batch if "position" in values]
        changed = [values for values in batch if "position" not in values]
        if new:  # one transaction: sqlite-utils would commit (and sync) every 90 rows
            columns = list(new[0])
            with self.db.conn:
                self.db.conn.executemany(f"insert into items ({', '.join(columns)}) values "
                                         f"({', '.join('?' * len(columns))})", [tuple(v.values()) for v in new])
        if changed:
            self.db["items"].upsert_all(changed, pk="id")
        if batch:
            self._touch()
        return report

    def import_file(self, path: str | Path, *, default_kind: str = "", embedder: Any = None,
                    progress: Callable[[int, int], None] | None = None,
                    columns: dict[str, str] | None = None, vectors: str | Path | None = None) -> CatalogImport:
        """Import a JSONL/JSON/CSV file, then embed what is new or changed.

        ``columns`` names the fields that play the roles id, title, kind, text and tags
        when the file's own names are not among the known ones (``{"id": "ean"}``).
        ``vectors``: the publisher's precomputed embeddings (see :func:`load_shipped_vectors`);
        items they cover need no embedding on this machine.

        Broken rows are reported in the result and skipped. Interrupting the embedding
        keeps what is done; importing again (or :meth:`embed_pending`) finishes the rest.
        """
        shipped = load_shipped_vectors(vectors, self.embedding_model()) if vectors is not None else None
        numbered = list(read_rows(path, columns))
        report = self.add_items((row for _, row in numbered), default_kind=default_kind,
                                lines=(n for n, _ in numbered))
        self._set_meta("source", str(Path(path).expanduser().resolve()))
        if shipped is not None:
            report.shipped = self.add_vectors(*shipped, prebuilt=shipped_index(vectors))
        report.embedded = self.embed_pending(embedder=embedder, progress=progress)
        return report

    def remove(self, ids: Iterable[str]) -> int:
        """Delete items (and their embeddings)."""
        ids = [str(i) for i in ids]
        removed = 0
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            removed += self.db.execute(f"delete from items where id in ({','.join('?' * len(chunk))})", chunk).rowcount
        index = self.vectors()
        index.remove([i for i in ids if i in index])
        self._save_index(index)
        self._touch()
        return removed

    # ------------------------------------------------------------------ embeddings

    def embedding_model(self) -> str:
        return self.meta("embedding_model") or "all-minilm-l6-v2"

    def embed_pending(self, *, embedder: Any = None, progress: Callable[[int, int], None] | None = None,
                      batch_size: int = 256) -> int:
        """Embed the items that have no up-to-date vector yet; returns how many were embedded.

        Vectors are cached by the digest of the embedded text (table ``embedding_cache``),
        so importing the same texts again, under any ids, reuses them without running
        the model. ``progress(done, total)`` is called after each batch. The index is
        saved at least every few seconds and on interruption, so a cancelled run loses
        at most one batch.
        """
        todo = [r["id"] for r in self.db.query("select id from items where embedded = 0 order by position")]
        if not todo:
            return 0
        if embedder is None:
            embedder = Embedder.shared(self.embedding_model())
        model_name = getattr(embedder, "name", "all-minilm-l6-v2")
        if self.meta("embedding_model") not in (None, model_name):
            # Vectors from two models cannot be compared: start the index over.
            self.db.execute("update items set embedded = 0")
            todo = self.ids()
            self._index = VectorIndex(embedder.dim)
        self._set_meta("embedding_model", model_name)
        index = self.vectors(dim=embedder.dim)
        rows = {r["id"]: r for r in self.db.query("select * from items where embedded = 0")}
        todo = [i for i in todo if i in rows]
        cached = self._cached_vectors(model_name, [rows[i]["text_digest"] for i in todo], embedder.dim)
        done: list[str] = []
        unsaved: list[str] = []
        last_save = time.monotonic()
        try:
            hits = [i for i in todo if rows[i]["text_digest"] in cached]
            for start in range(0, len(hits), 1000):  # cached: no model run at all
                ids = hits[start:start + 1000]
                index.add(ids, np.stack([cached[rows[i]["text_digest"]] for i in ids]))
                unsaved.extend(ids)
                done.extend(ids)
            if hits and progress:
                progress(len(done), len(todo))
            misses = [i for i in todo if rows[i]["text_digest"] not in cached]
            # Batches of similar length, so short titles are never padded to a long description's size.
            misses.sort(key=lambda i: len(_item(rows[i]).embed_text()))
            for start in range(0, len(misses), batch_size):
                ids = misses[start:start + batch_size]
                vectors = embedder.encode([_item(rows[i]).embed_text() for i in ids])
                index.add(ids, vectors)
                self._cache_vectors(model_name, [rows[i]["text_digest"] for i in ids], vectors)
                unsaved.extend(ids)
                done.extend(ids)
                if time.monotonic() - last_save > 5:
                    self._commit_embedded(index, unsaved)
                    unsaved, last_save = [], time.monotonic()
                if progress:
                    progress(len(done), len(todo))
        finally:
            if unsaved:
                self._commit_embedded(index, unsaved)
            if done:
                self._touch()
        return len(done)

    def add_vectors(self, ids: list[str], vectors: np.ndarray, model: str, *, prebuilt: bytes | None = None) -> int:
        """Store precomputed embeddings of items (from ``model``); returns how many items they covered.

        Ids that are not in the catalog are ignored. Items whose vector is stored count
        as embedded, so :meth:`embed_pending` leaves them alone. ``prebuilt``: the publisher's
        usearch index over exactly these vectors (see :func:`save_shipped_vectors`), adopted
        instead of building one when this catalog has no vectors yet.
        """
        known = {r["id"] for r in self.db.query("select id from items")}
        keep = [k for k, item_id in enumerate(ids) if item_id in known]
        if not keep:
            return 0
        self._set_meta("embedding_model", model)
        index = self.vectors(dim=vectors.shape[1])
        if len(index) == 0 or index.dim != vectors.shape[1]:
            # A new index for many vectors at once: half-precision and a lighter build (2-3x faster to
            # build; recall at k=10 stays above 0.95 on catalog embeddings). Other vectors start over.
            self.db.execute("update items set embedded = 0")
            if prebuilt is not None:
                index = self._index = VectorIndex.prebuilt(prebuilt, ids, vectors)
                index.remove([ids[k] for k in sorted(set(range(len(ids))) - set(keep))])
            else:
                index = self._index = VectorIndex(vectors.shape[1], dtype="f16", expansion_add=64)
        else:
            prebuilt = None  # vectors join an existing index: added one by one
        chosen = [ids[k] for k in keep]
        if prebuilt is None:
            index.add(chosen, vectors[keep])
        self._commit_embedded(index, chosen)
        self._touch()
        return len(chosen)

    def _cached_vectors(self, model: str, digests: list[str], dim: int) -> dict[str, np.ndarray]:
        if "embedding_cache" not in self.db.table_names():
            self.db["embedding_cache"].create({"model": str, "text_digest": str, "vector": bytes},
                                              pk=("model", "text_digest"))
        out: dict[str, np.ndarray] = {}
        wanted = list(set(digests))
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            for row in self.db.query(f"select text_digest, vector from embedding_cache where model = ? and "
                                     f"text_digest in ({','.join('?' * len(chunk))})", [model, *chunk]):
                if len(row["vector"]) == dim * 4:
                    out[row["text_digest"]] = np.frombuffer(row["vector"], dtype=np.float32)
        return out

    def _cache_vectors(self, model: str, digests: list[str], vectors: np.ndarray) -> None:
        self.db["embedding_cache"].insert_all(
            [{"model": model, "text_digest": d, "vector": np.asarray(v, dtype=np.float32).tobytes()}
             for d, v in zip(digests, vectors)], replace=True)

    def _commit_embedded(self, index: VectorIndex, ids: list[str]) -> None:
        # Index file first, then the flags: a crash in between only re-embeds a batch.
        self._save_index(index)
        with self.db.conn:  # one transaction
            self.db.conn.executemany("update items set embedded = 1 where id = ?", ((i,) for i in ids))

    def _save_index(self, index: VectorIndex) -> None:
        tmp = self.folder / "vectors.usearch.tmp"
        tmp.write_bytes(index.to_bytes())
        private_file(tmp)
        os.replace(tmp, self.folder / "vectors.usearch")

    def vectors(self, *, dim: int = 384, mapped: bool = False) -> VectorIndex:
        """The usearch index of item embeddings (loaded once).

        ``mapped``: a read-only index searched in the memory-mapped file, for requests on a
        large catalog (a million items' index is a gigabyte; loading it would double that).
        """
        path = self.folder / "vectors.usearch"
        if mapped and self._index is None and path.exists():
            if self._mapped is None:
                with open(path, "rb") as f:
                    self._mapped = self._read_index(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), view=True)
            return self._mapped
        if self._index is None:
            if path.exists():
                self._index = self._read_index(path.read_bytes())
            else:
                self._index = VectorIndex(dim)
        return self._index

    def _read_index(self, data: Any, *, view: bool = False) -> VectorIndex:
        try:
            return VectorIndex.from_bytes(data, view=view)
        except LocalpersError:
            self.db.execute("update items set embedded = 0")
            (self.folder / "vectors.usearch").unlink()
            raise LocalpersError(f"the embeddings of catalog {self.name!r} were damaged and are discarded; "
                                 f"import the catalog again to rebuild them") from None

    def matrix(self) -> np.ndarray:
        """Embeddings of all items in catalog order, one unit row each (zeros where not embedded yet)."""
        items = self.items()
        index = self.vectors()
        out = np.zeros((len(items), index.dim), dtype=np.float32)
        have = [(n, item.id) for n, item in enumerate(items) if item.id in index]
        if have:
            rows, ids = zip(*have)
            out[list(rows)] = index.vectors(list(ids))
        return out

    def similar(self, item_id: str, k: int = 10) -> list[tuple[Item, float]]:
        """Items whose embedding is closest to ``item_id``'s (through the usearch index)."""
        index = self.vectors()
        if item_id not in index:
            raise LocalpersError(f"catalog {self.name!r} has no embedded item {item_id!r}")
        hits = index.search(index.vectors([item_id])[0], k + 1, exact=len(index) <= 10_000)
        return [(self.get(i), s) for i, s in hits if i != item_id][:k]

    # ------------------------------------------------------------------ item-to-item model

    def load_item_model(self, path: str | Path) -> "ItemModel":
        """Install an item-to-item model file (``.npz`` or neighbour-list ``.jsonl``) into this catalog."""
        model = ItemModel.load(path)
        known = set(self.ids())
        matched = sum(1 for i in model.ids if i in known)
        if model.ids and matched == 0:
            raise LocalpersError(f"{Path(path).name}: none of its {len(model.ids)} item ids are in catalog {self.name!r}")
        model.info = {**model.info, "matched": matched, "source": Path(path).name}
        self.save_item_model(model)
        return model

    def save_item_model(self, model: "ItemModel") -> None:
        """Store ``model`` as this catalog's, sparse: each item's :func:`neighbours_for` strongest weights.

        A dense model (EASE on 9,000 items is 83 million weights, 600 MB) costs every request
        seconds to load; its strongest neighbours carry the recommendations.
        """
        model = model.pruned(neighbours_for(len(model.ids)))
        model.save(self.folder / "item2item.npz")
        self._item_model = model
        self._touch()
        if len(self) > LARGE_CATALOG:
            write_mapped(self)  # here, so that no request of a large catalog ever reads the whole model

    @property
    def item_model(self) -> "ItemModel | None":
        """The installed item-to-item model, or None."""
        if self._item_model is None and (self.folder / "item2item.npz").exists():
            self._item_model = ItemModel.load(self.folder / "item2item.npz")
        return self._item_model

    def delete(self) -> None:
        """Remove this catalog from disk."""
        self.db.conn.close()
        shutil.rmtree(self.folder)


# The dimension each embedding model gives: shipped vectors must match it.
EMBEDDING_DIMS = {"all-minilm-l6-v2": 384}


def load_shipped_vectors(path: str | Path, model: str) -> tuple[list[str], np.ndarray, str]:
    """Read a publisher's precomputed item embeddings: ``(ids, vectors, model)``.

    The file is an ``.npz`` with ``ids`` (n strings), ``vectors`` (n x dim numbers) and
    ``model`` (the embedding model's name, e.g. ``all-minilm-l6-v2``). Vectors from another
    model than ``model`` (the catalog's), or of another dimension than that model gives,
    cannot be compared with the user's and are refused.

    Example::

        >>> np.savez("films.vectors.npz", ids=np.array(ids), vectors=vecs,
        ...          model=np.array("all-minilm-l6-v2"))                      # doctest: +SKIP
        >>> Catalog("films").import_file("films.jsonl", vectors="films.vectors.npz")  # doctest: +SKIP
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise LocalpersError(f"no such vectors file: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            ids = [str(i) for i in f["ids"]]
            vectors = np.asarray(f["vectors"])
            shipped_model = str(f["model"]) if "model" in f else ""
    except (OSError, ValueError, KeyError) as exc:
        raise LocalpersError(f"{path.name} is not a vectors file (.npz with ids, vectors and model): {exc}") from exc
    if not shipped_model:
        raise LocalpersError(f"{path.name} does not say which model made its vectors; add a 'model' entry "
                             f"(this catalog embeds with {model!r})")
    if shipped_model.lower() != model.lower():
        raise LocalpersError(f"{path.name} was embedded with {shipped_model!r}, but this catalog embeds with "
                             f"{model!r}: the vectors would not compare; ship {model!r} vectors or import without them")
    want = EMBEDDING_DIMS.get(model.lower())
    if vectors.ndim != 2 or len(vectors) != len(ids) or (want is not None and vectors.shape[1] != want):
        shape = "x".join(str(d) for d in vectors.shape)
        raise LocalpersError(f"{path.name} holds {shape} vectors for {len(ids)} ids; {model!r} gives "
                             f"{want or 'fixed-size'}-dimensional vectors, one per id")
    if not np.issubdtype(vectors.dtype, np.number) or not np.isfinite(vectors).all():
        raise LocalpersError(f"{path.name}: the vectors must be finite numbers")
    vectors = vectors.astype(np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return ids, vectors / np.where(norms > 0, norms, 1.0), shipped_model.lower()


def save_shipped_vectors(path: str | Path, ids: list[str], vectors: np.ndarray, model: str, *,
                         index: bool = True) -> Path:
    """Write a vectors file for :func:`load_shipped_vectors` (the publisher's side).

    With ``index``, the file also carries a usearch index over the vectors (half precision,
    the settings :meth:`Catalog.add_vectors` uses), so a device importing a million items
    adopts it instead of spending minutes building the graph.

    Example::

        >>> save_shipped_vectors("films.vectors.npz", ids, vecs, "all-minilm-l6-v2")  # doctest: +SKIP
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    fields = {"ids": np.array([str(i) for i in ids]), "vectors": vectors.astype(np.float16), "model": np.array(model)}
    if index:
        built = VectorIndex(vectors.shape[1], dtype="f16", expansion_add=64)
        built.add([str(i) for i in ids], vectors)  # keys 1..n in row order
        fields["index"] = np.frombuffer(bytes(built.index.save()), dtype=np.uint8)
    np.savez(path, **fields)
    return Path(path)


def shipped_index(path: str | Path) -> bytes | None:
    """The prebuilt usearch index inside a vectors file, if it carries one."""
    with np.load(Path(path).expanduser(), allow_pickle=False) as f:
        return f["index"].tobytes() if "index" in f else None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _item(row: dict) -> Item:
    return Item(row["id"], row["title"], row["kind"] or "", row["text"] or "", tuple(json.loads(row["tags"] or "[]")),
                json.loads(row["attrs"] or "{}"))


# ---------------------------------------------------------------------- item-to-item models


@dataclass
class ItemModel:
    """Item-to-item weights: ``weights[i, j]`` says how much interest in ``ids[i]`` predicts ``ids[j]``.

    ``counts[i]`` is how many people interacted with ``ids[i]`` in the data the model
    came from (popularity; zero when unknown). ``info`` says how it was made.

    Files: ``.npz`` with ``ids``, CSR ``data``/``indices``/``indptr``, ``counts`` and
    ``info`` (JSON); or ``.jsonl`` with one ``{"item": id, "neighbors": [[id, weight], ...],
    "count": n}`` per line.
    """

    ids: list[str]
    weights: sparse.csr_matrix
    counts: np.ndarray
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.weights.shape != (n, n) or len(self.counts) != n:
            raise LocalpersError(f"item model shapes disagree: {n} ids, weights {self.weights.shape}, "
                                 f"{len(self.counts)} counts")

    @classmethod
    def from_dense(cls, ids: list[str], weights: np.ndarray, counts: np.ndarray | None = None, *,
                   top_k: int | None = None, info: dict | None = None) -> "ItemModel":
        """Wrap a dense weight matrix, keeping each item's ``top_k`` strongest neighbours when given."""
        weights = np.asarray(weights, dtype=np.float32).copy()
        np.fill_diagonal(weights, 0.0)
        if top_k is not None and top_k < weights.shape[1]:
            drop = np.argpartition(-np.abs(weights), top_k, axis=1)[:, top_k:]
            np.put_along_axis(weights, drop, 0.0, axis=1)
        counts = np.zeros(len(ids), dtype=np.int64) if counts is None else np.asarray(counts, dtype=np.int64)
        return cls([str(i) for i in ids], sparse.csr_matrix(weights), counts, dict(info or {}))

    def pruned(self, top_k: int) -> "ItemModel":
        """This model with each item's ``top_k`` largest-magnitude weights kept, both ways.

        An entry stays when it is among the strongest ``top_k`` of its row (what the item
        predicts) or of its column (what predicts the item), so rarely used items keep
        their collaborative score. A model already at most ``top_k`` per row is kept as is.
        """
        w = self.weights.tocsr()
        lengths = np.diff(w.indptr)
        if not len(lengths) or lengths.max() <= top_k:
            return self
        coo = w.tocoo()
        magnitude = np.abs(coo.data)
        keep = (_rank_within(coo.row, magnitude) < top_k) | (_rank_within(coo.col, magnitude) < top_k)
        weights = sparse.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=w.shape, dtype=np.float32)
        return ItemModel(self.ids, weights, self.counts, {**self.info, "top_k": top_k})

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        w = self.weights.tocsr()
        np.savez(tmp, ids=np.array(self.ids, dtype=str), data=w.data.astype(np.float32), indices=w.indices,
                 indptr=w.indptr, counts=self.counts, info=np.array(json.dumps(self.info)))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ItemModel":
        path = Path(path).expanduser()
        if not path.is_file():
            raise LocalpersError(f"no such item model file: {path}")
        if path.suffix.lower() in (".jsonl", ".ndjson"):
            return cls._load_jsonl(path)
        try:
            with np.load(path, allow_pickle=False) as f:
                ids = [str(i) for i in f["ids"]]
                weights = sparse.csr_matrix((f["data"], f["indices"], f["indptr"]), shape=(len(ids), len(ids)))
                return cls(ids, weights, f["counts"], json.loads(str(f["info"])) if "info" in f else {})
        except (OSError, ValueError, KeyError) as exc:
            raise LocalpersError(f"{path.name} is not an item model (.npz with ids, data, indices, indptr, counts): "
                                 f"{exc}") from exc

    @classmethod
    def _load_jsonl(cls, path: Path) -> "ItemModel":
        lists: dict[str, list] = {}
        counts: dict[str, int] = {}
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                item = str(row["item"])
                lists[item] = [(str(j), float(w)) for j, w in row.get("neighbors", [])]
                counts[item] = int(row.get("count", 0))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise LocalpersError(f"{path.name} line {n}: expected {{\"item\": id, \"neighbors\": [[id, weight], ...]}}"
                                     f" ({exc})") from exc
        ids = list(dict.fromkeys([*lists, *(j for pairs in lists.values() for j, _ in pairs)]))
        pos = {item: k for k, item in enumerate(ids)}
        rows, cols, vals = [], [], []
        for item, pairs in lists.items():
            for j, w in pairs:
                rows.append(pos[item])
                cols.append(pos[j])
                vals.append(w)
        weights = sparse.csr_matrix((np.array(vals, dtype=np.float32), (rows, cols)), shape=(len(ids), len(ids)))
        return cls(ids, weights, np.array([counts.get(i, 0) for i in ids], dtype=np.int64), {"format": "jsonl"})

    def aligned(self, catalog_ids: list[str]) -> tuple[sparse.csr_matrix, np.ndarray]:
        """Weights and counts re-indexed to ``catalog_ids`` (items the model lacks get zeros)."""
        pos = {item: k for k, item in enumerate(catalog_ids)}
        mapping = np.array([pos.get(i, -1) for i in self.ids])
        keep = mapping >= 0
        w = self.weights.tocoo()
        ok = keep[w.row] & keep[w.col]
        aligned = sparse.csr_matrix((w.data[ok], (mapping[w.row[ok]], mapping[w.col[ok]])),
                                    shape=(len(catalog_ids), len(catalog_ids)), dtype=np.float32)
        counts = np.zeros(len(catalog_ids), dtype=np.int64)
        counts[mapping[keep]] = self.counts[keep]
        return aligned, counts


def neighbours_for(n_items: int) -> int:
    """How many neighbours per item a model of ``n_items`` keeps (see :data:`MODEL_WEIGHTS`).

    Example::

        >>> neighbours_for(1682), neighbours_for(9125), neighbours_for(1_000_000)
        (1189, 219, 200)
    """
    return max(MAX_NEIGHBOURS, MODEL_WEIGHTS // max(n_items, 1))


def _rank_within(group: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
    """Each entry's rank by ``magnitude`` (0 = largest) among the entries of its ``group``."""
    order = np.lexsort((-magnitude, group))
    sorted_group = group[order]
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - np.searchsorted(sorted_group, sorted_group, side="left")
    return rank


def interaction_matrix(pairs: Iterable[tuple[Any, str]], ids: list[str]) -> sparse.csr_matrix:
    """A binary user-by-item matrix from ``(user, item)`` pairs (items outside ``ids`` are dropped)."""
    pos = {item: k for k, item in enumerate(ids)}
    users: dict[Any, int] = {}
    rows, cols = [], []
    for user, item in pairs:
        if item in pos:
            rows.append(users.setdefault(user, len(users)))
            cols.append(pos[item])
    m = sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(users), len(ids)))
    m.data[:] = 1.0  # repeated pairs count once
    return m


def fit_ease(matrix: sparse.spmatrix | np.ndarray, l2: float = 300.0) -> np.ndarray:
    """EASE (Steck 2019): the closed-form item-to-item weights for a user-by-item matrix.

    ``B = I - P / diag(P)`` with ``P = (X^T X + l2 I)^-1``, diagonal forced to zero.

    Example::

        >>> import numpy as np
        >>> X = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], dtype=np.float32)
        >>> B = fit_ease(X, l2=1.0)
        >>> B.shape, float(B[0, 0])
        ((3, 3), 0.0)
    """
    x = sparse.csr_matrix(matrix, dtype=np.float64)
    gram = (x.T @ x).toarray()
    gram[np.diag_indices_from(gram)] += l2
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    return b.astype(np.float32)


def fit_item_knn(matrix: sparse.spmatrix | np.ndarray, k: int = 100, shrink: float = 10.0) -> sparse.csr_matrix:
    """Item-kNN: cosine similarity between item columns, each item's ``k`` nearest kept."""
    x = sparse.csc_matrix(matrix, dtype=np.float32)
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
    sims = (x.T @ x).toarray()
    sims /= np.outer(norms, norms) + shrink
    np.fill_diagonal(sims, 0.0)
    if k < sims.shape[1]:
        drop = np.argpartition(-sims, k, axis=1)[:, k:]
        np.put_along_axis(sims, drop, 0.0, axis=1)
    return sparse.csr_matrix(sims)


def item_model_from_pairs(pairs: Iterable[tuple[Any, str]], ids: list[str], *, l2: float = 300.0,
                          top_k: int | None = None) -> ItemModel:
    """Fit an EASE item model from ``(user, item)`` interaction pairs: what a catalog maker ships."""
    x = interaction_matrix(pairs, ids)
    counts = np.asarray(x.sum(axis=0)).ravel().astype(np.int64)
    return ItemModel.from_dense(ids, fit_ease(x, l2), counts, top_k=top_k,
                                info={"method": "ease", "l2": l2, "users": x.shape[0], "top_k": top_k})

"""The user's personal history: import what they wrote, embed it, and search it by meaning.

:class:`History` sits on a :class:`~localpers.vault.Vault` and keeps three things in step:

- **items** (``vault.items``): one row per email, note or text, the text and its
  metadata sealed, with ``kind`` and the day it was written in the clear;
- **embeddings**: one sealed float32 vector per item (``vault.cache``), so the
  index can be rebuilt without running the model again;
- **the vector index** (usearch, cosine): rests only as an encrypted blob
  (``history.index``); it is checked against the items whenever it is loaded, so
  a missing, damaged or stale index is rebuilt or caught up on its own.

Imports stream records from :mod:`localpers.sources`, skip what is already there (a
keyed hash of the normalized text), and commit in batches: each batch's items,
fingerprints, embeddings and the import's position land in one transaction. Killed
at any point, the next import of the same source resumes after the last batch.

Search is dense (cosine over the embeddings), or hybrid (dense fused with BM25
computed in memory over the decrypted texts; never a full-text index on disk), with
an optional maximal-marginal-relevance step for diverse results.

Example::

    >>> from localpers import History, Vault
    >>> history = History(Vault.open("ada", "passphrase"))              # doctest: +SKIP
    >>> report = history.import_path("~/Mail/Sent.mbox")                 # doctest: +SKIP
    >>> print(report.summary())                                          # doctest: +SKIP
    Sent.mbox: 1,204 added, 3 duplicates, 41 rejected (28 near-empty, 13 forwarded message)
    >>> for hit in history.search("budget for the garden", k=3, mode="hybrid"):   # doctest: +SKIP
    ...     print(f"{hit.score:.3f}", hit.metadata.get("subject"))
"""

from __future__ import annotations

import re
import threading
import time
import unicodedata
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from . import sources
from .embed import Embedder
from .errors import LocalpersError
from .index import VectorIndex
from .paths import Config
from .rank import BM25, reciprocal_rank_fusion
from .rank import mmr as mmr_order
from .sources import Interaction, Record, Rejected, Skipped, parse_time
from .vault import Vault, clear_word, coarse_time
from .writing.context import CHECKPOINT_BLOB
from .writing.playback import cache_key as instruction_key

INDEX_BLOB = "history.index"
MODELS_KEY = "embedding-models"  # vault.cache row: the models that stored vectors (sealed list)
# HNSW settings. bench/history.py at 100,000 vectors, f16 storage: expansion_search 48 gives recall@10
# 0.993 at ~14x the speed of exact search; f32 storage with 64 gave 0.995 at ~10x, for twice the memory.
INDEX_OPTIONS = {"connectivity": 16, "expansion_add": 128, "expansion_search": 48, "dtype": "f16"}
# Save the index blob at most this often during an import (it is caught up from the
# stored embeddings on load anyway); always at the end.
PERSIST_EVERY_SECONDS = 60.0
PERSIST_EVERY_ITEMS = 5000
EMBED_CHARS = 4000  # the model reads ~256 tokens; more text only costs tokenizing time

ProgressFn = Callable[[int, "int | None", str], None]


@dataclass
class HistoryItem:
    """One stored item of the user's history."""

    id: str
    kind: str
    created: int  # day-rounded timestamp
    content: str
    metadata: dict
    source_type: str = ""
    source: dict = field(default_factory=dict)


@dataclass
class Hit:
    """A search result: the item and how well it matched.

    ``score`` is the cosine similarity for dense search, the reciprocal-rank-fusion score
    for hybrid search; ``scores`` holds the parts ("dense", "bm25") that were computed.
    """

    item_id: str
    score: float
    content: str
    kind: str
    created: int
    metadata: dict
    scores: dict = field(default_factory=dict)


@dataclass
class HistoryImport:
    """What one import did. ``rejected`` lists every record not imported for a fault, with why."""

    source: str
    format: str
    added: int = 0
    duplicates: int = 0
    interactions: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason -> count (other people's mail, rows)
    resumed: bool = False
    finished: bool = False  # False when cancelled before the end
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    previously: dict = field(default_factory=dict)  # counts of the interrupted run(s) this one resumed

    @property
    def records(self) -> int:
        """Records met in this run (whatever became of them)."""
        return self.added + self.duplicates + self.interactions + len(self.rejected) + sum(self.skipped.values())

    def rejected_by_reason(self) -> Counter:
        """Rejections counted by reason (details in parentheses dropped: "near-empty (1 word)" -> "near-empty")."""
        return Counter(re.sub(r"\s*\(.*\)$", "", reason) for _, reason in self.rejected)

    def counts(self) -> dict:
        return {"added": self.added, "duplicates": self.duplicates, "interactions": self.interactions,
                "rejected": len(self.rejected), "skipped": sum(self.skipped.values())}

    def summary(self) -> str:
        parts = [f"{self.added:,} added"]
        if self.interactions:
            parts.append(f"{self.interactions:,} interactions")
        parts.append(f"{self.duplicates:,} duplicates")
        if self.skipped:
            parts.append(", ".join(f"{n:,} skipped ({why})" for why, n in self.skipped.most_common()))
        if self.rejected:
            why = ", ".join(f"{n:,} {reason}" for reason, n in self.rejected_by_reason().most_common())
            parts.append(f"{len(self.rejected):,} rejected ({why})")
        text = f"{Path(self.source).name}: " + ", ".join(parts)
        if self.resumed:
            text += " (resumed an interrupted import)"
        if not self.finished:
            text += " -- stopped before the end; run it again to resume"
        return text


@dataclass
class _Batch:
    """A batch ready to commit: new items with their vectors, and what was a duplicate."""

    item_ids: list[str] = field(default_factory=list)  # one per record, new or existing
    new: list[tuple[Record, str, str]] = field(default_factory=list)  # (record, digest, new item id)
    vectors: Any = None
    interactions: list[tuple[str, dict]] = field(default_factory=list)  # (digest, row)
    duplicates: int = 0
    seen: dict[str, str] = field(default_factory=dict)


def normalize(text: str) -> str:
    """The form two texts must share to count as the same (Unicode NFKC, whitespace collapsed)."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def heading(metadata: dict | None) -> str:
    """An item's heading: its subject (mail) or title (notes, documents), or "".

    >>> heading({"subject": "Re: slides"}), heading({"title": "Ideas"}), heading(None)
    ('Re: slides', 'Ideas', '')
    """
    value = (metadata or {}).get("subject") or (metadata or {}).get("title") or ""
    return value if isinstance(value, str) else ""


def embedding_text(content: str, metadata: dict | None) -> str:
    """The text that is embedded and BM25-indexed for an item: its heading, then the content."""
    heading_ = heading(metadata)
    if heading_ and not content.startswith(heading_):
        return f"{heading_}\n{content}"
    return content


def parse_since(since: Any) -> int | None:
    """A "since" bound: epoch seconds, a date/datetime, an ISO date, or "30d" / "12w" / "6m" / "2y" ago."""
    if since is None:
        return None
    if isinstance(since, str):
        m = re.fullmatch(r"\s*(\d+)\s*([dwmy])\s*", since.lower())
        if m:
            days = int(m.group(1)) * {"d": 1, "w": 7, "m": 30, "y": 365}[m.group(2)]
            return coarse_time(time.time() - days * 86400)
    t = parse_time(since) if isinstance(since, (str, int, float, date, datetime)) else None
    if t is None:
        raise LocalpersError(f"cannot read the date {since!r}; use YYYY-MM-DD or a span like 30d, 12w, 6m, 1y")
    return coarse_time(t)


class History:
    """Import, store, index and search one user's history. See the module docstring.

    ``embedder`` is anything with ``dim`` and ``encode(texts) -> unit float32 rows``
    (default: the bundled sentence-embedding model named in the config, loaded on
    first use). Vectors of different models never mix: each model has its own
    stored embeddings, and the index is rebuilt when the model changes.
    """

    def __init__(self, vault: Vault, embedder: Any = None, *, batch_size: int = 64) -> None:
        self.vault = vault
        self._embedder = embedder
        if embedder is not None:
            self.model_name = str(getattr(embedder, "name", type(embedder).__name__))
        else:
            self.model_name = Config.load().embedding_model
        self.batch_size = batch_size
        self._model_listed = False
        self.notes: list[str] = []  # what happened to the index (rebuilt, caught up), for the curious
        self._index: VectorIndex | None = None
        self._bm25: BM25 | None = None
        self._data_version = vault.data_version()  # another process's commit changes it (see Vault.data_version)
        self._lock = threading.RLock()
        self._unsaved = 0
        self._saved_at = time.monotonic()

    # ------------------------------------------------------------------ the model

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            self._embedder = Embedder.shared(self.model_name)
        return self._embedder

    def warm_up(self) -> threading.Thread:
        """Load the embedding model in a background thread, while the caller opens the index.

        ONNX Runtime builds its session outside the GIL, so a search that calls this first
        overlaps the two slowest steps of a cold start. Returns the (daemon) thread.
        """
        thread = threading.Thread(target=lambda: self.embedder, name="localpers-embedder-warm-up", daemon=True)
        thread.start()
        return thread

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts with this history's model (unit float32 rows)."""
        if not texts:
            return np.zeros((0, self.index_dim()), dtype=np.float32)
        vectors = np.asarray(self.embedder.encode([t[:EMBED_CHARS] for t in texts]), dtype=np.float32)
        return vectors.reshape(len(texts), -1)

    def _cache_kind(self) -> str:
        return "embedding"

    def _cache_key(self, item_id: str, model: str | None = None) -> str:
        return self.vault.embedding_key(item_id, model or self.model_name)

    def _embedding_models(self) -> list[str]:
        """Every model that stored vectors in this vault (so erasing an item finds all of its embeddings)."""
        row = self.vault.cache.get(MODELS_KEY, columns=["value"])
        return list(row["value"]) if row and isinstance(row["value"], list) else []

    def _unpack_vector(self, value: Any, dim: int | None = None) -> np.ndarray | None:
        # A stored embedding is ``model name, NUL, float32 bytes``: a vector of another model is not ours.
        if not isinstance(value, bytes):
            return None
        model, _, raw = value.partition(b"\0")
        if model.decode("utf-8", "replace") != self.model_name or not raw or len(raw) % 4:
            return None
        if dim is not None and len(raw) != dim * 4:
            return None
        return np.frombuffer(raw, dtype=np.float32)

    def index_dim(self) -> int:
        if self._index is not None:
            return self._index.dim
        info = self.vault.blob_info(INDEX_BLOB)
        if info is not None and info.get("model") == self.model_name and info.get("dim"):
            return int(info["dim"])
        for row in self.vault.cache.rows("kind = ?", [self._cache_kind()], limit=8, columns=["value"]):
            vector = self._unpack_vector(row["value"])
            if vector is not None:
                return len(vector)
        return int(self.embedder.dim)

    # ------------------------------------------------------------------ the index

    @property
    def index(self) -> VectorIndex:
        """The vector index, loaded from the vault on first use and checked against the items."""
        with self._lock:
            self._follow_other_writers()
            if self._index is None:
                self._index = self._load_index()
            return self._index

    def _follow_other_writers(self) -> None:
        """Catch the in-memory index up (and drop BM25) when another process wrote to the vault."""
        version = self.vault.data_version()
        if version == self._data_version:
            return
        self._data_version = version
        self._bm25 = None
        if self._index is not None:
            self._catch_up(self._index)

    def _load_index(self, progress: ProgressFn | None = None) -> VectorIndex:
        index = info = None
        try:
            info = self.vault.blob_info(INDEX_BLOB)
            if info is not None and info.get("model") == self.model_name:
                data = self.vault.get_blob(INDEX_BLOB)
                index = VectorIndex.from_bytes(data) if data else None
            elif info is not None:
                self.notes.append(f"the index was built with {info.get('model')!r}; rebuilding it for {self.model_name!r}")
        except LocalpersError as exc:  # damaged bytes, or a blob that fails to decrypt
            self.notes.append(f"the search index could not be read ({exc}); rebuilding it from the vault")
            index = None
        if index is None:
            index = VectorIndex(self.index_dim(), **INDEX_OPTIONS)
        if self._catch_up(index, progress) or info is None:
            self._index = index
            self.save_index()
        return index

    def _catch_up(self, index: VectorIndex, progress: ProgressFn | None = None) -> bool:
        """Make ``index`` hold exactly the vault's items; returns whether anything changed."""
        ids = set(self.vault.items.keys())
        have = set(index.ids())
        extra = sorted(have - ids)
        missing = sorted(ids - have)
        index.remove(extra)
        if not missing:
            return bool(extra)
        vectors = self._stored_vectors(missing, index.dim)
        found = [i for i in missing if i in vectors]
        if found:
            index.add(found, np.stack([vectors[i] for i in found]))
        todo = [i for i in missing if i not in vectors]
        if todo:
            self.notes.append(f"embedding {len(todo)} item(s) that had no stored vector")
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            rows = [self.vault.items.get(i, columns=["content", "metadata"]) for i in chunk]
            rows = [r for r in rows if r is not None]
            vecs = self.encode([embedding_text(r["content"], r["metadata"]) for r in rows])
            self._store_vectors([r["id"] for r in rows], vecs)
            index.add([r["id"] for r in rows], vecs)
            if progress:
                progress(start + len(chunk), len(todo), "embedding items without a stored vector")
        if extra or missing:
            self.notes.append(f"index caught up: {len(missing)} added, {len(extra)} removed")
        return True

    def _stored_vectors(self, ids: list[str], dim: int) -> dict[str, np.ndarray]:
        keys = {self._cache_key(i): i for i in ids}
        if len(ids) > 256:  # one pass over all stored vectors beats many lookups
            rows: Iterable[dict] = (r for r in self.vault.cache.rows("kind = ?", [self._cache_kind()]) if r["key"] in keys)
        else:
            rows = (r for r in (self.vault.cache.get(k) for k in keys) if r is not None)
        out = {}
        for row in rows:
            vector = self._unpack_vector(row["value"], dim)
            if vector is not None:
                out[keys[row["key"]]] = vector
        return out

    def _store_vectors(self, ids: list[str], vectors: np.ndarray) -> None:
        tag = self.model_name.encode("utf-8") + b"\0"
        if not self._model_listed:
            models = self._embedding_models()
            if self.model_name not in models:
                self.vault.cache.insert({"key": MODELS_KEY, "kind": "stat", "value": [*models, self.model_name]},
                                        replace=True)
            self._model_listed = True
        self.vault.cache.insert_all(
            [{"key": self._cache_key(i), "kind": self._cache_kind(), "value": tag + np.asarray(v, dtype=np.float32).tobytes()}
             for i, v in zip(ids, vectors)], replace=True)

    def save_index(self) -> None:
        """Write the index to the vault (encrypted)."""
        with self._lock, self.vault.transaction():  # no other process writes between catching up and saving
            if self._index is None:
                return
            self._follow_other_writers()
            self.vault.put_blob(INDEX_BLOB, self._index.to_bytes(),
                                {"model": self.model_name, "dim": self._index.dim, "count": len(self._index)})
            self._unsaved = 0
            self._saved_at = time.monotonic()

    def _save_index_soon(self) -> None:
        if self._unsaved >= PERSIST_EVERY_ITEMS or time.monotonic() - self._saved_at >= PERSIST_EVERY_SECONDS:
            self.save_index()

    def rebuild_index(self, *, reembed: bool = False, progress: ProgressFn | None = None) -> int:
        """Rebuild the index from the stored vectors (``reembed=True``: from the texts); returns its size."""
        with self._lock:
            if reembed:
                self.vault.cache.delete_where("kind = ?", [self._cache_kind()])
            self._index = VectorIndex(self.index_dim(), **INDEX_OPTIONS)
            self._catch_up(self._index, progress)
            self.save_index()
            return len(self._index)

    # ------------------------------------------------------------------ BM25 (memory only)

    @property
    def bm25(self) -> BM25:
        """BM25 over the decrypted texts, built on first use and kept in memory only."""
        with self._lock:
            self._follow_other_writers()
            if self._bm25 is None:
                bm25 = BM25()
                for row in self.vault.items.rows(columns=["content", "metadata"]):
                    bm25.add(row["id"], embedding_text(row["content"], row["metadata"]))
                self._bm25 = bm25
            return self._bm25

    # ------------------------------------------------------------------ storing

    def _digest(self, content: str) -> str:
        return self.vault.keyed_hash(normalize(content), "content")

    def _known(self, digests: Iterable[str]) -> dict[str, str]:
        """digest -> item id for the digests already in the vault."""
        digests = list(set(digests))
        out: dict[str, str] = {}
        for start in range(0, len(digests), 500):
            chunk = digests[start:start + 500]
            marks = ", ".join("?" * len(chunk))
            out.update({r["digest"]: r["item_id"]
                        for r in self.vault.fingerprints.rows(f"digest in ({marks})", chunk)})
        return out

    def _prepare(self, records: list[Record], interactions: list[Interaction]) -> _Batch:
        """Deduplicate and embed a batch (slow, outside any transaction)."""
        batch = _Batch()
        digests = [self._digest(r.content) for r in records]
        known = self._known(digests)
        for record, digest in zip(records, digests):
            existing = known.get(digest) or batch.seen.get(digest)
            if existing:
                batch.item_ids.append(existing)
                batch.duplicates += 1
                continue
            item_id = uuid.uuid4().hex
            batch.seen[digest] = item_id
            batch.item_ids.append(item_id)
            batch.new.append((record, digest, item_id))
        if batch.new:
            batch.vectors = self.encode([embedding_text(r.content, r.metadata) for r, _, _ in batch.new])
        if interactions:
            digests = [self.vault.keyed_hash(repr((x.item, x.signal, x.value, x.time, sorted(x.metadata.items()))),
                                             "interaction") for x in interactions]
            known = self._known(digests)
            for x, digest in zip(interactions, digests):
                if digest in known or digest in batch.seen:
                    batch.duplicates += 1
                    continue
                batch.seen[digest] = ""
                batch.interactions.append((digest, {
                    "signal": x.signal, "time": coarse_time(x.time) if x.time else coarse_time(),
                    "item": x.item, "value": x.value, "metadata": x.metadata}))
        return batch

    def _commit(self, batch: _Batch, *, source_type: str, source_path: str, import_row: dict | None = None) -> None:
        """Write a prepared batch, and the import's new position, in one transaction."""
        with self._lock, self.vault.transaction():
            if batch.new:
                self.vault.items.insert_all([
                    {"id": item_id, "source_type": source_type, "kind": record.kind,
                     "created": coarse_time(record.created) if record.created else coarse_time(),
                     "content": record.content, "metadata": record.metadata,
                     "source": {"path": source_path, "ref": record.ref}}
                    for record, _, item_id in batch.new])
                self.vault.fingerprints.insert_all([{"digest": d, "item_id": i} for _, d, i in batch.new])
                self._store_vectors([i for _, _, i in batch.new], batch.vectors)
            if batch.interactions:
                keys = self.vault.interactions.insert_all([row for _, row in batch.interactions])
                self.vault.fingerprints.insert_all([{"digest": d, "item_id": f"interaction:{k}"}
                                                    for (d, _), k in zip(batch.interactions, keys)])
            if import_row is not None:
                self.vault.imports.insert(import_row, replace=True)
        if batch.new:
            ids = [i for _, _, i in batch.new]
            with self._lock:
                if self._index is not None:
                    self._index.add(ids, batch.vectors)
                    self._unsaved += len(ids)
                if self._bm25 is not None:
                    for record, _, item_id in batch.new:
                        self._bm25.add(item_id, embedding_text(record.content, record.metadata))

    def add_texts(self, texts: Sequence[str], *, kind: str = "note", source: str = "api",
                  metadata: dict | Sequence[dict] | None = None, created: Any = None) -> list[str]:
        """Add texts directly (the demo profile, saved drafts); returns one item id per text.

        A text already in the history is not added again: its existing id is returned.
        ``metadata`` is one dict for all texts or one per text; ``created`` likewise
        (epoch seconds, a date, or an ISO string; default now).

        Example::

            >>> ids = history.add_texts(["Pick up the seeds on Friday."], kind="note")   # doctest: +SKIP
        """
        texts = list(texts)
        metas = list(metadata) if isinstance(metadata, (list, tuple)) else [dict(metadata or {}) for _ in texts]
        times = list(created) if isinstance(created, (list, tuple)) else [created] * len(texts)
        if len(metas) != len(texts) or len(times) != len(texts):
            raise LocalpersError("add_texts: metadata and created must be given once, or once per text")
        records = []
        for i, (text, meta, when) in enumerate(zip(texts, metas, times)):
            content = sources.clean_text(str(text))
            if not content:
                raise LocalpersError(f"add_texts: text {i} is empty")
            records.append(Record(content, kind, f"{source}:{i}", None, i, created=parse_time(when), metadata=meta))
        ids: list[str] = []
        try:
            for start in range(0, len(records), self.batch_size):
                batch = self._prepare(records[start:start + self.batch_size], [])
                self._commit(batch, source_type=source, source_path=source)
                ids.extend(batch.item_ids)
        finally:
            self._save_if_loaded()
        return ids

    def _save_if_loaded(self) -> None:
        if self._index is not None and self._unsaved:
            self.save_index()

    # ------------------------------------------------------------------ importing

    def import_path(self, path: str | Path, *, format: str | None = None, kind: str | None = None,
                    sent_from: Sequence[str] | str | None = None, text_field: str | None = None,
                    columns: dict[str, str] | None = None, user_id: str | None = None, min_words: int = 3,
                    progress: ProgressFn | None = None, cancel: threading.Event | None = None,
                    rating_scale: str | None = None) -> HistoryImport:
        """Import one source (file or folder) into the history; see :mod:`localpers.sources` for formats.

        ``format`` picks the importer (default: guessed from the path); ``kind`` overrides
        the stored kind; ``sent_from`` lists the user's mail addresses; ``text_field``
        names the JSONL text field; ``columns`` / ``user_id`` / ``rating_scale`` configure CSV imports.
        ``progress(done, total, message)`` is called as the import advances (``done`` and
        ``total`` in the source's unit, bytes or files). Setting ``cancel`` stops after the
        current batch; the next call with the same arguments resumes there.

        Example::

            >>> report = history.import_path("Sent.mbox", sent_from=["ada@example.com"])   # doctest: +SKIP
            >>> report.added, report.rejected_by_reason()                                   # doctest: +SKIP
            (1204, Counter({'near-empty': 28, 'forwarded message': 13}))
        """
        started = time.monotonic()
        source = sources.open_source(path, format=format, kind=kind, sent_from=sent_from, text_field=text_field,
                                     columns=columns, user_id=user_id, min_words=min_words,
                                     rating_scale=rating_scale)
        addresses = sorted(a.lower() for a in ([sent_from] if isinstance(sent_from, str) else (sent_from or [])))
        options = [source.format, str(source.path), kind, addresses, text_field, sorted((columns or {}).items()),
                   user_id, min_words] + ([rating_scale] if rating_scale else [])
        key = self.vault.keyed_hash(repr(options), "import")
        report = HistoryImport(source=str(source.path), format=source.format)
        identity = source.identity()
        position = None
        saved = self.vault.imports.get(key)
        if saved and not (saved["state"] or {}).get("finished"):
            state = saved["state"] or {}
            if state.get("identity") == identity and source.can_resume(state.get("position")):
                position, report.resumed = state.get("position"), True
                report.previously = dict(state.get("counts", {}))
            else:
                report.notes.append("the source changed since the interrupted import; starting over "
                                    "(what was imported is recognised and not added twice)")
        total = source.total()
        pending: list[Any] = []
        n_records = 0
        done = 0
        last_progress = 0.0

        def flush(position: Any, finished: bool) -> None:
            records = [o for o in pending if isinstance(o, Record)]
            batch = self._prepare(records, [o for o in pending if isinstance(o, Interaction)])
            report.added += len(batch.new)
            report.interactions += len(batch.interactions)
            report.duplicates += batch.duplicates
            for o in pending:
                if isinstance(o, Rejected):
                    report.rejected.append((o.ref, o.reason))
                elif isinstance(o, Skipped):
                    report.skipped[o.reason] += 1
            counts = Counter(report.previously) + Counter(report.counts())
            state = {"position": position, "identity": identity, "finished": finished, "counts": dict(counts)}
            self._commit(batch, source_type=source.format, source_path=str(source.path), import_row={
                "id": key, "updated": coarse_time(), "source": {"path": str(source.path), "format": source.format},
                "state": state})
            pending.clear()

        def tell(force: bool = False) -> None:
            nonlocal last_progress
            if progress and (force or time.monotonic() - last_progress >= 0.2):
                last_progress = time.monotonic()
                progress(done, total, ", ".join(f"{v:,} {k}" for k, v in report.counts().items() if v) or "starting")

        if self._index is None:
            self.index  # noqa: B018 -- load (or rebuild) the index before adding to it
        try:
            tell(force=True)
            for outcome in source.scan(position):
                if cancel is not None and cancel.is_set():
                    break
                pending.append(outcome)
                done = outcome.done
                n_records += isinstance(outcome, (Record, Interaction))
                if n_records >= self.batch_size or len(pending) >= 8 * self.batch_size:
                    flush(outcome.position, False)
                    position, n_records = outcome.position, 0
                    self._save_index_soon()
                tell()
            else:
                flush(pending[-1].position if pending else position, True)
                report.finished = True
                done = total or done
            if not report.finished and pending:
                flush(pending[-1].position, False)
        finally:
            report.notes.extend(n for n in source.notes if n not in report.notes)
            self._save_if_loaded()
            report.seconds = time.monotonic() - started
        tell(force=True)
        return report

    # ------------------------------------------------------------------ reading

    def _row_item(self, row: dict) -> HistoryItem:
        return HistoryItem(id=row["id"], kind=row["kind"], created=row["created"], content=row.get("content") or "",
                    metadata=row.get("metadata") or {}, source_type=row.get("source_type") or "",
                    source=row.get("source") or {})

    def get(self, item_id: str) -> HistoryItem | None:
        """One item by id, or None."""
        row = self.vault.items.get(item_id)
        return None if row is None else self._row_item(row)

    def _where(self, kinds: Iterable[str] | str | None, since: Any) -> tuple[str | None, list[Any]]:
        clauses, params = [], []
        if kinds:
            kinds = [kinds] if isinstance(kinds, str) else list(kinds)
            # A kind outside the clear vocabulary is stored as "other" (its real name sealed).
            kinds = list(dict.fromkeys(clear_word("items", "kind", k) for k in kinds))
            clauses.append(f"kind in ({', '.join('?' * len(kinds))})")
            params.extend(kinds)
        bound = parse_since(since)
        if bound is not None:
            clauses.append("created >= ?")
            params.append(bound)
        return (" and ".join(clauses) or None), params

    def items(self, kinds: Iterable[str] | str | None = None, *, since: Any = None, limit: int | None = None,
              offset: int = 0) -> Iterator[HistoryItem]:
        """Items newest first, optionally only some kinds, since a date, a page at a time."""
        where, params = self._where(kinds, since)
        if offset:
            limit = -1 if limit is None else limit
        order = "created desc, id" + (f" limit {int(limit)} offset {int(offset)}" if offset else "")
        for row in self.vault.items.rows(where, params, order_by=order, limit=None if offset else limit):
            yield self._row_item(row)

    def count(self, kinds: Iterable[str] | str | None = None, *, since: Any = None) -> int:
        where, params = self._where(kinds, since)
        return self.vault.items.count(where, params)

    def kinds(self) -> dict[str, int]:
        """How many items of each kind (kinds outside the clear word list are read from their sealed value)."""
        counts = Counter(dict(self.vault.db.conn.execute("select kind, count(*) from items where kind != 'other' "
                                                         "group by kind").fetchall()))
        counts.update(r["kind"] for r in self.vault.items.rows("kind = 'other'", columns=[]))
        return dict(sorted(counts.items()))

    def texts(self, kinds: Iterable[str] | str | None = None, *, limit: int | None = None) -> list[str]:
        """The texts of the items (newest first): the material a writer learns from."""
        where, params = self._where(kinds, None)
        return [r["content"] for r in self.vault.items.rows(where, params, order_by="created desc, id", limit=limit,
                                                            columns=["content"])]

    # ------------------------------------------------------------------ deleting

    def delete(self, item_id: str) -> bool:
        """Delete one item so it is truly gone: row, fingerprint, embedding, index entry; then scrub the files."""
        return self.delete_many([item_id]) > 0

    def delete_many(self, item_ids: Iterable[str]) -> int:
        """Delete several items (one scrub at the end); returns how many existed."""
        ids = list(dict.fromkeys(item_ids))
        if not ids:
            return 0
        with self._lock:
            # The index goes first and is saved before the scrub, so the old index blob is wiped too.
            if self._index is not None or self.vault.blob_info(INDEX_BLOB) is not None:
                self.index.remove(ids)
                self.save_index()
            if self._bm25 is not None:
                for item_id in ids:
                    self._bm25.remove(item_id)
            # Derived from the texts: their cached playback instructions (keyed by a hash of the
            # text) and any training checkpoint; the embeddings go with erase_items.
            texts = [r["content"] for r in (self.vault.items.get(i, columns=["content"]) for i in ids)
                     if r is not None and isinstance(r.get("content"), str)]
            models = set(self._embedding_models()) | {self.model_name}
            keys = [self._cache_key(i, m) for i in ids for m in sorted(models)]
            self.vault.blobs.delete(CHECKPOINT_BLOB)
            return self.vault.erase_items(ids, cache_keys=keys + [instruction_key(self.vault, t) for t in texts])

    # ------------------------------------------------------------------ searching

    def _allowed(self, kinds: Iterable[str] | str | None, since: Any) -> set[str] | None:
        where, params = self._where(kinds, since)
        return None if where is None else set(self.vault.items.keys(where, params))

    def _dense(self, query: np.ndarray, n: int, allowed: set[str] | None) -> list[tuple[str, float]]:
        index = self.index
        if allowed is None:
            return index.search(query, n)
        candidates = [i for i in allowed if i in index]
        if len(candidates) <= max(2000, len(index) // 10):
            # A small filtered set: exact scores over just those vectors beat filtering the graph's answers.
            if not candidates:
                return []
            sims = index.vectors(candidates) @ query
            order = np.argsort(-sims)[:n]
            return [(candidates[i], float(sims[i])) for i in order]
        want = 2 * n
        while True:
            hits = [h for h in index.search(query, want) if h[0] in allowed]
            if len(hits) >= n or want >= len(index):
                return hits[:n]
            want *= 4

    def search(self, text: str, k: int = 5, *, kinds: Iterable[str] | str | None = None, since: Any = None,
               mode: str = "dense", mmr: bool = False, lambda_: float = 0.5) -> list[Hit]:
        """The ``k`` items closest in meaning to ``text``, best first.

        ``kinds`` keeps only those kinds ("email", "note"...); ``since`` only items from
        that day on (a date, ISO string, epoch seconds, or "30d"). ``mode="hybrid"`` fuses
        the dense ranking with BM25 keyword ranking (reciprocal rank fusion), which helps
        names, codes and rare words. ``mmr=True`` re-ranks a wider pool by maximal marginal
        relevance so near-duplicates do not crowd the results; ``lambda_`` near 1 favours
        relevance, near 0 diversity.

        Example::

            >>> [h.metadata.get("subject") for h in history.search("garden plans", k=2)]   # doctest: +SKIP
            ['Riverside planting plan - revised', 'Re: allotment']
        """
        if not text or not text.strip():
            raise LocalpersError("the search query is empty")
        if mode not in ("dense", "hybrid"):
            raise LocalpersError(f"unknown search mode {mode!r}; use 'dense' or 'hybrid'")
        if k <= 0:
            return []
        allowed = self._allowed(kinds, since)
        if allowed is not None and not allowed:
            return []
        with self._lock:
            if not len(self.index):
                return []
            query = self.encode([text])[0]
            pool = max(4 * k, 20) if mmr else k
            dense = self._dense(query, max(pool, 50) if mode == "hybrid" else pool, allowed)
            parts: dict[str, dict[str, float]] = {i: {"dense": s} for i, s in dense}
            if mode == "hybrid":
                lexical = self.bm25.search(text, max(pool, 50), allowed)
                for i, s in lexical:
                    parts.setdefault(i, {})["bm25"] = s
                ranked = reciprocal_rank_fusion([[i for i, _ in dense], [i for i, _ in lexical]])[:pool]
            else:
                ranked = dense
            if mmr and len(ranked) > 1:
                ids = [i for i, _ in ranked if i in self.index]
                scores = dict(ranked)
                top = max(scores[i] for i in ids) or 1.0
                order = mmr_order(self.index.vectors(ids), [scores[i] / top for i in ids], k, lambda_)
                ranked = [(ids[j], scores[ids[j]]) for j in order]
            ranked = ranked[:k]
        hits = []
        for item_id, score in ranked:
            row = self.vault.items.get(item_id)
            if row is None:  # deleted by someone else meanwhile
                continue
            hits.append(Hit(item_id=item_id, score=float(score), content=row["content"], kind=row["kind"],
                            created=row["created"], metadata=row["metadata"] or {}, scores=parts.get(item_id, {})))
        return hits

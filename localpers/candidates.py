"""Ranking at scale: score a few thousand candidates instead of the whole catalog.

Above :attr:`RecommenderConfig.large_catalog` items, :class:`~localpers.recommend.Recommender`
does not hold the catalog's arrays in memory. Per request it:

1. **Generates candidates**, none of it proportional to the catalog size:

   - *collaborative*: the item model's neighbours of the user's items, summed with the
     user's weights (the exact collaborative scores of every item that has one), best
     :data:`COLLABORATIVE` kept. The model is read from memory-mapped arrays
     (``item2item.mapped/``), so only the rows of the user's items are touched;
   - *content*: the usearch index searched with the user's taste (the weighted mean of
     their liked items' vectors), their latest liked items and their interests;
   - *popular*: the most used items (for new users and exploration).

2. **Scores them exactly** with the same code as a small catalog: a
   :class:`~localpers.recommend.Recommender` over the candidates and the user's own items
   (z-scores are taken over the candidates, so scores differ slightly from a full scan;
   the tests measure how much the lists agree).

Example::

    >>> recs = Recommender(Catalog("shop")).recommend(vault, n=10)    # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse


if TYPE_CHECKING:  # pragma: no cover
    from .catalog import Catalog, Item
    from .recommend import Recommender, Taste

COLLABORATIVE = 1500  # candidates from the item model
CONTENT = 200  # candidates from each content query
POPULAR = 200
RECENT_QUERIES = 5  # the latest liked items each get a content query of their own


class MappedModel:
    """The catalog's item model as memory-mapped CSR arrays indexed by catalog position.

    Written next to ``item2item.npz`` the first time a large catalog is ranked (and after
    the model or the catalog changes); later processes map it without reading it.
    """

    def __init__(self, catalog: Catalog) -> None:
        self.folder = catalog.folder / "item2item.mapped"
        stamp = _stamp(catalog)
        if _read_stamp(self.folder) != stamp:
            _write_mapped(catalog, self.folder, stamp)
        self.indptr = np.load(self.folder / "indptr.npy", mmap_mode="r")
        self.indices = np.load(self.folder / "indices.npy", mmap_mode="r")
        self.data = np.load(self.folder / "data.npy", mmap_mode="r")
        self.counts = np.load(self.folder / "counts.npy", mmap_mode="r")
        self.size = len(self.counts)
        self.has_model = bool(len(self.data))

    def row(self, position: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = int(self.indptr[position]), int(self.indptr[position + 1])
        return np.asarray(self.indices[lo:hi]), np.asarray(self.data[lo:hi])

    def scores(self, positions: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Collaborative scores ``sum_i w_i W[i, j]`` of every item ``j`` some user item points to."""
        cols, vals = [], []
        for p, w in zip(positions, weights):
            idx, data = self.row(int(p))
            cols.append(idx)
            vals.append(data * w)
        if not cols:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        cols_all = np.concatenate(cols)
        unique, inverse = np.unique(cols_all, return_inverse=True)
        return unique, np.bincount(inverse, weights=np.concatenate(vals)).astype(np.float32)


def _stamp(catalog: Catalog) -> dict:
    """What the mapped arrays were made from: the model file and the catalog's items (count, last position)."""
    path = catalog.folder / "item2item.npz"
    stat = path.stat() if path.exists() else None
    items = list(catalog.db.query("select count(*) n, coalesce(max(position), 0) last from items"))[0]
    return {"items": [items["n"], items["last"]], "model": [stat.st_mtime_ns, stat.st_size] if stat else None}


def write_mapped(catalog: Catalog) -> None:
    """Write the memory-mapped model arrays now (after installing a model in a large catalog)."""
    _write_mapped(catalog, catalog.folder / "item2item.mapped", _stamp(catalog))


def _read_stamp(folder: os.PathLike) -> dict | None:
    try:
        return json.loads((folder / "stamp.json").read_text())
    except (OSError, ValueError):
        return None


def _write_mapped(catalog: Catalog, folder: Any, stamp: dict) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "stamp.json").unlink(missing_ok=True)  # a crash while writing leaves no valid stamp
    pos = {r["id"]: r["position"] for r in catalog.db.query("select id, position from items")}
    size = max(pos.values(), default=0) + 1
    model = catalog.item_model
    counts = np.zeros(size, dtype=np.int64)
    if model is not None:
        mapping = np.array([pos.get(i, -1) for i in model.ids], dtype=np.int64)
        w = model.weights.tocoo()
        ok = (mapping[w.row] >= 0) & (mapping[w.col] >= 0)
        weights = sparse.csr_matrix((w.data[ok], (mapping[w.row[ok]], mapping[w.col[ok]])), shape=(size, size),
                                    dtype=np.float32)
        known = mapping >= 0
        counts[mapping[known]] = model.counts[known]
    else:
        weights = sparse.csr_matrix((size, size), dtype=np.float32)
    for name, array in (("indptr", weights.indptr.astype(np.int64)), ("indices", weights.indices.astype(np.int32)),
                        ("data", weights.data.astype(np.float32)), ("counts", counts)):
        np.save(folder / f"{name}.npy", array)
    (folder / "stamp.json").write_text(json.dumps(stamp))


class CandidateRanker:
    """Builds, for one request, a small :class:`Recommender` over the candidates (see the module docstring)."""

    def __init__(self, recommender: "Recommender") -> None:
        self.rec = recommender
        self.catalog = recommender.catalog
        self.model = MappedModel(self.catalog)
        self._popular: np.ndarray | None = None

    def positions(self, ids: list[str]) -> dict[str, int]:
        """Catalog positions of the ``ids`` the catalog has."""
        out: dict[str, int] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            out.update({r["id"]: r["position"] for r in self.catalog.db.query(
                f"select id, position from items where id in ({','.join('?' * len(chunk))})", chunk)})
        return out

    def items_at(self, positions: np.ndarray) -> tuple[np.ndarray, list[Item]]:
        """The items at ``positions`` (sorted), and those positions that hold one."""
        found: dict[int, Item] = {}
        values = [int(p) for p in positions]
        for start in range(0, len(values), 500):
            chunk = values[start:start + 500]
            for r in self.catalog.db.query(f"select * from items where position in ({','.join('?' * len(chunk))})",
                                           chunk):
                found[r["position"]] = self.catalog.item_from_row(r)
        kept = sorted(found)
        return np.array(kept, dtype=np.int64), [found[p] for p in kept]

    def popular(self) -> np.ndarray:
        if self._popular is None:  # once per process: the counts are read once, not per request
            counts = np.asarray(self.model.counts)
            k = min(POPULAR, len(counts))
            self._popular = np.argpartition(-counts, k - 1)[:k] if k else np.zeros(0, np.int64)
        return self._popular

    def subset(self, history: Taste) -> Recommender:
        """A Recommender over the candidates for ``history`` plus the user's own items."""
        Recommender = type(self.rec)  # the class of the recommender this ranker serves (no import circle)
        rec, cfg = self.rec, self.rec.config
        mine, own_items = self.items_at(np.array(sorted(self.positions(
            list(dict.fromkeys(e.item for e in history.events))).values()), dtype=np.int64))
        mine_ids = [item.id for item in own_items]
        index = self.catalog.vectors()
        # The user's weights, through the same rules as a full scan (a tiny Recommender over their items).
        own = Recommender.over(self.catalog, cfg, own_items, _vectors(index, mine_ids), None,
                               np.zeros(len(mine), np.int64))
        weights = own.item_weights([history]).toarray().ravel() if len(mine) else np.zeros(0, np.float32)
        by_id = dict(zip(own.ids, weights))
        w = np.array([by_id.get(i, 0.0) for i in mine_ids], dtype=np.float32)
        found: list[np.ndarray] = [mine, self.popular()]
        if self.model.has_model and len(mine):
            cols, scores = self.model.scores(mine, w)
            k = min(COLLABORATIVE, len(cols))
            if k:
                found.append(cols[np.argpartition(-scores, k - 1)[:k]])
        queries = []
        liked = [i for i, weight in zip(mine_ids, w) if weight > 0 and i in index]
        if liked:
            vecs = index.vectors(liked)
            where = {i: k for k, i in enumerate(mine_ids)}
            taste = (vecs * w[[where[i] for i in liked]][:, None]).sum(axis=0)
            queries.append(taste)
            liked_set = set(liked)
            recent = [i for i in dict.fromkeys(e.item for e in reversed(history.events)) if i in liked_set]
            queries.extend(index.vectors(recent[:RECENT_QUERIES]))
        if history.interest_vector is not None:
            queries.append(history.interest_vector)
        hits: list[str] = []
        for query in queries:
            if np.linalg.norm(query) > 0 and len(index):
                hits.extend(i for i, _ in index.search(query, CONTENT))
        if hits:
            found.append(np.array(list(self.positions(list(dict.fromkeys(hits))).values()), dtype=np.int64))
        chosen, items = self.items_at(np.unique(np.concatenate(found).astype(np.int64)))
        ids = [item.id for item in items]
        # Only the user's items' rows matter: scores are (user weights) @ model.
        rows, cols, vals = [], [], []
        local_mine = np.searchsorted(chosen, mine)
        for k, p in zip(local_mine, mine):
            idx, data = self.model.row(int(p))
            at = np.minimum(np.searchsorted(chosen, idx), len(chosen) - 1)
            keep = chosen[at] == idx
            rows.append(np.full(int(keep.sum()), k, dtype=np.int64))
            cols.append(at[keep])
            vals.append(data[keep])
        model = None
        if self.model.has_model:
            model = sparse.csr_matrix((np.concatenate(vals) if vals else np.zeros(0, np.float32),
                                       (np.concatenate(rows) if rows else np.zeros(0, np.int64),
                                        np.concatenate(cols) if cols else np.zeros(0, np.int64))),
                                      shape=(len(ids), len(ids)), dtype=np.float32)
        counts = np.asarray(self.model.counts[np.minimum(chosen, self.model.size - 1)], dtype=np.int64)
        counts[chosen >= self.model.size] = 0  # items added after the mapped model was written
        return Recommender.over(self.catalog, cfg, items, _vectors(index, ids), model, counts,
                                embedder=rec._embedder)

def _vectors(index: Any, ids: list[str]) -> np.ndarray:
    out = np.zeros((len(ids), index.dim), dtype=np.float32)
    have = [(k, i) for k, i in enumerate(ids) if i in index]
    if have:
        rows, keys = zip(*have)
        out[list(rows)] = index.vectors(list(keys))
    return out

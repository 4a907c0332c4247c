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

from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse

from .catalog import CatalogItems, year_of
from .mapped import MappedModel

if TYPE_CHECKING:  # pragma: no cover
    from .recommend import Recommender, Taste

COLLABORATIVE = 1500  # candidates from the item model
CONTENT = 200  # candidates from each content query
POPULAR = 200
RECENT_QUERIES = 5  # the latest liked items each get a content query of their own


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

    def items_at(self, positions: np.ndarray) -> tuple[np.ndarray, "CatalogItems", np.ndarray]:
        """The positions (sorted) of ``positions`` that hold an item, those items and their years.

        Only ids and years are read here; an item is read whole when it is shown (a handful
        of a few thousand candidates).
        """
        found: dict[int, tuple[str, float]] = {}
        values = [int(p) for p in positions]
        year = ("(case when json_type(attrs, '$.{0}') in ('integer', 'real', 'text') "
                "then json_extract(attrs, '$.{0}') end)")
        for start in range(0, len(values), 500):
            chunk = values[start:start + 500]
            for pos, item_id, a, b in self.catalog.db.execute(
                    f"select position, id, {year.format('year')}, {year.format('release_year')} from items "
                    f"where position in ({','.join('?' * len(chunk))})", chunk):
                y = year_of(a)
                y = year_of(b) if y is None else y
                found[pos] = (item_id, np.nan if y is None else y)
        kept = sorted(found)
        return (np.array(kept, dtype=np.int64), CatalogItems(self.catalog, [found[p][0] for p in kept]),
                np.array([found[p][1] for p in kept], dtype=np.float64))

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
        mine, own_items, own_years = self.items_at(np.array(sorted(self.positions(
            list(dict.fromkeys(e.item for e in history.events))).values()), dtype=np.int64))
        mine_ids = own_items.ids
        index = self.catalog.vectors(mapped=True)
        # The user's weights, through the same rules as a full scan (a tiny Recommender over their items).
        own = Recommender.over(self.catalog, cfg, own_items, _vectors(index, mine_ids), None,
                               np.zeros(len(mine), np.int64), years=own_years)
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
        chosen, items, years = self.items_at(np.unique(np.concatenate(found).astype(np.int64)))
        ids = items.ids
        # Only the user's items' rows matter: scores are (user weights) @ model.
        model = None
        if self.model.has_model:
            which, idx, data = self.model.rows(mine)
            at = np.minimum(np.searchsorted(chosen, idx), len(chosen) - 1)
            keep = chosen[at] == idx
            model = sparse.csr_matrix((data[keep], (np.searchsorted(chosen, mine)[which[keep]], at[keep])),
                                      shape=(len(ids), len(ids)), dtype=np.float32)
        counts = np.asarray(self.model.counts[np.minimum(chosen, self.model.size - 1)], dtype=np.int64)
        counts[chosen >= self.model.size] = 0  # items added after the mapped model was written
        return Recommender.over(self.catalog, cfg, items, _vectors(index, ids), model, counts,
                                embedder=rec._embedder, years=years)

def _vectors(index: Any, ids: list[str]) -> np.ndarray:
    out = np.zeros((len(ids), index.dim), dtype=np.float32)
    have = [(k, i) for k, i in enumerate(ids) if i in index]
    if have:
        rows, keys = zip(*have)
        out[list(rows)] = index.vectors(list(keys))
    return out

"""The catalog's item model as memory-mapped CSR arrays, indexed by catalog position.

Large catalogs rank candidates (:mod:`localpers.candidates`) and touch only the model rows of
the user's items; mapping the arrays keeps a request's memory independent of the catalog size.
The arrays are public catalog data (no user data).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse

if TYPE_CHECKING:  # pragma: no cover
    from .catalog import Catalog


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
        # Plain ndarray views of the maps: slicing a np.memmap costs microseconds per slice.
        self.indptr, self.indices, self.data, self.counts = (
            np.load(self.folder / f"{name}.npy", mmap_mode="r").view(np.ndarray)
            for name in ("indptr", "indices", "data", "counts"))
        self.size = len(self.counts)
        self.has_model = bool(len(self.data))

    def rows(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The entries of several rows at once: ``(which of positions, column, weight)`` each."""
        positions = np.asarray(positions, dtype=np.int64)
        lo, hi = self.indptr[positions], self.indptr[positions + 1]
        lengths = hi - lo
        which = np.repeat(np.arange(len(positions)), lengths)
        at = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths) + np.repeat(lo, lengths)
        return which, self.indices[at], self.data[at]

    def scores(self, positions: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Collaborative scores ``sum_i w_i W[i, j]`` of every item ``j`` some user item points to."""
        which, cols, data = self.rows(positions)
        if not len(cols):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        unique, inverse = np.unique(cols, return_inverse=True)
        return unique, np.bincount(inverse, weights=data * np.asarray(weights)[which]).astype(np.float32)


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

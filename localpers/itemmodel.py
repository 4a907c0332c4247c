"""Building the item-to-item model from many people's aggregate interactions (the publisher's side).

A catalog publisher has a table of who interacted with what (10^5 to 10^9 rows). This
module turns it into the sparse top-k neighbour model a device loads
(:class:`localpers.catalog.ItemModel`): for every item, its ``top_k`` strongest
neighbours and their weights, plus how many people used each item.

Three steps, each with bounded memory:

1. **Read in chunks** (:func:`read_interactions`): the CSV/TSV is streamed; user and item
   ids become integer codes; broken rows are counted and the first ones reported, the
   build carries on.
2. **The user-by-item matrix** ``X`` (binary, CSR; 10^7 interactions take ~120 MB).
3. **Item weights**, by the method that fits the memory budget:

   - ``ease`` (Steck 2019, the best on MovieLens): one dense ``n x n`` inverse, so only
     up to about ``sqrt(budget / 24 bytes)`` items (13,000 for 4 GB);
   - ``knn`` (item-kNN, shrunk cosine): ``S = X^T X`` computed one block of item columns
     at a time, each block sized from an upper bound of its non-zeros so that it fits the
     budget, and only each item's ``top_k`` neighbours kept. Memory is the budget plus
     the output (``n x top_k``), whatever the number of items.

   ``auto`` picks EASE where it fits and item-kNN beyond.

Running it where the data does not fit one machine: step 3 of ``knn`` is one sparse
product ``X^T X`` followed by a per-row top-k. On Spark this is a self-join of the
``(user, item)`` table on ``user`` (or ``RowMatrix.columnSimilarities()`` in MLlib),
a ``groupBy(item_a, item_b).count()``, a join with the per-item counts for the cosine,
and a window ``row_number() over (partition by item_a order by weight desc) <= top_k``;
on Dask, ``dask.array`` blocks of ``X`` multiplied block-wise, each block's top-k
taken with ``map_blocks``. Either way the result is a table ``(item, neighbour,
weight)`` plus ``(item, count)``: write it as the neighbour-list JSONL that
:meth:`ItemModel.load` reads (``{"item": id, "neighbors": [[id, w], ...], "count": n}``)
and install it with ``localpers catalog model``. EASE needs the dense inverse and does
not distribute; beyond one machine, kNN is the method.

Example::

    >>> from localpers.itemmodel import build_item_model
    >>> build = build_item_model("ratings.csv", top_k=100)            # doctest: +SKIP
    >>> print(build.summary())                                         # doctest: +SKIP
    item model: 9125 items, 100,004 interactions of 671 users, method ease (l2 300), ...
    >>> build.model.save("item2item.npz")                              # doctest: +SKIP
"""

from __future__ import annotations

import csv
import math
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import sparse

from .catalog import BadRow, ItemModel, fit_ease, neighbours_for
from .errors import LocalpersError
from .sources.interactions import COLUMN_GUESSES

DEFAULT_BUDGET_GB = 4.0
EASE_BYTES_PER_CELL = 24  # gram (float64) + its inverse + the float32 result, all n x n
CHUNK_ROWS = 1_000_000


@dataclass
class BuildReport:
    """What :func:`build_item_model` did: the model, how, and what it cost."""

    model: ItemModel
    method: str
    rows: int = 0
    interactions: int = 0
    users: int = 0
    broken: int = 0
    broken_rows: list[BadRow] = field(default_factory=list)  # the first few, to show
    seconds: float = 0.0
    peak_mb: float = 0.0

    def summary(self) -> str:
        text = (f"item model: {len(self.model.ids):,} items, {self.interactions:,} interactions of {self.users:,} "
                f"users, method {self.method}, top {self.model.info.get('top_k')} neighbours, "
                f"{self.model.weights.nnz:,} weights; {self.seconds:.1f}s, peak memory {self.peak_mb:,.0f} MB")
        if self.broken:
            text += f"; {self.broken:,} broken row{'s' if self.broken != 1 else ''} skipped"
        return text


def peak_memory_mb() -> float:
    """The peak resident memory of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------- step 1: reading


@dataclass
class Interactions:
    """Interactions as integer codes: ``users[k]`` used ``items[k]``; ``item_ids[code]`` names the item."""

    users: np.ndarray
    items: np.ndarray
    item_ids: list[str]
    n_users: int
    rows: int = 0
    broken: int = 0
    broken_rows: list[BadRow] = field(default_factory=list)


def read_interactions(path: str | Path, *, columns: dict[str, str] | None = None, min_value: float | None = None,
                      chunk_rows: int = CHUNK_ROWS, show_broken: int = 20,
                      progress: Callable[[int], None] | None = None) -> Interactions:
    """Stream a CSV/TSV of ``user, item[, value]`` rows into integer codes, ``chunk_rows`` at a time.

    Columns are found by name as in the ratings importer (``user_id``, ``movieId``,
    ``asin``...; RecBole ``name:type`` headers work) or named with ``columns={"user": ...,
    "item": ...}``. With ``min_value``, rows whose value is lower are left out (e.g. only
    ratings >= 4 count as interest). Broken rows (wrong field count, empty ids, a value
    that is not a number) are counted, the first ``show_broken`` kept with their line.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise LocalpersError(f"no such interactions file: {path}")
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        first = f.readline()
        if not first.strip():
            raise LocalpersError(f"{path.name} has no header line naming its columns")
        delimiter = "\t" if path.suffix.lower() in (".tsv", ".inter") or "\t" in first else ","
        names = [c.strip().lstrip("\ufeff").split(":", 1)[0].strip().lower()
                 for c in next(csv.reader([first], delimiter=delimiter))]
        roles = _roles(names, columns or {}, path.name, need_value=min_value is not None)
        user_col, item_col = names.index(roles["user"]), names.index(roles["item"])
        value_col = names.index(roles["value"]) if "value" in roles else None
        width = len(names)
        user_code: dict[str, int] = {}
        item_code: dict[str, int] = {}
        user_chunks, item_chunks = [], []
        out = Interactions(np.zeros(0, np.int32), np.zeros(0, np.int32), [], 0)
        u_buf: list[int] = []
        i_buf: list[int] = []
        line = 1
        for cells in csv.reader(f, delimiter=delimiter):
            line += 1
            if not cells:
                continue
            out.rows += 1
            problem = None
            if len(cells) != width:
                problem = f"expected {width} fields, found {len(cells)}"
            else:
                user, item = cells[user_col].strip(), cells[item_col].strip()
                if not user or not item:
                    problem = f"empty {roles['user'] if not user else roles['item']!r}"
                elif value_col is not None and min_value is not None:
                    try:
                        value = float(cells[value_col])
                    except ValueError:
                        problem = f"{roles['value']!r} is not a number"
                    else:
                        if not math.isfinite(value):
                            problem = f"{roles['value']!r} is not a finite number"
                        elif value < min_value:
                            continue
            if problem:
                out.broken += 1
                if len(out.broken_rows) < show_broken:
                    out.broken_rows.append(BadRow(line, problem))
                continue
            u_buf.append(user_code.setdefault(user, len(user_code)))
            i_buf.append(item_code.setdefault(item, len(item_code)))
            if len(u_buf) >= chunk_rows:
                user_chunks.append(np.array(u_buf, dtype=np.int32))
                item_chunks.append(np.array(i_buf, dtype=np.int32))
                u_buf, i_buf = [], []
                if progress:
                    progress(out.rows)
        user_chunks.append(np.array(u_buf, dtype=np.int32))
        item_chunks.append(np.array(i_buf, dtype=np.int32))
    out.users = np.concatenate(user_chunks)
    out.items = np.concatenate(item_chunks)
    out.item_ids = list(item_code)
    out.n_users = len(user_code)
    if progress:
        progress(out.rows)
    return out


def _roles(names: list[str], wanted: dict[str, str], file: str, *, need_value: bool) -> dict[str, str]:
    roles = {}
    for role in ("user", "item", "value"):
        if role in wanted:
            name = wanted[role].strip().lower()
            if name not in names:
                raise LocalpersError(f"{file} has no column {name!r} (its columns: {', '.join(names)})")
            roles[role] = name
            continue
        found = next((g for g in COLUMN_GUESSES[role] if g in names and g not in roles.values()), None)
        if found:
            roles[role] = found
    for role in ("user", "item") + (("value",) if need_value else ()):
        if role not in roles:
            raise LocalpersError(f"cannot find the {role} column of {file} (its columns: {', '.join(names)}); "
                                 f"name it with --column {role}=NAME")
    return roles


# ---------------------------------------------------------------------- steps 2 and 3: the model


def user_item_matrix(data: Interactions) -> sparse.csr_matrix:
    """The binary user-by-item matrix (a pair seen twice counts once)."""
    x = sparse.csr_matrix((np.ones(len(data.users), dtype=np.float32), (data.users, data.items)),
                          shape=(data.n_users, len(data.item_ids)))
    x.sum_duplicates()
    x.data[:] = 1.0
    return x


def ease_fits(n_items: int, budget_gb: float) -> bool:
    """Whether dense EASE on ``n_items`` stays inside ``budget_gb``."""
    return n_items * n_items * EASE_BYTES_PER_CELL <= budget_gb * 1e9


def top_k_rows(weights: np.ndarray, top_k: int) -> sparse.csr_matrix:
    """Keep each item's ``top_k`` largest-magnitude weights, both ways, of a dense matrix (diagonal dropped).

    An entry stays when it is among the ``top_k`` of its row (what the item predicts most)
    or of its column (what predicts the item most). Columns matter for rarely used items:
    their weights are small in every row, and row-only pruning would leave them no
    collaborative score at all.
    """
    weights = np.array(weights, dtype=np.float32)
    np.fill_diagonal(weights, 0.0)
    n = weights.shape[1]
    if top_k >= n:
        return sparse.csr_matrix(weights)
    magnitude = np.abs(weights)
    keep = np.zeros(weights.shape, dtype=bool)
    np.put_along_axis(keep, np.argpartition(-magnitude, top_k, axis=1)[:, :top_k], True, axis=1)
    np.put_along_axis(keep, np.argpartition(-magnitude, top_k, axis=0)[:top_k, :], True, axis=0)
    weights[~keep] = 0.0
    return sparse.csr_matrix(weights)


def knn_top_k(x: sparse.csr_matrix, top_k: int, *, shrink: float = 10.0, budget_gb: float = DEFAULT_BUDGET_GB,
              progress: Callable[[int, int], None] | None = None) -> sparse.csr_matrix:
    """Item-kNN weights: shrunk cosine of item columns, each item's ``top_k`` neighbours, block by block.

    ``S[:, block] = X^T X[:, block]`` for one block of item columns at a time; a block
    holds at most as many non-zeros as the budget allows (bounded above by
    ``sum over the block's users of their item counts``), so memory does not grow with
    the number of items. Row ``j`` of the result is item ``j``'s neighbours (S is
    symmetric, so a column's top-k is the row's).
    """
    x = sparse.csr_matrix(x, dtype=np.float32)
    n_items = x.shape[1]
    xt = x.T.tocsr()  # item-by-user
    xc = x.tocsc()
    norms = np.sqrt(np.asarray(xc.multiply(xc).sum(axis=0)).ravel()).astype(np.float32)
    user_degree = np.diff(x.indptr).astype(np.float64)
    # Non-zeros of S's column j are at most min(n_items, sum of the degrees of j's users).
    bound = np.minimum(np.asarray(xc.T @ user_degree).ravel(), n_items)
    cap = max(1.0, budget_gb * 1e9 / 40)  # ~40 bytes per non-zero in scipy's product and its temporaries
    rows_out, cols_out, vals_out = [], [], []
    start = 0
    while start < n_items:
        end, total = start, 0.0
        while end < n_items and (end == start or total + bound[end] <= cap) and end - start < 50_000:
            total += bound[end]
            end += 1
        block = (xt @ xc[:, start:end]).tocsc()  # items x block
        block.data /= norms[block.indices] * np.repeat(norms[start:end], np.diff(block.indptr)) + shrink
        for j in range(end - start):
            lo, hi = block.indptr[j], block.indptr[j + 1]
            idx, val = block.indices[lo:hi], block.data[lo:hi]
            own = idx != start + j
            idx, val = idx[own], val[own]
            if len(val) > top_k:
                keep = np.argpartition(-val, top_k)[:top_k]
                idx, val = idx[keep], val[keep]
            rows_out.append(np.full(len(idx), start + j, dtype=np.int32))
            cols_out.append(idx.astype(np.int32))
            vals_out.append(val.astype(np.float32))
        del block
        start = end
        if progress:
            progress(start, n_items)
    if not rows_out:
        return sparse.csr_matrix((n_items, n_items), dtype=np.float32)
    return sparse.csr_matrix((np.concatenate(vals_out), (np.concatenate(rows_out), np.concatenate(cols_out))),
                             shape=(n_items, n_items), dtype=np.float32)


def fit_item_model(x: sparse.csr_matrix, item_ids: list[str], *, method: str = "auto", top_k: int | None = None,
                   l2: float = 300.0, shrink: float = 10.0, budget_gb: float = DEFAULT_BUDGET_GB,
                   progress: Callable[[int, int], None] | None = None) -> ItemModel:
    """The sparse top-k :class:`ItemModel` of a user-by-item matrix; ``method`` ``auto``, ``ease`` or ``knn``.

    ``top_k`` defaults to what a device keeps on install (:func:`localpers.catalog.neighbours_for`).
    """
    n_items = x.shape[1]
    top_k = top_k or neighbours_for(n_items)
    if method not in ("auto", "ease", "knn"):
        raise LocalpersError(f"unknown method {method!r}; use auto, ease or knn")
    if method == "auto":
        method = "ease" if ease_fits(n_items, budget_gb) else "knn"
    if method == "ease" and not ease_fits(n_items, budget_gb):
        need = n_items * n_items * EASE_BYTES_PER_CELL / 1e9
        raise LocalpersError(f"EASE on {n_items:,} items needs about {need:.1f} GB, over the {budget_gb:g} GB budget; "
                             f"use --method knn (or auto), or raise --memory-gb")
    counts = np.diff(x.tocsc().indptr).astype(np.int64)
    if method == "ease":
        weights = top_k_rows(fit_ease(x, l2), top_k)
        info = {"method": "ease", "l2": l2}
    else:
        weights = knn_top_k(x, top_k, shrink=shrink, budget_gb=budget_gb, progress=progress)
        info = {"method": "knn", "shrink": shrink}
    info.update(top_k=top_k, users=int(x.shape[0]), interactions=int(x.nnz))
    return ItemModel(list(item_ids), weights, counts, info)


def build_item_model(path: str | Path, *, columns: dict[str, str] | None = None, min_value: float | None = None,
                     method: str = "auto", top_k: int | None = None, l2: float = 300.0, shrink: float = 10.0,
                     budget_gb: float = DEFAULT_BUDGET_GB, progress: Callable[[str, int, int], None] | None = None
                     ) -> BuildReport:
    """Read an interactions file in chunks and fit its sparse top-k item model (see the module docstring)."""
    started = time.monotonic()
    data = read_interactions(path, columns=columns, min_value=min_value,
                             progress=(lambda rows: progress("reading", rows, 0)) if progress else None)
    if not len(data.items):
        raise LocalpersError(f"{Path(path).name}: no usable interaction rows ({data.broken} broken)")
    x = user_item_matrix(data)
    model = fit_item_model(x, data.item_ids, method=method, top_k=top_k, l2=l2, shrink=shrink, budget_gb=budget_gb,
                           progress=(lambda done, total: progress("fitting", done, total)) if progress else None)
    return BuildReport(model, model.info["method"], data.rows, int(x.nnz), data.n_users, data.broken,
                       data.broken_rows, time.monotonic() - started, peak_memory_mb())


def iter_neighbours(model: ItemModel) -> Iterator[dict]:
    """The model as neighbour-list rows (``{"item", "neighbors", "count"}``), the portable format."""
    w = model.weights.tocsr()
    for k, item in enumerate(model.ids):
        lo, hi = w.indptr[k], w.indptr[k + 1]
        order = np.argsort(-w.data[lo:hi])
        yield {"item": item, "count": int(model.counts[k]),
               "neighbors": [[model.ids[w.indices[lo + o]], round(float(w.data[lo + o]), 6)] for o in order]}

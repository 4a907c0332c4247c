"""Ranking helpers for history search: BM25 in memory, rank fusion, and maximal marginal relevance.

Nothing here touches the disk: the BM25 index is built from decrypted text held in
memory for the life of a :class:`~localpers.history.History`, so there is never a
plaintext full-text index in a file.

Example::

    >>> bm25 = BM25()
    >>> bm25.add("a", "the budget for the garden project")
    >>> bm25.add("b", "lunch on sunday with sam")
    >>> [doc for doc, _ in bm25.search("garden budget", k=2)]
    ['a']
    >>> reciprocal_rank_fusion([["a", "b"], ["b", "c"]])[0][0]
    'b'
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

_TOKEN = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens (Unicode-aware), the unit BM25 counts."""
    return [t for t in _TOKEN.findall(text.casefold()) if len(t) <= 40]


class BM25:
    """Okapi BM25 over a changing set of documents (add and remove one at a time).

    ``k1`` controls how fast repeated terms saturate, ``b`` how much long documents are
    penalised; 1.5 and 0.75 are the usual defaults.
    """

    def __init__(self, k1: float = 1.5, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self.postings: dict[str, dict[str, int]] = {}  # term -> {doc id: term count}
        self.lengths: dict[str, int] = {}  # doc id -> number of tokens
        self.terms: dict[str, tuple[str, ...]] = {}  # doc id -> its distinct terms (for removal)
        self.total_length = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def __contains__(self, doc_id: str) -> bool:
        return doc_id in self.lengths

    def add(self, doc_id: str, text: str) -> None:
        if doc_id in self.lengths:
            self.remove(doc_id)
        counts = Counter(tokenize(text))
        for term, n in counts.items():
            self.postings.setdefault(term, {})[doc_id] = n
        self.lengths[doc_id] = sum(counts.values())
        self.terms[doc_id] = tuple(counts)
        self.total_length += self.lengths[doc_id]

    def remove(self, doc_id: str) -> None:
        length = self.lengths.pop(doc_id, None)
        if length is None:
            return
        self.total_length -= length
        for term in self.terms.pop(doc_id, ()):
            del self.postings[term][doc_id]
            if not self.postings[term]:
                del self.postings[term]

    def scores(self, query: str, allowed: set[str] | None = None) -> dict[str, float]:
        """BM25 score of every document sharing a term with ``query`` (restricted to ``allowed``)."""
        n_docs = len(self.lengths)
        if not n_docs:
            return {}
        avg = self.total_length / n_docs or 1.0
        out: dict[str, float] = {}
        for term in set(tokenize(query)):
            docs = self.postings.get(term)
            if not docs:
                continue
            idf = math.log(1 + (n_docs - len(docs) + 0.5) / (len(docs) + 0.5))
            for doc_id, tf in docs.items():
                if allowed is not None and doc_id not in allowed:
                    continue
                norm = tf * (self.k1 + 1) / (tf + self.k1 * (1 - self.b + self.b * self.lengths[doc_id] / avg))
                out[doc_id] = out.get(doc_id, 0.0) + idf * norm
        return out

    def search(self, query: str, k: int = 10, allowed: set[str] | None = None) -> list[tuple[str, float]]:
        """The ``k`` best documents for ``query`` as (doc id, score), best first."""
        scores = self.scores(query, allowed)
        return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


def reciprocal_rank_fusion(rankings: Iterable[Sequence[str]], k: int = 60) -> list[tuple[str, float]]:
    """Fuse rankings (lists of ids, best first) by summing ``1 / (k + rank)``; best first.

    Rank fusion needs no score calibration between dense cosine and BM25, which live
    on unrelated scales; ``k = 60`` is the constant from Cormack et al. (2009).
    """
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, doc_id in enumerate(ranking, start=1):
            fused[doc_id] = fused.get(doc_id, 0.0) + 1.0 / (k + rank)
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))


def mmr(vectors: np.ndarray, relevance: Sequence[float], k: int, lambda_: float = 0.5) -> list[int]:
    """Maximal marginal relevance: pick ``k`` rows that are relevant and unlike each other.

    Each step takes the candidate maximising ``lambda_ * relevance - (1 - lambda_) *
    (highest cosine similarity to anything already picked)``. ``lambda_ = 1`` is plain
    relevance order; lower values trade relevance for diversity. ``vectors`` are unit
    rows; returns row indices in pick order.
    """
    n = len(vectors)
    if n == 0 or k <= 0:
        return []
    rel = np.asarray(relevance, dtype=np.float64)
    sims = np.asarray(vectors, dtype=np.float32) @ np.asarray(vectors, dtype=np.float32).T
    picked: list[int] = []
    closest = np.full(n, -np.inf)
    available = np.ones(n, dtype=bool)
    for _ in range(min(k, n)):
        penalty = np.where(np.isinf(closest), 0.0, closest)
        score = lambda_ * rel - (1 - lambda_) * penalty
        score[~available] = -np.inf
        best = int(np.argmax(score))
        picked.append(best)
        available[best] = False
        closest = np.maximum(closest, sims[best])
    return picked

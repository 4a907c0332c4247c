"""BM25, rank fusion and MMR (no model needed)."""

from __future__ import annotations

import numpy as np

from localpers.rank import BM25, mmr, reciprocal_rank_fusion, tokenize


def test_bm25_ranks_rare_terms_and_stays_consistent_under_removal():
    bm25 = BM25()
    docs = {"a": "the garden budget for the spring", "b": "the the the the budget", "c": "Zanzibar-7731 locker code",
            "d": "lunch on sunday"}
    for doc_id, text in docs.items():
        bm25.add(doc_id, text)
    assert [d for d, _ in bm25.search("zanzibar 7731")] == ["c"]
    assert bm25.search("garden budget")[0][0] == "a"
    assert bm25.search("budget", allowed={"b"}) == [("b", bm25.scores("budget")["b"])]
    assert bm25.search("nothing matches") == []

    fresh = BM25()
    for doc_id in ("a", "c", "d"):
        fresh.add(doc_id, docs[doc_id])
    bm25.remove("b")
    bm25.remove("b")  # twice is harmless
    assert bm25.postings == fresh.postings and bm25.total_length == fresh.total_length
    assert bm25.scores("the budget code") == fresh.scores("the budget code")
    bm25.add("a", "replaced text")  # re-adding replaces
    assert "garden" not in bm25.postings and len(bm25) == 3
    assert tokenize("Ça VA? x" + "y" * 50) == ["ça", "va"]


def test_reciprocal_rank_fusion():
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "c"]])
    assert [d for d, _ in fused] == ["b", "c", "a"]
    assert fused[0][1] == 1 / 62 + 1 / 61


def test_mmr_trades_relevance_for_diversity():
    vectors = np.array([[1, 0, 0], [0.99, 0.14, 0], [0, 1, 0]], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    relevance = [1.0, 0.98, 0.6]
    assert mmr(vectors, relevance, 2, lambda_=1.0) == [0, 1]
    assert mmr(vectors, relevance, 2, lambda_=0.5) == [0, 2]
    assert mmr(vectors, relevance, 5, lambda_=0.5) == [0, 2, 1]
    assert mmr(np.zeros((0, 3), dtype=np.float32), [], 3) == []

"""Benchmark the personal history: import throughput, and usearch against exact search.

One run measures, side by side:

1. **Import** of generated emails end to end through :class:`localpers.history.History`
   (mbox parsing, quote/signature splitting, dedupe, embedding with the bundled
   all-MiniLM-L6-v2 on ONNX Runtime, sealed storage, usearch indexing): records per second,
   next to parsing alone. Then search latency over the imported history.
2. **Vector search** at 100,000 vectors: recall@10 of the usearch HNSW index (the
   settings History uses) against exact brute-force search (numpy), and the per-query
   speed-up, for a few ``expansion_search`` values. Embedding 100,000 texts would take
   most of an hour here, so the vectors are synthetic and say so: clustered unit vectors
   in 384 dimensions with a 64-dimensional latent structure, calibrated so a query's
   nearest neighbours have cosine ~0.6-0.7 as sentence embeddings of real mail do.
3. Peak memory (max RSS) after each part.

Usage::

    .venv/bin/python bench/history.py            # 10,000 emails, 100,000 vectors (several minutes)
    .venv/bin/python bench/history.py --quick    # 500 emails, 20,000 vectors (under two minutes)
    .venv/bin/python bench/history.py --quick --baseline   # and the same import with sentence-transformers

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localpers.history import INDEX_OPTIONS, History  # noqa: E402
from localpers.index import VectorIndex  # noqa: E402
from localpers.sources import Record  # noqa: E402
from localpers.sources.mail import MboxSource  # noqa: E402
from localpers.sources.synthetic import USER, synthetic_mailbox, write_mbox  # noqa: E402
from localpers.vault import Vault  # noqa: E402

RECALL_TARGET = 0.98
SPEEDUP_TARGET = 10.0


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def clustered_vectors(n: int, *, dim: int = 384, latent: int = 64, seed: int = 0) -> np.ndarray:
    """Unit vectors around ``n / 200`` cluster centres in a random 64-d subspace, plus isotropic noise."""
    rng = np.random.default_rng(seed)
    clusters = max(50, n // 200)
    basis = rng.standard_normal((latent, dim)).astype(np.float32) / np.sqrt(latent)
    centres = rng.standard_normal((clusters, latent)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 20_000):  # in slices, to keep the temporaries small
        m = min(20_000, n - start)
        z = centres[rng.integers(clusters, size=m)] + rng.standard_normal((m, latent)).astype(np.float32)
        x = z @ basis + rng.standard_normal((m, dim)).astype(np.float32) / np.sqrt(dim)
        out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def bench_import(n_emails: int, folder: Path, embedder: object = None, name: str = "bench") -> dict:
    box = write_mbox(folder / "Sent.mbox", synthetic_mailbox(n_emails, seed=7))
    size_mib = box.stat().st_size / 2**20

    start = time.perf_counter()
    parsed = sum(isinstance(o, Record) for o in MboxSource(box, sent_from=[USER[1]]).scan(None))
    parse_s = time.perf_counter() - start

    vault = Vault.create(name, "bench passphrase", home=folder / "users", kdf_seconds=0)
    history = History(vault, embedder)
    history.embedder  # noqa: B018 -- load the model outside the timing (it is loaded once per process)
    history.index  # noqa: B018
    last = [0.0]

    def progress(done: int, total: int | None, message: str) -> None:
        if time.perf_counter() - last[0] > 15:
            last[0] = time.perf_counter()
            print(f"  import: {100 * done / (total or 1):.0f}%  {message}", flush=True)

    start = time.perf_counter()
    report = history.import_path(box, progress=progress)
    import_s = time.perf_counter() - start
    records = report.records

    queries = ["when is the budget review", "book the train to the conference", "the kids' birthday party",
               "fix the leaking roof", "reviewer comments on the draft paper", "choir rehearsal times"] * 5
    timings = {"dense": 0.0, "hybrid": 0.0}
    for mode in timings:
        history.search(queries[0], k=10, mode=mode)  # warm up; the first hybrid call builds BM25
    for q in queries:  # interleaved, so a busy moment on the machine hits both modes alike
        for mode in timings:
            start = time.perf_counter()
            history.search(q, k=10, mode=mode)
            timings[mode] += (time.perf_counter() - start) * 1000 / len(queries)
    files = sum(p.stat().st_size for p in vault.path.parent.iterdir() if p.is_file())
    vault.close()
    return {"emails": n_emails, "mbox_mib": round(size_mib, 1), "records": records, "added": report.added,
            "rejected": len(report.rejected), "parse_records_per_s": round(n_emails / parse_s, 1),
            "parsed_kept": parsed, "import_seconds": round(import_s, 1),
            "import_records_per_s": round(records / import_s, 1),
            "search_dense_ms": round(timings["dense"], 1), "search_hybrid_ms": round(timings["hybrid"], 1),
            "vault_mib": round(files / 2**20, 1), "peak_rss_after_import_mib": round(peak_mib())}


def bench_vectors(n: int, n_queries: int) -> dict:
    data = clustered_vectors(n + n_queries, seed=1)
    vectors, queries = data[:n], data[n:]
    ids = [f"v{i}" for i in range(n)]

    # Exact search, one query at a time (how History queries): a matrix-vector product and a partial sort.
    start = time.perf_counter()
    exact = []
    for q in queries:
        sims = vectors @ q
        top = np.argpartition(-sims, 10)[:10]
        exact.append(top[np.argsort(-sims[top])])
    exact_ms = (time.perf_counter() - start) / n_queries * 1000
    nn_cos = float(np.mean([vectors[e[:10]] @ q for e, q in zip(exact, queries)]))

    start = time.perf_counter()
    index = VectorIndex(vectors.shape[1], **INDEX_OPTIONS)
    index.add(ids, vectors)
    build_s = time.perf_counter() - start
    blob_mib = len(index.to_bytes()) / 2**20

    sweep = []
    for ef in sorted({64, 128, 256, INDEX_OPTIONS["expansion_search"]}):
        index.index.expansion_search = ef
        start = time.perf_counter()
        found = [index.search(q, 10) for q in queries]
        ms = (time.perf_counter() - start) / n_queries * 1000
        recall = float(np.mean([len({int(i[1:]) for i, _ in f} & set(e.tolist())) / 10 for f, e in zip(found, exact)]))
        sweep.append({"expansion_search": ef, "recall_at_10": round(recall, 4), "ms_per_query": round(ms, 3),
                      "speedup": round(exact_ms / ms, 1)})
    chosen = next(s for s in sweep if s["expansion_search"] == INDEX_OPTIONS["expansion_search"])
    return {"vectors": n, "queries": n_queries, "dim": int(vectors.shape[1]), "mean_top10_cosine": round(nn_cos, 3),
            "index_options": INDEX_OPTIONS, "build_seconds": round(build_s, 1),
            "build_vectors_per_s": round(n / build_s), "index_blob_mib": round(blob_mib, 1),
            "exact_ms_per_query": round(exact_ms, 3), "usearch_ms_per_query": chosen["ms_per_query"],
            "recall_at_10": chosen["recall_at_10"], "speedup": chosen["speedup"], "sweep": sweep,
            "peak_rss_after_vectors_mib": round(peak_mib())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="500 emails and 20,000 vectors (under two minutes)")
    parser.add_argument("--emails", type=int, help="how many emails to import (default 10,000; quick 500)")
    parser.add_argument("--baseline", action="store_true",
                        help="also import the same emails with sentence-transformers on torch (the embedder before "
                             "ONNX Runtime), side by side")
    parser.add_argument("--vectors", type=int, help="how many vectors to index (default 100,000; quick 20,000)")
    args = parser.parse_args()
    n_emails = args.emails or (500 if args.quick else 10_000)
    n_vectors = args.vectors or (20_000 if args.quick else 100_000)
    n_queries = 200 if args.quick else 1_000

    with tempfile.TemporaryDirectory(prefix="localpers-bench-") as tmp:
        os.environ["LOCALPERS_HOME"] = tmp  # a throwaway data directory: no real vault is touched
        print(f"Importing {n_emails:,} generated emails through History...", flush=True)
        imp = bench_import(n_emails, Path(tmp))
        if args.baseline:
            from localpers.embed import SentenceTransformerEmbedder

            print("  ... and again with sentence-transformers on torch (the embedder before)", flush=True)
            old = bench_import(n_emails, Path(tmp), SentenceTransformerEmbedder(), name="bench-old")
            imp["import_baseline_records_per_s"] = old["import_records_per_s"]
            imp["import_baseline_seconds"] = old["import_seconds"]
    print(f"  parse only:           {imp['parse_records_per_s']:>9,.1f} emails/s")
    print(f"  import end to end:    {imp['import_records_per_s']:>9,.1f} records/s "
          f"({imp['records']:,} records, {imp['added']:,} added, {imp['rejected']:,} rejected, {imp['import_seconds']} s)")
    if args.baseline:
        print(f"  same import, sentence-transformers: {imp['import_baseline_records_per_s']:>9,.1f} records/s "
              f"({imp['import_baseline_seconds']} s): ONNX Runtime is "
              f"{imp['import_records_per_s'] / imp['import_baseline_records_per_s']:.2f}x")
    print(f"  search over {imp['added']:,} items: dense {imp['search_dense_ms']} ms, hybrid {imp['search_hybrid_ms']} ms")
    print(f"  vault on disk:        {imp['vault_mib']} MiB;  peak RSS so far {imp['peak_rss_after_import_mib']} MiB")

    print(f"\nVector search: {n_vectors:,} synthetic clustered 384-d unit vectors, {n_queries} queries, k=10", flush=True)
    vec = bench_vectors(n_vectors, n_queries)
    print(f"  mean cosine of the true 10 nearest neighbours: {vec['mean_top10_cosine']}")
    print(f"  usearch build: {vec['build_seconds']} s ({vec['build_vectors_per_s']:,} vectors/s), "
          f"encrypted blob {vec['index_blob_mib']} MiB")
    print(f"  exact brute force (numpy): {vec['exact_ms_per_query']:.3f} ms/query")
    print(f"  {'expansion_search':>16} {'recall@10':>10} {'ms/query':>9} {'speed-up':>9}")
    for s in vec["sweep"]:
        mark = "  <- History's setting" if s["expansion_search"] == INDEX_OPTIONS["expansion_search"] else ""
        print(f"  {s['expansion_search']:>16} {s['recall_at_10']:>10.4f} {s['ms_per_query']:>9.3f} {s['speedup']:>8.1f}x{mark}")
    ok_recall = vec["recall_at_10"] >= RECALL_TARGET
    ok_speed = vec["speedup"] >= SPEEDUP_TARGET
    print(f"  recall@10 {vec['recall_at_10']:.4f} (target >= {RECALL_TARGET}: {'met' if ok_recall else 'NOT met'}), "
          f"speed-up {vec['speedup']}x (target >= {SPEEDUP_TARGET:.0f}x: {'met' if ok_speed else 'NOT met'})")
    print(f"  peak RSS: {vec['peak_rss_after_vectors_mib']} MiB")

    figures = {"bench": "history", "quick": args.quick, **{f"import_{k}" if not k.startswith(("import", "search", "parse"))
                                                          else k: v for k, v in imp.items()},
               **{f"vectors_{k}" if k in ("build_seconds", "queries", "dim", "sweep") else k: v for k, v in vec.items()},
               "recall_target_met": ok_recall, "speedup_target_met": ok_speed, "peak_rss_mib": round(peak_mib())}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

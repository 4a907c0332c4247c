"""Benchmark the embedder: ONNX Runtime (the product) against sentence-transformers on torch (before).

One run measures, side by side and interleaved where it matters:

1. **Cold start**: seconds to load each embedder, and to embed one query.
2. **Catalog**: embedding the 1,682 MovieLens 100K films alone (interleaved in chunks of 200), then
   importing them ("title. genres. Released <year>.")
   into a :class:`localpers.catalog.Catalog` with each embedder, model load included and not,
   then importing the same films again (the content-hash cache: no model run).
3. **Agreement** on the shared Panza e-mails: cosine between the two embedders' vectors, and
   recall@10 of exact search with the new query vectors against the old ones over the old
   corpus vectors (1.0 = the same ten neighbours), so indexes built before stay valid.
4. Peak memory (max RSS).

Usage::

    .venv/bin/python bench/embed.py            # all 1,682 films
    .venv/bin/python bench/embed.py --quick    # 400 films (under two minutes)

Data sets are read from ../shared/data (or --data). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from localpers.catalog import Catalog  # noqa: E402
from localpers.embed import Embedder, SentenceTransformerEmbedder  # noqa: E402


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def films(folder: Path, n: int | None) -> list[dict]:
    rows = []
    with open(folder / "ml-100k.item", encoding="utf-8", errors="replace") as f:
        next(f)
        for line in f:
            item_id, title, year, genres = (line.rstrip("\n").split("\t") + ["", "", "", ""])[:4]
            rows.append({"id": item_id, "title": title.strip() or f"Movie {item_id}", "kind": "film",
                         "tags": genres.split(), "text": f"Released {year}." if year else ""})
    return rows[:n] if n else rows


def emails(folder: Path) -> tuple[list[str], list[str]]:
    texts, subjects = [], []
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            texts.append(row["email"])
            subjects.append(row.get("subject") or row["email"][:80])
    return texts, subjects


def load_and_query(name: str, make) -> tuple[object, float, float]:
    """Build an embedder and embed one query: (the embedder, load seconds, query milliseconds), printed."""
    start = time.perf_counter()
    embedder = make()
    load = time.perf_counter() - start
    start = time.perf_counter()
    embedder.encode(["when is the budget review"])
    query_ms = (time.perf_counter() - start) * 1000
    print(f"{name}: loaded in {load:.2f} s, one query in {query_ms:.1f} ms", flush=True)
    return embedder, load, query_ms


def recall_at_10(corpus: np.ndarray, reference: np.ndarray, queries: np.ndarray) -> float:
    truth = np.argsort(-(reference @ corpus.T), axis=1)[:, :10]
    found = np.argsort(-(queries @ corpus.T), axis=1)[:, :10]
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, found)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="400 films instead of 1,682")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    rows = films(args.data / "ml-100k", 400 if args.quick else None)
    mail_texts, subjects = emails(args.data / "panza-emails")

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "films.jsonl"
        source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

        new, new_load, new_query_ms = load_and_query("ONNX Runtime embedder", Embedder)
        old, old_load, old_query_ms = load_and_query("sentence-transformers", SentenceTransformerEmbedder)

        # The embedding alone, interleaved in chunks so a busy moment on the machine hits both alike.
        texts = [". ".join([r["title"], ", ".join(r["tags"]), r["text"]]) for r in rows]
        pure = {"new": 0.0, "old": 0.0}
        for start in range(0, len(texts), 200):
            for name, embedder in (("new", new), ("old", old)):
                t = time.perf_counter()
                embedder.encode(texts[start:start + 200])
                pure[name] += time.perf_counter() - t
        print(f"  embedding alone, interleaved: {len(texts) / pure['new']:.0f} vs {len(texts) / pure['old']:.0f} "
              f"films/s", flush=True)

        seconds = {}
        catalogs = {}
        for name, embedder in (("new", new), ("old", old)):
            catalog = Catalog(f"films-{name}", home=Path(tmp))
            start = time.perf_counter()
            catalog.import_file(source, embedder=embedder)
            seconds[name] = time.perf_counter() - start
            catalogs[name] = catalog
            print(f"  catalog import with {name}: {len(rows)} films in {seconds[name]:.1f} s "
                  f"({len(rows) / seconds[name]:.0f} films/s)", flush=True)

        catalogs["new"].remove(catalogs["new"].ids())
        start = time.perf_counter()
        catalogs["new"].import_file(source, embedder=new)
        again_s = time.perf_counter() - start

        ids = catalogs["old"].ids()
        film_cos = np.sum(catalogs["new"].vectors().vectors(ids) * catalogs["old"].vectors().vectors(ids), axis=1)

        corpus_old = old.encode(mail_texts)
        corpus_new = new.encode(mail_texts)
        q_old, q_new = old.encode(subjects), new.encode(subjects)
        mail_cos = np.sum(corpus_old * corpus_new, axis=1)
        recall = recall_at_10(corpus_old, q_old, q_new)

    speedup = seconds["old"] / seconds["new"]
    cold = (old_load + seconds["old"]) / (new_load + seconds["new"])
    print()
    print(f"{'':34}{'ONNX Runtime':>14}{'sentence-tr.':>14}{'ratio':>8}")
    print(f"{'load the model (s)':34}{new_load:>14.2f}{old_load:>14.2f}{old_load / new_load:>7.1f}x")
    print(f"{'embed one query (ms)':34}{new_query_ms:>14.1f}{old_query_ms:>14.1f}{old_query_ms / new_query_ms:>7.1f}x")
    print(f"{'embedding alone, interleaved (s)':34}{pure['new']:>14.1f}{pure['old']:>14.1f}"
          f"{pure['old'] / pure['new']:>7.1f}x")
    print(f"{f'catalog import, {len(rows)} films (s)':34}{seconds['new']:>14.1f}{seconds['old']:>14.1f}{speedup:>7.1f}x")
    print(f"{'  films/s':34}{len(rows) / seconds['new']:>14.0f}{len(rows) / seconds['old']:>14.0f}")
    print(f"{'  with the model load (s)':34}{new_load + seconds['new']:>14.1f}{old_load + seconds['old']:>14.1f}{cold:>7.1f}x")
    print(f"re-import of the same films (cache): {again_s:.2f} s")
    print(f"agreement: films min cosine {film_cos.min():.6f}; Panza e-mails min cosine {mail_cos.min():.6f}, "
          f"recall@10 of new queries vs old {recall:.4f} ({len(subjects)} queries, {len(mail_texts)} e-mails)")
    print(f"peak memory {peak_mib():.0f} MiB (both embedders loaded)")
    print(json.dumps({
        "films": len(rows), "new_load_s": round(new_load, 2), "old_load_s": round(old_load, 2),
        "new_query_ms": round(new_query_ms, 1), "old_query_ms": round(old_query_ms, 1),
        "new_catalog_s": round(seconds["new"], 2), "old_catalog_s": round(seconds["old"], 2),
        "embed_new_s": round(pure["new"], 2), "embed_old_s": round(pure["old"], 2),
        "embed_speedup": round(pure["old"] / pure["new"], 2), "catalog_speedup": round(speedup, 2), "catalog_speedup_with_load": round(cold, 2),
        "reimport_s": round(again_s, 3), "film_min_cosine": round(float(film_cos.min()), 6),
        "mail_min_cosine": round(float(mail_cos.min()), 6), "panza_recall_at_10": round(recall, 4),
        "peak_rss_mib": round(peak_mib())}))


if __name__ == "__main__":
    main()

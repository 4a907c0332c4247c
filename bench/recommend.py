"""Benchmark: localpers recommendations against MostPop, ItemKNN and EASE on MovieLens 100K.

Run from the repository root::

    .venv/bin/python bench/recommend.py            # every user (a few minutes)
    .venv/bin/python bench/recommend.py --quick    # 300 users, smaller grids (under two minutes)

Protocol (the same split for every method, in one run):

- per user, the latest 20% (at least one) of their ratings >= 4, by time, are held out
  as the test set; everything else they rated is training data;
- a validation split is cut from the training data the same way; EASE's lambda,
  ItemKNN's k and our blend weights are tuned on it, then every model is refitted on
  the whole training data and scored once on the test set;
- full ranking: every item the user did not rate in training is a candidate;
- NDCG@10, Recall@10, Recall@20 (hits / held-out items), HR@10, catalog coverage@10;
  the same metrics with only the held-out items that have under 5 training ratings
  counted as relevant ("cold items", users without such items left out);
- latency of ``Recommender.recommend(vault, n=10)`` through a real encrypted vault and
  a real 2,000-item catalog (the MovieLens items plus 318 items new to the item model).

Our recommender is run through the library: a real :class:`~localpers.catalog.Catalog`
(SQLite + usearch) holding the movies and an EASE item model fitted on the training
split (the "computed elsewhere from aggregate data" part), and
:class:`~localpers.recommend.Recommender` ranking from each user's training ratings.
Item texts are "title. genres. Released <year>." embedded with all-MiniLM-L6-v2 (cached
under the user cache directory: public movie titles, nothing personal).
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import math
import os
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from scipy import sparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "ml-100k"

from localpers.catalog import Catalog, Item, ItemModel, fit_ease, fit_item_knn  # noqa: E402
from localpers.itemmodel import fit_item_model  # noqa: E402
from localpers.recommend import Event, Recommender, RecommenderConfig, Taste  # noqa: E402

COLD = 5  # "cold" items: fewer training ratings than this


# ---------------------------------------------------------------------- data


def load_movielens(folder: Path) -> tuple[list[Item], list[tuple[str, str, float, float]]]:
    if not (folder / "ml-100k.inter").exists():
        sys.exit(f"MovieLens 100K not found at {folder} (expected ml-100k.inter, ml-100k.item)")
    items = []
    with open(folder / "ml-100k.item", encoding="utf-8", errors="replace") as f:
        next(f)
        for line in f:
            parts = line.rstrip("\n").split("\t")
            item_id, title, year, genres = (parts + ["", "", "", ""])[:4]
            items.append(Item(item_id, title.strip() or f"Movie {item_id}", "film", f"Released {year}." if year else "",
                              tuple(genres.split()), {"year": year}))
    ratings = []
    with open(folder / "ml-100k.inter", encoding="utf-8") as f:
        next(f)
        for line in f:
            user, item, rating, ts = line.rstrip("\n").split("\t")
            ratings.append((user, item, float(rating), float(ts)))
    return items, ratings


def split(ratings: list[tuple[str, str, float, float]], share: float = 0.2):
    """Per user: hold out the latest ``share`` of ratings >= 4 by time. Returns (train, test) by user."""
    by_user: dict[str, list[tuple[str, float, float, int]]] = {}
    for n, (user, item, rating, ts) in enumerate(ratings):
        by_user.setdefault(user, []).append((item, rating, ts, n))
    train, test = {}, {}
    for user, rows in by_user.items():
        rows.sort(key=lambda r: (r[2], r[3]))  # time, then file order for equal timestamps
        positives = [r for r in rows if r[1] >= 4]
        k = max(1, round(share * len(positives))) if len(positives) >= 2 else 0
        held = {id(r) for r in positives[len(positives) - k:]} if k else set()
        train[user] = [r for r in rows if id(r) not in held]
        if k:
            test[user] = {r[0] for r in positives[len(positives) - k:]}
    return train, test


def user_matrix(train: dict, users: list[str], pos: dict[str, int]) -> sparse.csr_matrix:
    rows, cols = [], []
    for u, user in enumerate(users):
        for item, *_ in train[user]:
            rows.append(u)
            cols.append(pos[item])
    return sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(users), len(pos)))


# ---------------------------------------------------------------------- metrics


def evaluate(lists: list[list[int]], truth: list[set[int]], n_items: int) -> dict:
    ndcg, r10, r20, hr = [], [], [], []
    covered: set[int] = set()
    for ranked, relevant in zip(lists, truth):
        covered.update(ranked[:10])
        if not relevant:
            continue
        dcg = sum(1 / math.log2(i + 2) for i, k in enumerate(ranked[:10]) if k in relevant)
        ideal = sum(1 / math.log2(i + 2) for i in range(min(10, len(relevant))))
        ndcg.append(dcg / ideal)
        hits10 = len(set(ranked[:10]) & relevant)
        r10.append(hits10 / len(relevant))
        r20.append(len(set(ranked[:20]) & relevant) / len(relevant))
        hr.append(1.0 if hits10 else 0.0)
    mean = lambda xs: float(np.mean(xs)) if xs else 0.0  # noqa: E731
    return {"ndcg@10": mean(ndcg), "recall@10": mean(r10), "recall@20": mean(r20), "hr@10": mean(hr),
            "coverage@10": len(covered) / n_items, "users": len(ndcg)}


def top_lists(scores: np.ndarray, seen: sparse.csr_matrix, k: int = 20) -> list[list[int]]:
    scores = np.array(scores, dtype=np.float32)
    coo = seen.tocoo()
    scores[coo.row, coo.col] = -np.inf
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(top, order, axis=1).tolist()


# ---------------------------------------------------------------------- embeddings with a cache


class CachedEmbedder:
    """all-MiniLM-L6-v2 with a file cache of public item texts (the model loads only on a miss)."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.vectors: dict[str, np.ndarray] = {}
        if cache.exists():
            with np.load(cache, allow_pickle=False) as f:
                self.vectors = dict(zip([str(k) for k in f["keys"]], f["vectors"]))
        self.dim = 384
        self.name = "all-minilm-l6-v2"
        self.misses = 0

    def encode(self, texts: list[str], *, batch_size: int = 32) -> np.ndarray:
        keys = [hashlib.sha256(t.encode()).hexdigest()[:24] for t in texts]
        todo = [t for t, k in zip(texts, keys) if k not in self.vectors]
        if todo:
            from localpers.embed import Embedder

            fresh = Embedder.shared().encode(list(dict.fromkeys(todo)), batch_size=batch_size)
            for t, v in zip(dict.fromkeys(todo), fresh):
                self.vectors[hashlib.sha256(t.encode()).hexdigest()[:24]] = v
            self.misses += len(todo)
            self.cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.cache.with_name(self.cache.name + ".tmp.npz")
            np.savez(tmp, keys=np.array(list(self.vectors)), vectors=np.stack(list(self.vectors.values())))
            os.replace(tmp, self.cache)
        return np.stack([self.vectors[k] for k in keys]).astype(np.float32)


# ---------------------------------------------------------------------- the bench


def histories_for(train: dict, users: list[str]) -> list[Taste]:
    return [Taste([Event(item, "rating", rating) for item, rating, *_ in train[user]]) for user in users]


def ours_lists(rec: Recommender, histories: list[Taste], k: int = 20) -> list[list[int]]:
    return rec.rank(histories, k)


def tune_ours(rec: Recommender, histories: list[Taste], truth: list[set[int]], n_items: int,
              rounds: int, log) -> tuple[RecommenderConfig, float]:
    """Coordinate ascent over the blend on the validation split (MMR and exploration off)."""
    grid = {
        "stars": [(1.0, 1.0, 1.0, 1.0, 1.0), (0.5, 0.5, 0.75, 1.0, 1.0), (0.25, 0.4, 0.6, 0.85, 1.0),
                  (-0.5, -0.25, 0.4, 0.8, 1.0)],
        "recency_half_life": [0.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0],
        "content": [0.0, 0.05, 0.1, 0.2, 0.35, 0.5],
        "content_sharpness": [1.0, 2.0, 3.0, 5.0],
        "popularity": [0.0, 0.05, 0.1, 0.2, 0.3, 0.5],
    }
    base = replace(rec.config, diversity=0.0, exploration=0.0, content=0.0, recency_half_life=0.0, popularity=0.0,
                   stars=(1.0, 1.0, 1.0, 1.0, 1.0), collaborative=1.0)
    cache: dict[str, float] = {}

    def score(cfg: RecommenderConfig) -> float:
        key = json.dumps(asdict(cfg), sort_keys=True)
        if key not in cache:
            rec.config = cfg
            cache[key] = evaluate(ours_lists(rec, histories, 10), truth, n_items)["ndcg@10"]
        return cache[key]

    best, best_score = base, score(base)
    log(f"  ours start (= EASE weights, no extras): val NDCG@10 {best_score:.4f}")
    for r in range(rounds):
        for name, values in grid.items():
            for value in values:
                cfg = replace(best, **{name: value})
                s = score(cfg)
                if s > best_score + 1e-6:
                    best, best_score = cfg, s
            log(f"  round {r + 1} {name:<18} -> {getattr(best, name)!s:<28} val NDCG@10 {best_score:.4f}")
    return best, best_score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 users and smaller grids (under two minutes)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--latency-users", type=int, default=None)
    parser.add_argument("--builder-method", choices=["auto", "ease", "knn"], default="auto",
                        help="how `localpers catalog build-model` fits our item model (auto: EASE where it fits)")
    parser.add_argument("--top-k", type=int, default=None,
                        help="neighbours per item in our item model (default: what a device keeps on install)")
    parser.add_argument("--scale", action="store_true", help="synthetic catalogs of 10^4-10^6 items (see scale_main)")
    parser.add_argument("--sizes", default=None, help="--scale: catalog sizes, e.g. 10000,100000")
    parser.add_argument("--interactions", type=int, default=None, help="--scale: interactions for the item model")
    parser.add_argument("--no-prebuilt-index", action="store_true",
                        help="--scale: ship vectors without a usearch index (the device builds the graph)")
    args = parser.parse_args()
    if args.scale:
        from bench.recommend_scale import scale_main

        scale_main(args)
        return
    started = time.time()
    log = lambda msg: print(msg, flush=True)  # noqa: E731

    items, ratings = load_movielens(args.data)
    ids = [item.id for item in items]
    pos = {item_id: k for k, item_id in enumerate(ids)}
    n_items = len(ids)
    train, test = split(ratings)
    val_train, val_test = split([(u, i, r, ts) for u, rows in train.items() for i, r, ts, _ in rows])
    all_users = sorted(train, key=int)
    rng = np.random.default_rng(0)
    eval_users = sorted(test, key=int)
    if args.quick:
        eval_users = sorted(rng.choice(eval_users, size=min(300, len(eval_users)), replace=False).tolist(), key=int)
    val_users = [u for u in eval_users if u in val_test]
    log(f"MovieLens 100K: {len(ratings)} ratings, {len(all_users)} users, {n_items} items; "
        f"evaluating {len(eval_users)} users ({'quick' if args.quick else 'full'})")

    # The catalog: a real one, in a throwaway data directory.
    home = Path(tempfile.mkdtemp(prefix="localpers-bench-"))
    os.environ["LOCALPERS_HOME"] = str(home)
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    import platformdirs

    embedder = CachedEmbedder(Path(platformdirs.user_cache_dir("localpers")) / "bench" / "ml100k-minilm.npz")
    t = time.time()
    catalog = Catalog("movielens", home=home)
    catalog.add_items(items)
    catalog.embed_pending(embedder=embedder)
    log(f"catalog: {len(catalog)} items embedded in {time.time() - t:.1f}s ({embedder.misses} new embeddings)")

    def train_counts(split_train: dict) -> np.ndarray:
        counts = np.zeros(n_items, dtype=np.int64)
        for rows in split_train.values():
            for item, *_ in rows:
                counts[pos[item]] += 1
        return counts

    # ------------------------------------------------------------ validation: tune everything
    t = time.time()
    x_val_all = user_matrix(val_train, all_users, pos)  # the item models learn from every user
    x_val = user_matrix(val_train, val_users, pos)
    truth_val = [{pos[i] for i in val_test[u]} for u in val_users]
    lambdas = [100.0, 250.0, 500.0, 1000.0] if args.quick else [50.0, 100.0, 200.0, 300.0, 500.0, 750.0, 1000.0, 2000.0]
    ease_val = {}
    for lam in lambdas:
        b = fit_ease(x_val_all, lam)
        ease_val[lam] = evaluate(top_lists(x_val @ b, x_val), truth_val, n_items)["ndcg@10"]
    lam = max(ease_val, key=ease_val.get)
    log(f"EASE lambda on validation: {lam:g} (val NDCG@10 {ease_val[lam]:.4f}; grid {ease_val})")
    knn_val = {}
    for k in [50, 100, 200] if args.quick else [20, 50, 100, 200, 400]:
        s = fit_item_knn(x_val_all, k)
        knn_val[k] = evaluate(top_lists((x_val @ s).toarray(), x_val), truth_val, n_items)["ndcg@10"]
    knn_k = max(knn_val, key=knn_val.get)
    log(f"ItemKNN k on validation: {knn_k} (val NDCG@10 {knn_val[knn_k]:.4f})")

    counts_val = train_counts(val_train)
    # Ours uses the model `localpers catalog build-model` writes: sparse, top-k neighbours per item.
    catalog.save_item_model(_with_counts(fit_item_model(x_val_all, ids, method=args.builder_method, l2=lam,
                                                        top_k=args.top_k), counts_val))
    rec = Recommender(catalog)
    product = rec.config  # MMR and exploration as shipped
    val_histories = histories_for(val_train, val_users)
    best, best_val = tune_ours(rec, val_histories, truth_val, n_items, 1 if args.quick else 2, log)
    # MMR and the exploration share are product choices (kept at their defaults); what they cost
    # is shown here. How novel items are ranked is tuned on the validation cold items.
    cold_val = [{k for k in rel if counts_val[k] < COLD} for rel in truth_val]
    explore_val = {}
    for weight in [0.0, 0.5, 1.0, 2.0, 4.0]:
        rec.config = replace(best, diversity=product.diversity, exploration=product.exploration, explore_content=weight)
        lists = ours_lists(rec, val_histories, 10)
        explore_val[weight] = (evaluate(lists, cold_val, n_items)["ndcg@10"],
                               evaluate(lists, truth_val, n_items)["ndcg@10"])
        log(f"  diversity {product.diversity:g}, exploration {product.exploration:g}, explore_content {weight:g}: "
            f"val NDCG@10 {explore_val[weight][1]:.4f}, cold {explore_val[weight][0]:.4f}")
    explore_content = max(explore_val, key=lambda w: explore_val[w])
    final_cfg = replace(best, diversity=product.diversity, exploration=product.exploration,
                        explore_content=explore_content)
    log(f"validation done in {time.time() - t:.1f}s; ours: {json.dumps(_cfg_summary(final_cfg))}")

    # ------------------------------------------------------------ test: refit on all training data, score once
    t = time.time()
    x_all = user_matrix(train, all_users, pos)
    x_test = user_matrix(train, eval_users, pos)
    counts = train_counts(train)
    truth = [{pos[i] for i in test[u]} for u in eval_users]
    cold_truth = [{k for k in rel if counts[k] < COLD} for rel in truth]
    b = fit_ease(x_all, lam)
    results = {
        "MostPop": top_lists(np.broadcast_to(counts.astype(np.float32), (len(eval_users), n_items)), x_test),
        "ItemKNN": top_lists((x_test @ fit_item_knn(x_all, knn_k)).toarray(), x_test),
        "EASE": top_lists(x_test @ b, x_test),
    }
    ours_model = _with_counts(fit_item_model(x_all, ids, method=args.builder_method, l2=lam, top_k=args.top_k),
                              counts)
    catalog.save_item_model(ours_model)
    log(f"our item model: {ours_model.info['method']}, top {ours_model.info['top_k']} neighbours, "
        f"{ours_model.weights.nnz:,} "
        f"weights (dense EASE: {n_items * n_items:,})")
    rec = Recommender(catalog, final_cfg)
    test_histories = histories_for(train, eval_users)
    t_rank = time.time()
    results["ours"] = ours_lists(rec, test_histories, 20)
    rank_seconds = time.time() - t_rank
    # @10 metrics read the first 10 of the 20-item lists: MMR is greedy and the exploration
    # slots fall at fixed positions, so they are exactly what a 10-item request returns.
    assert ours_lists(rec, test_histories[:25], 10) == [lst[:10] for lst in results["ours"][:25]]
    rec.config = replace(final_cfg, diversity=0.0, exploration=0.0)
    results["ours (no MMR/exploration)"] = ours_lists(rec, test_histories, 20)
    rec.config = final_cfg
    table = {name: evaluate(lists, truth, n_items) for name, lists in results.items()}
    cold = {name: evaluate(lists, cold_truth, n_items) for name, lists in results.items()}
    log(f"test scoring done in {time.time() - t:.1f}s (ours ranked {len(eval_users)} users in {rank_seconds:.2f}s)")

    # ------------------------------------------------------------ latency through the real API
    latency = measure_latency(home, catalog, items, embedder, train, eval_users, final_cfg, ours_model,
                              args.latency_users or (30 if args.quick else 100))

    # ------------------------------------------------------------ report
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    heads = ["ndcg@10", "recall@10", "recall@20", "hr@10", "coverage@10"]
    for title, tab in [("All held-out items", table), (f"Cold held-out items (< {COLD} training ratings)", cold)]:
        users = next(iter(tab.values()))["users"]
        log(f"\n{title} ({users} users)")
        log(f"{'method':<28}" + "".join(f"{h:>13}" for h in heads))
        for name, row in tab.items():
            log(f"{name:<28}" + "".join(f"{row[h]:>13.4f}" for h in heads))
    ratio = table["ours"]["ndcg@10"] / max(table["EASE"]["ndcg@10"], 1e-12)
    cold_ratio = _ratio(cold["ours"]["ndcg@10"], cold["EASE"]["ndcg@10"])
    log(f"\nours / EASE: NDCG@10 {ratio:.3f}x overall (target >= 1); on cold items NDCG@10 "
        f"{cold['ours']['ndcg@10']:.4f} vs {cold['EASE']['ndcg@10']:.4f} ({_show(cold_ratio)}), HR@10 "
        f"{cold['ours']['hr@10']:.4f} vs {cold['EASE']['hr@10']:.4f}, Recall@20 "
        f"{cold['ours']['recall@20']:.4f} vs {cold['EASE']['recall@20']:.4f}")
    log(f"latency, recommend(vault, n=10) on a {latency['catalog_items']}-item catalog: median "
        f"{latency['median_ms']:.1f} ms, p95 {latency['p95_ms']:.1f} ms, max {latency['max_ms']:.1f} ms "
        f"over {latency['users']} users (target < 100 ms); cold start from a new interest text: "
        f"median {latency['interest_median_ms']:.1f} ms")
    log(f"peak memory {peak_mb:.0f} MiB; total time {time.time() - started:.0f}s")
    summary = {
        "bench": "recommend", "quick": args.quick, "users": len(eval_users), "items": n_items,
        "ease_lambda": lam, "itemknn_k": knn_k, "config": _cfg_summary(final_cfg),
        "item_model": {"method": ours_model.info["method"], "top_k": ours_model.info["top_k"],
                       "weights": int(ours_model.weights.nnz)},
        "val_ndcg10": {"ease": round(ease_val[lam], 4), "ours": round(best_val, 4)},
        "overall": {k: {m: round(v, 4) for m, v in row.items()} for k, row in table.items()},
        "cold": {k: {m: round(v, 4) for m, v in row.items()} for k, row in cold.items()},
        "ratio_ndcg10_ours_vs_ease": round(ratio, 4),
        "ratio_cold_ndcg10_ours_vs_ease": None if cold_ratio is None else round(cold_ratio, 4),
        "latency_ms": {k: round(v, 2) if isinstance(v, float) else v for k, v in latency.items()},
        "peak_memory_mb": round(peak_mb, 1), "seconds": round(time.time() - started, 1),
    }
    print(json.dumps(summary))


def _with_counts(model: ItemModel, counts: np.ndarray) -> ItemModel:
    """The builder counts users per item from the matrix; the bench's counts are training ratings (the same)."""
    return ItemModel(model.ids, model.weights, counts, model.info)


def _ratio(ours: float, base: float) -> float | None:
    return ours / base if base > 0 else None


def _show(ratio: float | None) -> str:
    return f"{ratio:.2f}x" if ratio is not None else "EASE scores 0: no ratio"


def _cfg_summary(cfg: RecommenderConfig) -> dict:
    keys = ("collaborative", "content", "popularity", "recency_half_life", "stars", "content_sharpness", "diversity",
            "exploration", "explore_content")
    return {k: getattr(cfg, k) for k in keys}


def measure_latency(home: Path, catalog: Catalog, items: list[Item], embedder: CachedEmbedder, train: dict,
                    users: list[str], cfg: RecommenderConfig, model: ItemModel, n_users: int) -> dict:
    """``Recommender.recommend(vault, n=10)`` per user, on a 2,000-item catalog, through a real vault."""
    from localpers.vault import Vault, coarse_time

    rng = np.random.default_rng(1)
    extra = [items[k] for k in rng.choice(len(items), size=2000 - len(items), replace=False)]
    big = Catalog("latency", home=home)
    # New editions of known films: the same text (so cached embeddings), ids the item model has never seen.
    big.add_items(items + [Item(f"new-{it.id}", it.title, it.kind, it.text, it.tags, {**it.attrs, "edition": "new"})
                           for it in extra])
    big.embed_pending(embedder=embedder)
    big.save_item_model(model)
    vault = Vault.create("bench", "bench passphrase", home=home, kdf_seconds=0)
    rec = Recommender(big, cfg, embedder=embedder)
    rec.recommend(vault, n=10)  # warm-up: loads arrays
    times = []
    for user in users[:n_users]:
        vault.interactions.delete_where("1 = 1")
        now = coarse_time()
        # The rows record_feedback() writes, in one batch (the timing covers reading them, not writing).
        vault.interactions.insert_all(
            {"signal": "rating", "time": now, "item": item, "value": rating,
             "metadata": {"catalog": big.name, "title": big.get(item).title}} for item, rating, *_ in train[user])
        start = time.perf_counter()
        recs = rec.recommend(vault, n=10)
        times.append((time.perf_counter() - start) * 1000)
        assert len(recs) == 10 and all(r.reason for r in recs)
    # Cold start: an empty history and an interest text never seen before (its embedding is computed).
    vault.interactions.delete_where("1 = 1")
    from localpers.embed import Embedder

    rec_cold = Recommender(big, cfg, embedder=Embedder.shared())
    rec_cold.recommend(vault, n=10, interests="warm-up text")
    cold_times = []
    for phrase in ["space opera", "film noir detectives", "musicals from the fifties", "animated films for kids",
                   "war films", "courtroom drama", "westerns", "romantic comedies"]:
        start = time.perf_counter()
        rec_cold.recommend(vault, n=10, interests=phrase)
        cold_times.append((time.perf_counter() - start) * 1000)
    vault.close()
    return {"catalog_items": len(big), "users": len(times), "median_ms": float(np.median(times)),
            "p95_ms": float(np.percentile(times, 95)), "max_ms": float(np.max(times)),
            "interest_median_ms": float(np.median(cold_times))}


if __name__ == "__main__":
    main()

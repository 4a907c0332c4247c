"""``bench/recommend.py --scale``: catalogs of 10^4 to 10^6 synthetic items, end to end.

For each size: a synthetic catalog (titles, tags, years; 64 topics), its shipped vectors
(topic centres plus noise, 384 dimensions like all-MiniLM-L6-v2) and a synthetic
interactions file (power-law item popularity, each user drawn to two topics). Then,
each phase in a fresh process so its peak memory is its own:

1. **build**: ``build_item_model`` (what ``localpers catalog build-model`` runs) on the
   interactions: time and peak memory;
2. **import**: ``Catalog.import_file`` with the shipped vectors: items per second;
3. **requests**: ``Recommender.recommend(vault, n=10)`` through a real encrypted vault for
   users with 20, 200 and 2,000 interactions: median and p95 latency, peak memory;
4. at 10^4 items (the size of the 9,125-film MovieLens edition) the CLI ``localpers
   recommend`` as a subprocess: wall time and peak memory.

Baseline side by side: the full scan (every item scored) up to 20,000 items, i.e.
``large_catalog`` raised above the size; at 10^6 only the candidate path runs.

    .venv/bin/python bench/recommend.py --scale --quick             # 10^4 items, 2*10^5 interactions
    .venv/bin/python bench/recommend.py --scale --sizes 10000,100000
    .venv/bin/python bench/recommend.py --scale                     # 10^4, 10^5, 10^6 items, 10^7 interactions
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DIM = 384
TOPICS = 64
WORDS = ("red", "silent", "iron", "winter", "lost", "golden", "hidden", "last", "broken", "wild", "city", "river",
         "garden", "machine", "letter", "empire", "night", "song", "road", "house", "star", "glass", "storm", "bridge")


def peak_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: a spawned phase's ru_maxrss
    still counts the parent's memory it was forked from before exec."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------- synthetic data (public, made up)


def make_catalog(folder: Path, n: int, seed: int = 0, *, index: bool = True) -> tuple[Path, Path, np.ndarray]:
    """The items, and their vectors as a publisher ships them (with a prebuilt usearch index unless not ``index``)."""
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, TOPICS, n)
    centres = rng.standard_normal((TOPICS, DIM)).astype(np.float32)
    path, vec_path = folder / "catalog.jsonl", folder / "catalog.vectors.npz"
    words = np.array(WORDS)
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, n, 100_000):
            k = np.arange(start, min(n, start + 100_000))
            w = words[rng.integers(0, len(words), (len(k), 3))]
            years = rng.integers(1920, 2025, len(k))
            f.write("".join(json.dumps({"id": f"it{i}", "title": f"The {a} {b} {c}".title(),
                                        "tags": [f"topic{topic[i]}", b], "year": int(y)}) + "\n"
                            for i, (a, b, c), y in zip(k, w, years)))
    vectors = np.empty((n, DIM), dtype=np.float16)
    for start in range(0, n, 100_000):
        end = min(n, start + 100_000)
        v = centres[topic[start:end]] + 0.8 * rng.standard_normal((end - start, DIM)).astype(np.float32)
        vectors[start:end] = v / np.linalg.norm(v, axis=1, keepdims=True)
    sys.path.insert(0, str(ROOT))
    from localpers.catalog import save_shipped_vectors

    t = time.time()
    save_shipped_vectors(vec_path, [f"it{i}" for i in range(n)], vectors, "all-minilm-l6-v2", index=index)
    print(f"  publisher: vectors{' and their usearch index' if index else ''} written in {time.time() - t:.0f}s",
          flush=True)
    return path, vec_path, topic


def make_interactions(folder: Path, n_items: int, n_interactions: int, topic: np.ndarray, seed: int = 1) -> Path:
    """Power-law popularity (Zipf-like, exponent 0.9) within topics; users of 2 topics, 5-200 items each."""
    rng = np.random.default_rng(seed)
    by_topic = [np.flatnonzero(topic == t) for t in range(TOPICS)]
    # Within each topic, item rank r gets weight 1 / r^0.9.
    weights = [1.0 / np.arange(1, len(items) + 1) ** 0.9 for items in by_topic]
    cdfs = [np.cumsum(w) / w.sum() for w in weights]
    path = folder / "interactions.csv"
    written, first_user = 0, 0
    with open(path, "w") as f:
        f.write("user_id,item_id\n")
        while written < n_interactions:
            users = 20_000
            sizes = np.minimum(200, 5 + (rng.pareto(1.5, users) * 10).astype(np.int64))
            user = np.repeat(np.arange(first_user, first_user + users), sizes)
            two = rng.integers(0, TOPICS, (users, 2))
            t = two[user - first_user, rng.integers(0, 2, len(user))]
            item = np.empty(len(user), dtype=np.int64)
            r = rng.random(len(user))
            for tt in np.unique(t):  # vectorized within each topic
                sel = t == tt
                item[sel] = by_topic[tt][np.minimum(len(by_topic[tt]) - 1, np.searchsorted(cdfs[tt], r[sel]))]
            pairs = np.unique(np.stack([user, item], axis=1), axis=0)  # a user meets an item once
            f.write("".join(f"u{u},it{k}\n" for u, k in pairs.tolist()))
            written += len(pairs)
            first_user += users
    return path


# ---------------------------------------------------------------------- phases (each in its own process)


def phase_build(interactions: str, out: str, method: str) -> dict:
    sys.path.insert(0, str(ROOT))
    from localpers.itemmodel import build_item_model

    report = build_item_model(interactions, method=method, budget_gb=4.0)
    report.model.save(out)
    return {"seconds": report.seconds, "peak_mb": peak_mb(), "method": report.method, "items": len(report.model.ids),
            "interactions": report.interactions, "users": report.users, "weights": int(report.model.weights.nnz)}


def phase_import(home: str, catalog_file: str, vectors: str, model: str) -> dict:
    sys.path.insert(0, str(ROOT))
    os.environ["LOCALPERS_HOME"] = home
    from localpers import index
    from localpers.catalog import Catalog

    index.llama_will_not_load()  # as `localpers catalog import` does
    start = time.perf_counter()
    catalog = Catalog("scale", home=Path(home))
    report = catalog.import_file(catalog_file, vectors=vectors)
    seconds = time.perf_counter() - start
    t = time.perf_counter()
    catalog.load_item_model(model)
    return {"items": report.imported, "shipped": report.shipped, "embedded_here": report.embedded,
            "seconds": seconds, "items_per_s": report.imported / seconds, "model_install_s": time.perf_counter() - t,
            "peak_mb": peak_mb()}


def phase_requests(home: str, sizes: list[int], large_catalog: int | None, requests: int) -> dict:
    sys.path.insert(0, str(ROOT))
    os.environ["LOCALPERS_HOME"] = home
    from localpers.catalog import Catalog
    from localpers.recommend import Recommender, RecommenderConfig
    from localpers.vault import Vault, coarse_time

    catalog = Catalog("scale", home=Path(home))
    n_items = len(catalog)
    cfg = RecommenderConfig() if large_catalog is None else RecommenderConfig(large_catalog=large_catalog)
    start = time.perf_counter()
    rec = Recommender(catalog, cfg)
    load_s = time.perf_counter() - start
    vault = Vault.open("bench", "bench passphrase", home=Path(home) / "users") if (
        Path(home) / "users" / "bench").exists() else Vault.create("bench", "bench passphrase",
                                                                      home=Path(home) / "users", kdf_seconds=0)
    rng = np.random.default_rng(7)
    out = {"load_s": load_s, "candidates": rec.large is not None}
    for size in sizes:
        times = []
        for r in range(requests + 1):
            vault.interactions.delete_where("1 = 1")
            items = rng.choice(n_items, size=size, replace=False)
            vault.interactions.insert_all({"signal": "rating", "time": coarse_time(), "item": f"it{k}",
                                           "value": float(rng.integers(1, 11)) / 2, "metadata": {"catalog": "scale"}}
                                          for k in items)
            t = time.perf_counter()
            recs = rec.recommend(vault, n=10)
            if r:  # the first is a warm-up (maps the files)
                times.append((time.perf_counter() - t) * 1000)
            assert len(recs) == 10
        out[str(size)] = {"median_ms": float(np.median(times)), "p95_ms": float(np.percentile(times, 95))}
    vault.close()
    out["peak_mb"] = peak_mb()
    return out


def run_phase(fn, *args) -> dict:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def cli_recommend(home: str) -> dict:
    """``localpers recommend --user bench`` in its own process (the history the last requests left)."""
    env = {**os.environ, "LOCALPERS_HOME": home, "LOCALPERS_PASSPHRASE": "bench passphrase"}
    start = time.perf_counter()
    proc = subprocess.Popen([str(Path(sys.executable).with_name("localpers")), "recommend", "--user", "bench",
                             "--catalog", "scale"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak memory
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    after = usage.ru_maxrss
    if result.returncode != 0:
        raise SystemExit(f"CLI recommend failed: {result.stderr.strip()}")
    return {"seconds": seconds, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_mb": after / 1024,
            "lines": len(result.stdout.splitlines())}


def scale_main(args) -> None:
    started = time.time()
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([10_000] if args.quick else
                                                                        [10_000, 100_000, 1_000_000])
    n_inter = args.interactions or (200_000 if args.quick else 10_000_000)
    method = args.builder_method if args.builder_method != "auto" or not args.quick else "knn"
    requests = 8 if args.quick else 20
    rows = []
    for n in sizes:
        work = Path(tempfile.mkdtemp(prefix=f"localpers-scale-{n}-"))
        try:
            t = time.time()
            catalog_file, vectors, topic = make_catalog(work, n, index=not args.no_prebuilt_index)
            inter = make_interactions(work, n, n_inter, topic)
            print(f"\n{n:,} items: synthetic data written in {time.time() - t:.0f}s", flush=True)
            build = run_phase(phase_build, str(inter), str(work / "model.npz"), method)
            print(f"  build-model: {build['method']}, {build['interactions']:,} interactions of "
                  f"{build['users']:,} users -> {build['items']:,} items, {build['weights']:,} weights in {build['seconds']:.1f}s, peak "
                  f"{build['peak_mb']:.0f} MB", flush=True)
            home = str(work / "home")
            imp = run_phase(phase_import, home, str(catalog_file), str(vectors), str(work / "model.npz"))
            print(f"  import with shipped vectors: {imp['items']:,} items in {imp['seconds']:.1f}s "
                  f"({imp['items_per_s']:,.0f} items/s; embedded here: {imp['embedded_here']}), model install "
                  f"{imp['model_install_s']:.1f}s, peak {imp['peak_mb']:.0f} MB", flush=True)
            users = [20, 200] if args.quick else [20, 200, 2000]
            ours = run_phase(phase_requests, home, users, None, requests)
            full = run_phase(phase_requests, home, users, 10**9, requests) if n <= 20_000 else None
            print(f"  {'requests (n=10)':<26}{'ours ' + ('candidates' if ours['candidates'] else 'full scan'):>28}"
                  f"{'full scan (baseline)':>28}", flush=True)
            for size in users:
                o = ours[str(size)]
                f_ = full[str(size)] if full else None
                base = f"{f_['median_ms']:8.1f} / {f_['p95_ms']:8.1f} ms" if f_ else f"{'(does not fit)':>22}"
                print(f"  user with {size:>5} items   {o['median_ms']:8.1f} / {o['p95_ms']:8.1f} ms   {base:>24}"
                      f"   (median / p95)", flush=True)
            print(f"  peak memory: ours {ours['peak_mb']:.0f} MB (load {ours['load_s']:.2f}s)" +
                  (f", full scan {full['peak_mb']:.0f} MB (load {full['load_s']:.2f}s)" if full else ""), flush=True)
            row = {"items": n, "build": build, "import": imp, "ours": ours, "full_scan": full}
            if n <= 20_000:
                runs = [cli_recommend(home) for _ in range(3)]
                row["cli"] = min(runs, key=lambda r: r["seconds"])  # the least disturbed by other work
                print(f"  CLI `localpers recommend` ({users[-1]}-rating history), best of 3: "
                      f"{row['cli']['seconds']:.2f}s wall, {row['cli']['cpu_s']:.2f}s CPU, peak "
                      f"{row['cli']['peak_mb']:.0f} MB (target <= 1.5 s, <= 500 MB)", flush=True)
            rows.append(row)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\ntotal {time.time() - started:.0f}s; the machine was shared (timings inflated by other work)")
    print(json.dumps({"bench": "recommend-scale", "quick": args.quick, "interactions": n_inter, "sizes": rows,
                      "seconds": round(time.time() - started, 1)}, default=lambda x: round(x, 2)))

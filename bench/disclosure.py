"""How few features fix a decision? Our minimal-disclosure selector vs two baselines, in one run.

For each data set and model, every evaluated person's features are revealed one
at a time until the decision is fixed with probability >= 1 - delta (the same
stopping rule for all three), choosing the next feature:

- ours: localpers.disclosure.minimal_disclosure's rollout, which starts from the
  same importance order and departs from it only where simulation under the prior
  shows another feature clearly settles the decision sooner;
- importance: in a global importance order (permutation importance of each
  feature for the model's decisions on training data);
- random: in a random order (new for each person);
- oracle: the fewest features that meet the stopping rule for this person,
  found by trying subsets by size knowing every value (no real policy can do
  better; past a search budget it is bounded by the best of the others).

Reported: fraction of the private features revealed (mean, median, 90th
percentile), agreement of the announced decision with the model's decision on
all the features, and seconds per person.

Data:
- breast cancer (scikit-learn's bundled copy): 30 numeric features, 80/20 split,
  Gaussian prior fitted on the training part; logistic regression (closed form)
  and gradient boosting (Monte-Carlo).
- MovieLens 100K (../shared/data/ml-100k; skipped when absent): does a user rate
  a film >= 4? Private user features: age, gender, occupation, and five derived
  from the user's training ratings (mean and spread of their ratings, how many
  they rated, their taste for the film's genres and for its decade). Public film
  features: 18 genres, year, mean rating and popularity.
  Mixed prior (location model) fitted on training pairs; logistic regression on
  one-hot features (closed form, Gaussian margins) and histogram gradient
  boosting (Monte-Carlo, empirical margins: a Gaussian copula).

- MovieLens users (same files): one row per user, every feature categorical
  (age band, gender, occupation, zip region, and four bands from their ratings of
  non-drama films); does the user rate dramas highly? 18.6 million category
  combinations: the prior lists only those seen. Logistic regression on one-hot
  columns (closed form) and histogram gradient boosting on category codes.

Models are evaluated on one thread (threadpoolctl): the selector makes many small
predictions, for which OpenMP start-up costs more than it saves.

Usage::

    .venv/bin/python bench/disclosure.py           # full run
    .venv/bin/python bench/disclosure.py --quick   # under two minutes
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from localpers.disclosure import DisclosureConfig, GaussianPrior, MixedPrior, Prior, minimal_disclosure  # noqa: E402


QUICK_PEOPLE = 15  # people per setting in --quick


@dataclass
class Setting:
    """One data set and model: who to evaluate, and how."""

    name: str
    model: object
    prior: Prior
    people: np.ndarray  # rows (prior codes) to evaluate
    private: list[str]
    config: DisclosureConfig
    importance: list[str]  # global importance order of the private features


def predict(model, prior: Prior, config: DisclosureConfig, X: np.ndarray) -> np.ndarray:
    """The model's decisions on full rows, as it sees them."""
    encoded = prior.one_hot(X) if config.encoding == "one-hot" else X
    return model.predict(encoded)


def permutation_order(model, prior: Prior, config: DisclosureConfig, X: np.ndarray, private: list[str],
                      seed: int = 0) -> list[str]:
    """Private features by how many of the model's decisions change when that feature is shuffled."""
    rng = np.random.default_rng(seed)
    base = predict(model, prior, config, X)
    changed = {}
    for name in private:
        i = prior.index(name)
        shuffled = X.copy()
        shuffled[:, i] = rng.permutation(shuffled[:, i])
        changed[name] = float(np.mean(predict(model, prior, config, shuffled) != base))
    return sorted(private, key=lambda n: -changed[n])


# ---------------------------------------------------------------------- data sets


def breast_cancer(quick: bool, delta: float) -> list[Setting]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    names = [str(n) for n in data.feature_names]
    X_train, X_test, y_train, _ = train_test_split(data.data, data.target, test_size=0.2, random_state=0,
                                                   stratify=data.target)
    prior = GaussianPrior.fit(X_train, names=names)
    config = DisclosureConfig(delta=delta)
    settings = []
    for label, model in [
        ("breast-cancer/logistic", make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))),
        ("breast-cancer/gbm", GradientBoostingClassifier(random_state=0)),
    ]:
        model.fit(X_train, y_train)
        order = permutation_order(model, prior, config, X_train, names)
        settings.append(Setting(label, model, prior, X_test, names, config, order))
    return settings


GENRES = ["Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
          "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]
PRIVATE_ML = ["age", "gender", "occupation", "user_mean", "user_spread", "user_activity", "genre_taste", "era_taste"]


def _read_atomic(path: Path) -> list[list[str]]:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()[1:]
    return [line.split("\t") for line in lines if line.strip()]


def movielens(root: Path, quick: bool, delta: float, n_people: int) -> list[Setting]:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    users = {r[0]: (float(r[1]), r[2], r[3]) for r in _read_atomic(root / "ml-100k.user")}
    items = {}
    for r in _read_atomic(root / "ml-100k.item"):
        year = float(r[-2]) if r[-2].isdigit() else np.nan
        items[r[0]] = (year, {g for g in r[-1].split() if g in GENRES})
    inter = _read_atomic(root / "ml-100k.inter")
    user_ids = sorted(users)
    item_ids = sorted(items)
    u_index = {u: k for k, u in enumerate(user_ids)}
    i_index = {i: k for k, i in enumerate(item_ids)}
    u = np.array([u_index[r[0]] for r in inter])
    it = np.array([i_index[r[1]] for r in inter])
    rating = np.array([float(r[2]) for r in inter])
    genre_matrix = np.array([[g in items[i][1] for g in GENRES] for i in item_ids], dtype=float)
    years = np.array([items[i][0] for i in item_ids])
    years = np.where(np.isnan(years), np.nanmedian(years), years)

    rng = np.random.default_rng(0)
    test = rng.random(len(inter)) < 0.2
    train = ~test
    k = 5.0  # pseudo-ratings that shrink per-user and per-film averages towards broader ones
    g_mean = rating[train].mean()
    u_sum = np.bincount(u[train], rating[train], minlength=len(user_ids))
    u_n = np.bincount(u[train], minlength=len(user_ids)).astype(float)
    f_sum = np.bincount(it[train], rating[train], minlength=len(item_ids))
    f_n = np.bincount(it[train], minlength=len(item_ids)).astype(float)
    ug_sum = np.zeros((len(user_ids), len(GENRES)))
    ug_n = np.zeros((len(user_ids), len(GENRES)))
    np.add.at(ug_sum, u[train], genre_matrix[it[train]] * rating[train][:, None])
    np.add.at(ug_n, u[train], genre_matrix[it[train]])
    u_sq = np.bincount(u[train], rating[train] ** 2, minlength=len(user_ids))
    decade = np.clip(((years - 1920) // 10).astype(int), 0, 7)  # 1920s (and before) .. 1990s
    ud_sum = np.zeros((len(user_ids), 8))
    ud_n = np.zeros((len(user_ids), 8))
    np.add.at(ud_sum, (u[train], decade[it[train]]), rating[train])
    np.add.at(ud_n, (u[train], decade[it[train]]), 1.0)

    def features(rows: np.ndarray, leave_out: bool) -> dict[str, np.ndarray]:
        """Per-pair features; training pairs leave their own rating out of the averages."""
        uu, ii, rr = u[rows], it[rows], rating[rows]
        own = 1.0 if leave_out else 0.0
        gm = genre_matrix[ii]
        user_mean = (u_sum[uu] - own * rr + k * g_mean) / (u_n[uu] - own + k)
        film_mean = (f_sum[ii] - own * rr + k * g_mean) / (f_n[ii] - own + k)
        genre_mean = (ug_sum[uu] - own * gm * rr[:, None] + k * user_mean[:, None]) / (ug_n[uu] - own * gm + k)
        n_genres = np.maximum(gm.sum(1), 1)
        taste = ((genre_mean - user_mean[:, None]) * gm).sum(1) / n_genres
        dd = decade[ii]
        era_mean = (ud_sum[uu, dd] - own * rr + k * user_mean) / (ud_n[uu, dd] - own + k)
        n_u = u_n[uu] - own
        second = (u_sq[uu] - own * rr**2 + k * (g_mean**2 + 1.0)) / (n_u + k)  # shrunk towards spread 1
        spread = np.sqrt(np.maximum(second - ((u_sum[uu] - own * rr + k * g_mean) / (n_u + k)) ** 2, 0.01))
        cols = {
            "age": np.array([users[user_ids[x]][0] for x in uu]),
            "gender": np.array([users[user_ids[x]][1] for x in uu]),
            "occupation": np.array([users[user_ids[x]][2] for x in uu]),
            "user_mean": user_mean,
            "user_spread": spread,
            "user_activity": np.log1p(n_u),
            "genre_taste": taste,
            "era_taste": era_mean - user_mean,
            "year": years[ii],
            "film_mean": film_mean,
            "film_popularity": np.log1p(f_n[ii] - own),
        }
        cols.update({f"genre:{g}": gm[:, j] for j, g in enumerate(GENRES)})
        return cols

    train_rows = np.flatnonzero(train)
    test_rows = np.flatnonzero(test)
    if quick:
        train_rows = rng.choice(train_rows, 30_000, replace=False)
    train_cols = features(train_rows, leave_out=True)
    prior = MixedPrior.fit(train_cols, categorical=["gender", "occupation"])
    # The derived features are skewed and discrete; a Gaussian copula fits them better (Monte-Carlo only).
    copula = MixedPrior.fit(train_cols, categorical=["gender", "occupation"], margins="empirical")
    X_train = np.column_stack([[prior.code(i, v) for v in train_cols[name]] if prior.features[i].is_categorical
                               else train_cols[name] for i, name in enumerate(prior.names)])
    y_train = rating[train_rows] >= 4
    people_rows = rng.choice(test_rows, n_people, replace=False)
    test_cols = features(people_rows, leave_out=False)
    people = np.column_stack([[prior.code(i, v) for v in test_cols[name]] if prior.features[i].is_categorical
                              else test_cols[name] for i, name in enumerate(prior.names)])
    public = [n for n in prior.names if n not in PRIVATE_ML]
    settings = []
    cat_mask = [f.is_categorical for f in prior.features]
    for label, model, encoding, setting_prior in [
        ("movielens/logistic", make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)), "one-hot", prior),
        ("movielens/hist-gbm", HistGradientBoostingClassifier(categorical_features=cat_mask, early_stopping=False,
                                                              random_state=0), "codes", copula),
    ]:
        config = DisclosureConfig(delta=delta, public=public, encoding=encoding)
        model.fit(prior.one_hot(X_train) if encoding == "one-hot" else X_train, y_train)
        sample = X_train[rng.choice(len(X_train), 5000, replace=False)]
        order = permutation_order(model, prior, config, sample, PRIVATE_ML)
        settings.append(Setting(label, model, setting_prior, people, PRIVATE_ML, config, order))
    return settings


def movielens_users(root: Path, delta: float) -> list[Setting]:
    """Every feature categorical: does a MovieLens user rate Drama films highly (mean >= 3.75)?

    One row per user. Private features: age band, gender, occupation, zip region (first
    digit), and four bands derived from the user's ratings of films other than dramas
    (how many, how generous, their most-rated genre, the era of their films). The
    categories combine into 18.6 million cells, so the prior lists only those seen.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    users = _read_atomic(root / "ml-100k.user")
    items = {}
    for r in _read_atomic(root / "ml-100k.item"):
        year = float(r[-2]) if r[-2].isdigit() else 1990.0
        items[r[0]] = (year, [g for g in r[-1].split() if g in GENRES])
    by_user: dict[str, list[tuple[str, float]]] = {}
    for r in _read_atomic(root / "ml-100k.inter"):
        by_user.setdefault(r[0], []).append((r[1], float(r[2])))

    def band(value: float, edges: list[float], labels: list[str]) -> str:
        return labels[int(np.searchsorted(edges, value, side="right"))]

    rows, labels = [], []
    for user_id, age, gender, occupation, zip_code in users:
        ratings = by_user.get(user_id, [])
        drama = [v for i, v in ratings if "Drama" in items[i][1]]
        other = [(i, v) for i, v in ratings if "Drama" not in items[i][1]]
        if len(drama) < 3 or len(other) < 3:
            continue
        counts = {g: 0 for g in GENRES if g != "Drama"}
        for i, _ in other:
            for g in items[i][1]:
                if g in counts:
                    counts[g] += 1
        mean_other = float(np.mean([v for _, v in other]))
        rows.append({
            "age": band(float(age), [18, 25, 35, 45, 50, 56], ["<18", "18-24", "25-34", "35-44", "45-49", "50-55",
                                                                "56+"]),
            "gender": gender,
            "occupation": occupation,
            "zip_region": zip_code[0] if zip_code[:1].isdigit() else "other",
            "activity": band(len(other), [25, 60, 150], ["light", "moderate", "keen", "avid"]),
            "generosity": band(mean_other, [3.2, 3.55, 3.9], ["harsh", "measured", "warm", "generous"]),
            "favourite_genre": max(counts, key=lambda g: (counts[g], g)),
            "era": band(float(np.mean([items[i][0] for i, _ in other])), [1980, 1988, 1993],
                        ["classic", "eighties", "early-90s", "recent"]),
        })
        labels.append(float(np.mean(drama)) >= 3.75)
    rng = np.random.default_rng(0)
    test = rng.random(len(rows)) < 0.2
    train_rows = [r for r, t in zip(rows, test) if not t]
    prior = MixedPrior.fit(train_rows, categorical=list(rows[0]))
    X = np.array([prior.row(r, unknown="missing") for r in rows])
    y = np.array(labels)
    names = list(rows[0])
    settings = []
    for label, model, encoding in [
        ("ml-users/logistic", LogisticRegression(max_iter=2000, C=0.5), "one-hot"),
        ("ml-users/hist-gbm", HistGradientBoostingClassifier(categorical_features=[True] * len(names),
                                                             max_iter=100, learning_rate=0.05, random_state=0),
         "codes"),
    ]:
        config = DisclosureConfig(delta=delta, encoding=encoding)
        train_X = X[~test]
        train_X = train_X[~np.isnan(train_X).any(axis=1)]
        model.fit(prior.one_hot(train_X) if encoding == "one-hot" else train_X, y[~test][~np.isnan(X[~test]).any(1)])
        people = X[test]
        people = people[~np.isnan(people).any(axis=1)]  # categories never seen in training: not comparable
        order = permutation_order(model, prior, config, train_X, names)
        settings.append(Setting(label, model, prior, people, names, config, order))
    return settings


# ---------------------------------------------------------------------- running


def oracle_size(setting: Setting, row: np.ndarray, budget: int, rng: np.random.Generator) -> int | None:
    """The fewest private features whose values (this person's) meet the stopping rule; None past the budget.

    Knows every value, so no real policy can do better. Subsets are tried by size;
    ``budget`` caps the assessments per person.
    """
    from localpers.disclosure.select import _assess, _evaluator

    prior = setting.prior
    evaluator, _ = _evaluator(setting.model, prior, setting.config)
    public = {i: row[i] for i in (prior.index(n) for n in setting.config.public)}
    private = [prior.index(n) for n in setting.private]
    tried = 0
    for size in range(len(private) + 1):
        for subset in itertools.combinations(private, size):
            if tried >= budget:
                return None
            tried += 1
            post = prior.posterior({**public, **{i: row[i] for i in subset}})
            if _assess(evaluator, post, rng).lower >= 1 - setting.config.delta:
                return size
    return len(private)


def evaluate(setting: Setting, method: str, seed: int = 0, bound: np.ndarray | None = None,
             oracle_budget: int = 300) -> dict:
    """Disclose for every person with one ordering method; summarise fractions, agreement and time.

    ``bound`` (oracle only): revealed counts of the other methods, used where the
    oracle's search runs past its budget (then the oracle figure is an upper bound).
    """
    rng = np.random.default_rng(seed)
    full = predict(setting.model, setting.prior, setting.config, setting.people)
    counts, agree, seconds, cpu = [], [], [], []
    unresolved = 0
    for n, row in enumerate(setting.people):
        began, began_cpu = time.perf_counter(), time.process_time()
        if method == "oracle":
            size = oracle_size(setting, row, oracle_budget, np.random.default_rng(n))
            if size is None:
                unresolved += 1
                size = int(bound[n])
            counts.append(size)
            agree.append(True)
        else:
            if method == "ours":
                config = replace(setting.config, importance=setting.importance)
            elif method == "importance":
                config = replace(setting.config, order=setting.importance)
            else:
                config = replace(setting.config, order=list(rng.permutation(setting.private)))
            d = minimal_disclosure(setting.model, setting.prior, row, replace(config, seed=n))
            counts.append(len(d.revealed))
            agree.append(d.decision == full[n])
        seconds.append(time.perf_counter() - began)
        cpu.append(time.process_time() - began_cpu)
    f = np.array(counts) / len(setting.private)
    return {"mean": float(f.mean()), "median": float(np.median(f)), "p90": float(np.quantile(f, 0.9)),
            "agreement": float(np.mean(agree)), "seconds_per_person": float(np.mean(seconds)),
            "median_seconds": float(np.median(seconds)), "p99_seconds": float(np.quantile(seconds, 0.99)),
            "median_cpu_seconds": float(np.median(cpu)), "p99_cpu_seconds": float(np.quantile(cpu, 0.99)),
            "n": len(setting.people),
            "counts": counts, "oracle_upper_bounds": unresolved}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer MovieLens pairs and training rows (< 2 minutes)")
    parser.add_argument("--delta", type=float, default=0.01)
    parser.add_argument("--movielens-pairs", type=int, default=None, help="test pairs to evaluate (default 80 / 1000)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--only", default="", help="run only settings whose name contains this")
    parser.add_argument("--oracle-budget", type=int, default=None,
                        help="subsets the oracle may assess per person (default 20 quick / 500 full)")
    args = parser.parse_args()
    n_pairs = args.movielens_pairs or (80 if args.quick else 1000)
    args.oracle_budget = args.oracle_budget or (20 if args.quick else 500)
    began = time.perf_counter()

    settings = breast_cancer(args.quick, args.delta)
    ml_root = args.data / "ml-100k"
    if (ml_root / "ml-100k.inter").exists():
        settings += movielens(ml_root, args.quick, args.delta, n_pairs)
        settings += movielens_users(ml_root, args.delta)
    else:
        print(f"MovieLens not found at {ml_root}; skipping it", flush=True)

    settings = [s for s in settings if args.only in s.name]
    if args.quick:  # the same settings on fewer people, so the whole run stays near two minutes
        settings = [replace(s, people=s.people[:QUICK_PEOPLE]) for s in settings]
    results: dict[str, dict] = {}
    single_thread = threadpool_limits(1)
    print(f"delta = {args.delta}; fraction of private features revealed and agreement with full-information "
          "decisions (same stopping rule for all orders; oracle: the fewest features that meet it, knowing all)",
          flush=True)
    header = (f"{'setting':<22} {'order':<10} {'n':>4} {'mean':>6} {'median':>7} {'p90':>6} {'agree':>7} "
              f"{'med s':>7} {'p99 s':>7} {'med cpu':>8} {'p99 cpu':>8}")
    print(header)
    for setting in settings:
        results[setting.name] = {}
        for method in ("ours", "importance", "random", "oracle"):
            bound = None
            if method == "oracle":
                bound = np.min([results[setting.name][m]["counts"] for m in ("ours", "importance", "random")],
                               axis=0)
            r = evaluate(setting, method, bound=bound, oracle_budget=args.oracle_budget)
            results[setting.name][method] = r
            note = f"  ({r['oracle_upper_bounds']} past the search budget: upper bound)" \
                if r["oracle_upper_bounds"] else ""
            print(f"{setting.name:<22} {method:<10} {r['n']:>4} {r['mean']:6.1%} {r['median']:7.1%} {r['p90']:6.1%} "
                  f"{r['agreement']:7.1%} {r['median_seconds']:7.3f} {r['p99_seconds']:7.3f} "
                  f"{r['median_cpu_seconds']:8.3f} {r['p99_cpu_seconds']:8.3f}{note}", flush=True)
        ours, imp = results[setting.name]["ours"], results[setting.name]["importance"]
        wins = sum(a < b for a, b in zip(ours["counts"], imp["counts"]))
        losses = sum(a > b for a, b in zip(ours["counts"], imp["counts"]))
        print(f"{'':<22} ours vs importance, person by person: {wins} fewer, "
              f"{len(ours['counts']) - wins - losses} same, {losses} more", flush=True)
    single_thread.unregister()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = os.getloadavg()[0]
    print(f"peak memory {peak_mb:.0f} MB; total {time.perf_counter() - began:.0f} s; load average {load:.1f} on "
          f"{os.cpu_count()} CPUs" + (" (busy: wall times are inflated)" if load > 0.75 * (os.cpu_count() or 1) else ""))
    summary = {"bench": "disclosure", "quick": args.quick, "delta": args.delta, "peak_memory_mb": round(peak_mb),
               "seconds": round(time.perf_counter() - began, 1)}
    never_worse = all(r["ours"]["median"] <= r["importance"]["median"] and r["ours"]["mean"] <= r["importance"]["mean"]
                      and r["ours"]["agreement"] >= 0.99 for r in results.values())
    fast = all(r["ours"]["median_seconds"] <= 0.2 for r in results.values())
    fast_cpu = all(r["ours"]["median_cpu_seconds"] <= 0.2 and r["ours"]["p99_cpu_seconds"] <= 1.0
                   for r in results.values())
    print(f"ours <= importance order on median and mean, agreement >= 99%, every setting: "
          f"{'met' if never_worse else 'NOT met'}; median time per decision <= 0.2 s: {'met' if fast else 'NOT met'} "
          f"(wall), CPU median <= 0.2 s and p99 <= 1 s: {'met' if fast_cpu else 'NOT met'}")
    summary["never_worse_than_importance"] = never_worse
    summary["median_time_target_met"] = fast
    summary["cpu_time_targets_met"] = fast_cpu
    for name, by_method in results.items():
        for method, r in by_method.items():
            summary[f"{name}/{method}"] = {k: round(v, 4) for k, v in r.items() if k != "counts"}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

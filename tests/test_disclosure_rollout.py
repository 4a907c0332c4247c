"""The rollout selector and priors at real category counts: pairs greedy misses, big products, unknown categories."""

from __future__ import annotations

import math
import time
import tracemalloc

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from localpers.disclosure import (
    DisclosureConfig,
    Feature,
    GaussianPrior,
    MixedPrior,
    full_decision,
    independent_prior,
    minimal_disclosure,
)
from localpers.errors import LocalpersError

SIZES = [2, 3, 5, 8, 12, 20, 30, 40]  # 69,120,000 combinations


@pytest.fixture(scope="module")
def many_categories():
    """8 categorical features of 2-40 categories, dependent through a shared latent taste, and a label."""
    rng = np.random.default_rng(0)
    n = 4000
    taste = rng.normal(size=n)
    cols, score = {}, np.zeros(n)
    for j, size in enumerate(SIZES):
        centre = (taste * size / 4 + rng.normal(0, 1, n) * size / 6) % size
        codes = np.clip(centre.astype(int), 0, size - 1)
        cols[f"f{j}"] = [f"c{c}" for c in codes]
        score += (codes / size - 0.5) * (3 - j / 3)
    y = score + rng.normal(0, 0.3, n) > 0
    prior = MixedPrior.fit(cols, categorical=list(cols))
    X = np.array([prior.row({k: v[r] for k, v in cols.items()}) for r in range(n)])
    return prior, X, y


def test_prior_lists_seen_cells_only_when_the_product_is_huge(many_categories):
    prior, X, _ = many_categories
    assert math.prod(SIZES) > 10**6
    assert len(prior.weights) <= 100_000 and prior.synthetic.any() and not prior.synthetic.all()
    assert prior.weights.sum() == pytest.approx(1.0)
    # a combination never seen keeps some probability: the synthetic cells take the revealed categories
    seen = {tuple(r.astype(int)) for r in X}
    unseen = next((a, b) for a in range(SIZES[6]) for b in range(SIZES[7]) if not any(
        s[6] == a and s[7] == b for s in seen))
    post = prior.posterior({"f6": float(unseen[0]), "f7": float(unseen[1])})
    probs = post.category_probabilities(prior.index("f5"))
    assert sum(probs.values()) == pytest.approx(1.0) and len(probs) > 1


@pytest.mark.parametrize("kind", ["logistic", "boosted"])
def test_selection_at_a_million_combinations_is_fast_and_bounded(many_categories, kind):
    prior, X, y = many_categories
    if kind == "logistic":
        model, encoding = LogisticRegression(max_iter=2000).fit(prior.one_hot(X), y), "one-hot"
    else:
        model = HistGradientBoostingClassifier(categorical_features=[True] * len(SIZES), max_iter=50,
                                               random_state=0).fit(X, y)
        encoding = "codes"
    config = DisclosureConfig(delta=0.05, encoding=encoding)
    minimal_disclosure(model, prior, X[0], config)  # the importance order is computed once per model
    times, agree = [], []
    tracemalloc.start()
    for n, x in enumerate(X[-8:]):
        began = time.process_time()
        with threadpool_limits(1):  # CPU time of one thread: small predictions gain nothing from more
            d = minimal_disclosure(model, prior, x, DisclosureConfig(delta=0.05, encoding=encoding, seed=n))
        times.append(time.process_time() - began)
        agree.append(d.decision == full_decision(model, prior, x, config))
        assert d.guaranteed and d.method == ("closed-form" if kind == "logistic" else "monte-carlo")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.median(times) <= 1.0  # CPU seconds of one thread; see the report for measured figures
    assert peak < 300 * 2**20  # measured under 100 MiB
    assert np.mean(agree) >= 0.75


@pytest.fixture(scope="module")
def pair():
    """The decision is sign(a - b); a and b are nearly equal, so either alone says almost nothing.

    ``hint`` is a noisy copy of a - b: alone it says more than a or b, so greedy takes it first, yet the
    pair (a, b) settles the decision and the hint never does.
    """
    rng = np.random.default_rng(1)
    n = 20000
    z = rng.normal(size=n)
    a, b = z + 0.1 * rng.normal(size=n), z + 0.1 * rng.normal(size=n)
    hint = (a - b) + 0.12 * rng.normal(size=n)
    noise = rng.normal(size=(n, 3))
    X = np.column_stack([a, b, hint, noise])
    names = ["a", "b", "hint", "n1", "n2", "n3"]
    prior = GaussianPrior.fit(X, names=names)
    model = LogisticRegression(C=100.0, max_iter=2000).fit(X[:, [0, 1]] @ np.eye(2, 6), a - b > 0)
    return prior, model, X


def test_rollout_finds_the_pair_greedy_misses(pair):
    prior, model, X = pair
    rollout_sizes, greedy_sizes = [], []
    for n, x in enumerate(X[:30]):
        r = minimal_disclosure(model, prior, x, DisclosureConfig(delta=0.05, seed=n))
        g = minimal_disclosure(model, prior, x, DisclosureConfig(delta=0.05, seed=n, policy="greedy"))
        assert r.decision == full_decision(model, prior, x)
        rollout_sizes.append(len(r.revealed))
        greedy_sizes.append(len(g.revealed))
        if len(r.revealed) == 2:
            assert set(r.revealed) == {"a", "b"}
    assert np.mean(rollout_sizes) < np.mean(greedy_sizes)
    assert np.median(rollout_sizes) <= 2


def test_unknown_category_is_treated_as_unavailable(many_categories):
    prior, X, y = many_categories
    model = LogisticRegression(max_iter=2000).fit(prior.one_hot(X), y)
    x = {name: prior.value(i, X[5, i]) for i, name in enumerate(prior.names)}
    x["f7"] = "a category never seen"
    d = minimal_disclosure(model, prior, x, DisclosureConfig(delta=0.05))
    assert "f7" not in d.revealed and "f7" in d.withheld
    with pytest.raises(LocalpersError, match="not one of its categories"):
        prior.row(x)  # asked directly, the prior still says what is wrong
    assert math.isnan(prior.row(x, unknown="missing")[prior.index("f7")])


@pytest.mark.parametrize("kind", ["numeric", "categorical", "mixed"])
def test_rollout_on_numeric_categorical_and_mixed_priors(kind):
    rng = np.random.default_rng(2)
    n = 3000
    job = rng.choice(["artist", "doctor", "teacher", "clerk"], size=n)
    city = rng.choice(["north", "south", "east"], size=n)
    income = np.select([job == "doctor", job == "artist"], [90.0, 30.0], 50.0) + rng.normal(0, 10, n)
    hours = 20 + 0.2 * income + rng.normal(0, 3, n)
    cols = {"job": job, "city": city, "income": income, "hours": hours}
    categorical = {"numeric": [], "categorical": ["job", "city", "band"], "mixed": ["job", "city"]}[kind]
    if kind == "numeric":
        cols = {"income": income, "hours": hours, "age": rng.normal(40, 10, n)}
    elif kind == "categorical":
        cols = {"job": job, "city": city, "band": np.where(hours > 32, "long", "short")}
    prior = MixedPrior.fit(cols, categorical=categorical)
    X = np.array([prior.row({k: v[r] for k, v in cols.items()}) for r in range(n)])
    y = (hours > 32) if kind != "categorical" else (job == "doctor") | (hours > 36)
    model = LogisticRegression(max_iter=2000).fit(prior.one_hot(X), y)
    sizes, agree = [], []
    for r in range(20):
        d = minimal_disclosure(model, prior, X[r], DisclosureConfig(delta=0.05, seed=r))
        assert d.method == "closed-form"
        sizes.append(len(d.revealed))
        agree.append(d.decision == full_decision(model, prior, X[r]))
    assert np.mean(agree) >= 0.9
    assert np.mean(sizes) < len(prior.names)


def test_failures_are_localpers_errors_that_say_what_to_do():
    features = [Feature(f"f{j}", tuple(str(c) for c in range(40))) for j in range(5)]  # 40^5 = 102 million
    with pytest.raises(LocalpersError, match="fit a MixedPrior"):
        independent_prior(features)
    with pytest.raises(LocalpersError, match="policy"):
        DisclosureConfig(policy="magic")
    with pytest.raises(LocalpersError, match="max_cells"):
        MixedPrior.fit({"a": ["x", "y"]}, categorical=["a"], max_cells=0)


def test_synthetic_cells_hold_every_category_at_its_frequency(many_categories):
    """Rare categories keep a synthetic cell each, and the cells' weights give each category its exact share."""
    prior, _, _ = many_categories
    synth = prior.synthetic
    for j, i in enumerate(prior.categorical):
        codes = prior.cells[synth, j]
        assert set(codes) == set(range(len(prior.features[i].categories)))  # none is left out
        share = np.bincount(codes, weights=prior.weights[synth], minlength=len(prior.marginals[i]))
        assert share / share.sum() == pytest.approx(prior.marginals[i], abs=1e-6)


def test_one_matching_person_does_not_speak_for_everyone():
    """A combination seen once: the hidden feature's posterior keeps half its mass on the population's mix."""
    rng = np.random.default_rng(3)
    n = 2000
    cols = {f"f{j}": [f"c{c}" for c in rng.integers(0, 12, n)] for j in range(6)}  # 12^6 ~ 3 million cells
    prior = MixedPrior.fit(cols, categorical=list(cols), max_cells=5000)
    X = np.array([prior.row({k: v[r] for k, v in cols.items()}) for r in range(n)])
    revealed = X[:, :5]
    _, first, counts = np.unique(revealed, axis=0, return_index=True, return_counts=True)
    person = X[first[np.flatnonzero(counts == 1)[0]]]  # the only training row with its first five values
    post = prior.posterior({f"f{j}": person[j] for j in range(5)})
    probs = post.category_probabilities(prior.index("f5"))
    own = probs[int(person[5])]
    # Witten-Bell: 1 row of 1 distinct cell leaves 1 / (1 + 1) to the independence model, i.e. ~1/12 each.
    assert own == pytest.approx(0.5 + 0.5 * prior.marginals[5][int(person[5])], abs=0.02)
    assert len(probs) == 12 and min(probs.values()) > 0.02


def test_remembered_decisions_match_the_model_and_follow_a_retrained_one(many_categories):
    """On an all-categorical prior the model's decisions are remembered per row, and forgotten when it changes."""
    from localpers.disclosure.select import _evaluator

    prior, X, y = many_categories
    model = HistGradientBoostingClassifier(categorical_features=[True] * len(SIZES), max_iter=20,
                                           random_state=0).fit(X, y)
    config = DisclosureConfig(encoding="codes")
    evaluator, _ = _evaluator(model, prior, config)
    rows = prior.sample(3000, np.random.default_rng(4))
    assert np.array_equal(evaluator.decide(rows), model.predict(rows).astype(int))
    assert np.array_equal(evaluator.decide(rows[::-1]), model.predict(rows[::-1]).astype(int))
    model.fit(X, ~y)  # retrained in place: the same object now decides the opposite
    again, _ = _evaluator(model, prior, config)
    assert np.array_equal(again.decide(rows), model.predict(rows).astype(int))

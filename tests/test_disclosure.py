"""The minimal-disclosure selector: priors, closed form, Monte-Carlo, and the guarantee it promises."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from localpers.disclosure import (
    DisclosureConfig,
    GaussianPrior,
    LinearDecision,
    MixedPrior,
    full_decision,
    minimal_disclosure,
)
from localpers.disclosure.select import _ClosedForm, _linear_form
from localpers.errors import LocalpersError


@pytest.fixture(scope="module")
def cancer():
    """Breast-cancer data split 80/20, a Gaussian prior and a logistic model fitted on the 80%."""
    data = load_breast_cancer()
    names = [str(n) for n in data.feature_names]
    X_train, X_test, y_train, y_test = train_test_split(data.data, data.target, test_size=0.2, random_state=0,
                                                        stratify=data.target)
    prior = GaussianPrior.fit(X_train, names=names)
    logistic = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(X_train, y_train)
    return {"names": names, "X_train": X_train, "y_train": y_train, "X_test": X_test, "prior": prior,
            "logistic": logistic}


def conditional_draws(prior: GaussianPrior, x: np.ndarray, known: list[int], n: int, rng) -> np.ndarray:
    """Complete ``x`` n times, hidden features drawn from the prior given the known ones.

    Written out with the textbook formulas, independently of the library's conditioning.
    """
    mu, cov = prior.means[0], prior.cov
    hidden = [i for i in range(len(mu)) if i not in known]
    rows = np.tile(x, (n, 1))
    if not hidden:
        return rows
    if known:
        s_hk = cov[np.ix_(hidden, known)]
        s_kk = cov[np.ix_(known, known)]
        mean = mu[hidden] + s_hk @ np.linalg.solve(s_kk, x[known] - mu[known])
        var = cov[np.ix_(hidden, hidden)] - s_hk @ np.linalg.solve(s_kk, s_hk.T)
    else:
        mean, var = mu[hidden], cov[np.ix_(hidden, hidden)]
    rows[:, hidden] = rng.multivariate_normal(mean, (var + var.T) / 2, size=n, method="eigh")
    return rows


def check_guarantee(model, prior, config, people: np.ndarray, draws: int, seed: int) -> tuple[float, float]:
    """Agreement of each disclosure's decision with the full decision (a) of the person, (b) of completions."""
    rng = np.random.default_rng(seed)
    own, completed = [], []
    for n, x in enumerate(people):
        d = minimal_disclosure(model, prior, x, replace(config, seed=n))
        own.append(d.decision == full_decision(model, prior, x))
        known = [prior.index(f) for f in d.revealed + d.public]
        rows = conditional_draws(prior, x, known, draws, rng)
        decisions = model.predict(rows)
        completed.extend(decisions == d.decision)
    return float(np.mean(own)), float(np.mean(completed))


# ---------------------------------------------------------------------- the guarantee


def test_logistic_guarantee_holds_over_many_people(cancer):
    prior, model = cancer["prior"], cancer["logistic"]
    people = np.random.default_rng(1).multivariate_normal(prior.means[0], prior.cov, size=200)
    config = DisclosureConfig(delta=0.05)
    own, completed = check_guarantee(model, prior, config, people, draws=25, seed=2)
    assert own >= 0.95
    assert completed >= 0.95
    # and on the real held-out patients: few features, same decisions as with all 30
    fractions, agree = [], []
    for x in cancer["X_test"]:
        d = minimal_disclosure(model, prior, x, config)
        assert d.method == "closed-form" and d.guaranteed
        fractions.append(d.fraction_revealed)
        agree.append(d.decision == full_decision(model, prior, x))
    assert np.mean(agree) >= 0.95
    assert np.median(fractions) <= 0.2


def test_monte_carlo_guarantee_for_gradient_boosting(cancer):
    prior = cancer["prior"]
    model = GradientBoostingClassifier(n_estimators=40, random_state=0).fit(cancer["X_train"], cancer["y_train"])
    people = np.random.default_rng(3).multivariate_normal(prior.means[0], prior.cov, size=40)
    config = DisclosureConfig(delta=0.05, n_samples=128, max_samples=1024, lookahead_samples=32)
    own, completed = check_guarantee(model, prior, config, people, draws=25, seed=4)
    assert own >= 0.9
    assert completed >= 0.95
    d = minimal_disclosure(model, prior, cancer["X_test"][0], config)
    assert d.method == "monte-carlo"
    assert d.confidence_lower is not None and d.confidence_lower >= 0.95
    assert len(d.revealed) < 15


@pytest.fixture
def torch_one_thread():
    """Torch on one thread: small forward passes on a shared 2-core machine are far faster that way."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(threads)


def test_torch_module_is_a_model(cancer, torch_one_thread):
    torch = torch_one_thread
    torch.manual_seed(0)
    X, y = cancer["X_train"], cancer["y_train"]
    mean, sd = X.mean(0), X.std(0)
    net = torch.nn.Sequential(torch.nn.Linear(30, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))

    class Standardised(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
            self.register_buffer("sd", torch.tensor(sd, dtype=torch.float32))
            self.net = net

        def forward(self, x):
            return self.net((x - self.mean) / self.sd)

    model = Standardised()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    inputs, targets = torch.tensor(X, dtype=torch.float32), torch.tensor(y)
    for _ in range(200):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs), targets).backward()
        optimiser.step()
    model.train()
    prior = cancer["prior"]
    config = DisclosureConfig(delta=0.05, labels=("malignant", "benign"), n_samples=128, max_samples=1024,
                              lookahead_samples=32)
    agree = []
    for n, x in enumerate(cancer["X_test"][:25]):
        d = minimal_disclosure(model, prior, x, replace(config, seed=n))
        assert d.method == "monte-carlo" and d.decision in ("malignant", "benign")
        agree.append(d.decision == full_decision(model, prior, x, config))
        assert len(d.revealed) < 30
    assert np.mean(agree) >= 0.9
    assert model.training  # the selector puts the module back in the mode it found it


# ---------------------------------------------------------------------- priors


def test_gaussian_conditioning_matches_the_schur_complement(cancer):
    prior = cancer["prior"]
    x = cancer["X_test"][5]
    known = [0, 7, 22]
    post = prior.posterior({prior.names[i]: x[i] for i in known})
    hidden = [i for i in range(30) if i not in known]
    mu, cov = prior.means[0], prior.cov
    s_hk, s_kk = cov[np.ix_(hidden, known)], cov[np.ix_(known, known)]
    expected_mean = mu[hidden] + s_hk @ np.linalg.solve(s_kk, x[known] - mu[known])
    expected_cov = cov[np.ix_(hidden, hidden)] - s_hk @ np.linalg.solve(s_kk, s_hk.T)
    assert list(post.num_idx) == hidden
    np.testing.assert_allclose(post.means[0], expected_mean, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(post.cov, expected_cov, rtol=1e-5, atol=1e-9)


@pytest.fixture(scope="module")
def jobs():
    """People whose job (categorical) shifts their income (numeric); hours depend on income."""
    rng = np.random.default_rng(0)
    jobs = rng.choice(["artist", "doctor", "teacher"], p=[0.3, 0.2, 0.5], size=3000)
    income = np.select([jobs == "artist", jobs == "doctor"], [30.0, 90.0], 50.0) + rng.normal(0, 8, 3000)
    hours = 20 + 0.2 * income + rng.normal(0, 2, 3000)
    rows = [{"job": j, "income": i, "hours": h} for j, i, h in zip(jobs, income, hours)]
    return rows, MixedPrior.fit(rows, categorical=["job"])


def test_mixed_prior_keeps_categories_categorical(jobs):
    rows, prior = jobs
    assert prior.features[0].categories == ("artist", "doctor", "teacher")
    np.testing.assert_allclose(prior.weights, [0.3, 0.2, 0.5], atol=0.03)
    # given the job, income is centred on that job's mean
    post = prior.posterior({"job": "doctor"})
    assert abs(post.means[0][list(post.num_idx).index(1)] - 90) < 1.5
    # a high income makes "doctor" by far the likeliest job (Bayes' rule over cells)
    probs = prior.posterior({"income": 85}).category_probabilities(0)
    assert probs[prior.code("job", "doctor")] > 0.95
    # samples carry whole categories, never fractions of one-hot columns
    sample = prior.sample(500, 0)
    assert set(np.unique(sample[:, 0])) <= {0.0, 1.0, 2.0}
    assert prior.one_hot(sample).shape == (500, 5)
    with pytest.raises(LocalpersError, match="not one of its categories"):
        prior.row({"job": "astronaut", "income": 1, "hours": 2})


def test_categorical_feature_is_revealed_as_one_feature(jobs):
    rows, prior = jobs
    X = np.array([prior.row(r) for r in rows])
    y = np.array([r["job"] == "doctor" or r["hours"] > 34 for r in rows])
    model = LogisticRegression(max_iter=2000).fit(prior.one_hot(X), y)
    d = minimal_disclosure(model, prior, {"job": "doctor", "income": 92, "hours": 38.5}, DisclosureConfig(delta=0.05))
    assert d.method == "closed-form"
    assert set(d.revealed) <= {"job", "income", "hours"}
    assert d.decision == full_decision(model, prior, {"job": "doctor", "income": 92, "hours": 38.5})
    assert d.guaranteed


def test_closed_form_probability_matches_sampling_under_a_mixture(jobs):
    _, prior = jobs
    rule = LinearDecision({"hours": 1.0, "job": {"artist": -3.0, "doctor": 2.0}}, bias=-31.0)
    linear = rule.bind(prior)
    exact = _ClosedForm(linear, DisclosureConfig())
    for known in ({}, {"income": 60.0}, {"job": "teacher"}):
        post = prior.posterior(known)
        assessed = exact.assess(post)
        sample = post.sample(40000, np.random.default_rng(1))
        p_positive = float(np.mean(linear.score(sample) > 0))
        expected = max(p_positive, 1 - p_positive)
        assert abs(assessed.confidence - expected) < 0.01
    # the look-ahead: expected entropy after revealing income, by quadrature vs brute force
    post = prior.posterior({})
    quadrature = exact.expected_entropy(post, [1], np.random.default_rng(0))[0]
    values = post.sample(3000, np.random.default_rng(2))[:, 1]
    brute = np.mean([exact.assess(post.given(1, v)).entropy for v in values])
    assert abs(quadrature - brute) < 0.02
    # the stop term: P(confidence >= 0.9 right after revealing job / income / hours), vs brute force
    for i, target in ((0, 0.9), (1, 0.9), (2, 0.9)):
        closed = exact.stop_probability(post, [i], target, np.random.default_rng(0))[0]
        draws = post.sample(3000, np.random.default_rng(3))[:, i]
        brute = np.mean([exact.assess(post.given(i, v)).confidence >= target for v in draws])
        assert 0 < brute < 1 and abs(closed - brute) < 0.03


def test_empirical_margins_follow_the_data():
    rng = np.random.default_rng(0)
    skewed = rng.lognormal(0, 1, 4000)
    counts = rng.poisson(3, 4000).astype(float)
    prior = MixedPrior.fit({"skewed": skewed, "counts": counts}, margins="empirical")
    sample = prior.sample(4000, 1)
    assert set(np.unique(sample[:, 1])) <= set(np.unique(counts))  # discrete stays discrete
    assert sample[:, 0].min() >= skewed.min() - 1e-9
    assert abs(np.median(sample[:, 0]) - np.median(skewed)) < 0.1
    assert sample[:, 0].mean() > np.median(sample[:, 0])  # still right-skewed
    model = LinearDecision({"skewed": 1.0}, bias=-2.0)
    d = minimal_disclosure(model, prior, {"skewed": 5.0, "counts": 2.0})
    assert d.method == "monte-carlo" and d.revealed == ["skewed"] and d.decision == 1


# ---------------------------------------------------------------------- options


def test_public_features_are_known_and_never_counted(cancer):
    prior, model = cancer["prior"], cancer["logistic"]
    x = cancer["X_test"][3]
    public = ["worst perimeter", "worst radius", "mean concave points"]
    d = minimal_disclosure(model, prior, x, DisclosureConfig(public=public))
    assert not set(public) & set(d.revealed)
    assert not set(public) & set(d.withheld)
    assert len(d.revealed) + len(d.withheld) == 27
    assert d.public_values["worst radius"] == pytest.approx(x[prior.index("worst radius")])
    # knowing them already, fewer private features are needed than without them
    alone = minimal_disclosure(model, prior, x, DisclosureConfig())
    assert len(d.revealed) < len(alone.revealed)
    with pytest.raises(LocalpersError, match="unknown feature"):
        minimal_disclosure(model, prior, x, DisclosureConfig(public=["not a feature"]))


def test_costs_change_the_order_and_infinite_cost_means_never(cancer):
    prior, model = cancer["prior"], cancer["logistic"]
    x = cancer["X_test"][3]
    plain = minimal_disclosure(model, prior, x, DisclosureConfig(policy="greedy"))
    first = plain.revealed[0]
    costly = minimal_disclosure(model, prior, x, DisclosureConfig(policy="greedy", costs={first: 0.5}))
    assert costly.revealed[0] != first
    assert costly.steps[0].reason.startswith("removes the most expected uncertainty")
    never = minimal_disclosure(model, prior, x, DisclosureConfig(costs={first: math.inf}))
    assert first not in never.revealed and first in never.withheld
    assert never.guaranteed
    with pytest.raises(LocalpersError, match="costs must be >= 0"):
        DisclosureConfig(costs={first: -1})


def test_fixed_order_and_unavailable_features(cancer):
    prior, model = cancer["prior"], cancer["logistic"]
    names = cancer["names"]
    x = dict(zip(names, cancer["X_test"][3]))
    order = list(reversed(names))
    d = minimal_disclosure(model, prior, x, DisclosureConfig(order=order))
    assert d.revealed == order[: len(d.revealed)]
    assert all(s.reason == "next in the given order" for s in d.steps)
    # a feature the person cannot give stays hidden; if too much is missing the guarantee is reported unmet
    missing = {**{n: None for n in names}, "mean texture": x["mean texture"]}
    d = minimal_disclosure(model, prior, missing, DisclosureConfig())
    assert d.revealed in ([], ["mean texture"])
    assert not d.guaranteed
    assert "NOT reached" in d.explain()


def test_steps_explain_each_choice(cancer):
    prior, model = cancer["prior"], cancer["logistic"]
    d = minimal_disclosure(model, prior, cancer["X_test"][3], DisclosureConfig(labels=("malignant", "benign")))
    assert d.decision in ("malignant", "benign")
    assert [s.feature for s in d.steps] == d.revealed
    assert d.steps[-1].confidence_after == pytest.approx(d.confidence)
    assert d.confidence >= 0.99
    assert all(s.expected_gain is None or s.expected_gain > 0 for s in d.steps)
    assert d.values[d.revealed[0]] == pytest.approx(cancer["X_test"][3][prior.index(d.revealed[0])])
    text = d.explain()
    assert d.revealed[0] in text and "Withheld" in text
    assert d.to_dict()["decision"] == d.decision


def test_linear_form_detection(cancer):
    prior = cancer["prior"]
    assert _linear_form(cancer["logistic"], prior, "one-hot") is not None
    gbm = GradientBoostingClassifier(n_estimators=5).fit(cancer["X_train"], cancer["y_train"])
    assert _linear_form(gbm, prior, "one-hot") is None
    with pytest.raises(LocalpersError, match="no closed form"):
        minimal_disclosure(gbm, prior, cancer["X_test"][0], DisclosureConfig(method="closed-form"))
    with pytest.raises(LocalpersError, match="cannot use"):
        minimal_disclosure(object(), prior, cancer["X_test"][0])


def test_config_rejects_bad_values():
    with pytest.raises(LocalpersError, match="delta"):
        DisclosureConfig(delta=0)
    with pytest.raises(LocalpersError, match="method"):
        DisclosureConfig(method="magic")
    with pytest.raises(LocalpersError, match="encoding"):
        DisclosureConfig(encoding="binary")
    with pytest.raises(LocalpersError, match="stop_bonus"):
        DisclosureConfig(stop_bonus=-1)

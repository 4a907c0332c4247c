"""Reveal the fewest features that fix a decision, after Tran & Fioretto, "Data Minimization at Inference Time" (2023).

The idea: a model needs a decision about one person (approve, recommend, write
formally). Features the person keeps back are treated as random, drawn from a
prior fitted on other people and conditioned on what has been revealed. Reveal
features one at a time and stop as soon as the decision the model would make
with *all* the features is known with probability at least ``1 - delta``.

Which feature next? The default policy is a **rollout** (Bertsekas) of a base
order, the model's permutation importance (``config.importance``, or computed on
people drawn from the prior). At each step it draws people from the current
posterior (so it uses only what is revealed and the prior), and for each of the
next few features ``j`` of the base order it simulates "reveal ``j``, then follow
the base order until the stopping rule fires", all candidates on the same draws.
It takes the base order's own next feature unless another one is clearly better:
on average cheaper by more than twice its standard error, *and* more expensive on
no more than 5% of the draws (near-dominance, which protects the median as well as
the mean).

Why it cannot lose to the base order: the base order's own choice is always one
of the candidates, and a rollout that picks, at every step, an action whose
"act, then follow the base order" cost is no higher than the base order's own
has an expected total cost no higher than the base order's (the policy
improvement property of rollout; by induction over the steps: if the policy
"deviate now, follow the base order after" costs no more than the base order,
then deviating again later, by the same test, costs no more than that). The
near-dominance rule makes deviations rare and only where simulation shows a
saving person by person, so sampling noise cannot turn the guarantee into a
loss; where no deviation passes the test the selector *is* the base order, step
for step. Agreement is untouched: every policy stops by the same rule, which
certifies the announced decision given the revealed values, whatever chose them.
What is guaranteed is expectation under the prior; on real data it holds as far
as the prior fits (``bench/disclosure.py`` checks it on three data sets, none
used to set any constant here, and two models each).

Cost: the base order's own path is simulated first; when it already stops after
its next reveal on nearly every draw, no other candidate could save enough to
pass the test, and none is simulated (an exact shortcut: the choice is the one
the full comparison would make). For a model run by Monte-Carlo on a prior whose
features take few values (categories, discrete margins), the model's decision is
remembered per distinct row, across people, and forgotten when the model's
outputs on a fixed probe change (a model retrained in place).

How well the stopping rule holds on people the prior was not fitted on depends on
the prior not being overconfident where its data are thin; see
:mod:`localpers.disclosure.prior` for how a prior over millions of category
combinations keeps the independence model's share where few training rows match.

The older **greedy** policy (``policy="greedy"``) reveals the feature expected to
remove the most uncertainty, scored as below; it can miss features that only
help in pairs (each useless alone), which the rollout finds when the base order
ranks them high.

How uncertain is the decision (greedy policy)? Let ``P(d | revealed)`` be the probability, over the
hidden features, that the model decides ``d``. The *confidence* is the largest of
these, and the decision announced is that most likely ``d``. The *uncertainty*
is the entropy of ``P(. | revealed)`` in bits. Before revealing feature ``j`` its
true value is unknown too, so each candidate is scored by the entropy expected
after revealing it, averaged over ``j``'s own conditional distribution::

    score(j) = H(decision | revealed) - E_j[ H(decision | revealed, x_j) ]
               + stop_bonus * P_j(confidence >= 1 - delta) - cost_weight * cost(j)

The first part is the information revealing ``j`` gives about the decision, in
bits. Entropy alone is myopic: a feature that narrows the decision a lot but
seldom settles it can beat one that often settles it outright, so the second part
adds the probability, over ``x_j``, that the stopping rule fires right after
revealing ``j`` (worth ``stop_bonus`` bits, default 1). Costs (how sensitive a
feature is) are in "bits per unit of cost". A cost of ``math.inf`` means never
reveal that feature.

Two ways to compute the stopping rule, the look-ahead and the rollout's simulations:

- **Closed form** for linear models (logistic regression, linear SVMs, a
  :class:`LinearDecision`, or a scikit-learn pipeline of scalers ending in one):
  the score ``w . x`` is, under a location-model posterior, a mixture of Gaussians
  with known means and one variance, so ``P(decision)`` is a sum of normal CDFs. The
  expectation over ``x_j`` uses Gauss-Hermite quadrature per mixture component (an
  exact sum over categories for a categorical ``j``). Exact, no sampling.
- **Monte-Carlo** for anything with ``predict_proba`` (scikit-learn style), a torch
  module, or a function returning class probabilities: sample the hidden features,
  run the model, count decisions. Stopping uses a one-sided Clopper-Pearson lower
  bound on the confidence at ``bound_level`` (drawing more samples, up to
  ``max_samples``, while the answer is unclear), so a stop is not triggered by a
  lucky small sample. The look-ahead uses ``lookahead_values`` stratified values of
  ``x_j`` and ``lookahead_samples`` rows each, with common random numbers so that
  candidates are compared on the same draws.

The rollout's simulations are vectorised: in closed form, along a fixed order the
revealed numbers enter through their innovations (a Cholesky factor), so every
prefix's score distribution is a cumulative sum over (people x components x
steps); with Monte-Carlo, each prefix's posterior is sampled and the model runs
once on all the rows, over a short horizon. Large mixtures are resampled to a
bounded number of components first, and every large array is checked against a
memory limit before it is allocated (a :class:`LocalpersError` saying what to
lower, never numpy's out-of-memory error).

Example::

    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from localpers.disclosure import GaussianPrior, DisclosureConfig, minimal_disclosure
    >>> data = load_breast_cancer()
    >>> names = list(data.feature_names)
    >>> model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    >>> model = model.fit(data.data[:400], data.target[:400])
    >>> prior = GaussianPrior.fit(data.data[:400], names=names)
    >>> d = minimal_disclosure(model, prior, data.data[450], DisclosureConfig(delta=0.01))
    >>> d.confidence >= 0.99 and len(d.revealed) < 30
    True
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import LocalpersError
from .prior import _MEMORY_LIMIT, Posterior, Prior, _cholesky


@dataclass
class DisclosureConfig:
    """How to choose what to reveal.

    delta: the decision must be fixed with probability >= 1 - delta before stopping.
    public: features that are always known (never counted as revealed or withheld).
    costs: sensitivity of each feature (default 0); ``math.inf`` means never reveal.
    cost_weight: bits of expected uncertainty one unit of cost is worth.
    order: reveal in this fixed order instead of choosing (for baselines); features
        not named come after, in the prior's order.
    encoding: what the model takes: ``"one-hot"`` (numbers as they are, categories as
        indicator columns, :meth:`Prior.one_hot`), ``"codes"`` (category indices), or a
        function from prior rows to model input.
    labels: decision names, in class order (default: the model's ``classes_``, or
        0, 1, ... for a torch module or a function).
    method: ``"auto"`` (closed form when the model is linear), ``"closed-form"`` or
        ``"monte-carlo"``.
    n_samples, max_samples, bound_level: Monte-Carlo stopping: start with n_samples,
        double up to max_samples while the Clopper-Pearson bound at bound_level is
        inconclusive.
    lookahead_values, lookahead_samples: Monte-Carlo look-ahead budget per candidate.
    quadrature_nodes: Gauss-Hermite nodes for the closed-form look-ahead.
    stop_bonus: bits a candidate earns per unit probability that revealing it fixes the
        decision at once (0: pure expected entropy drop, as in Tran & Fioretto).
    seed: random seed (the result is reproducible).
    policy: ``"rollout"`` (default: improve on the importance order, see the module
        docstring) or ``"greedy"`` (most expected entropy removed, plus the stop bonus).
    importance: the base order the rollout improves on, most important first (default:
        permutation importance of each feature for the model's decisions on people drawn
        from the prior, computed once per model and prior).
    rollout_candidates: how many of the next features in the base order are tried as
        the next reveal (closed form; Monte-Carlo tries at most 4).
    rollout_samples: people drawn from the posterior to compare candidates on (closed form).
    """

    delta: float = 0.01
    public: Sequence[str] = ()
    costs: Mapping[str, float] = field(default_factory=dict)
    cost_weight: float = 1.0
    order: Sequence[str] | None = None
    encoding: str | Callable[[np.ndarray], Any] = "one-hot"
    labels: Sequence[Any] | None = None
    method: str = "auto"
    n_samples: int = 256
    max_samples: int = 4096
    bound_level: float = 0.95
    lookahead_values: int = 8
    lookahead_samples: int = 128
    quadrature_nodes: int = 24
    stop_bonus: float = 1.0
    seed: int = 0
    policy: str = "rollout"
    importance: Sequence[str] | None = None
    rollout_candidates: int = 16
    rollout_samples: int = 64

    def __post_init__(self) -> None:
        if not 0 < self.delta < 1:
            raise LocalpersError(f"delta must be between 0 and 1 (got {self.delta})")
        if self.method not in ("auto", "closed-form", "monte-carlo"):
            raise LocalpersError(f"method must be auto, closed-form or monte-carlo (got {self.method!r})")
        if not (isinstance(self.encoding, str) and self.encoding in ("one-hot", "codes") or callable(self.encoding)):
            raise LocalpersError(f"encoding must be 'one-hot', 'codes' or a function (got {self.encoding!r})")
        bad = {k: v for k, v in self.costs.items() if not v >= 0}
        if bad:
            raise LocalpersError(f"costs must be >= 0: {bad}")
        if self.cost_weight < 0:
            raise LocalpersError("cost_weight must be >= 0")
        if not 0 < self.bound_level < 1:
            raise LocalpersError("bound_level must be between 0 and 1")
        if self.policy not in ("rollout", "greedy"):
            raise LocalpersError(f"policy must be 'rollout' or 'greedy' (got {self.policy!r})")
        if self.rollout_candidates < 1 or self.rollout_samples < 2:
            raise LocalpersError("rollout_candidates must be >= 1 and rollout_samples >= 2")
        if self.stop_bonus < 0:
            raise LocalpersError("stop_bonus must be >= 0")
        if min(self.n_samples, self.max_samples, self.lookahead_values, self.lookahead_samples,
               self.quadrature_nodes) < 1 or self.max_samples < self.n_samples:
            raise LocalpersError("sample counts must be >= 1 and max_samples >= n_samples")


@dataclass
class Step:
    """One revealed feature and why it was chosen."""

    feature: str
    value: Any
    reason: str
    confidence_before: float
    confidence_after: float
    decision_after: Any
    expected_gain: float | None = None  # bits, None when not computed (fixed order, last feature)
    cost: float = 0.0


@dataclass
class Disclosure:
    """The outcome: what to reveal, the decision it fixes, and how sure that is."""

    decision: Any
    confidence: float  # P(decision | revealed); a Monte-Carlo estimate for black-box models
    revealed: list[str]  # in the order chosen
    values: dict[str, Any]  # the revealed values (what is actually sent)
    withheld: list[str]
    public: list[str]
    steps: list[Step]
    delta: float
    method: str
    public_values: dict[str, Any] = field(default_factory=dict)
    confidence_lower: float | None = None  # Clopper-Pearson bound (Monte-Carlo only)

    @property
    def guaranteed(self) -> bool:
        """Whether the stopping rule was met (False only when too many features were unavailable)."""
        bound = self.confidence if self.confidence_lower is None else self.confidence_lower
        return bound >= 1 - self.delta

    @property
    def fraction_revealed(self) -> float:
        """Revealed features over revealable ones (public ones excluded)."""
        total = len(self.revealed) + len(self.withheld)
        return len(self.revealed) / total if total else 0.0

    def to_dict(self) -> dict:
        out = asdict(self)
        return _plain(out)

    def explain(self) -> str:
        """A few lines for people: the decision, each step and its reason, what stayed private."""
        lines = [f"Decision: {self.decision} ({self.confidence:.1%} sure; target {1 - self.delta:.0%}"
                 f"{'' if self.guaranteed else ', NOT reached: features missing or never to be revealed'})"]
        if not self.steps:
            lines.append("Nothing needed: the decision is already fixed without any private feature.")
        for n, step in enumerate(self.steps, 1):
            lines.append(f"{n}. {step.feature} = {step.value}: {step.reason}; "
                         f"confidence {step.confidence_before:.1%} -> {step.confidence_after:.1%}")
        lines.append(f"Revealed ({len(self.revealed)}): {', '.join(self.revealed) or 'none'}")
        lines.append(f"Withheld ({len(self.withheld)}): {', '.join(self.withheld) or 'none'}")
        if self.public:
            lines.append(f"Public, always known ({len(self.public)}): {', '.join(self.public)}")
        return "\n".join(lines)


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """The standard normal CDF, element-wise.

    Small arrays go through ``math.erfc``: importing scipy.special costs 0.1-0.5 s, more
    than a recommendation request takes.

        >>> normal_cdf(np.array([0.0, 1.96])).round(3).tolist()
        [0.5, 0.975]
    """
    x = np.asarray(x, dtype=np.float64)
    if x.size > 4096:
        from scipy.special import ndtr  # deferred: see above

        return ndtr(x)
    return 0.5 * np.asarray(np.frompyfunc(math.erfc, 1, 1)(x * -math.sqrt(0.5)), dtype=np.float64)


def _plain(value: Any) -> Any:
    """JSON-ready copies of numpy scalars, tuples and nested containers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


# ---------------------------------------------------------------------- models


class LinearDecision:
    """A linear decision over named features: ``labels[1]`` when ``bias + sum(weight * x) > 0``.

    ``weights`` maps a numeric feature to its weight and a categorical feature to a
    ``{category: contribution}`` mapping (missing categories contribute 0). Features
    not named have weight 0. The disclosure selector handles it in closed form.

    Example::

        >>> tone = LinearDecision({"formality": 6.0, "occupation": {"lawyer": 1.0}}, bias=-3.0,
        ...                       labels=("casual", "formal"))
    """

    def __init__(self, weights: Mapping[str, float | Mapping[str, float]], bias: float = 0.0,
                 labels: Sequence[Any] = (0, 1)) -> None:
        if len(labels) != 2:
            raise LocalpersError("a LinearDecision has exactly two labels")
        self.weights = dict(weights)
        self.bias = float(bias)
        self.labels = tuple(labels)

    def bind(self, prior: Prior) -> "_LinearScore":
        w = np.zeros(len(prior.names))
        contrib: dict[int, np.ndarray] = {}
        for name, weight in self.weights.items():
            i = prior.index(name)
            feature = prior.features[i]
            if feature.is_categorical:
                if not isinstance(weight, Mapping):
                    raise LocalpersError(f"{name!r} is categorical: give its weights as {{category: weight}}")
                unknown = set(map(str, weight)) - set(feature.categories)
                if unknown:
                    raise LocalpersError(f"{name!r} has no categories {', '.join(sorted(unknown))}")
                contrib[i] = np.array([float(weight.get(c, 0.0)) for c in feature.categories])
            else:
                if isinstance(weight, Mapping):
                    raise LocalpersError(f"{name!r} is numeric: give it one weight")
                w[i] = float(weight)
        return _LinearScore(w, contrib, self.bias, self.labels)


@dataclass
class _LinearScore:
    w: np.ndarray  # per feature; 0 for categorical ones
    contrib: dict[int, np.ndarray]  # categorical feature -> score contribution of each category
    bias: float
    labels: tuple

    def score(self, X: np.ndarray) -> np.ndarray:
        X = np.atleast_2d(X)
        numeric = np.nan_to_num(X) @ self.w  # categorical columns have weight 0
        for i, c in self.contrib.items():
            numeric = numeric + c[X[:, i].astype(int)]
        return numeric + self.bias


def _encoder(prior: Prior, encoding: str | Callable) -> Callable[[np.ndarray], Any]:
    if callable(encoding):
        return encoding
    return prior.one_hot if encoding == "one-hot" else (lambda X: X)


def _linear_form(model: Any, prior: Prior, encoding: str | Callable) -> _LinearScore | None:
    """The model as a linear score on prior rows, or None when it is not (then Monte-Carlo is used)."""
    if isinstance(model, LinearDecision):
        return model.bind(prior)
    if callable(encoding):
        return None
    steps = list(getattr(model, "steps", [("model", model)]))
    steps = [s for _, s in steps if s not in (None, "passthrough")]
    final = steps[-1]
    if not (hasattr(final, "coef_") and hasattr(final, "intercept_") and hasattr(final, "decision_function")):
        return None
    classes = getattr(final, "classes_", None)
    coef = np.asarray(final.coef_, dtype=float)
    if classes is None or len(classes) != 2 or coef.ndim == 2 and coef.shape[0] != 1:
        return None
    coef = coef.ravel()
    scale, shift = np.ones(len(coef)), np.zeros(len(coef))  # the pre-processing is x -> x * scale + shift
    for step in steps[:-1]:
        kind = type(step).__name__
        if kind == "StandardScaler":
            mean = step.mean_ if step.mean_ is not None else 0.0
            sd = step.scale_ if step.scale_ is not None else 1.0
            scale, shift = scale / sd, (shift - mean) / sd
        elif kind == "MinMaxScaler":
            scale, shift = scale * step.scale_, shift * step.scale_ + step.min_
        elif kind == "MaxAbsScaler":
            scale, shift = scale / step.scale_, shift / step.scale_
        else:
            return None
    w_enc = coef * scale
    bias = float(np.ravel(final.intercept_)[0] + coef @ shift)
    w = np.zeros(len(prior.names))
    contrib: dict[int, np.ndarray] = {}
    if encoding == "one-hot":
        if len(w_enc) != len(prior.one_hot_names()):
            return None
        col = 0
        for i, feature in enumerate(prior.features):
            if feature.is_categorical:
                contrib[i] = w_enc[col:col + len(feature.categories)].copy()
                col += len(feature.categories)
            else:
                w[i] = w_enc[col]
                col += 1
    else:  # codes
        if len(w_enc) != len(prior.names):
            return None
        for i, feature in enumerate(prior.features):
            if feature.is_categorical:
                contrib[i] = w_enc[i] * np.arange(len(feature.categories))
            else:
                w[i] = w_enc[i]
    linear = _LinearScore(w, contrib, bias, tuple(classes))
    # Check the folding on a few rows rather than trusting it: a surprise falls back to Monte-Carlo.
    probe = prior.sample(16, np.random.default_rng(0))
    if not np.allclose(linear.score(probe), model.decision_function(_encoder(prior, encoding)(probe)), atol=1e-6,
                       rtol=1e-6):
        return None
    return linear


def _decision_function(model: Any, prior: Prior,
                       config: DisclosureConfig) -> tuple[Callable[[np.ndarray], np.ndarray], tuple]:
    """A function from prior rows to decision indices, and the decision labels."""
    if isinstance(model, LinearDecision):
        linear = model.bind(prior)
        return (lambda X: (linear.score(X) > 0).astype(int)), linear.labels
    encode = _encoder(prior, config.encoding)
    torch = _torch_if_module(model)
    if torch is not None:
        def outputs(X: np.ndarray) -> np.ndarray:
            was_training = model.training
            model.eval()
            try:
                with torch.no_grad():
                    out = model(torch.as_tensor(np.asarray(encode(X)), dtype=torch.float32)).float().numpy()
            finally:
                model.train(was_training)
            if out.ndim == 1 or out.shape[1] == 1:  # one logit: positive means class 1
                out = out.reshape(-1, 1)
                return np.hstack([-out, out])
            return out
    elif hasattr(model, "predict_proba"):
        def outputs(X: np.ndarray) -> np.ndarray:
            return np.asarray(model.predict_proba(encode(X)))
    elif callable(model):
        def outputs(X: np.ndarray) -> np.ndarray:
            return np.asarray(model(encode(X)))
    else:
        raise LocalpersError(f"cannot use a {type(model).__name__} as a model: it needs predict_proba, "
                             "to be a torch module, a LinearDecision, or a function returning class probabilities")
    n_classes = np.atleast_2d(outputs(prior.sample(2, np.random.default_rng(0)))).shape[1]
    labels = tuple(config.labels if config.labels is not None else getattr(model, "classes_", range(n_classes)))
    if len(labels) != n_classes:
        raise LocalpersError(f"the model gives {n_classes} classes but {len(labels)} labels were given")

    def decide(X: np.ndarray) -> np.ndarray:
        return outputs(X).argmax(axis=1)

    decide.outputs = outputs  # type: ignore[attr-defined]  # for _remembered's fingerprint of the model
    return decide, labels


class _RememberedDecisions:
    """The model's decision for each distinct row, remembered across calls and across people.

    When every feature takes few values (categories, discrete margins), the rows drawn
    from posteriors repeat a lot: the model runs only on rows it has not seen yet.
    """

    def __init__(self, decide: Callable[[np.ndarray], np.ndarray], limit: int = 1_000_000) -> None:
        self.decide = decide
        self.known: dict[bytes, int] = {}
        self.limit = limit

    def __call__(self, X: np.ndarray) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=float)
        unique, inverse = np.unique(X, axis=0, return_inverse=True)
        keys = [r.tobytes() for r in unique]
        out = np.fromiter((self.known.get(k, -1) for k in keys), dtype=int, count=len(keys))
        new = np.flatnonzero(out < 0)
        if len(new):
            out[new] = np.asarray(self.decide(unique[new])).astype(int)
            if len(self.known) + len(new) > self.limit:
                self.known.clear()  # bounded memory: start afresh rather than grow
            self.known.update(zip((keys[k] for k in new), out[new].tolist()))
        return out[inverse.ravel()]


def _remembered(decide: Callable[[np.ndarray], np.ndarray], model: Any, prior: Prior,
                config: DisclosureConfig) -> Callable[[np.ndarray], np.ndarray]:
    """``decide`` with its answers remembered per model and prior, when the prior's rows take few values.

    The memory lives on the prior (like the importance order) and is dropped when the model's
    outputs on a fixed probe change (a model retrained in place).
    """
    discrete = all(i in prior.margins and prior.margins[i].discrete for i in prior.numeric)
    outputs = getattr(decide, "outputs", None)
    if not discrete or outputs is None:
        return decide
    probe = prior.sample(32, np.random.default_rng(12345))
    fingerprint = hash(np.asarray(outputs(probe), dtype=float).round(9).tobytes())
    cache = prior.__dict__.setdefault("_decision_cache", {})
    key = (id(model), config.encoding if isinstance(config.encoding, str) else id(config.encoding))
    hit = cache.get(key)
    if hit is None or hit[0] is not model or hit[1] != fingerprint:
        hit = cache[key] = (model, fingerprint, _RememberedDecisions(decide))
    return hit[2]


def _torch_if_module(model: Any) -> Any:
    torch = sys.modules.get("torch")  # a torch module can only exist if torch was imported
    if torch is not None and isinstance(model, torch.nn.Module):
        return torch
    return None


def _chunked(decide: Callable[[np.ndarray], np.ndarray], X: np.ndarray, size: int = 65536) -> np.ndarray:
    if len(X) <= size:
        return np.asarray(decide(X)).astype(int)
    return np.concatenate([np.asarray(decide(X[k:k + size])).astype(int) for k in range(0, len(X), size)])


def full_decision(model: Any, prior: Prior, x: Mapping[str, Any] | Sequence[Any] | np.ndarray,
                  config: DisclosureConfig | None = None) -> Any:
    """The decision the model makes when it sees every feature (the reference a disclosure must match)."""
    config = config or DisclosureConfig()
    decide, labels = _decision_function(model, prior, config)
    row = prior.row(x)
    if np.isnan(row).any():
        missing = [prior.names[i] for i in np.flatnonzero(np.isnan(row))]
        raise LocalpersError(f"a full decision needs every feature; missing: {', '.join(missing)}")
    return labels[int(decide(row[None, :])[0])]


# ---------------------------------------------------------------------- uncertainty


@dataclass
class _Assessment:
    decision: int  # index into labels
    confidence: float
    lower: float  # what the stopping rule compares with 1 - delta
    entropy: float  # bits


def _entropy_bits(p: np.ndarray) -> np.ndarray:
    """Entropy in bits of probability vectors along the last axis."""
    p = np.clip(p, 1e-300, 1.0)
    return -(p * np.log2(p)).sum(axis=-1)


def _binary_entropy(p: np.ndarray) -> np.ndarray:
    return _entropy_bits(np.stack([p, 1 - p], axis=-1))


class _ClosedForm:
    """Exact uncertainty of a linear decision under a mixture-of-Gaussians posterior."""

    method = "closed-form"

    def __init__(self, linear: _LinearScore, config: DisclosureConfig) -> None:
        self.linear = linear
        nodes, weights = np.polynomial.hermite.hermgauss(config.quadrature_nodes)
        self.nodes, self.node_weights = nodes, weights / math.sqrt(math.pi)

    def _score(self, post: Posterior) -> tuple[np.ndarray, float, np.ndarray]:
        """Per-component mean of the score, its shared standard deviation, and the hidden numeric weights."""
        base = post.base_row()
        known = [i for i in post.known]
        const = self.linear.bias + sum(self.linear.w[i] * base[i] for i in known)
        const += sum(c[int(base[i])] for i, c in self.linear.contrib.items() if i in post.known)
        means = np.full(len(post.weights), const)
        for p, i in enumerate(post.cat_idx):
            if int(i) in self.linear.contrib:
                means = means + self.linear.contrib[int(i)][post.cats[:, p]]
        w_h = self.linear.w[post.num_idx]
        if len(w_h):
            means = means + post.means @ w_h
        sd = math.sqrt(max(float(w_h @ post.cov @ w_h), 0.0)) if len(w_h) else 0.0
        return means, sd, w_h

    @staticmethod
    def _p_positive(weights: np.ndarray, means: np.ndarray, sd: float) -> np.ndarray:
        """P(score > 0) for mixtures along the last axis."""
        z = normal_cdf(means / sd) if sd > 1e-12 * (1 + np.abs(means).max()) else (means > 0).astype(float)
        return (weights * z).sum(axis=-1)

    def assess(self, post: Posterior) -> _Assessment:
        means, sd, _ = self._score(post)
        p = float(self._p_positive(post.weights, means, sd))
        decision = int(p > 0.5)
        confidence = max(p, 1 - p)
        return _Assessment(decision, confidence, confidence, float(_binary_entropy(np.array(p))))

    def expected_entropy(self, post: Posterior, candidates: Sequence[int], rng: np.random.Generator) -> np.ndarray:
        means, sd, w_h = self._score(post)
        out = np.zeros(len(candidates))
        for n, i in enumerate(candidates):
            if post.prior.features[i].is_categorical:
                probs = post.category_probabilities(i)
                p_col = int(np.flatnonzero(post.cat_idx == i)[0])
                for code, mass in probs.items():
                    mask = post.cats[:, p_col] == code
                    p = self._p_positive(post.weights[mask] / mass, means[mask], sd)
                    out[n] += mass * float(_binary_entropy(np.array(p)))
                continue
            p_col = int(np.flatnonzero(post.num_idx == i)[0])
            var = max(post.cov[p_col, p_col], 1e-300)
            cov_score = float(post.cov[:, p_col] @ w_h)  # Cov(score, x_i)
            sd_after = math.sqrt(max(sd**2 - cov_score**2 / var, 0.0))
            mu_i = post.means[:, p_col]
            # x_i ranges over each component's Gaussian: K components x Q quadrature nodes.
            values = (mu_i[:, None] + math.sqrt(2 * var) * self.nodes[None, :]).ravel()
            value_weights = (post.weights[:, None] * self.node_weights[None, :]).ravel()
            resid = values[:, None] - mu_i[None, :]
            logw = np.log(np.maximum(post.weights, 1e-300))[None, :] - resid**2 / (2 * var)
            comp = np.exp(logw - logw.max(axis=1, keepdims=True))
            comp /= comp.sum(axis=1, keepdims=True)
            p = self._p_positive(comp, means[None, :] + cov_score / var * resid, sd_after)
            out[n] = float(value_weights @ _binary_entropy(p))
        return out

    def stop_probability(self, post: Posterior, candidates: Sequence[int], target: float,
                         rng: np.random.Generator, n_values: int = 64) -> np.ndarray:
        """P(confidence >= target right after revealing each candidate), over the candidate's own distribution."""
        means, sd, w_h = self._score(post)
        out = np.zeros(len(candidates))
        for n, i in enumerate(candidates):
            if post.prior.features[i].is_categorical:
                p_col = int(np.flatnonzero(post.cat_idx == i)[0])
                for code, mass in post.category_probabilities(i).items():
                    mask = post.cats[:, p_col] == code
                    p = float(self._p_positive(post.weights[mask] / mass, means[mask], sd))
                    out[n] += mass * (max(p, 1 - p) >= target)
                continue
            p_col = int(np.flatnonzero(post.num_idx == i)[0])
            var = max(post.cov[p_col, p_col], 1e-300)
            cov_score = float(post.cov[:, p_col] @ w_h)
            sd_after = math.sqrt(max(sd**2 - cov_score**2 / var, 0.0))
            # The stopping region is an indicator, badly integrated by Gauss-Hermite: use stratified quantiles.
            values = post.quantiles(i, (np.arange(n_values) + 0.5) / n_values)
            resid = values[:, None] - post.means[None, :, p_col]
            logw = np.log(np.maximum(post.weights, 1e-300))[None, :] - resid**2 / (2 * var)
            comp = np.exp(logw - logw.max(axis=1, keepdims=True))
            comp /= comp.sum(axis=1, keepdims=True)
            p = self._p_positive(comp, means[None, :] + cov_score / var * resid, sd_after)
            out[n] = float(np.mean(np.maximum(p, 1 - p) >= target))
        return out


    def confidence_paths(self, post: Posterior, orders: np.ndarray, X: np.ndarray,
                         rng: np.random.Generator) -> np.ndarray:
        """Confidence after each step of each ordering, for each completion: shape (orders, len(X), steps).

        ``orders`` (C, T) lists hidden features; ``X`` (N, d) holds complete rows drawn
        from ``post``. Exact per step: along a fixed order the revealed numeric values
        enter through their innovations (Cholesky of their covariance), so every prefix's
        score mean, variance and component weights are cumulative sums; categories filter
        components. Vectorised over completions, components and steps.
        """

        means_s, sd, w_h = self._score(post)
        n, k, t_len = len(X), len(post.weights), orders.shape[1]
        _check_memory(n * k * (t_len + 1) * 8 * 6, "the closed-form look-ahead")
        logw0 = np.log(np.maximum(post.weights, 1e-300))
        num_pos = {int(i): p for p, i in enumerate(post.num_idx)}
        cat_pos = {int(i): p for p, i in enumerate(post.cat_idx)}
        out = np.empty((len(orders), n, t_len))
        for c, order in enumerate(orders):
            nums = [num_pos[int(i)] for i in order if int(i) in num_pos]
            cats = [cat_pos[int(i)] for i in order if int(i) in cat_pos]
            n_t = np.cumsum([int(i) in num_pos for i in order])  # numeric features revealed after each step
            c_t = np.cumsum([int(i) in cat_pos for i in order])
            if nums:
                inv_l = np.linalg.inv(_cholesky(post.cov[np.ix_(nums, nums)]))
                innov = (X[:, post.num_idx[nums]][:, None, :] - post.means[None, :, nums]) @ inv_l.T  # (N, K, Tn)
                coef = inv_l @ (post.cov[nums, :] @ w_h)  # Cov(score, each innovation)
                zero = np.zeros((n, k, 1))
                shift = np.concatenate([zero, np.cumsum(innov * coef, axis=-1)], axis=-1)
                loglik = np.concatenate([zero, -0.5 * np.cumsum(innov**2, axis=-1)], axis=-1)
                var = sd**2 - np.concatenate([[0.0], np.cumsum(coef**2)])
            else:
                shift = loglik = np.zeros((n, k, 1))
                var = np.array([sd**2])
            cat_shift = cat_logw = np.zeros((n, k, 1))
            if cats:
                values = X[:, post.cat_idx[cats]].astype(int)  # (N, Tc)
                match = values[:, None, :] == post.cats[None, :, cats]
                synth = post.synthetic[None, :, None]
                # Synthetic cells are set to the revealed category (weighted by its probability), not filtered.
                match = match | synth
                alive = np.concatenate([np.ones((n, k, 1), bool), np.logical_and.accumulate(match, axis=-1)], axis=-1)
                if post.synthetic.any():
                    feats = [int(post.cat_idx[q]) for q in cats]
                    logm = np.stack([np.log(post.prior.marginals[f][values[:, t]]) for t, f in enumerate(feats)], 1)
                    delta = np.zeros((n, k, len(cats)))
                    for t, f in enumerate(feats):
                        contrib = self.linear.contrib.get(f)
                        if contrib is not None:
                            delta[:, :, t] = contrib[values[:, t]][:, None] - contrib[post.cats[:, cats[t]]][None, :]
                    zero = np.zeros((n, k, 1))
                    cat_logw = np.concatenate([zero, np.cumsum(np.where(synth, logm[:, None, :], 0.0), -1)], -1)
                    cat_shift = np.concatenate([zero, np.cumsum(np.where(synth, delta, 0.0), -1)], -1)
            else:
                alive = np.ones((n, k, 1), bool)
            c_or_0 = c_t if cats else np.zeros_like(c_t)
            cs_idx = c_t if cat_shift.shape[2] > 1 else np.zeros_like(c_t)
            # Only the terms this order has are added: with no numbers, or no synthetic cells, skip theirs.
            logw = np.broadcast_to(logw0[None, :, None], (n, k, t_len))
            if nums:
                logw = logw + loglik[:, :, n_t]
            if cat_logw.shape[2] > 1:
                logw = logw + cat_logw[:, :, cs_idx]
            logw = np.where(alive[:, :, c_or_0], logw, -np.inf)
            w = np.exp(logw - logw.max(axis=1, keepdims=True))
            mean = np.broadcast_to(means_s[None, :, None], (n, k, t_len))
            if nums:
                mean = mean + shift[:, :, n_t]
            if cat_shift.shape[2] > 1:
                mean = mean + cat_shift[:, :, cs_idx]
            step_sd = np.sqrt(np.clip(var[n_t], 0.0, None))
            tiny = 1e-12 * (1 + np.abs(means_s).max())
            if (step_sd > tiny).all():
                z = normal_cdf(mean / step_sd)
            elif not (step_sd > tiny).any():  # nothing numeric left to hide: the score is known per component
                z = mean > 0
            else:
                z = np.where(step_sd > tiny, normal_cdf(mean / np.maximum(step_sd, tiny)), mean > 0)
            p = (w * z).sum(axis=1) / w.sum(axis=1)
            out[c] = np.maximum(p, 1 - p)
        return out


class _MonteCarlo:
    """Uncertainty of any model's decision, estimated by sampling the hidden features."""

    method = "monte-carlo"

    def __init__(self, decide: Callable[[np.ndarray], np.ndarray], n_labels: int, config: DisclosureConfig) -> None:
        self.decide = decide
        self.n_labels = n_labels
        self.config = config

    def assess(self, post: Posterior, rng: np.random.Generator) -> _Assessment:
        if not post.hidden:
            decision = int(_chunked(self.decide, post.base_row()[None, :])[0])
            return _Assessment(decision, 1.0, 1.0, 0.0)
        target = 1 - self.config.delta
        counts = np.zeros(self.n_labels)
        batch = self.config.n_samples
        while True:
            decisions = _chunked(self.decide, post.sample(batch, rng))
            counts += np.bincount(decisions, minlength=self.n_labels)[: self.n_labels]
            total = counts.sum()
            mode = int(counts.argmax())
            lower, upper = _clopper_pearson(int(counts[mode]), int(total), self.config.bound_level)
            if lower >= target or upper < target or total >= self.config.max_samples:
                break
            batch = int(min(total, self.config.max_samples - total))  # double the sample
        return _Assessment(mode, counts[mode] / total, lower, float(_entropy_bits(counts / total)))

    def expected_entropy(self, post: Posterior, candidates: Sequence[int], rng: np.random.Generator) -> np.ndarray:
        m, n_in = self.config.lookahead_values, self.config.lookahead_samples
        uniforms = rng.random(n_in)
        normals = rng.standard_normal((n_in, len(post.num_idx)))
        noise = normals @ post.cholesky().T if len(post.num_idx) else normals
        blocks: list[np.ndarray] = []
        owners: list[tuple[int, float]] = []  # (candidate position, weight of that value) per block of n_in rows
        for n, i in enumerate(candidates):
            if post.prior.features[i].is_categorical:
                probs = sorted(post.category_probabilities(i).items(), key=lambda kv: -kv[1])[: max(m, 24)]
                total = sum(p for _, p in probs)
                for code, p in probs:
                    blocks.append(post.given(i, code).sample(n_in, rng, uniforms=uniforms, normals=normals))
                    owners.append((n, p / total))
            else:
                values = post.quantiles(i, (np.arange(m) + 0.5) / m)  # stratified: one value per 1/m of probability
                rows = _sample_given_values(post, i, values, uniforms, noise)
                blocks.extend(rows)
                owners.extend((n, 1.0 / m) for _ in range(m))
        decisions = _chunked(self.decide, np.concatenate(blocks)).reshape(len(blocks), n_in)
        counts = (decisions[:, :, None] == np.arange(self.n_labels)).sum(axis=1)
        entropy = _entropy_bits(counts / n_in)
        # P(the decision's true probability >= 1 - delta) under a Jeffreys posterior on the counts.
        top = counts.max(axis=1)
        from scipy.special import betaincc  # deferred, as in _p_positive

        fixed = betaincc(top + 0.5, n_in - top + 0.5, 1 - self.config.delta)
        out = np.zeros(len(candidates))
        stop = np.zeros(len(candidates))
        for (n, weight), h, f in zip(owners, entropy, fixed):
            out[n] += weight * h
            stop[n] += weight * f
        self._last = (post, list(candidates), stop)
        return out

    def stop_probability(self, post: Posterior, candidates: Sequence[int], target: float,
                         rng: np.random.Generator) -> np.ndarray:
        """P(the decision is fixed right after revealing each candidate), from the last look-ahead's draws.

        Each look-ahead value's counts give a Jeffreys posterior on the decision's
        probability; its mass above ``1 - delta`` is averaged over the values.
        """
        last = getattr(self, "_last", None)
        if last is None or last[0] is not post or last[1] != list(candidates):
            self.expected_entropy(post, candidates, rng)
        return self._last[2]


    # Nested sampling is costly, so the Monte-Carlo look-ahead compares few candidates over a short horizon.
    rollout_candidates, rollout_people, rollout_inner, rollout_horizon, rollout_components = 4, 8, 32, 4, 256

    def confidence_paths(self, post: Posterior, orders: np.ndarray, X: np.ndarray,
                         rng: np.random.Generator) -> np.ndarray:
        """As :meth:`_ClosedForm.confidence_paths`, estimated: each prefix's posterior sampled, the model run once.

        Only the first ``rollout_horizon`` steps are evaluated (later ones get confidence 0).
        """
        m = self.rollout_inner
        horizon = min(orders.shape[1], self.rollout_horizon)
        uniforms = rng.random(m)
        normals = rng.standard_normal((m, len(post.num_idx)))
        blocks, which = _per_prefix(post, orders, X, horizon,
                                    lambda after: after.sample(m, rng, uniforms=uniforms, normals=normals))
        decisions = _chunked(self.decide, np.concatenate(blocks)).reshape(len(blocks), m)
        top = np.max([(decisions == label).sum(-1) for label in range(self.n_labels)], axis=0) / m
        out = np.zeros((len(orders), len(X), orders.shape[1]))
        out[:, :, :horizon] = top[which]
        return out


def _check_memory(need: int, what: str) -> None:
    """Refuse, with what to do, an allocation over the limit (instead of numpy's raw out-of-memory error)."""
    if need > _MEMORY_LIMIT:
        raise LocalpersError(f"{what} would need {need / 2**30:.1f} GiB; lower rollout_samples or "
                             "max_cells, or use method='monte-carlo'")


def _sample_given_values(post: Posterior, i: int, values: np.ndarray, uniforms: np.ndarray,
                         noise: np.ndarray) -> np.ndarray:
    """For each value v of hidden numeric feature i: rows sampled from the posterior given x_i = v.

    Vectorised form of ``post.given(i, v).sample(...)`` for many v at once; shape (len(values), n, d).
    ``noise`` (n, h) holds draws from N(0, post.cov); conditioning them on their own i-th
    column (Matheron's rule: e - gain * e_i) gives draws from the conditional covariance
    without factorising it again for every candidate.
    """
    p = int(np.flatnonzero(post.num_idx == i)[0])
    var = max(post.cov[p, p], 1e-300)
    gain = post.cov[:, p] / var
    resid = values[:, None] - post.means[None, :, p]  # (m, K)
    logw = np.log(np.maximum(post.weights, 1e-300))[None, :] - resid**2 / (2 * var)
    comp_w = np.exp(logw - logw.max(axis=1, keepdims=True))
    comp_w /= comp_w.sum(axis=1, keepdims=True)
    keep = np.delete(np.arange(len(post.num_idx)), p)
    n = len(uniforms)
    if len(post.weights) == 1:
        comp = np.zeros((len(values), n), dtype=int)
    else:
        comp = np.minimum((uniforms[None, :, None] > np.cumsum(comp_w, axis=1)[:, None, :]).sum(-1),
                          len(post.weights) - 1)
    rows = np.tile(post.base_row(), (len(values), n, 1))
    if len(keep):
        cond_noise = noise[:, keep] - np.outer(noise[:, p], gain[keep])  # (n, h-1)
        means = post.means[comp][..., keep] + resid[np.arange(len(values))[:, None], comp][..., None] * gain[keep]
        rows[:, :, post.num_idx[keep]] = post.observe_numeric(means + cond_noise[None, :, :], post.num_idx[keep])
    rows[:, :, i] = post.prior.observed(i, values)[:, None]
    if len(post.cat_idx):
        rows[:, :, post.cat_idx] = post.cats[comp]
    return rows


def _clopper_pearson(k: int, n: int, level: float) -> tuple[float, float]:
    """One-sided exact binomial bounds: P(true rate >= lower) >= level, and likewise for upper."""
    from scipy.special import betaincinv  # deferred: scipy.special takes ~0.5 s to import

    alpha = 1 - level
    lower = 0.0 if k == 0 else float(betaincinv(k, n - k + 1, alpha))
    upper = 1.0 if k == n else float(betaincinv(k + 1, n - k, 1 - alpha))
    return lower, upper


# ---------------------------------------------------------------------- the selector


def minimal_disclosure(model: Any, prior: Prior, x: Mapping[str, Any] | Sequence[Any] | np.ndarray,
                       config: DisclosureConfig | None = None) -> Disclosure:
    """Choose the fewest of ``x``'s features that fix ``model``'s decision with probability >= 1 - delta.

    ``model``: a linear model (closed form), or anything with ``predict_proba``, a torch
    module, or a function returning class probabilities (Monte-Carlo); it receives
    prior rows encoded by ``config.encoding``. ``prior``: a fitted :class:`Prior` over
    the same features. ``x``: one person's features, ``{name: value}`` or a sequence
    in ``prior.names`` order; a value of ``None`` means the person cannot reveal it
    (it stays hidden, drawn from the prior).

    Returns a :class:`Disclosure`; see the module docstring for the method.
    """
    config = config or DisclosureConfig()
    rng = np.random.default_rng(config.seed)
    row = prior.row(x, unknown="missing")  # a category never seen: treated as one the person cannot give
    for label, names in (("public", config.public), ("costs", config.costs), ("order", config.order or ())):
        unknown = [n for n in names if n not in prior.names]
        if unknown:
            raise LocalpersError(f"{label}: unknown feature(s) {', '.join(map(str, unknown))}")
    public = [prior.index(n) for n in config.public]
    missing_public = [prior.names[i] for i in public if math.isnan(row[i])]
    if missing_public:
        raise LocalpersError(f"public feature(s) without a value: {', '.join(missing_public)}")
    private = [i for i in range(len(prior.names)) if i not in public]
    cost = {i: float(config.costs.get(prior.names[i], 0.0)) for i in private}
    revealable = [i for i in private if not math.isnan(row[i]) and math.isfinite(cost[i])]

    evaluator, labels = _evaluator(model, prior, config)
    post = prior.posterior({i: row[i] for i in public})
    state = _assess(evaluator, post, rng)
    target = 1 - config.delta
    fixed_order = None
    if config.order is not None:
        named = [prior.index(n) for n in config.order]
        fixed_order = [i for i in named + [i for i in private if i not in named] if i in revealable]
    price = {i: 1.0 + config.cost_weight * cost[i] for i in revealable}  # what one reveal costs the person
    base_order: list[int] | None = None
    look_rng = np.random.default_rng([config.seed, 1])  # apart from the stopping rule's draws
    steps: list[Step] = []
    while state.lower < target:
        candidates = [i for i in revealable if i not in post.known]
        if not candidates:
            break
        gain = None
        if fixed_order is not None:
            chosen = next(i for i in fixed_order if i not in post.known)
            reason = "next in the given order"
        elif len(candidates) == 1:
            chosen = candidates[0]
            reason = "the only feature left to reveal"
        elif config.policy == "rollout":
            if base_order is None:
                base_order = _base_order(model, evaluator, prior, revealable, price, config)
            chosen, reason = _rollout_choice(evaluator, post, [i for i in base_order if i not in post.known],
                                             price, target, look_rng, config)
        else:
            expected = evaluator.expected_entropy(post, candidates, rng)
            gains = state.entropy - expected
            scores = gains - config.cost_weight * np.array([cost[i] for i in candidates])
            # Entropy alone is myopic: also count the chance that this reveal ends the disclosure now.
            stop = evaluator.stop_probability(post, candidates, target, rng)
            scores = scores + config.stop_bonus * stop
            best = int(np.argmax(scores))
            chosen, gain = candidates[best], float(gains[best])
            runner_up = np.argsort(-scores)[1]
            reason = (f"removes the most expected uncertainty: {gain:.3f} bits"
                      + (f" + {config.stop_bonus:g} x {stop[best]:.0%} chance of settling the decision now"
                         if config.stop_bonus and stop[best] > 0 else "")
                      + (f" - {config.cost_weight:g} x cost {cost[chosen]:g}" if cost[chosen] else "")
                      + f" (next best: {prior.names[candidates[runner_up]]}, {gains[runner_up]:.3f} bits"
                      + (f", cost {cost[candidates[runner_up]]:g}" if cost[candidates[runner_up]] else "") + ")")
        post = post.given(chosen, row[chosen])
        new = _assess(evaluator, post, rng)
        steps.append(Step(prior.names[chosen], _plain(prior.value(chosen, row[chosen])), reason, state.confidence,
                          new.confidence, _plain(labels[new.decision]), gain, cost[chosen]))
        state = new
    revealed = [s.feature for s in steps]
    return Disclosure(
        decision=_plain(labels[state.decision]),
        confidence=float(state.confidence),
        revealed=revealed,
        values={s.feature: s.value for s in steps},
        withheld=[prior.names[i] for i in private if prior.names[i] not in revealed],
        public=[prior.names[i] for i in public],
        steps=steps,
        delta=config.delta,
        method=evaluator.method,
        public_values={prior.names[i]: _plain(prior.value(i, row[i])) for i in public},
        confidence_lower=None if evaluator.method == "closed-form" else float(state.lower),
    )


def _evaluator(model: Any, prior: Prior, config: DisclosureConfig) -> tuple[_ClosedForm | _MonteCarlo, tuple]:
    if config.method != "monte-carlo":
        # With empirical margins the score is no longer Gaussian, so no closed form.
        linear = None if prior.margins else _linear_form(model, prior, config.encoding)
        if linear is not None:
            return _ClosedForm(linear, config), tuple(config.labels or linear.labels)
        if config.method == "closed-form":
            raise LocalpersError(f"no closed form for a {type(model).__name__} with this prior: it needs a binary "
                                 "linear model (optionally after scalers) and a prior with Gaussian margins; "
                                 "use method='monte-carlo'")
    decide, labels = _decision_function(model, prior, config)
    return _MonteCarlo(_remembered(decide, model, prior, config), len(labels), config), labels


def _assess(evaluator: _ClosedForm | _MonteCarlo, post: Posterior, rng: np.random.Generator) -> _Assessment:
    if isinstance(evaluator, _MonteCarlo):
        return evaluator.assess(post, rng)
    return evaluator.assess(post)


# ---------------------------------------------------------------------- the rollout policy


def _base_order(model: Any, evaluator: _ClosedForm | _MonteCarlo, prior: Prior, revealable: Sequence[int],
                price: Mapping[int, float], config: DisclosureConfig) -> list[int]:
    """The order the rollout improves on: ``config.importance``, else permutation importance per unit price."""
    if config.importance is not None:
        named = [prior.index(n) for n in config.importance]
        return [i for i in named if i in revealable] + [i for i in revealable if i not in named]
    cache = prior.__dict__.setdefault("_importance_cache", {})
    key = (id(model), config.encoding if isinstance(config.encoding, str) else id(config.encoding))
    hit = cache.get(key)
    if hit is None or hit[0] is not model:
        rng = np.random.default_rng(0)
        X = prior.sample(2000, rng)
        decide = (lambda rows: (evaluator.linear.score(rows) > 0).astype(int)) \
            if isinstance(evaluator, _ClosedForm) else evaluator.decide
        base = _chunked(decide, X)
        changed = np.zeros(len(prior.names))
        for i in range(len(prior.names)):
            shuffled = X.copy()
            shuffled[:, i] = X[rng.permutation(len(X)), i]
            changed[i] = np.mean(_chunked(decide, shuffled) != base)
        hit = cache[key] = (model, changed)
    changed = hit[1]
    return sorted(revealable, key=lambda i: (-changed[i] / price[i], i))


def _rollout_choice(evaluator: _ClosedForm | _MonteCarlo, post: Posterior, base: list[int],
                    price: Mapping[int, float], target: float, rng: np.random.Generator,
                    config: DisclosureConfig) -> tuple[int, str]:
    """The next feature: the base order's next one, unless another is clearly cheaper (see the module docstring).

    Each candidate j is scored by the expected price of revealing j and then following
    the base order until the stopping rule fires, over people drawn from the posterior
    (common draws for all candidates). A candidate replaces the base order's choice only
    when its saving is positive by more than twice its standard error.
    """
    monte_carlo = isinstance(evaluator, _MonteCarlo)
    # The closed-form paths filter cells by category the plain way; a sparse prior's synthetic cells follow
    # the back-off of Posterior.given instead, so there each prefix is conditioned on exactly (fewer, slower).
    by_conditioning = not monte_carlo and bool(post.synthetic.any())
    short = monte_carlo or by_conditioning
    n_cands = min(config.rollout_candidates, _MonteCarlo.rollout_candidates) if short \
        else config.rollout_candidates
    if len(post.weights) > 64:
        n_cands = min(n_cands, 6)  # many mixture components: each candidate costs more, so try fewer
    cands = base[:n_cands]
    if len(cands) < 2:
        return base[0], "next in importance order"
    n_people = _MonteCarlo.rollout_people if short else config.rollout_samples
    # Bound the look-ahead's work and memory: at most as many mixture components as ~100k cells per array.
    # (Fewer would be faster but conditioning on a category then leaves too few components: overconfidence.)
    limit = evaluator.rollout_components if monte_carlo else max(64, 100_000 // (n_people * (len(base) + 1)))
    small = post.compress(limit, rng)
    X = small.sample(n_people, rng)
    orders = np.array([[j] + [i for i in base if i != j] for j in cands])
    prices = np.cumsum(np.array([[price[int(i)] for i in order] for order in orders]), axis=1)  # (C, T)

    def spent_on(rows: slice) -> np.ndarray:
        """What each order in ``orders[rows]`` costs each drawn person, on the same random numbers."""
        if by_conditioning:
            conf = _conditioned_paths(evaluator, post, orders[rows], X, _MonteCarlo.rollout_horizon)
        else:
            conf = evaluator.confidence_paths(small, orders[rows], X, np.random.default_rng(paths_seed))  # (C, N, T)
        stopped = conf >= target
        first = np.where(stopped.any(axis=2), stopped.argmax(axis=2), orders.shape[1] - 1)
        return np.take_along_axis(prices[rows][:, None, :].repeat(len(X), 1), first[..., None], axis=2)[..., 0]

    paths_seed = int(rng.integers(2**63))
    spent_base = spent_on(slice(0, 1))
    # No other candidate can save more than the base order spends beyond one reveal: when that is already
    # too little to count as a clear saving (below), the others need not be simulated at all.
    cheapest = min(price[int(j)] for j in cands[1:])
    if np.mean(np.maximum(spent_base[0] - cheapest, 0.0)) <= 0.05:
        return base[0], (f"next in importance order: revealing it first is expected to stop after "
                         f"{spent_base[0].mean():.1f} features, which no other choice can clearly beat")
    spent = np.concatenate([spent_base, spent_on(slice(1, None))])  # (C, N)
    saving = spent[0][None, :] - spent  # paired with the base choice on the same draws
    mean = saving.mean(axis=1)
    se = saving.std(axis=1, ddof=1) / math.sqrt(len(X))
    # Deviate only on near-dominance: a clear saving on average AND rarely a loss, person by person. That
    # protects the median as well as the mean, and leaves little room for a prior that is slightly off.
    loses = (saving < 0).mean(axis=1)
    clear = (mean > 2 * se) & (mean > 0.05) & (loses <= 0.05)
    expected = spent.mean(axis=1)
    if not clear[1:].any():
        return base[0], (f"next in importance order: revealing it first is expected to stop after "
                         f"{expected[0]:.1f} features, no other choice clearly fewer")
    best = 1 + int(np.argmax(np.where(clear[1:], mean[1:], -np.inf)))
    name = post.prior.names
    return int(cands[best]), (f"expected to stop after {expected[best]:.1f} features when revealed next, "
                              f"vs {expected[0]:.1f} for importance order's next ({name[cands[0]]})")


def _conditioned_paths(evaluator: _ClosedForm, post: Posterior, orders: np.ndarray, X: np.ndarray,
                       horizon: int) -> np.ndarray:
    """Exact confidence after each of the first ``horizon`` steps of each order, by conditioning ``post`` itself.

    Shape (orders, len(X), steps), later steps 0. Each distinct set of revealed features is
    conditioned on once per drawn person (orders share prefixes as sets).
    """
    confidence, which = _per_prefix(post, orders, X, horizon, lambda after: evaluator.assess(after).confidence)
    out = np.zeros((len(orders), len(X), orders.shape[1]))
    out[:, :, :which.shape[2]] = np.asarray(confidence, dtype=float)[which] if confidence else 0.0
    return out


def _per_prefix(post: Posterior, orders: np.ndarray, X: np.ndarray, horizon: int,
                value: Callable[[Posterior], Any]) -> tuple[list, np.ndarray]:
    """``value`` of the posterior after each distinct prefix of ``orders`` (first ``horizon`` steps) for each
    drawn person in ``X``, in the order met, and for each (order, person, step) the index of its value.

    The candidate orders share many prefixes as sets ({b1, b0} is the base order's first two), so each
    distinct set of revealed features is conditioned on once per person.
    """
    horizon = min(horizon, orders.shape[1])
    values: list = []
    which = np.zeros((len(orders), len(X), horizon), dtype=int)
    for r, row in enumerate(X):
        seen: dict[frozenset, tuple[Posterior, int]] = {}
        for c, order in enumerate(orders):
            step, prefix = post, frozenset()
            for t, i in enumerate(order[:horizon]):
                prefix = prefix | {int(i)}
                if prefix not in seen:
                    after = step.given(int(i), row[i])
                    seen[prefix] = (after, len(values))
                    values.append(value(after))
                step, which[c, r, t] = seen[prefix]
    return values, which

"""Priors over a person's features: what we may assume about the features they keep to themselves.

A prior is fitted on data about many people. Given the features one person has
revealed, it yields a :class:`Posterior` over the ones they have not, which the
selector samples from (Monte-Carlo) or integrates against (closed form).

Both priors here share one representation, the *location model* of Olkin & Tate
(1961), also called the conditional-Gaussian distribution:

- the categorical features jointly pick a *cell* (one combination of categories)
  with probability ``p(cell)``;
- given the cell, the numeric features are Gaussian with a cell-specific mean and
  a covariance shared by all cells.

Categorical features are thus real categorical distributions, never Gaussians
over one-hot columns, and numeric features still depend on them (age given
occupation). Conditioning stays exact: revealing a category keeps the cells that
agree with it; revealing a number reweights the cells by how likely that number
is in each and moves the other numbers' means by the usual Gaussian update
(Schur complement). So a posterior is always a mixture of Gaussians with one
shared covariance, one component per surviving cell.

:class:`GaussianPrior` is the special case with no categorical features (a
single cell). When the categories combine into more cells than ``max_cells``
(eight features of 2-40 categories make millions), the prior never lists the
product: it keeps the combinations seen in the data, with their counts, plus
*synthetic* cells drawn from the independence model (the product of the
per-feature frequencies) that carry the pseudo-count mass. Revealing a category
filters the seen cells but *sets* the synthetic ones to it (weighted by that
category's frequency), so a combination never seen still gets probability, as
under the independence model; memory grows with the data, not the product. The
synthetic cells hold every category of every feature in proportion to its frequency
(a Latin hypercube over categories, so a rare category is never left out) and are
weighted so that each category carries exactly its marginal probability. As
categories are revealed, the independence model keeps the share ``T / (N + T)``
of the mass, where ``N`` training rows in ``T`` distinct cells match what is revealed
(Witten-Bell back-off, as in language models): a combination matched by one
training person is half that person, half the population's mix, never that one
person alone. :class:`MixedPrior` estimates cell probabilities with a Dirichlet
pseudo-count centred on the product of the per-feature frequencies, so that
combinations never seen in training keep a little probability, and shrinks each
cell's means towards a main-effects (additive) model, so sparse cells borrow
strength. Covariances are Ledoit-Wolf shrunk on standardised residuals, which
keeps them well conditioned when features are nearly collinear.

Example::

    >>> import numpy as np
    >>> from localpers.disclosure import GaussianPrior
    >>> rng = np.random.default_rng(0)
    >>> X = rng.multivariate_normal([0, 0], [[1, 0.9], [0.9, 1]], size=2000)
    >>> prior = GaussianPrior.fit(X, names=["height", "weight"])
    >>> post = prior.posterior({"height": 2.0})
    >>> round(float(post.means[0, 0]), 1)      # weight is likely high too
    1.8
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import LocalpersError


@dataclass(frozen=True)
class Feature:
    """One feature a person may reveal: numeric, or categorical with named categories."""

    name: str
    categories: tuple[str, ...] | None = None  # None: numeric

    @property
    def is_categorical(self) -> bool:
        return self.categories is not None


class Prior:
    """A location-model prior (see the module docstring). Build one with a subclass's ``fit``.

    Rows of features are float arrays in :attr:`names` order; a categorical feature
    holds its category's index (``prior.code("occupation", "doctor")``). Missing
    values are NaN.
    """

    def __init__(self, features: Sequence[Feature], cells: np.ndarray, weights: np.ndarray, means: np.ndarray,
                 cov: np.ndarray, margins: Mapping[int, "Margin"] | None = None) -> None:
        self.features = list(features)
        self.names = [f.name for f in self.features]
        if len(set(self.names)) != len(self.names):
            raise LocalpersError("feature names must be unique")
        self.categorical = np.array([i for i, f in enumerate(self.features) if f.is_categorical], dtype=int)
        self.numeric = np.array([i for i, f in enumerate(self.features) if not f.is_categorical], dtype=int)
        self.cells = np.asarray(cells, dtype=int).reshape(len(weights), len(self.categorical))
        self.weights = np.asarray(weights, dtype=float)
        self.means = np.asarray(means, dtype=float).reshape(len(weights), len(self.numeric))
        self.cov = np.asarray(cov, dtype=float).reshape(len(self.numeric), len(self.numeric))
        self.margins = dict(margins or {})  # feature index -> Margin, for numeric features not Gaussian as they are
        # Synthetic cells (see MixedPrior.fit): drawn from the independence model, never filtered by a revealed
        # category but set to it, so that combinations never seen keep their share of probability.
        self.synthetic = np.zeros(len(self.weights), dtype=bool)
        self.counts = np.zeros(len(self.weights))  # training rows in each listed cell (0 for synthetic ones)
        self.marginals: dict[int, np.ndarray] = {}  # categorical feature -> category probabilities
        self.effects: dict[int, np.ndarray] = {}  # categorical feature -> each category's shift of numeric means
        self._position = {name: i for i, name in enumerate(self.names)}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({len(self.numeric)} numeric, {len(self.categorical)} categorical features, "
                f"{len(self.weights)} cells{', empirical margins' if self.margins else ''})")

    def latent(self, i: int, values: np.ndarray | float) -> np.ndarray | float:
        """Numeric values on the scale where the prior is Gaussian (the values themselves without margins)."""
        margin = self.margins.get(i)
        return values if margin is None else margin.to_latent(values)

    def observed(self, i: int, latent: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`latent`: Gaussian-scale draws back on the feature's own scale."""
        margin = self.margins.get(i)
        return latent if margin is None else margin.to_observed(latent)

    # ------------------------------------------------------------------ names and values

    def index(self, name: str) -> int:
        """The position of a feature, or a clear error naming the unknown feature."""
        try:
            return self._position[name]
        except KeyError:
            raise LocalpersError(f"unknown feature {name!r}; known: {', '.join(self.names)}") from None

    def code(self, name: str | int, value: Any, *, unknown: str = "error") -> float:
        """A value as stored in rows: a float for numbers, the category index for categories.

        ``unknown``: what a category never seen in fitting becomes: ``"error"`` (a
        :class:`LocalpersError` naming the known ones) or ``"missing"`` (NaN: the person
        is treated as unable to reveal it, and it is drawn from the prior instead).
        """
        i = name if isinstance(name, int) else self.index(name)
        feature = self.features[i]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return math.nan
        if feature.is_categorical:
            try:
                return float(feature.categories.index(str(value)))
            except ValueError:
                if unknown == "missing":
                    return math.nan
                shown = ", ".join(feature.categories[:12]) + (", ..." if len(feature.categories) > 12 else "")
                raise LocalpersError(
                    f"feature {feature.name!r}: {value!r} is not one of its categories ({shown})") from None
        try:
            return float(value)
        except (TypeError, ValueError):
            raise LocalpersError(f"feature {feature.name!r} is numeric; got {value!r}") from None

    def value(self, i: int, code: float) -> Any:
        """The inverse of :meth:`code`: a category name, or a number (an int when whole)."""
        feature = self.features[i]
        if feature.is_categorical:
            return feature.categories[int(code)]
        return int(code) if float(code).is_integer() else float(code)

    def row(self, x: Mapping[str, Any] | Sequence[Any] | np.ndarray, *, unknown: str = "error") -> np.ndarray:
        """One person's features as a row: from a ``{name: value}`` mapping or a sequence in :attr:`names` order.

        Absent names and ``None`` become NaN (unknown); ``unknown`` is as for :meth:`code`.
        """
        if isinstance(x, Mapping):
            strangers = set(x) - set(self.names)
            if strangers:
                raise LocalpersError(f"unknown feature(s) {', '.join(sorted(map(str, strangers)))}; "
                                     f"known: {', '.join(self.names)}")
            return np.array([self.code(i, x.get(name), unknown=unknown) for i, name in enumerate(self.names)])
        values = list(x)
        if len(values) != len(self.names):
            raise LocalpersError(f"expected {len(self.names)} feature values, got {len(values)}")
        if isinstance(x, np.ndarray) and x.dtype.kind in "fiu":
            row = x.astype(float)  # already codes
            for i in self.categorical:  # a code outside the categories is an unknown category
                if not math.isnan(row[i]) and not 0 <= row[i] < len(self.features[i].categories):
                    if unknown != "missing":
                        raise LocalpersError(f"feature {self.names[i]!r}: code {row[i]:g} is not one of its "
                                             f"{len(self.features[i].categories)} categories")
                    row[i] = math.nan
            return row
        return np.array([self.code(i, v, unknown=unknown) for i, v in enumerate(values)])

    def one_hot(self, X: np.ndarray) -> np.ndarray:
        """Rows with each categorical feature spread into indicator columns (see :meth:`one_hot_names`).

        This is the usual input of a linear model or a neural network.
        """
        X = np.atleast_2d(X)
        if not len(self.categorical):
            return X
        blocks = []
        for i, feature in enumerate(self.features):
            if feature.is_categorical:
                codes = X[:, i].astype(int)
                blocks.append(np.eye(len(feature.categories))[codes])
            else:
                blocks.append(X[:, i:i + 1])
        return np.hstack(blocks) if blocks else np.zeros((len(X), 0))

    def one_hot_names(self) -> list[str]:
        """Column names of :meth:`one_hot`: ``age``, ``occupation=doctor``, ..."""
        out = []
        for f in self.features:
            out.extend([f"{f.name}={c}" for c in f.categories] if f.is_categorical else [f.name])
        return out

    # ------------------------------------------------------------------ conditioning and sampling

    def posterior(self, known: Mapping[str | int, Any] | None = None) -> "Posterior":
        """What the prior says about every other feature once ``known`` (name or index -> value) are revealed.

        Values are given as for :meth:`code` (category names or codes both work).
        """
        post = Posterior(self, {}, self.numeric.copy(), self.categorical.copy(), self.weights.copy(),
                         self.cells.copy(), self.means.copy(), self.cov.copy(), self.synthetic.copy(),
                         self.counts.copy())
        for key, value in (known or {}).items():
            i = key if isinstance(key, (int, np.integer)) else self.index(key)
            if isinstance(value, (float, np.floating)) and self.features[i].is_categorical:
                code = float(value)
            else:
                code = self.code(int(i), value)
            post = post.given(int(i), code)
        return post

    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """``n`` people drawn from the prior, as rows."""
        return self.posterior().sample(n, np.random.default_rng(rng))


@dataclass
class Posterior:
    """A mixture of Gaussians over the hidden numeric features, one component per possible cell.

    ``weights[k]``: probability of component k; ``cats[k]``: its hidden categorical
    codes (columns follow ``cat_idx``); ``means[k]``: its hidden numeric means
    (columns follow ``num_idx``); ``cov``: the shared covariance.
    """

    prior: Prior
    known: dict[int, float]
    num_idx: np.ndarray
    cat_idx: np.ndarray
    weights: np.ndarray
    cats: np.ndarray
    means: np.ndarray
    cov: np.ndarray
    synthetic: np.ndarray | None = None  # per component: a synthetic cell (see Prior)
    counts: np.ndarray | None = None  # per component: training rows in its cell (0 for synthetic ones)

    def __post_init__(self) -> None:
        if self.synthetic is None:
            self.synthetic = np.zeros(len(self.weights), dtype=bool)
        if self.counts is None:
            self.counts = np.zeros(len(self.weights))

    @property
    def hidden(self) -> list[int]:
        return sorted([*map(int, self.num_idx), *map(int, self.cat_idx)])

    def given(self, i: int, code: float) -> "Posterior":
        """Condition on one more revealed feature (index ``i``, value as a code)."""
        if i in self.known:
            return self
        if math.isnan(code):
            raise LocalpersError(f"feature {self.prior.names[i]!r} has no value to reveal")
        known = {**self.known, i: float(code)}
        if self.prior.features[i].is_categorical:
            p = int(np.flatnonzero(self.cat_idx == i)[0])
            code = int(code)
            keep = (self.cats[:, p] == code) | self.synthetic
            weights = self.weights.copy()
            means = self.means
            if self.synthetic.any():
                # Under the independence model the other features do not depend on this one: keep every
                # synthetic cell, set to the revealed category and weighted by that category's probability.
                weights[self.synthetic] *= self.prior.marginals[i][code]
                effect = self.prior.effects.get(i)
                if effect is not None and means.shape[1]:
                    means = means.copy()
                    old = self.cats[self.synthetic, p]
                    means[self.synthetic] += effect[code] - effect[old]
            if not keep.any() or weights[keep].sum() <= 0:
                # A combination the prior never listed: back off to "this feature says nothing about the rest".
                keep = np.ones(len(weights), dtype=bool)
                weights = self.weights.copy()
            seen = keep & ~self.synthetic
            if self.synthetic.any() and seen.any():
                # Witten-Bell back-off: where N training rows of T distinct cells share the revealed categories,
                # the independence model keeps T / (N + T) of the mass. (The Dirichlet pseudo-count alone would
                # shrink it with the combination's prior probability, letting one matching person speak for all.)
                n_rows, n_types = self.counts[seen].sum(), np.count_nonzero(self.counts[seen])
                share = n_types / (n_rows + n_types) if n_rows > 0 else 1.0
                synth = keep & self.synthetic
                if synth.any() and 0 < share < 1:
                    weights = weights.copy()
                    weights[synth] *= share / (1 - share) * weights[seen].sum() / weights[synth].sum()
            weights = weights[keep] / weights[keep].sum()
            return Posterior(self.prior, known, self.num_idx, np.delete(self.cat_idx, p), weights,
                             np.delete(self.cats[keep], p, axis=1), means[keep], self.cov, self.synthetic[keep],
                             self.counts[keep])
        p = int(np.flatnonzero(self.num_idx == i)[0])
        var = max(self.cov[p, p], 1e-300)
        gain = self.cov[:, p] / var
        resid = self.prior.latent(i, code) - self.means[:, p]
        # Each component is reweighted by how likely the revealed value is under it.
        logw = np.log(np.maximum(self.weights, 1e-300)) - 0.5 * resid**2 / var
        weights = np.exp(logw - logw.max())
        weights /= weights.sum()
        means = self.means + resid[:, None] * gain[None, :]
        cov = self.cov - np.outer(self.cov[:, p], self.cov[:, p]) / var
        keep = weights > 1e-12  # dropped components carry < 1e-9 of the mass in all
        return Posterior(self.prior, known, np.delete(self.num_idx, p), self.cat_idx,
                         weights[keep] / weights[keep].sum(),
                         self.cats[keep], np.delete(means[keep], p, axis=1),
                         np.delete(np.delete(cov, p, axis=0), p, axis=1), self.synthetic[keep], self.counts[keep])

    def compress(self, max_components: int, rng: np.random.Generator) -> "Posterior":
        """At most ``max_components`` components, resampled in proportion to their weights (systematic resampling).

        Unbiased for any expectation over the posterior; used to bound the memory and time of look-aheads.
        """
        if len(self.weights) <= max_components:
            return self
        positions = (rng.random() + np.arange(max_components)) / max_components
        picks = np.minimum(np.searchsorted(np.cumsum(self.weights) / self.weights.sum(), positions),
                           len(self.weights) - 1)
        keep, counts = np.unique(picks, return_counts=True)
        return Posterior(self.prior, self.known, self.num_idx, self.cat_idx, counts / counts.sum(),
                         self.cats[keep], self.means[keep], self.cov, self.synthetic[keep], self.counts[keep])

    def base_row(self) -> np.ndarray:
        row = np.full(len(self.prior.names), np.nan)
        for i, v in self.known.items():
            row[i] = v
        return row

    def observe_numeric(self, latent: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Map Gaussian-scale draws (last axis follows ``columns``) back to the features' own scales."""
        if not self.prior.margins:
            return latent
        out = latent.copy()
        for k, i in enumerate(columns):
            out[..., k] = self.prior.observed(int(i), latent[..., k])
        return out

    def cholesky(self) -> np.ndarray:
        return _cholesky(self.cov)

    def sample(self, n: int, rng: np.random.Generator, *, uniforms: np.ndarray | None = None,
               normals: np.ndarray | None = None) -> np.ndarray:
        """``n`` full rows: known features as revealed, hidden ones drawn from this posterior.

        ``uniforms`` (n,) and ``normals`` (n, >= hidden numeric) may be passed to reuse
        random numbers across posteriors (common random numbers make comparisons sharper).
        """
        u = rng.random(n) if uniforms is None else uniforms[:n]
        h = len(self.num_idx)
        z = rng.standard_normal((n, h)) if normals is None else normals[:n, :h]
        comp = np.minimum(np.searchsorted(np.cumsum(self.weights), u * self.weights.sum()), len(self.weights) - 1)
        rows = np.tile(self.base_row(), (n, 1))
        if h:
            rows[:, self.num_idx] = self.observe_numeric(self.means[comp] + z @ self.cholesky().T, self.num_idx)
        if len(self.cat_idx):
            rows[:, self.cat_idx] = self.cats[comp]
        return rows

    def category_probabilities(self, i: int) -> dict[int, float]:
        """Probability of each category code of hidden categorical feature ``i``."""
        p = int(np.flatnonzero(self.cat_idx == i)[0])
        totals = np.bincount(self.cats[:, p], weights=self.weights, minlength=len(self.prior.features[i].categories))
        return {c: float(w) for c, w in enumerate(totals) if w > 0}

    def quantiles(self, i: int, probs: np.ndarray) -> np.ndarray:
        """Quantiles of hidden numeric feature ``i`` on the Gaussian (latent) scale, by bisection on its CDF."""
        # deferred: scipy.special takes ~0.5 s to import
        from scipy.special import ndtr, ndtri

        p = int(np.flatnonzero(self.num_idx == i)[0])
        mu = self.means[:, p]
        sd = math.sqrt(max(self.cov[p, p], 1e-300))
        if len(mu) == 1:
            return mu[0] + sd * ndtri(probs)
        lo = np.full(len(probs), mu.min() - 10 * sd)
        hi = np.full(len(probs), mu.max() + 10 * sd)
        for _ in range(60):
            mid = (lo + hi) / 2
            below = (self.weights[None, :] * ndtr((mid[:, None] - mu[None, :]) / sd)).sum(1) < probs
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        return (lo + hi) / 2


class Margin:
    """A numeric feature's empirical distribution, tied to a standard normal (a Gaussian copula margin).

    ``to_latent`` maps a value to the normal score of its empirical CDF; ``to_observed``
    maps a normal draw back through the empirical quantile function. Features with few
    distinct values (counts, ages in years, 0/1 flags) map back to those values only;
    others are interpolated between 256 quantiles, so draws stay within the range seen.
    """

    def __init__(self, column: np.ndarray, max_levels: int = 50) -> None:
        # deferred: scipy.special takes ~0.5 s to import
        from scipy.special import ndtri

        column = np.sort(np.asarray(column, dtype=float))
        n = len(column)
        levels, counts = np.unique(column, return_counts=True)
        self.discrete = len(levels) <= max_levels
        if self.discrete:
            upper = np.cumsum(counts) / n
            self.levels = levels
            self.upper = upper  # P(X <= level)
            self.scores = ndtri(np.clip(upper - counts / (2 * n), 0.5 / n, 1 - 0.5 / n))  # mid-rank normal scores
        else:
            probs = (np.arange(256) + 0.5) / 256
            self.knots = np.quantile(column, probs)
            self.scores = ndtri(probs)

    def to_latent(self, values: np.ndarray | float) -> np.ndarray | float:
        if self.discrete:
            idx = np.clip(np.searchsorted(self.levels, values), 0, len(self.levels) - 1)
            below = np.clip(idx - 1, 0, None)
            nearer = np.where(np.abs(self.levels[below] - values) < np.abs(self.levels[idx] - values), below, idx)
            out = self.scores[nearer]
        else:
            out = np.interp(values, self.knots, self.scores)
        return float(out) if np.ndim(out) == 0 else out

    def to_observed(self, latent: np.ndarray) -> np.ndarray:
        # deferred: scipy.special takes ~0.5 s to import
        from scipy.special import ndtr

        if self.discrete:
            idx = np.searchsorted(self.upper, ndtr(latent), side="left")
            return self.levels[np.clip(idx, 0, len(self.levels) - 1)]
        return np.interp(latent, self.scores, self.knots)


def _cholesky(cov: np.ndarray) -> np.ndarray:
    """A Cholesky factor, adding the smallest diagonal jitter that makes ``cov`` positive definite."""
    if cov.size == 0:
        return cov
    cov = (cov + cov.T) / 2
    scale = max(float(np.mean(np.diag(cov))), 1e-300)
    for jitter in (0.0, 1e-12, 1e-10, 1e-8, 1e-6, 1e-4):
        try:
            return np.linalg.cholesky(cov + jitter * scale * np.eye(len(cov)))
        except np.linalg.LinAlgError:
            continue
    w, v = np.linalg.eigh(cov)  # last resort: a symmetric square root of the PSD part
    return v * np.sqrt(np.clip(w, 0, None))


# ---------------------------------------------------------------------- fitting


_MEMORY_LIMIT = 2 * 2**30  # bytes any one array of a prior or look-ahead may take; checked before allocating


def _codes(column: Any, categories: tuple[str, ...]) -> np.ndarray:
    index = {c: k for k, c in enumerate(categories)}
    return np.array([index[str(v)] for v in column], dtype=int)


def _independent(cells: np.ndarray, marginals: Sequence[np.ndarray]) -> np.ndarray:
    """P(cell) if the categorical features were independent, for each listed cell."""
    out = np.ones(len(cells))
    for j, m in enumerate(marginals):
        out *= m[cells[:, j]]
    return out


def _synthetic_cells(marginals: Sequence[np.ndarray], n: int, rng: np.random.Generator,
                     sweeps: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """``n`` cells standing for the independence model, and their weights (summing to 1).

    Drawn at random, a rare category may get no cell at all, and then no combination
    containing it is ever possible where the independence model is used. So each feature's
    column holds every category, in proportion to its frequency (at least once; a Latin
    hypercube over categories), shuffled independently of the other columns; then the
    weights are raked (iterative proportional fitting) until every category carries exactly
    its marginal probability.
    """
    columns = []
    for m in marginals:
        p = m / m.sum()
        copies = np.maximum(1, np.floor(p * (n - len(p))).astype(int))  # at least one cell per category
        short = n - copies.sum()
        if short > 0:  # hand out the rest by largest remainder
            np.add.at(copies, np.argsort(-(p * n - copies))[np.arange(short) % len(p)], 1)
        columns.append(rng.permutation(np.repeat(np.arange(len(p)), copies)[:n]))
    cells = np.column_stack(columns)
    weights = np.full(n, 1.0 / n)
    for _ in range(sweeps):
        for j, m in enumerate(marginals):
            have = np.bincount(cells[:, j], weights=weights, minlength=len(m))
            weights *= (m / m.sum() / np.maximum(have, 1e-300))[cells[:, j]]
        weights /= weights.sum()
    return cells, weights


def _columns(data: Any, names: Sequence[str] | None) -> dict[str, list[Any] | np.ndarray]:
    """Accept a ``{name: column}`` mapping, a list of ``{name: value}`` rows, or a 2-D array with ``names``."""
    if isinstance(data, Mapping):
        return {str(k): list(v) if not isinstance(v, np.ndarray) else v for k, v in data.items()}
    if isinstance(data, np.ndarray) or (isinstance(data, Sequence) and data and not isinstance(data[0], Mapping)):
        X = np.asarray(data)
        if X.ndim != 2:
            raise LocalpersError(f"expected a 2-D array of rows, got shape {X.shape}")
        names = list(names) if names is not None else [f"x{i}" for i in range(X.shape[1])]
        if len(names) != X.shape[1]:
            raise LocalpersError(f"{len(names)} names for {X.shape[1]} columns")
        return {n: X[:, i] for i, n in enumerate(names)}
    if isinstance(data, Sequence):
        keys = list(dict.fromkeys(k for row in data for k in row))
        return {k: [row.get(k) for row in data] for k in keys}
    raise LocalpersError(f"cannot fit a prior on {type(data).__name__}; pass rows, columns or a 2-D array")


def _shrunk_covariance(resid: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf covariance of residuals, computed on standardised columns and scaled back."""
    # deferred: scikit-learn takes seconds to import; only fitting a prior needs it
    from sklearn.covariance import ledoit_wolf

    if resid.shape[1] == 0:
        return np.zeros((0, 0))
    sd = resid.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    if len(resid) < 2:
        return np.diag(sd**2)
    corr, _ = ledoit_wolf(resid / sd, assume_centered=True)
    cov = corr * np.outer(sd, sd)
    return cov + np.eye(len(cov)) * 1e-9 * np.mean(np.diag(cov))


class MixedPrior(Prior):
    """A prior over numeric and categorical features: the location model (see the module docstring).

    Example::

        >>> rows = [{"age": 25, "job": "student"}, {"age": 52, "job": "doctor"}, {"age": 22, "job": "student"},
        ...         {"age": 47, "job": "doctor"}, {"age": 35, "job": "artist"}, {"age": 30, "job": "artist"}]
        >>> prior = MixedPrior.fit(rows, categorical=["job"])
        >>> post = prior.posterior({"age": 50})
        >>> max(post.category_probabilities(1).items(), key=lambda kv: kv[1])[0] == prior.code("job", "doctor")
        True
    """

    @classmethod
    def fit(cls, data: Any, *, categorical: Sequence[str] = (), names: Sequence[str] | None = None,
            margins: str = "gaussian", pseudo_count: float = 0.5, mean_shrinkage: float = 5.0,
            max_cells: int = 100_000) -> "MixedPrior":
        """Fit on many people's features.

        ``data``: a ``{name: column}`` mapping, a list of ``{name: value}`` rows, or a
        2-D array (then ``names`` names its columns). ``categorical``: the names of the
        categorical features (their values are compared as strings); all others are
        numeric. ``margins``: ``"gaussian"`` models numeric features as they are;
        ``"empirical"`` keeps each numeric feature's own distribution (skewed, discrete)
        and makes the location model Gaussian on normal scores: a Gaussian copula. It
        fits real data better, but then a linear model is no longer Gaussian in the
        score, so the selector uses Monte-Carlo. ``pseudo_count``: Dirichlet pseudo-count
        per cell. ``mean_shrinkage``: how many pseudo-rows pull a cell's means towards
        the additive model. ``max_cells``: when the categories combine into more cells
        than this, only the combinations seen in the data are listed, plus a sample of
        unseen ones that carry the smoothing mass (memory grows with the data, never
        with the product of the category counts).
        """
        cols = _columns(data, names)
        unknown = set(categorical) - set(cols)
        if unknown:
            raise LocalpersError(f"categorical feature(s) {', '.join(sorted(unknown))} not in the data")
        features: list[Feature] = []
        for name, col in cols.items():
            if name in categorical:
                if any(v is None for v in col):
                    raise LocalpersError(f"feature {name!r} has missing values; fill or drop those rows first")
                features.append(Feature(name, tuple(sorted({str(v) for v in col}))))
            else:
                features.append(Feature(name))
        n = len(next(iter(cols.values()))) if cols else 0
        if n == 0:
            raise LocalpersError("cannot fit a prior on no rows")
        num = [f for f in features if not f.is_categorical]
        cat = [f for f in features if f.is_categorical]
        try:
            X = np.column_stack([np.asarray(cols[f.name], dtype=float) for f in num]) if num else np.zeros((n, 0))
        except (TypeError, ValueError) as exc:
            raise LocalpersError(f"a numeric feature has non-numeric values ({exc}); list it in categorical=") from None
        if not np.isfinite(X).all():
            bad = [f.name for j, f in enumerate(num) if not np.isfinite(X[:, j]).all()]
            raise LocalpersError(f"feature(s) {', '.join(bad)} have missing or infinite values")
        if margins not in ("gaussian", "empirical"):
            raise LocalpersError(f"margins must be 'gaussian' or 'empirical' (got {margins!r})")
        fitted: dict[int, Margin] = {}
        if margins == "empirical":
            for j, f in enumerate(num):
                fitted[features.index(f)] = margin = Margin(X[:, j])
                X[:, j] = margin.to_latent(X[:, j])
        if max_cells < 1:
            raise LocalpersError("max_cells must be >= 1")
        sizes = [len(f.categories) for f in cat]
        n_cells = math.prod(sizes)  # a Python int: never overflows, never allocated
        codes = np.column_stack([_codes(cols[f.name], f.categories) for f in cat]).astype(int) \
            if cat else np.zeros((n, 0), dtype=int)
        marginals = [(np.bincount(codes[:, j], minlength=size) + 0.5) / (n + 0.5 * size)
                     for j, size in enumerate(sizes)]
        # Pseudo-rows spread like the independence model; never more than the data, so real rows dominate.
        alpha = min(pseudo_count * n_cells, float(n)) if pseudo_count > 0 else 0.0
        if n_cells <= max_cells:
            cells = np.array(list(itertools.product(*[range(s) for s in sizes])), dtype=int).reshape(n_cells,
                                                                                                     len(cat))
            cell_of_row = np.ravel_multi_index(codes.T, sizes) if cat else np.zeros(n, dtype=int)
            counts = np.bincount(cell_of_row, minlength=n_cells).astype(float)
            independent = _independent(cells, marginals)
            weights = (counts + alpha * independent) / (n + alpha)
            synthetic = np.zeros(len(cells), bool)
        else:
            # Too many combinations to list: keep the ones seen, plus a sample of unseen ones drawn from the
            # independence model that stand for all the others (their smoothing mass shared among them).
            cells, cell_of_row = np.unique(codes, axis=0, return_inverse=True)
            cell_of_row = cell_of_row.ravel()
            counts = np.bincount(cell_of_row, minlength=len(cells)).astype(float)
            n_extra = min(max(max_cells - len(cells), 0), max(256, len(cells), max(sizes)))
            extra, extra_w = _synthetic_cells(marginals, n_extra, np.random.default_rng(0))
            # The seen cells carry their counts; the synthetic ones, drawn from the independence model, share
            # the pseudo-count mass alpha (a Monte-Carlo stand-in for the whole independence model).
            weights = np.concatenate([counts, alpha * extra_w])
            weights /= weights.sum()
            synthetic = np.concatenate([np.zeros(len(cells), bool), np.ones(len(extra), bool)])
            cells = np.vstack([cells, extra])
            counts = np.concatenate([counts, np.zeros(len(extra))])
        n_listed = len(cells)
        need = n_listed * (X.shape[1] * 2 + len(cat) + 2) * 8
        if need > _MEMORY_LIMIT:
            raise LocalpersError(f"the prior would need {need / 2**30:.1f} GiB for {n_listed} cells; "
                                 "lower max_cells, merge rare categories or treat some features as numeric")

        # Cell means: shrunk towards overall mean + one shrunk effect per categorical feature.
        overall = X.mean(axis=0)
        target = np.tile(overall, (n_listed, 1))
        effects = []
        for j, size in enumerate(sizes):
            sums = np.zeros((size, X.shape[1]))
            np.add.at(sums, codes[:, j], X)
            n_c = np.bincount(codes[:, j], minlength=size)[:, None]
            effect = (sums - n_c * overall) / (n_c + mean_shrinkage)
            effects.append(effect)
            target += effect[cells[:, j]]
        sums = np.zeros((n_listed, X.shape[1]))
        np.add.at(sums, cell_of_row, X)
        means = (sums + mean_shrinkage * target) / (counts[:, None] + mean_shrinkage)
        cov = _shrunk_covariance(X - means[cell_of_row])
        prior = cls(features, cells, weights, means, cov, fitted)
        prior.synthetic = synthetic
        prior.counts = counts
        cat_index = [features.index(f) for f in cat]
        prior.marginals = {i: m / m.sum() for i, m in zip(cat_index, marginals)}
        prior.effects = {i: e for i, e in zip(cat_index, effects)}
        return prior


class GaussianPrior(MixedPrior):
    """A multivariate Gaussian prior over numeric features (mean and Ledoit-Wolf covariance).

    Example::

        >>> from sklearn.datasets import load_breast_cancer
        >>> data = load_breast_cancer()
        >>> prior = GaussianPrior.fit(data.data, names=list(data.feature_names))
        >>> prior
        GaussianPrior(30 numeric, 0 categorical features, 1 cells)
    """

    @classmethod
    def fit(cls, data: Any, *, names: Sequence[str] | None = None) -> "GaussianPrior":  # type: ignore[override]
        """Fit on a 2-D array of rows (``names`` names the columns), a list of rows, or columns."""
        return super().fit(data, categorical=(), names=names)


def independent_prior(features: Sequence[Feature], *, means: Mapping[str, float] | None = None,
                      sds: Mapping[str, float] | None = None,
                      probabilities: Mapping[str, Mapping[str, float]] | None = None) -> Prior:
    """A prior stated by hand, with every feature independent of the others.

    Numeric features get ``N(means[name], sds[name]**2)``; categorical ones the given
    ``probabilities[name]`` (uniform where not given). Useful when there is no
    population data to fit on, as for a single user's profile facts.
    """
    means, sds, probabilities = dict(means or {}), dict(sds or {}), dict(probabilities or {})
    num = [f for f in features if not f.is_categorical]
    cat = [f for f in features if f.is_categorical]
    sizes = [len(f.categories) for f in cat]
    if math.prod(sizes) > 1_000_000:
        raise LocalpersError(f"{math.prod(sizes)} combinations of categories is too many for independent_prior; "
                             "fit a MixedPrior on data instead (it lists only the combinations that occur)")
    cells = np.array(list(itertools.product(*[range(s) for s in sizes])), dtype=int).reshape(math.prod(sizes), len(cat))
    weights = np.ones(len(cells))
    for j, f in enumerate(cat):
        given = probabilities.get(f.name, {})
        p = np.array([float(given.get(c, 0.0 if given else 1.0)) for c in f.categories])
        if p.sum() <= 0 or (p < 0).any():
            raise LocalpersError(f"feature {f.name!r}: category probabilities must be >= 0 and not all zero")
        weights = weights * (p / p.sum())[cells[:, j]]
    mu = np.array([float(means.get(f.name, 0.0)) for f in num])
    sd = np.array([float(sds.get(f.name, 1.0)) for f in num])
    if (sd <= 0).any():
        raise LocalpersError("standard deviations must be > 0")
    return Prior(list(features), cells, weights, np.tile(mu, (len(cells), 1)), np.diag(sd**2))

"""Minimal disclosure: share the fewest features that still give the decision all of them would.

After Tran & Fioretto, "Data Minimization at Inference Time" (NeurIPS 2023). The parts:

- :mod:`~localpers.disclosure.prior`: :class:`GaussianPrior` and :class:`MixedPrior`
  (numeric and categorical features), fitted on many people, conditioned on what one
  person reveals;
- :mod:`~localpers.disclosure.select`: :func:`minimal_disclosure` reveals features one
  at a time, following the model's importance order unless simulation under the
  prior shows another feature clearly settles the decision sooner (a rollout, which
  cannot do worse than the order it improves on), until the decision is fixed with
  probability >= 1 - delta (closed form for linear models, Monte-Carlo for any other);
- :mod:`~localpers.disclosure.ledger`: every disclosure recorded in the vault (what,
  to whom, why, when), viewable and exportable;
- :mod:`~localpers.disclosure.decisions`: the product side, choosing which of the user's
  profile facts go into a writing prompt or a recommendation request.

Example::

    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from localpers.disclosure import GaussianPrior, DisclosureConfig, minimal_disclosure
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(500, 5)); y = (X[:, 0] + 0.1 * X[:, 1] > 0).astype(int)
    >>> model = LogisticRegression().fit(X, y)
    >>> d = minimal_disclosure(model, GaussianPrior.fit(X), np.array([2.5, 0, 0, 0, 0]), DisclosureConfig(delta=0.05))
    >>> d.revealed, d.decision
    (['x0'], 1)
"""

from .ledger import LedgerEntry, describe_entry, export_ledger, fact_value, ledger_entries, record
from .prior import Feature, GaussianPrior, MixedPrior, Posterior, Prior, independent_prior
from .decisions import (
    DECISIONS,
    FactSelection,
    ProfileDecision,
    ProfileFact,
    choose_profile_facts,
    formality_score,
    profile_facts,
)
from .select import Disclosure, DisclosureConfig, LinearDecision, Step, full_decision, minimal_disclosure

__all__ = [
    "DECISIONS", "Disclosure", "DisclosureConfig", "FactSelection", "Feature", "GaussianPrior", "LedgerEntry",
    "LinearDecision", "MixedPrior", "Posterior", "Prior", "ProfileDecision", "ProfileFact", "Step",
    "choose_profile_facts", "describe_entry", "export_ledger", "fact_value", "formality_score", "full_decision", "independent_prior", "ledger_entries",
    "minimal_disclosure", "profile_facts", "record",
]

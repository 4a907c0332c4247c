"""Minimal disclosure inside the product: which profile facts go into a prompt or a request.

The writer and the recommender both want facts about the user from the vault's
``features`` table (age, occupation, a style summary, ...). Rather than pasting
every fact, each purpose has a *decision* the facts inform, and only the facts
needed to fix that decision are used:

- ``writing-tone`` (purpose ``writing``): should a draft be formal or casual?
- ``recommendation-era`` (purpose ``recommendation``): lean towards recent
  releases or towards classics?

A :class:`ProfileDecision` is a small linear rule over named facts plus a prior
saying what to assume about a fact the user keeps back. The built-in rules are
hand-set and transparent, not fitted: their weights are in this file. Their
priors use population figures from the MovieLens 100K users (mean age 34, sd 12;
occupation frequencies) and plain assumptions for the derived facts; every fact
is assumed independent of the others. Anyone with a fitted model and prior can
build their own :class:`ProfileDecision` or call
:func:`~localpers.disclosure.minimal_disclosure` directly.

Facts the rule never looks at are always withheld. Each choice is recorded in the
disclosure ledger with its purpose and recipient.

Example::

    >>> from localpers.disclosure import choose_profile_facts
    >>> chosen = choose_profile_facts(vault, "writing", recipient="local writer model")   # doctest: +SKIP
    >>> chosen.prompt_lines()                                                              # doctest: +SKIP
    ['formality: 0.85']
    >>> chosen.instruction                                                                 # doctest: +SKIP
    'Write in a formal tone.'
    >>> print(chosen.summary())                                                            # doctest: +SKIP
    Used 1 of 4 profile facts for writing (tone: formal, 99.9% sure): formality. Withheld: age, gender, occupation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import LocalpersError
from ..vault import WRITTEN_KINDS
from .ledger import record as record_disclosure
from .prior import Feature, Prior, independent_prior
from .select import Disclosure, DisclosureConfig, LinearDecision, minimal_disclosure

if TYPE_CHECKING:  # pragma: no cover
    from ..vault import Vault


@dataclass(frozen=True)
class ProfileFact:
    """One profile fact a decision uses, and what to assume about it when it is not revealed.

    Numeric facts: prior ``N(mean, sd**2)`` and a score contribution ``weight * (value - mean)``.
    Categorical facts: prior ``categories`` (category -> probability) and a score
    contribution ``weight[category]`` (0 for categories not listed).
    """

    name: str
    description: str
    weight: float | Mapping[str, float]
    mean: float = 0.0
    sd: float = 1.0
    categories: Mapping[str, float] | None = None

    @property
    def feature(self) -> Feature:
        return Feature(self.name, tuple(self.categories) if self.categories is not None else None)

    def coerce(self, value: Any) -> tuple[Any, str | None]:
        """The fact's value as the rule needs it, or (None, why not)."""
        if value is None or value == "":
            return None, "not in the profile"
        if self.categories is None:
            try:
                number = float(value)
            except (TypeError, ValueError):
                return None, f"not a number: {value!r}"
            return (number, None) if math.isfinite(number) else (None, f"not a number: {value!r}")
        text = str(value).strip().lower()
        for category in self.categories:
            if category.lower() == text:
                return category, None
        if "other" in self.categories:
            return "other", None
        return None, f"{value!r} is not one of {', '.join(self.categories)}"


@dataclass(frozen=True)
class ProfileDecision:
    """A decision over profile facts: ``labels[1]`` when ``bias + sum of contributions > 0``."""

    name: str
    purpose: str
    question: str
    labels: tuple[str, str]
    facts: tuple[ProfileFact, ...]
    bias: float = 0.0
    instruction: str = "{label}"  # how the decision reads in a prompt; {label} is replaced

    def prior(self) -> Prior:
        return independent_prior([f.feature for f in self.facts],
                                 means={f.name: f.mean for f in self.facts if f.categories is None},
                                 sds={f.name: f.sd for f in self.facts if f.categories is None},
                                 probabilities={f.name: f.categories for f in self.facts if f.categories is not None})

    def model(self) -> LinearDecision:
        weights: dict[str, Any] = {}
        bias = self.bias
        for f in self.facts:
            if f.categories is None:
                weights[f.name] = float(f.weight)  # type: ignore[arg-type]
                bias -= float(f.weight) * f.mean  # type: ignore[arg-type]
            else:
                weights[f.name] = dict(f.weight)  # type: ignore[arg-type]
        return LinearDecision(weights, bias, self.labels)


# Occupation frequencies among the 943 MovieLens 100K users.
OCCUPATIONS = {
    "administrator": 0.084, "artist": 0.030, "doctor": 0.007, "educator": 0.101, "engineer": 0.071,
    "entertainment": 0.019, "executive": 0.034, "healthcare": 0.017, "homemaker": 0.007, "lawyer": 0.013,
    "librarian": 0.054, "marketing": 0.028, "none": 0.010, "other": 0.111, "programmer": 0.070, "retired": 0.015,
    "salesman": 0.013, "scientist": 0.033, "student": 0.208, "technician": 0.029, "writer": 0.048,
}

WRITING_TONE = ProfileDecision(
    name="writing-tone",
    purpose="writing",
    question="Should drafts take a formal or a casual tone?",
    labels=("casual", "formal"),
    facts=(
        ProfileFact("formality", "share of the user's own messages that open or close formally (0 to 1); "
                    "see formality_score()", weight=8.0, mean=0.5, sd=0.25),
        ProfileFact("age", "age in years", weight=0.04, mean=34.0, sd=12.2),
        ProfileFact("occupation", "occupation", categories=OCCUPATIONS, weight={
            "lawyer": 1.2, "executive": 1.0, "administrator": 0.8, "doctor": 0.8, "healthcare": 0.5,
            "librarian": 0.4, "educator": 0.3, "salesman": 0.3, "scientist": 0.2, "retired": 0.4,
            "student": -1.0, "artist": -0.8, "entertainment": -0.8, "writer": -0.3, "programmer": -0.3}),
    ),
    instruction="Write in a {label} tone.",
)

RECOMMENDATION_ERA = ProfileDecision(
    name="recommendation-era",
    purpose="recommendation",
    question="Lean recommendations towards recent releases or towards classics?",
    labels=("recent", "classic"),
    facts=(
        ProfileFact("classic_share", "share of the user's well-rated titles released 20 or more years "
                    "before the newest in the catalog (0 to 1)", weight=10.0, mean=0.2, sd=0.15),
        ProfileFact("age", "age in years", weight=0.06, mean=34.0, sd=12.2),
        ProfileFact("occupation", "occupation", categories=OCCUPATIONS, weight={
            "retired": 1.5, "librarian": 0.5, "educator": 0.3, "writer": 0.3, "student": -0.7,
            "programmer": -0.2, "entertainment": -0.2}),
    ),
    instruction="Prefer {label} titles.",
)

DECISIONS: dict[str, ProfileDecision] = {d.name: d for d in (WRITING_TONE, RECOMMENDATION_ERA)}
_DEFAULT_FOR_PURPOSE = {"writing": "writing-tone", "recommendation": "recommendation-era"}


@dataclass
class FactSelection:
    """Which profile facts to use for one purpose, and why the others are withheld."""

    purpose: str
    recipient: str
    decision_name: str
    question: str
    decision: str
    confidence: float
    guaranteed: bool  # False: not enough facts available to fix the decision at 1 - delta
    used: dict[str, Any]  # fact -> value, to put in the prompt or request
    withheld: list[str]
    reasons: dict[str, str]  # fact -> why used or withheld
    disclosure: Disclosure
    ledger_id: int | None = None
    instruction_template: str = field(default="{label}", repr=False)

    @property
    def instruction(self) -> str:
        """The decision as one line for a prompt (``"Write in a formal tone."``); empty when not sure enough."""
        return self.instruction_template.format(label=self.decision) if self.guaranteed else ""

    def prompt_lines(self, *, with_decision: bool = False) -> list[str]:
        """``name: value`` lines of the facts used, for a prompt or a request.

        ``with_decision`` adds the decision itself (``writing-tone: formal``) when it is settled.
        """
        lines = [f"{name}: {_show(value)}" for name, value in self.used.items()]
        if with_decision and self.guaranteed:
            lines.append(f"{self.decision_name}: {self.decision}")
        return lines

    def summary(self) -> str:
        """One line for the app: what was used, what was withheld, and the decision."""
        total = len(self.used) + len(self.withheld)
        sure = f"{self.confidence:.1%} sure" if self.guaranteed else f"only {self.confidence:.1%} sure"
        return (f"Used {len(self.used)} of {total} profile facts for {self.purpose} "
                f"({self.decision_name}: {self.decision}, {sure}): {', '.join(self.used) or 'none'}. "
                f"Withheld: {', '.join(self.withheld) or 'none'}.")

    def explain(self) -> str:
        """A line per fact with the reason it was used or withheld."""
        lines = [f"{self.question} -> {self.decision} ({self.confidence:.1%} sure)"]
        lines += [f"  used      {name}: {self.reasons.get(name, '')}" for name in self.used]
        lines += [f"  withheld  {name}: {self.reasons.get(name, '')}" for name in self.withheld]
        return "\n".join(lines)


def _show(value: Any) -> str:
    if isinstance(value, dict) and "text" in value:
        return str(value["text"])
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


# Kinds of vault items the user wrote themselves (as in localpers.writing.writer).
_OWN_TEXT_KINDS = WRITTEN_KINDS


def profile_facts(vault: "Vault", *, derive: bool = True) -> dict[str, Any]:
    """The user's profile facts, ``{name: value}`` (the latest row wins when a name repeats).

    With ``derive``, facts the profile lacks but the vault can tell are added:
    ``formality`` from the user's own latest texts (see :func:`formality_score`).
    Derived facts are computed on the fly, not stored.
    """
    facts: dict[str, Any] = {}
    for row in vault.features.rows(order_by="updated, rowid"):
        if row.get("name"):
            facts[str(row["name"])] = row.get("value")
    if derive and "formality" not in facts:
        marks = ", ".join("?" * len(_OWN_TEXT_KINDS))
        rows = vault.items.rows(f"kind in ({marks})", _OWN_TEXT_KINDS, order_by="created desc", limit=300,
                                columns=["content"])
        texts = [r["content"] for r in rows if isinstance(r.get("content"), str)]
        if len(texts) >= 5:  # fewer says too little about how someone writes
            facts["formality"] = round(formality_score(texts), 3)
    return facts


def choose_profile_facts(vault: "Vault", purpose: str, *, decision: str | ProfileDecision | None = None,
                         recipient: str = "local model", public: Iterable[str] = (),
                         costs: Mapping[str, float] | None = None, delta: float = 0.01, record: bool = True,
                         share_if_unsure: bool = False, facts: Mapping[str, Any] | None = None) -> FactSelection:
    """Choose the profile facts for ``purpose`` (``"writing"`` or ``"recommendation"``) and log the choice.

    ``decision``: a built-in decision's name or a :class:`ProfileDecision` (default: the
    purpose's built-in one). ``recipient``: who gets the facts (goes in the ledger).
    ``public``: facts the user always shares for this purpose (used, never counted as
    revealed). ``costs``: sensitivity per fact (see :class:`DisclosureConfig`).
    ``record``: write a ledger entry (False for a preview). ``share_if_unsure``: when
    even all available facts cannot fix the decision at ``1 - delta``, share them
    anyway (default: share none, since they would not settle it). ``facts``: use these
    instead of the vault's profile (the vault still gets the ledger entry).

    Example::

        >>> chosen = choose_profile_facts(vault, "writing", recipient="local writer model")  # doctest: +SKIP
        >>> prompt = "\\n".join(chosen.prompt_lines() + [chosen.instruction])                 # doctest: +SKIP
    """
    rule = _resolve(purpose, decision)
    profile = dict(profile_facts(vault) if facts is None else facts)
    public = [name for name in dict.fromkeys(public) if name in profile]
    names = [f.name for f in rule.facts]
    x: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    for fact in rule.facts:
        value, problem = fact.coerce(profile.get(fact.name))
        x[fact.name] = value
        if problem:
            reasons[fact.name] = f"cannot be used ({problem})"
    config = DisclosureConfig(delta=delta, public=[n for n in public if n in names and x[n] is not None],
                              costs={k: v for k, v in (costs or {}).items() if k in names})
    disclosure = minimal_disclosure(rule.model(), rule.prior(), x, config)
    if not disclosure.guaranteed and disclosure.revealed and not share_if_unsure:
        # Even every available fact leaves the decision open: sharing them would not settle it.
        unsure = f"not shared: even all available facts leave the decision open ({disclosure.confidence:.1%} sure)"
        reasons.update({name: unsure for name in disclosure.revealed})
        config.costs = {**config.costs, **{n: math.inf for n in names if n not in config.public}}
        disclosure = minimal_disclosure(rule.model(), rule.prior(), x, config)

    used: dict[str, Any] = {}
    for name in public:
        used[name] = profile[name]
        reasons[name] = "always shared for this purpose"
    for step in disclosure.steps:
        used[step.feature] = profile[step.feature]
        reasons[step.feature] = f"needed to decide: {step.reason}"
    withheld = [name for name in [*names, *profile] if name not in used]
    withheld = list(dict.fromkeys(withheld))
    for name in withheld:
        if name in reasons:
            continue
        if name not in names:
            reasons[name] = "not used by this decision"
        elif name not in profile:
            reasons[name] = "not in the profile"
        else:
            reasons[name] = "not needed: the decision was already fixed"
    withheld = [n for n in withheld if n in profile]  # only facts the user has can be withheld
    selection = FactSelection(
        purpose=purpose, recipient=recipient, decision_name=rule.name, question=rule.question,
        decision=str(disclosure.decision), confidence=disclosure.confidence, guaranteed=disclosure.guaranteed,
        used=used, withheld=withheld, reasons=reasons, disclosure=disclosure,
        instruction_template=rule.instruction,
    )
    if record:
        selection.ledger_id = record_disclosure(vault, disclosure, purpose=purpose, recipient=recipient,
                                                decision_name=rule.name, withheld=withheld, revealed=used)
    return selection


def _resolve(purpose: str, decision: str | ProfileDecision | None) -> ProfileDecision:
    if isinstance(decision, ProfileDecision):
        return decision
    name = decision or _DEFAULT_FOR_PURPOSE.get(purpose)
    if name is None:
        raise LocalpersError(f"no built-in decision for purpose {purpose!r}; pass decision= "
                             f"(built-in: {', '.join(DECISIONS)})")
    if name not in DECISIONS:
        raise LocalpersError(f"unknown decision {name!r}; built-in: {', '.join(DECISIONS)}")
    return DECISIONS[name]


_FORMAL = re.compile(r"^\s*(dear|good (morning|afternoon|evening)|to whom)\b|"
                     r"\b(sincerely|regards|respectfully|yours (truly|faithfully)|best wishes)\s*[,.!]?\s*$",
                     re.IGNORECASE | re.MULTILINE)
_CASUAL = re.compile(r"^\s*(hi|hey|hiya|yo)\b|\b(cheers|thx|ttyl|lol|xo+|talk soon|see ya)\b",
                     re.IGNORECASE | re.MULTILINE)


def formality_score(texts: Sequence[str]) -> float | None:
    """How formally someone writes, from 0 (casual) to 1 (formal): the ``formality`` fact.

    Each text counts 1 when it has a formal opening or closing ("Dear", "Regards",
    "Sincerely") and no casual one, 0 for the reverse ("Hi", "Hey", "Cheers"), and
    0.5 for neither or both; the score is their mean. None for no texts.

    Example::

        >>> formality_score(["Dear Ms Lee,\\nPlease find attached.\\nKind regards,\\nAda", "Hey! lunch? cheers"])
        0.5
    """
    if not texts:
        return None
    marks = []
    for text in texts:
        formal, casual = bool(_FORMAL.search(text)), bool(_CASUAL.search(text))
        marks.append(1.0 if formal and not casual else 0.0 if casual and not formal else 0.5)
    return sum(marks) / len(marks)

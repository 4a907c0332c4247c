"""Feedback: what a user told the device about catalog items (like, dislike, stars, reads), in the vault.

Both the recommender (:mod:`localpers.recommend`) and the profile summary (:mod:`localpers.profile`)
read it; this module imports neither. An :class:`Event` is one interaction, :func:`record_feedback`
seals one in ``vault.interactions``, :func:`read_events` gives them back oldest first, and
:class:`SignalWeights` says how much each kind of signal counts.

Example::

    >>> SignalWeights().signal_weight(Event("m1", "rating", 4.5))
    0.9
    >>> normalize_signal("Not interested")
    'not_interested'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .errors import LocalpersError
from .ratings import STARS
from .vault import coarse_time

if TYPE_CHECKING:
    from .catalog import Catalog
    from .vault import Vault

# "interaction" is what history imports write for rows that name no signal (a purchase, a view).
SIGNALS = ("like", "dislike", "not_interested", "rating", "read", "click", "interaction")
EXPLICIT = {"like", "dislike", "not_interested", "rating"}


@dataclass(frozen=True)
class Event:
    """One interaction with a catalog item (``value``: the stars of a rating, 0.5-5)."""

    item: str
    signal: str
    value: float | None = None


@dataclass
class Taste:
    """What the recommender knows of one user's taste: their feedback (oldest first) and interest text.

    Not to be confused with :class:`localpers.history.History`, the texts a user wrote or read."""

    events: list[Event] = field(default_factory=list)
    interests: str = ""
    interest_vector: np.ndarray | None = None  # the embedded interests, when already computed
    era: str | None = None  # "classic" or "recent": the settled recommendation-era decision, if any

    def seen(self) -> set[str]:
        return {e.item for e in self.events}


@dataclass
class SignalWeights:
    """How much each signal says about interest (the recommender's weights start from these)."""

    # What each signal says about interest, before recency (ratings are 1-5 stars).
    like: float = 1.0
    dislike: float = -1.0
    not_interested: float = -0.5
    read: float = 0.5
    click: float = 0.25
    interaction: float = 0.5
    stars: tuple[float, float, float, float, float] = (-0.5, -0.25, 0.4, 0.8, 1.0)

    def signal_weight(self, event: Event) -> float:
        if event.signal == "rating":
            # Stars (localpers.ratings): linear between the two nearest whole stars; half a star
            # continues the 1-2 star slope below 1.
            stars = min(STARS[1], max(STARS[0], float(event.value if event.value is not None else 3.0)))
            low = min(max(int(stars), 1), 4)
            return self.stars[low - 1] + (stars - low) * (self.stars[low] - self.stars[low - 1])
        return float(getattr(self, event.signal))


def normalize_signal(signal: str) -> str:
    name = signal.strip().lower().replace("-", "_").replace(" ", "_")
    if name not in SIGNALS:
        raise LocalpersError(f"unknown feedback {signal!r}; use one of: {', '.join(s.replace('_', '-') for s in SIGNALS)}")
    return name


def record_feedback(vault: Vault, catalog: Catalog, item_id: str, signal: str, value: float | None = None) -> int:
    """Store one interaction (sealed in ``vault.interactions``) and return its id.

    ``signal``: like, dislike, not-interested, rating (``value`` = 1-5 stars), read, click
    or interaction.
    The next recommendation list reflects it.
    """
    signal = normalize_signal(signal)
    item = catalog.get(item_id)
    if item is None:
        raise LocalpersError(f"catalog {catalog.name!r} has no item {item_id!r}")
    if signal == "rating":
        if value is None:
            raise LocalpersError("a rating needs a value: 0.5 to 5 stars, half stars allowed (--value 4)")
        value = float(value)
        if not STARS[0] <= value <= STARS[1]:
            raise LocalpersError(f"a rating is {STARS[0]:g} to {STARS[1]:g} stars (half stars allowed), not {value:g}")
    elif value is not None:
        raise LocalpersError(f"{signal.replace('_', '-')} takes no value; only a rating does")
    meta = {"catalog": catalog.name, "title": item.title, "kind": item.kind, "tags": list(item.tags)}
    return vault.interactions.insert({"signal": signal, "time": coarse_time(), "item": item.id, "value": value,
                                      "metadata": meta})


def read_events(vault: Vault, catalog: str | None = None) -> list[Event]:
    """The user's interactions, oldest first (ids break ties within a day), for one catalog.

    Interactions recorded without a catalog name (e.g. imported ratings) count for every catalog.
    """
    events = []
    for row in vault.interactions.rows(order_by="time, id", columns=["item", "value", "metadata"]):
        meta = row.get("metadata") or {}
        if catalog is not None and isinstance(meta, dict) and meta.get("catalog") not in (None, catalog):
            continue
        if row.get("item") is None or row["signal"] not in SIGNALS:
            continue
        value = row.get("value")
        events.append(Event(str(row["item"]), row["signal"], float(value) if isinstance(value, (int, float)) else None))
    return events

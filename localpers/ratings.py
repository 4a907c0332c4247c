"""One rating scale everywhere: stars from 0.5 to 5, half stars kept.

Every rating the recommender reads is in stars (:data:`STARS`). ``localpers feedback
ITEM rating --value 3.5`` takes stars directly; an imported ratings file declares its own
scale (``--rating-scale 1-10``; default: stars) and its values are converted to stars in
proportion (``7`` of ``10`` is ``3.5`` stars). A value outside the declared scale is
refused and its row named, never clamped.

Example::

    >>> scale = parse_scale("1-10")
    >>> scale, to_stars(7, scale)
    ((1.0, 10.0), 3.5)
    >>> to_stars(0.5, STARS)
    0.5
"""

from __future__ import annotations

import math
import re

from .errors import LocalpersError

STARS = (0.5, 5.0)


def parse_scale(text: str | tuple[float, float] | None) -> tuple[float, float]:
    """``"1-10"`` (or ``(1, 10)``, or None for stars) -> ``(low, high)``; refuses what is not a scale."""
    if text is None:
        return STARS
    if isinstance(text, tuple):
        low, high = (float(v) for v in text)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:-|\.\.|to)\s*(\d+(?:\.\d+)?)\s*", str(text))
        if not match:
            raise LocalpersError(f"rating scale {text!r}: write it LOW-HIGH, e.g. 1-5, 0.5-5 or 1-10")
        low, high = float(match.group(1)), float(match.group(2))
    if not (0 <= low < high and math.isfinite(high)):
        raise LocalpersError(f"rating scale {low:g}-{high:g}: the low end must be 0 or more and below the high end")
    return low, high


def check(value: float, scale: tuple[float, float] = STARS) -> float:
    """``value`` as a float if it lies on ``scale``; else a LocalpersError naming the scale."""
    value = float(value)
    low, high = scale
    if not math.isfinite(value) or not low <= value <= high:
        raise LocalpersError(f"rating {value:g} is outside the scale {low:g}-{high:g}")
    return value


def to_stars(value: float, scale: tuple[float, float] = STARS) -> float:
    """A value on ``scale`` in stars (0.5-5): in proportion to the top of the scale, at least half a star."""
    value = check(value, scale)
    if scale == STARS:
        return value
    return round(max(STARS[0], STARS[1] * value / scale[1]), 3)

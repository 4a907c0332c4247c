"""The disclosure ledger: every time profile features leave the vault, what went, to whom, why, and when.

Entries live in the vault's ``ledger`` table: the day is in the clear (so entries
can be listed by date), everything else is sealed. The user can read the ledger
(``localpers privacy ledger``) and export it as JSON Lines, a plaintext file they
asked for.

Example::

    >>> from localpers.disclosure import record, ledger_entries
    >>> entry_id = record(vault, disclosure, purpose="writing", recipient="local writer model")  # doctest: +SKIP
    >>> ledger_entries(vault)[0].revealed                                                        # doctest: +SKIP
    {'occupation': 'lawyer'}
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import LocalpersError
from ..vault import coarse_time
from .select import Disclosure, _plain

if TYPE_CHECKING:  # pragma: no cover
    from ..vault import Vault


@dataclass
class LedgerEntry:
    """One recorded disclosure."""

    id: int
    time: int  # the day, as a Unix timestamp rounded down to midnight UTC
    purpose: str
    recipient: str
    revealed: dict[str, Any]  # name -> value actually shared (public features included)
    withheld: list[str]
    decision: dict[str, Any]  # name, label, confidence, delta, method
    steps: list[dict[str, Any]]

    def to_dict(self) -> dict:
        return asdict(self)


def fact_value(value: Any) -> str:
    """A profile fact's value as a person reads it: rounded numbers, lists joined, a text as itself.

    >>> fact_value(0.9999999999999999), fact_value(["a", "b"]), fact_value({"text": "Likes maps", "edited": True})
    ('1', 'a, b', '"Likes maps"')
    """
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{round(value, 2):g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fact_value(v) for v in value) or "none"
    if isinstance(value, dict):
        if "text" in value:
            return '"' + " ".join(str(value["text"]).split()) + '"'
        return "; ".join(f"{k.replace('_', ' ')} {fact_value(v)}" for k, v in value.items()) or "none"
    return "none" if value in (None, "") else str(value)


def describe_entry(entry: LedgerEntry) -> list[str]:
    """One ledger entry as sentences, for people (the app's detail view, ``localpers privacy ledger``).

    Example::

        >>> entry = LedgerEntry(1, 0, "recommendation", "local recommender", {"classic_share": 1.0},
        ...                     ["age"], {"name": "recommendation-era", "label": "classic",
        ...                               "confidence": 0.9999999999999999, "guaranteed": True}, [])
        >>> for line in describe_entry(entry):
        ...     print(line)
        The local recommender was told 1 of 2 profile facts, for recommendation.
        Shared: classic share: 1.
        Kept back: age.
        Decision (recommendation era): classic, with 100% confidence; the same as with every fact, guaranteed.
    """
    revealed = entry.revealed or {}
    total = len(revealed) + len(entry.withheld or [])
    lines = [f"The {entry.recipient or 'recipient'} was told {len(revealed)} of {total} profile facts"
             + (f", for {entry.purpose}." if entry.purpose else ".")]
    if revealed:
        shared = [f"{name.replace('_', ' ')}: {fact_value(value)}" for name, value in revealed.items()]
        lines.append("Shared: " + "; ".join(shared) + ".")
    else:
        lines.append("Shared: nothing.")
    withheld = [name.replace("_", " ") for name in entry.withheld or []]
    lines.append(f"Kept back: {', '.join(withheld) or 'nothing'}.")
    decision = entry.decision or {}
    if decision.get("label") is not None:
        name = str(decision.get("name") or "").replace("-", " ")
        text = f"Decision{f' ({name})' if name else ''}: {fact_value(decision['label'])}"
        if isinstance(decision.get("confidence"), (int, float)):
            text += f", with {decision['confidence']:.0%} confidence"
        if decision.get("guaranteed"):
            text += "; the same as with every fact, guaranteed"
        lines.append(text + ".")
    return lines


def record(vault: "Vault", disclosure: Disclosure, *, purpose: str, recipient: str, decision_name: str | None = None,
           revealed: dict[str, Any] | None = None, withheld: list[str] | None = None) -> int:
    """Write one disclosure to the vault's ledger and return its entry id.

    ``purpose``: why the features were shared (``"writing"``, ``"recommendation"``).
    ``recipient``: who received them (``"local writer model"``, a service's name).
    ``revealed`` and ``withheld`` override the disclosure's own lists (the product
    adds facts the decision never looked at, and facts always shared).
    """
    if not purpose or not recipient:
        raise LocalpersError("a ledger entry needs a purpose and a recipient")
    row = {
        "time": coarse_time(),
        "purpose": purpose,
        "recipient": recipient,
        "revealed": _plain({**disclosure.public_values, **disclosure.values} if revealed is None else revealed),
        "withheld": list(disclosure.withheld if withheld is None else withheld),
        "decision": _plain({"name": decision_name, "label": disclosure.decision, "confidence": disclosure.confidence,
                            "delta": disclosure.delta, "method": disclosure.method,
                            "guaranteed": disclosure.guaranteed, "public": disclosure.public}),
        "steps": _plain([asdict(s) for s in disclosure.steps]),
    }
    return int(vault.ledger.insert(row))


def ledger_entries(vault: "Vault", *, limit: int | None = None, since: int | None = None) -> list[LedgerEntry]:
    """Recorded disclosures, newest first. ``since``: only entries on or after this Unix time."""
    where, params = ("time >= ?", [int(since)]) if since is not None else (None, [])
    rows = vault.ledger.rows(where, params, order_by="id desc", limit=limit)
    return [LedgerEntry(id=r["id"], time=r["time"], purpose=r["purpose"] or "", recipient=r["recipient"] or "",
                        revealed=r["revealed"] or {}, withheld=r["withheld"] or [], decision=r["decision"] or {},
                        steps=r["steps"] or []) for r in rows]


def export_ledger(vault: "Vault", path: str | os.PathLike, *, overwrite: bool = False) -> int:
    """Write the whole ledger, oldest first, as JSON Lines to ``path``; return the number of entries.

    The file is plaintext: it is the user's own explicit export. It is created with
    mode 0600, and an existing file is only replaced with ``overwrite=True``.
    """
    path = Path(path).expanduser()
    if path.exists() and not overwrite:
        raise LocalpersError(f"{path} already exists; choose another name or allow overwriting")
    if not path.parent.is_dir():
        raise LocalpersError(f"folder {path.parent} does not exist")
    entries = list(reversed(ledger_entries(vault)))
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (0 if overwrite else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for entry in entries:
            f.write(json.dumps(entry.to_dict(), ensure_ascii=False) + "\n")
    return len(entries)

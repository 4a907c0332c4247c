"""The demo profile: a vault filled from bundled, entirely synthetic data.

Nora Quill does not exist. She is a landscape architect at the (equally fictional)
Tidewater Parks Studio in Fernbrook, who cycles, keeps an allotment and runs a book
club. ``demo_data/history.jsonl`` holds 61 short emails and notes written for her, so
the demo shows retrieval, drafting and search on something that reads like a real
person's writing without being anyone's. ``demo_data/catalog.jsonl`` and
``demo_data/ratings.csv`` give the recommender a public-domain catalog and a few
ratings to start from.

:func:`open_demo` opens the demo vault, and calls :func:`populate` the first time;
it embeds the texts and the catalog (a few seconds on a laptop). This module sits above
the vault, the history and the catalog: none of them knows the demo exists.

Example::

    >>> from localpers.demo import open_demo
    >>> vault = open_demo()                 # doctest: +SKIP
    >>> vault.stats()["items_by_kind"]      # doctest: +SKIP
    {'email': 49, 'note': 12}
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

from .catalog import Catalog
from .history import History
from .profile import set_fact, set_interests, set_profile
from .feedback import record_feedback
from .vault import DAY, DEMO_PASSPHRASE, DEMO_USER, Vault

DEMO_DATA = Path(__file__).parent / "demo_data"
HISTORY_FILE = DEMO_DATA / "history.jsonl"
DEMO_INTERESTS = ["nature writing and gardens", "gentle mysteries", "stories of rivers and the sea"]
# Written by hand, so the demo reads the same on every machine (and shows what a profile the user
# edits looks like); it agrees with the bundled ratings.
DEMO_PROFILE = """Enjoys gothic tales, silent films and detective stories: Dracula, Nosferatu, Metropolis,
The Hound of the Baskervilles, Buster Keaton's The General.
Not keen on: regency romance, musicals.
Writes short, warm emails to colleagues, family, a book club and a cycling club; signs off "Nora"."""
# Profile facts the minimal-disclosure selector chooses from (localpers.disclosure.decisions): the demo
# shows some of them used for a prompt or a list and the rest withheld.
DEMO_FACTS = {"age": 38, "occupation": "landscape architect"}


def demo_texts() -> list[dict]:
    """The bundled sample: dicts with ``kind``, ``text``, ``days_ago`` and ``subject``/``to`` or ``title``."""
    rows = []
    with open(HISTORY_FILE, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                row = json.loads(line)
                if not isinstance(row, dict) or not str(row.get("text", "")).strip():
                    raise ValueError(f"{HISTORY_FILE.name} line {n}: expected an object with a 'text'")
                rows.append(row)
    return rows


def open_demo(*, home: Path | None = None) -> Vault:
    """The demo profile's vault: created from the bundled synthetic sample on first use.

    ``home`` is the users folder (as for :meth:`Vault.open`); the demo catalog sits beside it.
    """
    if Vault.exists(DEMO_USER, home):
        return Vault.open(DEMO_USER, DEMO_PASSPHRASE, home=home)
    vault = Vault.create(DEMO_USER, DEMO_PASSPHRASE, home=home, kdf_seconds=0, demo=True)
    populate(vault)
    return vault


def data_home(vault: Vault) -> Path:
    """The data directory a vault lives in (``<home>/users/<name>/vault.db``): catalogs sit beside it."""
    return Path(vault.path).parent.parent.parent


def populate(vault: Vault, *, now: float | None = None, embedder: Any = None) -> dict:
    """Fill a fresh demo vault: the sample texts, the demo catalog's ratings, interests, a profile and its facts.

    Returns what was added, e.g. ``{"texts": 61, "ratings": 9, "catalog": "demo"}``.
    ``embedder`` replaces the bundled sentence-embedding model (for tests).
    """
    now = time.time() if now is None else now
    history = History(vault, embedder)
    added = 0
    for kind in ("email", "note"):
        rows = [r for r in demo_texts() if r.get("kind", "note") == kind]
        if not rows:
            continue
        metadata = []
        for r in rows:
            meta = {"synthetic": True, "author": "Nora Quill"}
            for key in ("subject", "to", "title"):
                if r.get(key):
                    meta[key] = r[key]
            metadata.append(meta)
        created = [now - float(r.get("days_ago", 0)) * DAY for r in rows]
        added += len(history.add_texts([r["text"] for r in rows], kind=kind, source="demo", metadata=metadata,
                                       created=created))
    catalog = Catalog.demo(data_home(vault), embedder=embedder)
    ratings = seed_demo_feedback(vault, catalog)
    set_interests(vault, DEMO_INTERESTS)
    set_profile(vault, DEMO_PROFILE)
    for name, value in DEMO_FACTS.items():
        set_fact(vault, name, value)
    return {"texts": added, "ratings": ratings, "catalog": catalog.name}


def seed_demo_feedback(vault: Vault, catalog: Catalog) -> int:
    """Record the bundled demo ratings (``demo_data/ratings.csv``) for a demo vault; returns how many."""
    path = DEMO_DATA / "ratings.csv"
    count = 0
    with open(path, encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if catalog.get(row["item"]) is None:
                continue
            value = float(row["value"]) if row.get("value") else None
            record_feedback(vault, catalog, row["item"], row["signal"], value)
            count += 1
    return count

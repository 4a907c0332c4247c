"""Profile facts in recommendation requests: chosen minimally, shown, logged once, and nudging the list by era.

A real vault, real embeddings and a small catalog whose items have years: "twins"
share a description and differ only in year, so the era nudge alone decides which
of a pair comes first.
"""

from __future__ import annotations

import pytest

from localpers.catalog import Catalog
from localpers.disclosure import ledger_entries
from localpers.profile import get_fact, set_fact
from localpers.recommend import CLASSIC_YEARS, RECIPIENT, Recommendations, Recommender, record_feedback
from localpers.tui.screens.recommend import profile_line
from localpers.vault import Vault

OLD = [  # (id, year, description): classics, liked by the classic-minded user
    ("nosferatu", 1922, "A silent horror film: a vampire brings plague to a port town."),
    ("metropolis", 1927, "A silent science-fiction film: workers and machines in a towering city."),
    ("the-general", 1926, "A silent comedy: a train engineer chases his stolen locomotive."),
]
NEW = [  # recent titles, liked by the recent-minded user
    ("gravity-well", 2014, "Astronauts stranded in orbit fight to get back to Earth."),
    ("neon-heist", 2016, "A crew of hackers robs a casino in a city of neon lights."),
    ("pixel-hearts", 2019, "Two game designers fall in love while building a video game."),
]
TWINS = [  # same text, 1925 and 2015: only the year tells them apart
    ("sea-storm-1925", 1925, "Sailors fight a great storm at sea to save their sinking ship."),
    ("sea-storm-2015", 2015, "Sailors fight a great storm at sea to save their sinking ship."),
]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    cat = Catalog("eras", home=tmp_path_factory.mktemp("catalogs"))
    cat.add_items([{"id": i, "kind": "film", "title": i.rsplit("-", 1)[0] if (i, y, d) in TWINS else i,
                    "description": d, "year": y} for i, y, d in OLD + NEW + TWINS])
    cat.embed_pending()
    return cat


def like_all(vault, catalog, items):
    for item_id, *_ in items:
        record_feedback(vault, catalog, item_id, "like")


def position(recs, item_id):
    return [r.item.id for r in recs].index(item_id)


def test_facts_that_settle_the_era_are_used_shown_and_logged_once(catalog, vault):
    set_fact(vault, "age", 38)
    set_fact(vault, "occupation", "landscape architect")
    set_fact(vault, "gender", "F")
    like_all(vault, catalog, OLD)

    recs = Recommender(catalog).recommend(vault, n=5)
    assert isinstance(recs, Recommendations) and isinstance(recs, list) and len(recs) == 5
    chosen = recs.disclosure
    assert get_fact(vault, "classic_share") == 1.0  # derived and stored, sealed, in vault.features
    assert chosen.decision == "classic" and chosen.guaranteed
    assert chosen.used == {"classic_share": 1.0}
    assert set(chosen.withheld) == {"age", "occupation", "gender"}
    assert chosen.reasons["gender"] == "not used by this decision"
    assert chosen.reasons["age"].startswith("not needed")
    assert all(r.parts["era"] == pytest.approx(0.2 if r.item.id in {"sea-storm-1925"} | {i for i, *_ in OLD}
                                               else -0.2) for r in recs)

    entries = ledger_entries(vault)
    assert len(entries) == 1
    assert entries[0].id == chosen.ledger_id
    assert (entries[0].purpose, entries[0].recipient) == ("recommendation", RECIPIENT)
    assert entries[0].revealed == {"classic_share": 1.0}
    assert entries[0].decision["name"] == "recommendation-era" and entries[0].decision["label"] == "classic"

    line = profile_line(chosen)
    assert line == "Profile used: classic_share → classic titles · withheld: age, occupation, gender"

    # The list is recomputed after every like: the same choice is not logged again the same day...
    again = Recommender(catalog).recommend(vault, n=5)
    assert again.disclosure.ledger_id == chosen.ledger_id and len(ledger_entries(vault)) == 1
    # ...but a different one is.
    like_all(vault, catalog, NEW[:2])
    changed = Recommender(catalog).recommend(vault, n=5).disclosure
    assert get_fact(vault, "classic_share") == pytest.approx(0.6)
    assert changed.used["classic_share"] == pytest.approx(0.6)
    assert len(ledger_entries(vault)) == 2 and changed.ledger_id == ledger_entries(vault)[0].id


@pytest.mark.parametrize("facts, used", [
    ({"age": 38, "occupation": "landscape architect", "gender": "F"}, {"classic_share"}),
    ({"age": 72, "occupation": "retired", "salary": 12000}, {"age", "occupation"}),  # no dated likes
    ({"age": 19, "occupation": "student"}, None),
])
def test_withheld_facts_never_appear_as_used(catalog, vault, facts, used):
    for name, value in facts.items():
        set_fact(vault, name, value)
    if used == {"classic_share"}:
        like_all(vault, catalog, OLD)
    elif used is None:
        like_all(vault, catalog, NEW)
    chosen = Recommender(catalog).recommend(vault, n=4).disclosure
    if used is not None:
        assert set(chosen.used) == used
    assert not set(chosen.used) & set(chosen.withheld)
    assert set(chosen.used) | set(chosen.withheld) == set(facts) | ({"classic_share"} if used != {"age", "occupation"}
                                                                     else set())
    entry = ledger_entries(vault)[0]
    assert entry.revealed == chosen.used and set(entry.withheld) == set(chosen.withheld)
    line = profile_line(chosen)
    for name in chosen.withheld:
        assert name not in entry.revealed
        if name in facts and len(str(facts[name])) > 1:
            assert str(facts[name]) not in line  # a withheld value is never shown


def test_nothing_to_decide_uses_nothing_and_logs_nothing(catalog, vault):
    set_fact(vault, "gender", "F")  # a fact the era decision never looks at
    recs = Recommender(catalog).recommend(vault, n=3)
    chosen = recs.disclosure
    assert chosen.used == {} and not chosen.guaranteed and chosen.withheld == ["gender"]
    assert ledger_entries(vault) == []
    assert all("era" not in r.parts for r in recs)
    assert profile_line(chosen) == "Profile used: none (era not settled) · withheld: gender"
    # Fewer than three dated likes: no classic_share is stored.
    like_all(vault, catalog, OLD[:2])
    Recommender(catalog).recommend(vault, n=3)
    assert get_fact(vault, "classic_share") is None


def test_era_nudge_moves_the_fitting_twin_up(catalog, tmp_path):
    def twins_order(items, **facts):
        v = Vault.create(f"u{len(items)}{len(facts)}", "pass phrase", home=tmp_path / "users", kdf_seconds=0)
        try:
            for name, value in facts.items():
                set_fact(v, name, value)
            like_all(v, catalog, items)
            recs = Recommender(catalog).recommend(v, n=10)
            plain = Recommender(catalog).recommend(v, n=10, use_profile=False)
            assert plain.disclosure is None and all("era" not in r.parts for r in plain)
            return (recs.disclosure.decision, position(recs, "sea-storm-1925") < position(recs, "sea-storm-2015"),
                    position(plain, "sea-storm-1925") < position(plain, "sea-storm-2015"), recs)
        finally:
            v.close()

    # Without the nudge the twins tie and keep catalog order (1925 first); the era decides it.
    era, old_first, plain_old_first, recs = twins_order(OLD)
    assert era == "classic" and old_first and plain_old_first
    era, old_first, plain_old_first, _ = twins_order(NEW, age=22, occupation="student")
    assert era == "recent" and not old_first and plain_old_first
    # The nudge is the only difference between the twins' scores.
    by_id = {r.item.id: r for r in recs}
    old, new = by_id["sea-storm-1925"], by_id["sea-storm-2015"]
    assert old.parts["era"] - new.parts["era"] == pytest.approx(0.4)
    assert sum(old.parts.values()) == pytest.approx(old.score, abs=1e-4)


def test_catalog_without_years_asks_for_no_facts(tmp_path, vault):
    cat = Catalog("undated", home=tmp_path / "catalogs")
    cat.add_items([{"id": i, "title": i, "description": d} for i, _, d in OLD + NEW])
    cat.embed_pending()
    set_fact(vault, "age", 70)
    like_all(vault, cat, OLD)
    recs = Recommender(cat).recommend(vault, n=3)
    assert recs.disclosure is None and profile_line(recs.disclosure) == ""
    assert get_fact(vault, "classic_share") is None and ledger_entries(vault) == []


def test_classic_share_counts_well_rated_dated_items(catalog, vault):
    rec = Recommender(catalog)
    assert CLASSIC_YEARS == 20  # newest is 2019: 1999 and before are classics
    record_feedback(vault, catalog, "nosferatu", "rating", 5)
    record_feedback(vault, catalog, "metropolis", "rating", 4)
    record_feedback(vault, catalog, "the-general", "rating", 2)  # not well rated
    record_feedback(vault, catalog, "gravity-well", "like")
    record_feedback(vault, catalog, "neon-heist", "read")  # a read is not a like
    assert rec.classic_share(rec.taste(vault, interests="")) == pytest.approx(2 / 3, abs=1e-3)
    record_feedback(vault, catalog, "nosferatu", "dislike")  # the latest explicit signal wins
    assert rec.classic_share(rec.taste(vault, interests="")) is None  # only 2 well-rated dated items left


def test_set_fact_writes_only_changes(vault):
    assert set_fact(vault, "age", 38) is True
    assert set_fact(vault, "age", 38) is False
    assert set_fact(vault, "age", 39) is True and get_fact(vault, "age") == 39
    assert vault.features.count() == 1
    assert set_fact(vault, "age", None) is True and get_fact(vault, "age") is None
    assert set_fact(vault, "age", None) is False


def test_stored_interests_are_reported_as_used(catalog, vault):
    from localpers.profile import set_interests

    set_interests(vault, "sea stories, silent films")
    set_fact(vault, "age", 38)
    like_all(vault, catalog, OLD)
    chosen = Recommender(catalog).recommend(vault, n=3).disclosure
    assert chosen.used == {"interests": ["sea stories", "silent films"], "classic_share": 1.0}
    assert chosen.reasons["interests"] == "always shared for this purpose"
    assert chosen.withheld == ["age"]
    # Interests given for one list replace the stored ones, which are then not used.
    chosen = Recommender(catalog).recommend(vault, n=3, interests="storms at sea").disclosure
    assert chosen.used == {"classic_share": 1.0} and "interests" in chosen.withheld

"""The recommender end to end: real vault, real embeddings, a small themed catalog and item model."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from localpers.catalog import Catalog, item_model_from_pairs
from localpers.errors import LocalpersError
from localpers.profile import set_interests
from localpers.recommend import (
    Event,
    Recommender,
    RecommenderConfig,
    Taste,
    _exploration_slots,
    read_events,
    record_feedback,
)

THEMES = {
    "vampire": [
        ("dracula", "book", "Dracula", "A vampire count from Transylvania comes to England to drink the blood of the living."),
        ("carmilla", "book", "Carmilla", "A lonely girl's mysterious guest is a vampire who feeds on her at night."),
        ("nosferatu", "film", "Nosferatu", "A rat-like vampire brings death and plague to a German port."),
        ("vampyr", "film", "Vampyr", "A traveller finds a village whose old doctor serves a vampire queen."),
        ("blood-castle", "book", "The Castle of Blood", "Vampires and bats haunt a ruined castle in the Carpathians."),
    ],
    "space": [
        ("moon-trip", "film", "A Trip to the Moon", "Astronomers fly to the Moon in a rocket shell and meet moon men."),
        ("star-voyage", "book", "Voyage to the Stars", "Astronauts pilot a rocket ship through outer space to a far planet."),
        ("mars-colony", "book", "The Mars Colony", "Settlers build the first colony on Mars and explore red deserts."),
        ("orbit", "film", "Orbit", "A space station crew repairs their spacecraft while circling the Earth."),
        ("comet", "book", "Riders of the Comet", "Space explorers land a spaceship on a comet racing past Jupiter."),
    ],
    "baking": [
        ("bread", "book", "Everyday Bread", "Recipes for sourdough loaves, kneading dough and baking bread at home."),
        ("cakes", "book", "The Cake Book", "Baking sponge cakes, icing and layered birthday cakes in your kitchen."),
        ("pastry", "book", "Pastry School", "Recipes for flaky pastry, tarts and pies with butter and flour."),
        ("bake-off", "film", "The Great Village Bake", "A village baking contest: cakes, bread and pies judged by chefs."),
        ("cookies", "book", "A Year of Cookies", "Cookie and biscuit recipes for every season, from the oven to the tin."),
    ],
    "detective": [
        ("hound", "book", "The Hound of the Moor", "A detective solves a murder blamed on a ghostly hound on the moors."),
        ("moonstone", "book", "The Moonstone", "A stolen diamond and a detective's investigation at a country house."),
        ("styles", "book", "Murder at Styles", "A Belgian detective investigates a poisoning in an English manor."),
        ("sleuth", "film", "The Sleuth", "A private detective follows clues to unmask a killer in the city fog."),
        ("clue", "film", "Clues in the Fog", "Inspectors hunt a murderer through London streets, questioning suspects."),
    ],
}
NEW_ITEMS = [  # in the catalog, unknown to the item model: content is all there is
    ("new-vampire", "book", "Fangs at Midnight", "A new novel: a vampire hunts in a gothic city, drinking blood by night."),
    ("new-space", "film", "Starship Dawn", "A new film: a starship crew travels across space to another galaxy."),
]
THEME_OF = {item[0]: theme for theme, items in THEMES.items() for item in items}
THEME_OF.update({"new-vampire": "vampire", "new-space": "space"})


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """A catalog of four themes plus two new items, with an EASE model fitted on fake aggregate users."""
    home = tmp_path_factory.mktemp("catalogs")
    cat = Catalog("themes", home=home)
    rows = [{"id": i, "kind": k, "title": t, "description": d, "tags": [theme]}
            for theme, items in THEMES.items() for i, k, t, d in items]
    rows += [{"id": i, "kind": k, "title": t, "description": d, "tags": [THEME_OF[i]]} for i, k, t, d in NEW_ITEMS]
    cat.add_items(rows)
    cat.embed_pending()
    # Aggregate data: people stick to one theme; baking is the most popular; "blood-castle" is rare.
    rng = np.random.default_rng(0)
    pairs = []
    sizes = {"vampire": 40, "space": 40, "baking": 80, "detective": 40}
    for theme, n_users in sizes.items():
        ids = [i for i, *_ in THEMES[theme]]
        for u in range(n_users):
            for item in ids:
                if item == "blood-castle" and u >= 3:
                    continue
                if rng.random() < 0.8:
                    pairs.append((f"{theme}{u}", item))
    cat.save_item_model(item_model_from_pairs(pairs, [i for items in THEMES.values() for i, *_ in items], l2=10.0))
    return cat


def themes(recs):
    return [THEME_OF[r.item.id] for r in recs]


def test_no_history_gives_popular_items_with_reasons(catalog, vault, no_network):
    recs = Recommender(catalog).recommend(vault, n=5)
    assert len(recs) == 5
    assert themes(recs).count("baking") >= 3  # the most popular theme in the aggregate data
    assert all(r.reason for r in recs)
    assert any(r.reason.startswith("Popular with other people") for r in recs)
    assert no_network == []


def test_empty_catalog_gives_an_empty_list(tmp_path, vault):
    empty = Catalog("empty", home=tmp_path)
    assert Recommender(empty).recommend(vault, n=10) == []
    assert Recommender(empty).recommend_for(Taste([Event("x", "like")]), n=3) == []


def test_cold_start_from_stated_interests(catalog, vault):
    set_interests(vault, ["space exploration", "rockets and astronauts"])
    recs = Recommender(catalog).recommend(vault, n=5)
    assert themes(recs).count("space") >= 4, [r.item.title for r in recs]
    space = [r for r in recs if THEME_OF[r.item.id] == "space"]
    assert any(r.reason.startswith("Matches your interests:") for r in space)
    # A short text for this call only works the same way, without storing anything.
    recs = Recommender(catalog).recommend(vault, n=5, interests="bread and cake recipes")
    assert themes(recs).count("baking") >= 4
    # The interest embedding is cached sealed in the vault.
    assert vault.cache.count("kind = 'interest-vector'") == 2


def test_likes_shape_the_list_and_reasons_cite_them(catalog, vault):
    rec = Recommender(catalog)
    record_feedback(vault, catalog, "dracula", "like")
    record_feedback(vault, catalog, "nosferatu", "rating", 5)
    recs = rec.recommend(vault, n=4)
    assert themes(recs)[:2] == ["vampire"] * 2 and themes(recs).count("vampire") >= 3, [r.item.title for r in recs]
    assert {r.item.id for r in recs}.isdisjoint({"dracula", "nosferatu"})  # already seen
    first = recs[0]
    assert first.reason in ("Because you liked Dracula", "Because you liked Nosferatu")
    assert first.because in ("dracula", "nosferatu")
    assert first.parts["collaborative"] > 0


def test_feedback_changes_the_next_list(catalog, vault):
    rec = Recommender(catalog, RecommenderConfig(exploration=0.0))
    record_feedback(vault, catalog, "hound", "like")
    record_feedback(vault, catalog, "bread", "like")
    before = rec.recommend(vault, n=6)
    assert {"detective", "baking"} <= set(themes(before))
    top = before[0].item.id
    record_feedback(vault, catalog, top, "not-interested")
    after = rec.recommend(vault, n=6)
    assert top not in [r.item.id for r in after]
    # Disliking the baking book pushes the baking theme down, and the detective theme fills the top.
    record_feedback(vault, catalog, "bread", "dislike")
    after_dislike = rec.recommend(vault, n=4)
    assert themes(after_dislike).count("detective") >= 3, [r.item.title for r in after_dislike]
    assert themes(after_dislike).count("baking") < themes(before[:4]).count("baking") or \
        themes(before[:4]).count("baking") == 0
    # A low rating says the opposite of a like: the theme drops out of the top.
    record_feedback(vault, catalog, "hound", "rating", 1)
    low = rec.recommend(vault, n=3)
    assert "detective" not in themes(low)[:1]


def test_interactions_are_sealed_in_the_vault(catalog, vault):
    record_feedback(vault, catalog, "carmilla", "rating", 4)
    events = read_events(vault, catalog.name)
    assert events == [Event("carmilla", "rating", 4.0)]
    row = next(vault.interactions.rows())
    assert row["signal"] == "rating" and row["metadata"]["title"] == "Carmilla"
    raw = open(vault.path, "rb").read() + b"".join(
        p.read_bytes() for p in vault.path.parent.iterdir() if p.name.startswith("vault.db-"))
    assert b"carmilla" not in raw and b"Carmilla" not in raw
    # Through SQLite too: the item column is ciphertext.
    con = sqlite3.connect(vault.path)
    item = con.execute("select item from interactions").fetchone()[0]
    assert isinstance(item, bytes) and b"carmilla" not in item


def test_feedback_errors_name_the_problem(catalog, vault):
    with pytest.raises(LocalpersError, match="has no item 'nope'"):
        record_feedback(vault, catalog, "nope", "like")
    with pytest.raises(LocalpersError, match="a rating needs a value"):
        record_feedback(vault, catalog, "dracula", "rating")
    with pytest.raises(LocalpersError, match=r"0.5 to 5 stars \(half stars allowed\), not 7"):
        record_feedback(vault, catalog, "dracula", "rating", 7)
    with pytest.raises(LocalpersError, match="unknown feedback 'love'"):
        record_feedback(vault, catalog, "dracula", "love")
    with pytest.raises(LocalpersError, match="takes no value"):
        record_feedback(vault, catalog, "dracula", "like", 3)
    assert vault.interactions.count() == 0


def test_filters_by_kind_and_tag(catalog, vault):
    rec = Recommender(catalog)
    record_feedback(vault, catalog, "moon-trip", "like")
    films = rec.recommend(vault, n=5, kinds=["film"])
    assert films and all(r.item.kind == "film" for r in films)
    baking = rec.recommend(vault, n=10, tags=["Baking"])
    assert len(baking) == 5 and all(THEME_OF[r.item.id] == "baking" for r in baking)
    assert rec.recommend(vault, n=5, kinds=["podcast"]) == []


def test_new_items_reach_the_list_through_content(catalog):
    # "new-vampire" has no collaborative data at all; a vampire fan still gets it, by content.
    rec = Recommender(catalog, RecommenderConfig(exploration=0.0, diversity=0.0))
    history = Taste([Event(i, "like") for i in ("dracula", "carmilla", "nosferatu", "vampyr")])
    ids = [r.item.id for r in rec.recommend_for(history, n=3)]
    assert "new-vampire" in ids, ids
    without_content = Recommender(catalog, RecommenderConfig(exploration=0.0, diversity=0.0, content=0.0))
    assert "new-vampire" not in [r.item.id for r in without_content.recommend_for(history, n=2)]


def test_exploration_share_reserves_a_slot_for_novel_items(catalog):
    history = Taste([Event("bread", "like"), Event("cakes", "like")])
    explore = Recommender(catalog, RecommenderConfig(exploration=0.1)).recommend_for(history, n=10)
    novel = [(n, r) for n, r in enumerate(explore, 1) if r.novel]
    assert [n for n, _ in novel] == [10]
    assert novel[0][1].item.id in {"new-vampire", "new-space", "blood-castle"}
    assert "something new" in novel[0][1].reason
    plain = Recommender(catalog, RecommenderConfig(exploration=0.0)).recommend_for(history, n=10)
    assert not any(r.novel for r in plain)
    assert _exploration_slots(10, 0.1) == {10} and _exploration_slots(10, 0.2) == {5, 10}
    assert _exploration_slots(20, 0.1) == {10, 20} and _exploration_slots(5, 0.0) == set()


def test_mmr_diversity_widens_the_list(catalog):
    history = Taste([Event("dracula", "like"), Event("hound", "rating", 4.0)])
    focused = Recommender(catalog, RecommenderConfig(diversity=0.0, exploration=0.0)).recommend_for(history, n=6)
    varied = Recommender(catalog, RecommenderConfig(diversity=0.7, exploration=0.0)).recommend_for(history, n=6)
    spread = lambda recs: np.mean([r.item.id != o.item.id and  # noqa: E731
                                   float(recs_vec(r) @ recs_vec(o)) for r in recs for o in recs if r is not o])
    rec = Recommender(catalog)

    def recs_vec(r):
        return rec.vectors[rec.position[r.item.id]]

    assert spread(varied) < spread(focused)  # lower mean similarity inside the list
    assert {r.item.id for r in focused} != {r.item.id for r in varied}


def test_item_weights_follow_signals_and_recency(catalog):
    rec = Recommender(catalog, RecommenderConfig(recency_half_life=2.0))
    history = Taste([Event("dracula", "like"), Event("bread", "like"), Event("cakes", "like"),
                       Event("hound", "like"), Event("hound", "click"), Event("orbit", "like"),
                       Event("orbit", "dislike"), Event("comet", "rating", 4.5), Event("moonstone", "read")])
    w = rec.item_weights([history]).toarray()[0]
    at = lambda i: w[rec.position[i]]  # noqa: E731
    assert at("orbit") < 0  # the latest explicit signal wins
    assert at("hound") > 0  # a click after a like keeps the like
    assert at("dracula") < at("bread") < at("cakes")  # older interactions weigh less
    cfg = RecommenderConfig()
    assert cfg.signal_weight(Event("x", "rating", 4.5)) == pytest.approx((cfg.stars[3] + cfg.stars[4]) / 2)
    assert cfg.signal_weight(Event("x", "rating", 1)) < 0 < cfg.signal_weight(Event("x", "rating", 3))


def test_batch_scores_match_single_user_scores(catalog):
    rec = Recommender(catalog)
    histories = [Taste([Event("dracula", "like")]), Taste([Event("bread", "rating", 5.0), Event("orbit", "like")]),
                 Taste()]
    batch = rec.score(histories).total
    for u, history in enumerate(histories):
        single = rec.score([history]).total[0]
        assert np.array_equal(np.isfinite(batch[u]), np.isfinite(single))
        assert np.allclose(batch[u][np.isfinite(single)], single[np.isfinite(single)], atol=1e-5)
    lists = rec.rank(histories, n=5)
    assert [rec.ids[k] for k in lists[0]] == [r.item.id for r in rec.recommend_for(histories[0], n=5)]


def test_catalog_without_item_model_uses_content_only(tmp_path):
    cat = Catalog("plain", home=tmp_path)
    cat.add_items([{"id": i, "title": t, "description": d, "tags": [theme]}
                   for theme, items in THEMES.items() for i, _, t, d in items])
    cat.embed_pending()
    recs = Recommender(cat).recommend_for(Taste([Event("bread", "like"), Event("cakes", "like")]), n=3)
    assert themes(recs) == ["baking"] * 3
    assert all(r.reason.startswith("Because you liked") for r in recs)
    assert "collaborative" not in recs[0].parts


def test_recommender_sees_catalog_changes(tmp_path):
    cat = Catalog("grow", home=tmp_path)
    cat.add_items([{"id": "a", "title": "Sourdough bread baking"}])
    cat.embed_pending()
    rec = Recommender(cat)
    assert len(rec.recommend_for(Taste(), n=5)) == 1
    cat.add_items([{"id": "b", "title": "Baking cakes at home"}])
    cat.embed_pending()
    assert {r.item.id for r in rec.recommend_for(Taste(), n=5)} == {"a", "b"}


@pytest.mark.slow
@pytest.mark.model
def test_reasons_phrased_by_the_local_llm_stay_grounded(catalog, vault):
    from localpers.llm import Engine
    from localpers.recommend import phrase_reasons

    record_feedback(vault, catalog, "dracula", "like")
    record_feedback(vault, catalog, "bread", "like")
    recs = Recommender(catalog).recommend(vault, n=3)
    templates = [r.reason for r in recs]
    phrase_reasons(recs, catalog, Engine.shared("gemma3-270m"))
    phrased = 0
    for rec, template in zip(recs, templates):
        if rec.reason != template:
            phrased += 1
            anchor = catalog.get(rec.because).title
            assert rec.reason.startswith(f"Since you liked {anchor}, ") and rec.reason[-1] in ".!?"
            assert "\n" not in rec.reason and len(rec.reason) < 220
    assert phrased >= 1  # the default writer completes the pattern


def test_imported_interactions_count_for_the_catalog(catalog, vault):
    # What a history import writes: no catalog name in the metadata, "interaction" or "rating" signals.
    from localpers.vault import coarse_time

    vault.interactions.insert_all([
        {"signal": "interaction", "time": coarse_time() - 86400, "item": "moon-trip", "metadata": {"source": "csv"}},
        {"signal": "rating", "time": coarse_time(), "item": "orbit", "value": 5, "metadata": {"source": "csv"}},
        {"signal": "rating", "time": coarse_time(), "item": "not-in-this-catalog", "value": 5, "metadata": None},
    ])
    history = Recommender(catalog).taste(vault)
    assert [e.item for e in history.events] == ["moon-trip", "orbit"]
    recs = Recommender(catalog).recommend(vault, n=3)
    assert themes(recs).count("space") >= 2
    assert any(r.reason in ("Because you liked Orbit", "Because you chose A Trip to the Moon") for r in recs)


def test_dense_and_sparse_paths_agree(catalog, monkeypatch):
    from scipy import sparse

    import localpers.recommend as recommend_module

    histories = [Taste([Event("dracula", "like"), Event("bread", "rating", 2.0)]), Taste([Event("orbit", "click")])]
    dense = Recommender(catalog)
    assert isinstance(dense.model, np.ndarray)  # a small dense EASE model stays a dense array
    expected = dense.score(histories).total
    monkeypatch.setattr(recommend_module, "SIMILARITY_CACHE_ITEMS", 0)  # the large-catalog content path
    other = Recommender(catalog)
    other.model = sparse.csr_matrix(other.model)  # the large-model collaborative path
    got = other.score(histories).total
    assert np.array_equal(np.isfinite(got), np.isfinite(expected))
    assert np.allclose(got[np.isfinite(got)], expected[np.isfinite(expected)], atol=1e-4)

"""The textual taste profile: built from the vault, stored sealed, editable, read by recommender and writer."""

from __future__ import annotations

import pytest

from localpers.catalog import Catalog
from localpers.errors import LocalpersError
from localpers.profile import (
    MAX_PROFILE_CHARS,
    build_profile,
    get_interests,
    get_profile,
    interest_text,
    profile_info,
    set_interests,
    set_profile,
    update_profile,
)
from localpers.recommend import record_feedback
from localpers.vault import Vault, coarse_time

ITEMS = [
    {"id": "dracula", "kind": "book", "title": "Dracula", "tags": ["gothic", "horror", "vampires"]},
    {"id": "carmilla", "kind": "book", "title": "Carmilla", "tags": ["gothic", "vampires"]},
    {"id": "nosferatu", "kind": "film", "title": "Nosferatu", "tags": ["horror", "silent film", "vampires"]},
    {"id": "emma", "kind": "book", "title": "Emma", "tags": ["romance", "comedy of manners"]},
    {"id": "persuasion", "kind": "book", "title": "Persuasion", "tags": ["romance", "regency"]},
]


@pytest.fixture
def catalog(tmp_path):
    cat = Catalog("books", home=tmp_path)
    cat.add_items(ITEMS)  # the profile needs titles and tags, not embeddings
    return cat


def test_no_data_no_profile(vault):
    assert build_profile(vault) == ""
    assert get_profile(vault) == ""
    assert update_profile(vault) == ""
    assert interest_text(vault) == ""


def test_profile_from_feedback_interests_and_history(vault, catalog):
    for item in ("dracula", "carmilla"):
        record_feedback(vault, catalog, item, "like")
    record_feedback(vault, catalog, "nosferatu", "rating", 5)
    record_feedback(vault, catalog, "emma", "dislike")
    record_feedback(vault, catalog, "persuasion", "rating", 1)
    set_interests(vault, "sea stories; detectives")
    for n, text in enumerate(["The riverside planting plan needs alders, not birches.",
                              "Planting alders by the river bench; the council wants the plan.",
                              "Council meeting about the riverside plan on Friday."]):
        vault.items.insert({"kind": "email", "content": text, "created": coarse_time() - n})
    text = build_profile(vault)
    lines = text.splitlines()
    assert lines[0] == "Enjoys: vampires, gothic, horror, silent film (from 3 liked items)."
    assert lines[1] == "Recently liked: Nosferatu, Carmilla, Dracula."
    assert lines[2].startswith("Not keen on: romance")
    assert lines[3] == "Interested in: sea stories, detectives."
    assert lines[4].startswith("Keeps email (3), often about:")
    assert "riverside" in lines[4] and "council" in lines[4] and "alders" in lines[4]
    # Built from the vault alone: titles were sealed with the interactions, no catalog needed.
    assert build_profile(vault, catalog=catalog) == text


def test_profile_is_stored_sealed_and_editable(vault, catalog):
    record_feedback(vault, catalog, "dracula", "like")
    record_feedback(vault, catalog, "emma", "dislike")
    built = update_profile(vault)
    assert get_profile(vault) == built and "Dracula" in built
    assert profile_info(vault) == {"text": built, "edited": False, "source": "template"}
    raw = open(vault.path, "rb").read() + b"".join(
        p.read_bytes() for p in vault.path.parent.iterdir() if p.name.startswith("vault.db-"))
    assert b"Dracula" not in raw and b"profile_summary" not in raw
    # The user's own words are kept until they choose to regenerate.
    set_profile(vault, "  Gothic novels and silent horror films.  ")
    assert get_profile(vault) == "Gothic novels and silent horror films."
    record_feedback(vault, catalog, "carmilla", "like")
    assert update_profile(vault) == "Gothic novels and silent horror films."
    forced = update_profile(vault, force=True)
    assert "Carmilla" in forced and profile_info(vault)["edited"] is False
    assert vault.features.count() == 1  # updated in place, not piled up
    with pytest.raises(LocalpersError, match="keep it under"):
        set_profile(vault, "x" * (MAX_PROFILE_CHARS + 1))
    # Reopening with the passphrase gives the same profile back.
    path, home = vault.path, vault.path.parent.parent
    vault.close()
    with Vault.open("ada", "correct horse", home=home) as again:
        assert get_profile(again) == forced
    assert path.exists()


def test_interest_text_for_the_recommender(vault, catalog):
    assert set_interests(vault, ["  space ", "space", "", "rockets"]) == ["space", "rockets"]
    assert get_interests(vault) == ["space", "rockets"]
    record_feedback(vault, catalog, "dracula", "like")
    record_feedback(vault, catalog, "emma", "dislike")
    update_profile(vault)
    text = interest_text(vault)
    assert text.startswith("space; rockets; Enjoys:")
    assert "Not keen on" not in text and "romance" not in text  # an embedding would read it as a liking


@pytest.mark.slow
@pytest.mark.model
def test_profile_polished_by_the_local_llm_keeps_the_facts(vault, catalog):
    from localpers.llm import Engine

    record_feedback(vault, catalog, "dracula", "like")
    record_feedback(vault, catalog, "nosferatu", "like")
    template = build_profile(vault)
    polished = update_profile(vault, engine=Engine.shared("gemma3-270m"))
    assert polished == get_profile(vault) and polished
    # Either the LLM kept both titles, or the template stayed: nothing invented replaces the facts.
    assert polished == template or (polished.startswith("You") and "Dracula" in polished and "Nosferatu" in polished)
    assert profile_info(vault)["source"] == "llm"

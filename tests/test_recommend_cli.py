"""The command line: catalog import/list/model, recommend, feedback and profile, on a real vault."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from localpers.catalog import Catalog, item_model_from_pairs
from localpers.cli import main
from localpers.vault import Vault

ITEMS = [
    {"id": "dracula", "kind": "book", "title": "Dracula", "tags": ["gothic", "vampires"],
     "description": "A vampire count comes to England to drink the blood of the living."},
    {"id": "carmilla", "kind": "book", "title": "Carmilla", "tags": ["gothic", "vampires"],
     "description": "A mysterious guest is a vampire who feeds on a lonely girl at night."},
    {"id": "nosferatu", "kind": "film", "title": "Nosferatu", "tags": ["horror", "vampires"],
     "description": "A vampire brings plague and death to a German port."},
    {"id": "moon", "kind": "film", "title": "A Trip to the Moon", "tags": ["science fiction", "space"],
     "description": "Astronomers fly to the Moon in a rocket shell."},
    {"id": "mars", "kind": "book", "title": "The Mars Colony", "tags": ["science fiction", "space"],
     "description": "Settlers build the first colony on Mars."},
    {"id": "bread", "kind": "book", "title": "Everyday Bread", "tags": ["baking"],
     "description": "Recipes for sourdough loaves and baking bread at home."},
    {"id": "cakes", "kind": "book", "title": "The Cake Book", "tags": ["baking"],
     "description": "Baking sponge cakes and birthday cakes in your kitchen."},
]


@pytest.fixture
def cli(home, monkeypatch):
    """Run ``localpers`` as user ada (vault in the test's data directory)."""
    Vault.create("ada", "correct horse battery", kdf_seconds=0).close()
    monkeypatch.setenv("LOCALPERS_PASSPHRASE", "correct horse battery")
    monkeypatch.setenv("LOCALPERS_USER", "ada")
    runner = CliRunner()

    def run(*args: str, ok: bool = True, input: str | None = None):
        result = runner.invoke(main, list(args), catch_exceptions=False, input=input)
        if ok:
            assert result.exit_code == 0, result.output + result.stderr
        return result

    return run


def write_catalog(path, extra=()):
    path.write_text("\n".join([json.dumps(r) for r in ITEMS] + list(extra)) + "\n", encoding="utf-8")
    return path


def test_import_list_recommend_feedback_round_trip(cli, tmp_path, no_network):
    path = write_catalog(tmp_path / "My Shelf.jsonl", ['{"id": "x"', '{"id": "y"}'])
    result = cli("catalog", "import", str(path))
    assert "7 items imported into 'my-shelf' (2 broken rows skipped)" in result.stdout
    assert "skipped line 8: not valid JSON" in result.stderr
    assert "skipped line 9: item 'y': missing 'title'" in result.stderr
    listing = cli("catalog", "list").stdout
    assert "my-shelf" in listing and "7 items" in listing and "5 books, 2 films" in listing

    first = cli("recommend", "-n", "3").stdout
    assert first.count("\n    ") == 3  # one reason line per item
    cli("feedback", "dracula", "like")
    result = cli("feedback", "nosferatu", "rating", "--value", "5")
    assert "Recorded: rating 5 for Nosferatu" in result.stdout
    after = cli("recommend", "-n", "1", "--explain").stdout
    assert "Carmilla" in after and "Because you liked" in after and "score" in after
    assert after != first
    as_json = [json.loads(line) for line in cli("recommend", "-n", "2", "--json", "--kind", "book").stdout.splitlines()]
    assert [r["kind"] for r in as_json] == ["book", "book"] and as_json[0]["id"] == "carmilla"
    assert as_json[0]["because"] in ("dracula", "nosferatu")
    cli("feedback", "carmilla", "not-interested")
    assert "Carmilla" not in cli("recommend", "-n", "3").stdout
    assert no_network == []


def test_user_errors_are_one_line_and_exit_1(cli, tmp_path):
    result = cli("recommend", ok=False)
    assert result.exit_code == 1 and "no catalog yet" in result.stderr
    cli("catalog", "import", str(write_catalog(tmp_path / "shelf.jsonl")))
    for args, message in [
        (("feedback", "nope", "like"), "catalog 'shelf' has no item 'nope'"),
        (("feedback", "dracula", "rating"), "a rating needs a value"),
        (("feedback", "dracula", "rating", "--value", "9"), "a rating is 0.5 to 5 stars (half stars allowed), not 9"),
        (("recommend", "--catalog", "other"), "no catalog named 'other'; there is shelf"),
        (("catalog", "import", str(tmp_path / "missing.csv")), "no such catalog file"),
    ]:
        result = cli(*args, ok=False)
        assert result.exit_code == 1, args
        assert result.stderr.strip().startswith("Error:") and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    result = cli("feedback", "dracula", "love", ok=False)
    assert result.exit_code == 2  # click's usage error: not one of the choices


def test_empty_catalog_and_filters_that_match_nothing(cli, tmp_path):
    (tmp_path / "empty.csv").write_text("id,title\n")
    result = cli("catalog", "import", str(tmp_path / "empty.csv"), ok=False)
    assert result.exit_code == 1 and "empty.csv has no items" in result.stderr
    assert Catalog.names() == []
    cli("catalog", "import", str(write_catalog(tmp_path / "shelf.jsonl")))
    assert "Nothing to recommend" in cli("recommend", "--tag", "no such tag").stdout


def test_a_failed_import_leaves_no_catalog_behind(cli, tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "x"}\n{"title": "no id"}\n')
    for args, message in [
        (("catalog", "import", str(tmp_path / "missing.jsonl")), "no such catalog file"),
        (("catalog", "import", str(broken)), "no item could be imported from broken.jsonl"),
        (("catalog", "import", str(broken), "--name", "shelf"), "no item could be imported"),
    ]:
        result = cli(*args, ok=False)
        assert result.exit_code == 1 and message in result.stderr, result.stderr
        root = Catalog.root()
        assert Catalog.names() == [] and not (root.exists() and list(root.iterdir()))
    assert "no catalog yet" in cli("recommend", ok=False).stderr  # not "several catalogs"
    # Into an existing catalog, a failed import keeps what is there.
    cli("catalog", "import", str(write_catalog(tmp_path / "shelf.jsonl")))
    assert "2 broken rows skipped" in cli("catalog", "import", str(broken), "--name", "shelf").stdout
    assert Catalog.names() == ["shelf"] and len(Catalog("shelf")) == len(ITEMS)


def test_catalog_list_remove_and_choosing_among_several(cli, tmp_path):
    cli("catalog", "import", str(write_catalog(tmp_path / "shelf.jsonl")))
    (tmp_path / "boats.jsonl").write_text('{"id": "argo", "kind": "boat", "title": "Argo"}\n')
    cli("catalog", "import", str(tmp_path / "boats.jsonl"))
    listing = cli("catalog", "list").stdout.splitlines()
    assert [line.split()[0] for line in listing] == ["boats", "shelf"]
    assert "1 items  1 boat" in listing[0] and "7 items" in listing[1]

    # Several catalogs: recommend says which there are and how to choose, and remembers the choice.
    result = cli("recommend", ok=False)
    assert result.exit_code == 1 and "several catalogs (boats, shelf)" in result.stderr
    assert "--catalog NAME" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Argo" in cli("recommend", "--catalog", "boats").stdout
    assert "Argo" in cli("recommend").stdout  # remembered, sealed in ada's vault
    assert "Argo" not in cli("recommend", "--catalog", "shelf").stdout
    assert "Argo" not in cli("recommend").stdout

    # Removing asks first; "no" keeps it, --yes does not ask.
    kept = cli("catalog", "remove", "boats", input="n\n", ok=False)
    assert kept.exit_code == 1 and "Remove the catalog 'boats' (1 item)?" in kept.output
    assert Catalog.names() == ["boats", "shelf"]
    removed = cli("catalog", "remove", "boats", input="y\n")
    assert "Removed the catalog 'boats'." in removed.stdout and Catalog.names() == ["shelf"]
    assert not (Catalog.root() / "boats").exists()
    assert "Removed" in cli("catalog", "remove", "shelf", "--yes").stdout and Catalog.names() == []
    missing = cli("catalog", "remove", "shelf", "--yes", ok=False)
    assert missing.exit_code == 1 and "no catalog named 'shelf'" in missing.stderr


def test_recommending_a_kind_the_catalog_lacks_names_the_kinds(cli, tmp_path):
    cli("catalog", "import", str(write_catalog(tmp_path / "shelf.jsonl")))
    result = cli("recommend", "--kind", "spaceship", ok=False)
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: no item of kind 'spaceship' in catalog 'shelf'; its kinds: book, film"
    assert "Dracula" in cli("recommend", "--kind", "Book").stdout  # kinds match whatever their case


def test_item_model_from_the_command_line(cli, tmp_path):
    cli("catalog", "import", str(write_catalog(tmp_path / "shelf.jsonl")), "--name", "shelf")
    pairs = [(f"u{u}", i) for u in range(20) for i in ("bread", "cakes")] + [(f"v{u}", "moon") for u in range(3)]
    item_model_from_pairs(pairs, [r["id"] for r in ITEMS], l2=5.0).save(tmp_path / "model.npz")
    result = cli("catalog", "model", str(tmp_path / "model.npz"))
    assert "7 of 7 items match" in result.stdout
    assert Catalog("shelf").item_model is not None and "item model" in cli("catalog", "list").stdout
    cold = cli("recommend", "-n", "2", "--explain").stdout
    assert "Everyday Bread" in cold and "The Cake Book" in cold and "Popular with other people" in cold


def test_profile_commands(cli, tmp_path):
    cli("catalog", "import", str(write_catalog(tmp_path / "shelf.jsonl")))
    assert "No profile yet" in cli("profile", "show").stdout
    assert "Interests saved: space, rockets" in cli("profile", "interests", "space, rockets").stdout
    top = cli("recommend", "-n", "2").stdout
    assert "The Mars Colony" in top or "A Trip to the Moon" in top
    assert "Matches your interests" in top
    cli("feedback", "bread", "like")
    built = cli("profile", "build").stdout
    assert "Recently liked: Everyday Bread." in built and "Interested in: space, rockets." in built
    cli("profile", "set", "I bake on Sundays.")
    shown = cli("profile", "show")
    assert "I bake on Sundays." in shown.stdout and "edited by you" in shown.stderr
    kept = cli("profile", "build")
    assert "I bake on Sundays." in kept.stdout and "--force" in kept.stderr
    assert "Everyday Bread" in cli("profile", "build", "--force").stdout

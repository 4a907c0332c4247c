"""Catalog import (JSONL, JSON, CSV), broken rows, embeddings in usearch, item-to-item models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from localpers.catalog import (
    DEMO_CATALOG,
    Catalog,
    ItemModel,
    fit_ease,
    fit_item_knn,
    interaction_matrix,
    item_model_from_pairs,
    parse_item,
)
from localpers.errors import LocalpersError

ROWS = [
    {"id": "dracula", "kind": "book", "title": "Dracula", "tags": ["gothic", "vampires"],
     "description": "A vampire count travels to England and a band of friends hunts him.", "year": 1897},
    {"id": "carmilla", "kind": "book", "title": "Carmilla", "tags": "gothic|vampires",
     "description": "A lonely girl befriends a mysterious guest who drinks her blood at night."},
    {"id": "nosferatu", "kind": "film", "title": "Nosferatu", "genres": ["horror", "silent film"],
     "description": "A vampire brings the plague to a German port town."},
    {"id": "time-machine", "kind": "book", "title": "The Time Machine", "tags": ["science fiction"],
     "description": "An inventor travels to the far future of mankind."},
    {"id": "moon-trip", "kind": "film", "title": "A Trip to the Moon", "tags": ["science fiction", "space"],
     "description": "Astronomers are shot from a cannon to the Moon."},
    {"id": "emma", "kind": "book", "title": "Emma", "tags": ["romance"],
     "description": "A young woman plays matchmaker in her village and gets it wrong."},
]


def write_jsonl(path, rows, extra_lines=()):
    lines = [json.dumps(r) for r in rows] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_import_reports_and_skips_broken_rows(home, tmp_path, no_network):
    path = write_jsonl(tmp_path / "books.jsonl", ROWS, [
        '{"id": "broken", "title": "Half a line',             # line 7: not JSON
        '{"title": "No id here"}',                             # line 8
        '{"id": "no-title", "description": "x"}',             # line 9
        '["a", "list"]',                                       # line 10
        '{"id": "dracula", "title": "Dracula again"}',         # line 11: duplicate id
        '{"id": "bad-tags", "title": "T", "tags": {"a": 1}}',  # line 12
        '',                                                    # blank lines are fine
    ])
    catalog = Catalog("books")
    report = catalog.import_file(path)
    assert report.added == 6 and report.embedded == 6
    skipped = {bad.line: bad.reason for bad in report.skipped}
    assert set(skipped) == {7, 8, 9, 10, 11, 12}
    assert "not valid JSON" in skipped[7]
    assert "missing 'id'" in skipped[8]
    assert "missing 'title'" in skipped[9] and "no-title" in skipped[9]
    assert "not a JSON object" in skipped[10]
    assert "duplicate id 'dracula' (first on line 1)" in skipped[11]
    assert "tags" in skipped[12]
    assert "6 broken rows skipped" in report.summary()
    # Good rows are all there, with their fields understood.
    dracula = catalog.get("dracula")
    assert dracula.kind == "book" and dracula.tags == ("gothic", "vampires") and dracula.attrs == {"year": 1897}
    assert catalog.get("carmilla").tags == ("gothic", "vampires")
    assert catalog.get("nosferatu").tags == ("horror", "silent film")
    assert catalog.kinds() == {"book": 4, "film": 2}
    # The catalog is public data in the data directory, not in any vault.
    assert (home / "catalogs" / "books" / "catalog.db").exists()
    assert (home / "catalogs" / "books" / "vectors.usearch").exists()
    # Real embeddings: the vampire stories sit next to each other.
    nearest = [item.id for item, _ in catalog.similar("dracula", k=2)]
    assert set(nearest) <= {"carmilla", "nosferatu"} and nearest, nearest
    matrix = catalog.matrix()
    assert matrix.shape == (6, 384)
    assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-4)
    assert no_network == []


def test_csv_import_with_broken_rows_and_tag_lists(home, tmp_path):
    path = tmp_path / "films.csv"
    path.write_text(
        "id,title,kind,tags,description,year\n"
        "metropolis,Metropolis,film,science fiction|dystopia,A city of machines and a robot double.,1927\n"
        "general,The General,film,comedy;trains,An engineer chases his stolen locomotive.,1926\n"
        "too-many,Too Many,film,x,y,1900,extra\n"
        "short,Short\n"
        ",No Id,film,,,\n"
        "kid,The Kid,film,comedy,\"The Tramp raises a baby, until the authorities come.\",1921\n",
        encoding="utf-8")
    catalog = Catalog("films")
    report = catalog.import_file(path)
    assert catalog.ids() == ["metropolis", "general", "kid"]
    assert {bad.line for bad in report.skipped} == {4, 5, 6}
    assert "7 fields, the header has 6" in str(report.skipped[0])
    assert catalog.get("metropolis").tags == ("science fiction", "dystopia")
    assert catalog.get("general").tags == ("comedy", "trains")
    assert catalog.get("kid").text == "The Tramp raises a baby, until the authorities come."
    assert catalog.get("kid").attrs == {"year": "1921"}


def test_file_level_errors_name_the_problem(home, tmp_path):
    catalog = Catalog("x")
    with pytest.raises(LocalpersError, match="no such catalog file"):
        catalog.import_file(tmp_path / "missing.jsonl")
    (tmp_path / "items.xml").write_text("<items/>")
    with pytest.raises(LocalpersError, match="unknown catalog format .xml"):
        catalog.import_file(tmp_path / "items.xml")
    (tmp_path / "nohead.csv").write_text("name_of_thing,description\nA,B\n")
    with pytest.raises(LocalpersError, match="the header needs 'id' and 'title' columns"):
        catalog.import_file(tmp_path / "nohead.csv")
    (tmp_path / "noid.csv").write_text("name,description\nA,B\n")
    with pytest.raises(LocalpersError, match="the header needs 'id' columns"):
        catalog.import_file(tmp_path / "noid.csv")
    (tmp_path / "latin1.jsonl").write_bytes(b'{"id": "a", "title": "caf\xe9"}\n')
    with pytest.raises(LocalpersError, match="not UTF-8"):
        catalog.import_file(tmp_path / "latin1.jsonl")
    with pytest.raises(LocalpersError, match="invalid catalog name"):
        Catalog("Bad Name!")
    assert len(catalog) == 0  # nothing half-imported


def test_empty_catalog_and_finding_catalogs(home, tmp_path):
    with pytest.raises(LocalpersError, match="no catalog yet"):
        Catalog.find()
    (tmp_path / "empty.jsonl").write_text("\n\n")
    empty = Catalog("empty")
    report = empty.import_file(tmp_path / "empty.jsonl")
    assert report.imported == 0 and len(empty) == 0 and empty.matrix().shape[0] == 0
    assert Catalog.find().name == "empty"
    Catalog("other")
    with pytest.raises(LocalpersError, match="several catalogs"):
        Catalog.find()
    with pytest.raises(LocalpersError, match="no catalog named 'nope'"):
        Catalog.find("nope")
    assert Catalog.names() == ["empty", "other"]


def test_reimport_only_reembeds_changed_texts(home, tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", ROWS)
    catalog = Catalog("a")
    catalog.import_file(path)
    before = catalog.matrix()
    changed = [dict(r) for r in ROWS]
    changed[0]["description"] = "A count who is secretly a vampire buys a house in London."
    changed[1]["year"] = 1872  # an attribute only: no new embedding needed
    changed.append({"id": "frankenstein", "title": "Frankenstein", "kind": "book", "tags": ["gothic"]})
    report = catalog.import_file(write_jsonl(path, changed))
    assert (report.added, report.updated, report.unchanged, report.embedded) == (1, 2, 4, 2)
    after = catalog.matrix()
    assert not np.allclose(before[0], after[0])           # dracula's text changed
    assert np.allclose(before[1:6], after[1:6], atol=1e-6)  # the others kept their vectors
    assert catalog.get("carmilla").attrs == {"year": 1872}
    assert catalog.ids()[-1] == "frankenstein"            # new items go to the end


def test_interrupted_embedding_resumes(home, tmp_path):
    catalog = Catalog("r")
    catalog.add_items(ROWS)
    assert catalog.pending() == 6

    def stop_after_first_batch(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        catalog.embed_pending(batch_size=2, progress=stop_after_first_batch)
    assert catalog.pending() == 4  # the finished batch was kept
    reopened = Catalog("r")
    assert len(reopened.vectors()) == 2
    assert reopened.embed_pending() == 4
    assert reopened.pending() == 0 and len(reopened.vectors()) == 6


def test_damaged_index_is_reported_and_rebuilt(home, tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    Catalog("d").import_file(path)
    index_file = home / "catalogs" / "d" / "vectors.usearch"
    index_file.write_bytes(b"\x00garbage")
    damaged = Catalog("d")
    with pytest.raises(LocalpersError, match="damaged"):
        damaged.vectors()
    assert damaged.pending() == 6
    report = Catalog("d").import_file(path)
    assert report.embedded == 6 and Catalog("d").matrix().shape == (6, 384)


def test_remove_items(home, tmp_path):
    catalog = Catalog("rm")
    catalog.import_file(write_jsonl(tmp_path / "rm.jsonl", ROWS))
    assert catalog.remove(["emma", "unknown"]) == 1
    assert catalog.get("emma") is None and "emma" not in catalog.vectors() and len(catalog) == 5


def test_an_import_that_stores_nothing_leaves_no_new_catalog(home, tmp_path):
    with pytest.raises(LocalpersError, match="no such catalog file"):
        with Catalog.importing("missing") as catalog:
            catalog.import_file(tmp_path / "missing.jsonl")
    broken = write_jsonl(tmp_path / "broken.jsonl", [], ['{"id": "x"}', "not json"])
    with Catalog.importing("broken") as catalog:
        assert catalog.import_file(broken).imported == 0
    assert Catalog.names() == [] and not (Catalog.root() / "missing").exists()
    # An existing catalog stays whatever happens to an import into it.
    with Catalog.importing("shelf") as catalog:
        catalog.import_file(write_jsonl(tmp_path / "shelf.jsonl", ROWS))
    with pytest.raises(LocalpersError, match="no such catalog file"):
        with Catalog.importing("shelf") as catalog:
            catalog.import_file(tmp_path / "missing.jsonl")
    assert Catalog.names() == ["shelf"] and len(Catalog("shelf")) == len(ROWS)
    Catalog("shelf").delete()
    assert Catalog.names() == []


def test_kinds_are_checked_against_the_catalog(home, tmp_path):
    catalog = Catalog("k")
    catalog.import_file(write_jsonl(tmp_path / "k.jsonl", ROWS))
    catalog.check_kinds(["book", "FILM"])
    with pytest.raises(LocalpersError, match=r"no item of kind 'spaceship' in catalog 'k'; its kinds: book, film$"):
        catalog.check_kinds(["book", "spaceship"])


def test_the_chosen_catalog_is_remembered_in_the_vault(home, tmp_path):
    from localpers.vault import Vault

    Catalog("books"), Catalog("films")
    with Vault.create("ada", "correct horse battery", kdf_seconds=0) as vault:
        assert Catalog.remembered(vault) is None
        with pytest.raises(LocalpersError, match=r"several catalogs \(books, films\): choose one with --catalog"):
            Catalog.find(chosen=Catalog.remembered(vault))
        Catalog.remember(vault, "films")
    with Vault.open("ada", "correct horse battery") as vault:
        assert Catalog.find(chosen=Catalog.remembered(vault)).name == "films"
        assert Catalog.find("books", chosen="films").name == "books"  # a name given wins
    Catalog("films").delete()
    assert Catalog.find(chosen="films").name == "books"  # a pick that is gone is ignored


def test_parse_item_fields():
    item = parse_item({"ID": 42, "Name": "  Answer ", "Type": "Book", "summary": "s", "body": "b",
                       "keywords": "a, b, A", "price": 3.5})
    assert (item.id, item.title, item.kind, item.text, item.tags) == ("42", "Answer", "book", "s\n\nb", ("a", "b"))
    assert item.attrs == {"price": 3.5}
    assert "Answer" in item.embed_text() and "a, b" in item.embed_text()
    with pytest.raises(ValueError, match="'id' must be text"):
        parse_item({"id": {"x": 1}, "title": "t"})
    with pytest.raises(ValueError, match="'title' must be text"):
        parse_item({"id": "x", "title": 5})


def test_demo_catalog_is_well_formed(home):
    rows = [json.loads(line) for line in DEMO_CATALOG.read_text().splitlines()]
    assert 60 <= len(rows) <= 120
    assert len({r["id"] for r in rows}) == len(rows)
    assert all(parse_item(r).text and parse_item(r).tags for r in rows)
    assert {r["kind"] for r in rows} == {"book", "film"}


# ---------------------------------------------------------------------- item-to-item models


def two_cluster_pairs():
    # 30 people like items a-c together, 30 others like x-z together; "n" is liked by nobody.
    pairs = [(f"u{u}", i) for u in range(30) for i in ("a", "b", "c") if (u + ord(i)) % 4]
    pairs += [(f"v{u}", i) for u in range(30) for i in ("x", "y", "z") if (u + ord(i)) % 4]
    return pairs


def test_fit_ease_learns_co_occurrence():
    ids = ["a", "b", "c", "x", "y", "z", "n"]
    x = interaction_matrix(two_cluster_pairs(), ids)
    b = fit_ease(x, l2=5.0)
    assert b.shape == (7, 7) and np.allclose(np.diag(b), 0.0)
    assert b[0, 1] > 0.1 and b[3, 4] > 0.1  # within a cluster
    assert abs(b[0, 4]) < 0.05 and abs(b[6]).max() == 0.0  # across clusters; unseen item
    # The closed form: B = I - P / diag(P) with P = (X'X + l2 I)^-1.
    gram = (x.T @ x).toarray() + 5.0 * np.eye(7)
    p = np.linalg.inv(gram)
    expected = np.eye(7) - p / np.diag(p)
    np.fill_diagonal(expected, 0)
    assert np.allclose(b, expected, atol=1e-5)
    knn = fit_item_knn(x, k=2).toarray()
    assert set(np.flatnonzero(knn[0])) == {1, 2}


def test_item_model_files_round_trip(home, tmp_path):
    ids = ["a", "b", "c", "x", "y", "z", "n"]
    model = item_model_from_pairs(two_cluster_pairs(), ids, l2=5.0, top_k=2)
    assert model.weights.nnz <= 7 * 2
    expected = [sum(1 for u in range(30) if (u + ord(i)) % 4) for i in "abcxyz"]
    assert model.counts.tolist() == expected + [0]
    saved = model.save(tmp_path / "m.npz")
    loaded = ItemModel.load(saved)
    assert loaded.ids == ids and np.allclose(loaded.weights.toarray(), model.weights.toarray())
    assert loaded.info["method"] == "ease"
    # Neighbour lists in JSONL, the other shipping format.
    lines = [{"item": "a", "neighbors": [["b", 0.5], ["c", 0.25]], "count": 12}, {"item": "b", "neighbors": [["a", 0.4]]}]
    (tmp_path / "knn.jsonl").write_text("\n".join(json.dumps(r) for r in lines))
    knn = ItemModel.load(tmp_path / "knn.jsonl")
    assert knn.ids == ["a", "b", "c"] and knn.weights[0, 1] == pytest.approx(0.5) and knn.counts.tolist() == [12, 0, 0]
    (tmp_path / "bad.jsonl").write_text('{"neighbors": []}\n')
    with pytest.raises(LocalpersError, match="bad.jsonl line 1"):
        ItemModel.load(tmp_path / "bad.jsonl")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(LocalpersError, match="not an item model"):
        ItemModel.load(tmp_path / "bad.npz")


def test_catalog_installs_item_model_and_aligns_ids(home, tmp_path):
    catalog = Catalog("m")
    catalog.add_items([{"id": i, "title": i.upper()} for i in ["z", "a", "new", "b"]])
    lines = [{"item": "a", "neighbors": [["b", 0.5], ["gone", 0.9]], "count": 3},
             {"item": "b", "neighbors": [["a", 0.4], ["z", 0.1]], "count": 2}]
    (tmp_path / "knn.jsonl").write_text("\n".join(json.dumps(r) for r in lines))
    model = catalog.load_item_model(tmp_path / "knn.jsonl")
    assert model.info["matched"] == 3
    assert (home / "catalogs" / "m" / "item2item.npz").exists()
    weights, counts = Catalog("m").item_model.aligned(catalog.ids())
    dense = weights.toarray()
    # Catalog order z, a, new, b: a->b 0.5, b->a 0.4, b->z 0.1; "gone" dropped, "new" all zero.
    assert dense[1, 3] == pytest.approx(0.5) and dense[3, 1] == pytest.approx(0.4) and dense[3, 0] == pytest.approx(0.1)
    assert dense[2].sum() == 0 and dense[:, 2].sum() == 0 and dense.sum() == pytest.approx(1.0)
    assert counts.tolist() == [0, 3, 0, 2]
    (tmp_path / "foreign.jsonl").write_text('{"item": "q", "neighbors": [["r", 1.0]]}\n')
    with pytest.raises(LocalpersError, match="none of its 2 item ids"):
        catalog.load_item_model(tmp_path / "foreign.jsonl")

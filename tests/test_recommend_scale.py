"""Catalogs at scale: the item-model builder, shipped vectors, id headers, the rating scale, candidate ranking."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from localpers.catalog import Catalog, ItemModel, read_rows
from localpers.errors import LocalpersError
from localpers.itemmodel import build_item_model
from localpers.recommend import Event, Recommender, RecommenderConfig, Taste, record_feedback
from localpers.sources import Interaction, Rejected
from localpers.sources.interactions import CsvSource

MODEL = "all-minilm-l6-v2"


def synthetic(tmp_path, n_items=400, n_users=300, seed=0):
    """A catalog file, its shipped vectors (8 topics) and a power-law interactions file."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((8, 384)).astype(np.float32)
    topic = rng.integers(0, 8, n_items)
    vectors = topics[topic] + 0.6 * rng.standard_normal((n_items, 384)).astype(np.float32)
    ids = [f"i{k}" for k in range(n_items)]
    (tmp_path / "items.jsonl").write_text("".join(
        json.dumps({"item_id": i, "title": f"Item {k}", "tags": [f"topic{topic[k]}"]}) + "\n"
        for k, i in enumerate(ids)))
    np.savez(tmp_path / "items.vectors.npz", ids=np.array(ids), vectors=vectors, model=np.array(MODEL))
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    lines = ["user_id,item_id,rating"]
    for u in range(n_users):
        liked = rng.integers(0, 8)
        pool = np.flatnonzero(topic == liked)
        p = popularity[pool] / popularity[pool].sum()
        for k in rng.choice(pool, size=min(len(pool), 12), replace=False, p=p):
            lines.append(f"u{u},{ids[k]},{rng.integers(3, 6)}")
    (tmp_path / "inter.csv").write_text("\n".join(lines) + "\n")
    return ids, topic


def test_shipped_vectors_need_no_embedding(home, tmp_path, no_network):
    ids, _ = synthetic(tmp_path)
    catalog = Catalog("shop")
    # No embedder is given or loadable offline-free: every item must come with its vector.
    report = catalog.import_file(tmp_path / "items.jsonl", vectors=tmp_path / "items.vectors.npz")
    assert report.added == len(ids) and report.shipped == len(ids) and report.embedded == 0
    assert catalog.pending() == 0 and len(catalog.vectors()) == len(ids)
    assert "with shipped vectors" in report.summary()


@pytest.mark.parametrize("change, message", [
    ({"vectors": np.ones((3, 256), np.float32)}, "256"),
    ({"model": np.array("bge-small-en")}, "bge-small-en"),
    ({"model": None}, "which model"),
])
def test_shipped_vectors_of_another_model_or_dimension_are_refused(home, tmp_path, no_network, change, message):
    catalog_file = tmp_path / "items.jsonl"
    catalog_file.write_text("".join(json.dumps({"id": f"i{k}", "title": f"T{k}"}) + "\n" for k in range(3)))
    fields = {"ids": np.array(["i0", "i1", "i2"]), "vectors": np.ones((3, 384), np.float32), "model": np.array(MODEL)}
    fields.update(change)
    np.savez(tmp_path / "v.npz", **{k: v for k, v in fields.items() if v is not None})
    catalog = Catalog("shop")
    with pytest.raises(LocalpersError, match=message):
        catalog.import_file(catalog_file, vectors=tmp_path / "v.npz")
    assert len(catalog) == 0  # refused before anything was stored


def test_build_model_reports_broken_rows_and_finishes(home, tmp_path):
    from localpers.cli import main

    synthetic(tmp_path)
    with open(tmp_path / "inter.csv", "a") as f:
        f.write("u1,i2\n")            # too few fields
        f.write(",i3,4\n")            # empty user
        f.write("u2,i4,5,extra\n")    # too many fields
    runner = CliRunner()
    out = tmp_path / "model.npz"
    result = runner.invoke(main, ["catalog", "build-model", str(tmp_path / "inter.csv"), "-o", str(out),
                                  "--top-k", "20"])
    assert result.exit_code == 0, result.output
    assert "3 broken rows skipped" in result.output
    assert "expected 3 fields, found 2" in result.output and "empty 'user_id'" in result.output
    model = ItemModel.load(out)
    # Each item's 20 strongest weights both ways: at most 2 x 20 per item, and every item keeps a column.
    n = len(model.ids)
    assert model.info["method"] == "ease" and model.weights.nnz <= 2 * 20 * n
    assert (np.diff(model.weights.tocsc().indptr) >= 20).all()
    # The same file through item-kNN in a tiny memory budget (many blocks) and as neighbour lists.
    report = build_item_model(tmp_path / "inter.csv", method="knn", top_k=20, budget_gb=0.0001)
    assert report.broken == 3 and report.method == "knn" and report.peak_mb > 0
    dense = report.model.weights.toarray()
    assert np.diff(report.model.weights.indptr).max() <= 20 and np.allclose(np.diag(dense), 0)
    jsonl = tmp_path / "model.jsonl"
    result = runner.invoke(main, ["catalog", "build-model", str(tmp_path / "inter.csv"), "-o", str(jsonl),
                                  "--method", "knn", "--top-k", "20"])
    assert result.exit_code == 0, result.output
    assert ItemModel.load(jsonl).weights.nnz == report.model.weights.nnz


def test_ease_refused_over_its_memory_budget(tmp_path):
    synthetic(tmp_path)
    with pytest.raises(LocalpersError, match="--method knn"):
        build_item_model(tmp_path / "inter.csv", method="ease", budget_gb=0.001)


def test_catalog_csv_with_common_id_headers_and_column_mapping(home, tmp_path):
    (tmp_path / "movies.csv").write_text("movieId,title,genres\n1,Toy Story (1995),Animation|Comedy\n2,Heat,Crime\n")
    (tmp_path / "books.csv").write_text("ISBN,Book-Title\n0195153448,Classical Mythology\n")
    (tmp_path / "shop.csv").write_text("ean,product_name,blurb\n400,Kettle,Boils water\n")
    movies = Catalog("movies")
    movies.add_items(row for _, row in read_rows(tmp_path / "movies.csv"))
    assert movies.get("1").title == "Toy Story (1995)" and movies.get("1").tags == ("Animation", "Comedy")

    books = [row for _, row in read_rows(tmp_path / "books.csv", {"title": "book-title"})]
    assert books == [{"isbn": "0195153448", "title": "Classical Mythology"}]
    with pytest.raises(LocalpersError, match="--column id=NAME"):
        list(read_rows(tmp_path / "shop.csv"))
    shop = [row for _, row in read_rows(tmp_path / "shop.csv", {"id": "ean", "title": "product_name", "text": "blurb"})]
    assert shop == [{"id": "400", "title": "Kettle", "text": "Boils water"}]
    with pytest.raises(LocalpersError, match="no column 'sku'"):
        list(read_rows(tmp_path / "shop.csv", {"id": "sku"}))
    with pytest.raises(LocalpersError, match="unknown column role"):
        list(read_rows(tmp_path / "shop.csv", {"price": "ean"}))


def test_one_rating_scale(home, tmp_path, vault):
    path = tmp_path / "ratings.csv"
    path.write_text("movieId,rating\n1,0.5\n2,4.5\n3,7.0\n4,-1\n")
    outcomes = list(CsvSource(path).scan())
    kept = [(o.item, o.value) for o in outcomes if isinstance(o, Interaction)]
    rejected = [o for o in outcomes if isinstance(o, Rejected)]
    assert kept == [("1", 0.5), ("2", 4.5)]  # half stars kept as they are
    assert [r.ref for r in rejected] == ["ratings.csv row 3", "ratings.csv row 4"]
    assert all("outside the scale 0.5-5" in r.reason for r in rejected)
    # A declared 1-10 scale becomes stars in proportion.
    ten = list(CsvSource(path, rating_scale="1-10").scan())
    assert [(o.item, o.value) for o in ten if isinstance(o, Interaction)] == [("2", 2.25), ("3", 3.5)]
    with pytest.raises(LocalpersError, match="LOW-HIGH"):
        CsvSource(path, rating_scale="ten")
    # Feedback takes the same stars.
    catalog = Catalog("c")
    catalog.add_items([{"id": "a", "title": "A"}])
    record_feedback(vault, catalog, "a", "rating", 0.5)
    with pytest.raises(LocalpersError, match="0.5 to 5 stars"):
        record_feedback(vault, catalog, "a", "rating", 5.5)
    cfg = RecommenderConfig()
    half, one = (cfg.signal_weight(Event("a", "rating", v)) for v in (0.5, 1.0))
    assert half < one  # half a star says less than one star


def test_candidate_ranking_agrees_with_full_scoring(home, tmp_path, no_network, monkeypatch):
    ids, topic = synthetic(tmp_path, n_items=600, n_users=400)
    monkeypatch.setattr("localpers.catalog.LARGE_CATALOG", 500)  # this catalog counts as large at install
    catalog = Catalog("shop")
    catalog.import_file(tmp_path / "items.jsonl", vectors=tmp_path / "items.vectors.npz")
    catalog.save_item_model(build_item_model(tmp_path / "inter.csv", top_k=50).model)
    plain = RecommenderConfig(diversity=0.0, exploration=0.0, interests=0.0)
    full = Recommender(catalog, plain)
    # Its own Catalog object, to see what a large-catalog request loads.
    scaled = Recommender(Catalog("shop"), RecommenderConfig(**{**plain.__dict__, "large_catalog": 0}))
    assert full.large is None and scaled.large is not None
    rng = np.random.default_rng(3)
    overlaps = []
    for user in range(20):
        liked = rng.choice(np.flatnonzero(topic == user % 8), size=int(rng.integers(3, 30)), replace=False)
        history = Taste([Event(ids[k], "rating", float(rng.integers(3, 6))) for k in liked])
        a = [r.item.id for r in full.recommend_for(history, 10)]
        b = [r.item.id for r in scaled.recommend_for(history, 10)]
        assert len(b) == 10 and not set(b) & {ids[k] for k in liked}
        overlaps.append(len(set(a) & set(b)) / 10)
    # The model was read through the memory-mapped arrays, never loaded whole; no catalog-wide arrays either.
    assert scaled.catalog._item_model is None and (catalog.folder / "item2item.mapped" / "data.npy").exists()
    assert len(scaled.items) == 0 and scaled.vectors.shape[0] == 0
    # Measured on this data: all 20 lists identical; z-scores over the candidates instead of the whole
    # catalog may swap a near-tie, so the margin allows some.
    assert np.mean(overlaps) >= 0.9 and min(overlaps) >= 0.7, overlaps

"""History end to end with the real embedding model, a real vault and a real usearch index."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from localpers.embed import Embedder
from localpers.errors import LocalpersError
from localpers.history import INDEX_BLOB, History
from localpers.index import VectorIndex
from localpers.sources.synthetic import synthetic_mailbox, write_mbox
from localpers.vault import Vault
from support import CountingEmbedder

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
PANZA = SHARED / "panza-emails" / "david.jsonl"
ADA = "ada@example.com"


@pytest.fixture(scope="module")
def embedder():
    return Embedder.shared()


@pytest.fixture
def vault(tmp_path):
    v = Vault.create("ada", "a test passphrase", home=tmp_path / "users", kdf_seconds=0)
    yield v
    v.close()


def other_vault(tmp_path, name):
    return Vault.create(name, "a test passphrase", home=tmp_path / "users", kdf_seconds=0)


def notes_folder(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "garden.md").write_text("# Garden\nPlant alders along the riverside path; birches hate wet feet.")
    (root / "code.txt").write_text("The locker code for the boathouse is zanzibar-7731, keep it safe.")
    (root / "recipe.txt").write_text("Lentil soup: onions, carrots, cumin, simmer forty minutes.")
    return root


def test_import_search_and_dedupe(vault, embedder, tmp_path):
    history = History(vault, embedder)
    box = write_mbox(tmp_path / "archive.mbox", synthetic_mailbox(40, seed=21, others_share=0.3))
    report = history.import_path(box, sent_from=[ADA])
    assert report.finished and not report.resumed and report.added > 20
    assert report.skipped["not sent by you"] > 0
    assert report.added + report.duplicates + len(report.rejected) + sum(report.skipped.values()) == 40
    notes = history.import_path(notes_folder(tmp_path / "notes"))
    assert notes.added == 3
    assert history.count() == report.added + 3 == len(history.index)
    assert history.kinds() == {"email": report.added, "note": 3}

    again = history.import_path(box, sent_from=[ADA])
    assert again.added == 0 and again.duplicates == report.added and history.count() == report.added + 3

    hits = history.search("how long should the lentil soup cook", k=3)
    assert hits[0].kind == "note" and "Lentil soup" in hits[0].content
    assert all(-1.0 <= h.score <= 1.0 for h in hits) and hits == sorted(hits, key=lambda h: -h.score)
    emails = history.search("planting trees near the river", k=5, kinds="email")
    assert len(emails) == 5 and {h.kind for h in emails} == {"email"}
    assert all(h.metadata["from"] == ADA for h in emails)
    assert history.search("anything", kinds=["no-such-kind"]) == []
    # The emails are dated 2020-2021 by their Date header; the notes by their files' times (today).
    assert {h.kind for h in history.search("soup", k=50, since="1d")} == {"note"}
    assert {h.kind for h in history.search("soup", k=50, since="2020-01-01")} == {"email", "note"}
    assert history.search("soup", since="2199-01-01") == []
    with pytest.raises(LocalpersError):
        history.search("  ")
    with pytest.raises(LocalpersError):
        history.search("x", mode="sparse")
    with pytest.raises(LocalpersError):
        history.search("x", since="last tuesday-ish")


def test_hybrid_finds_rare_words_and_mmr_diversifies(vault, embedder, tmp_path):
    history = History(vault, embedder)
    history.import_path(notes_folder(tmp_path / "notes"))
    history.add_texts([f"Meeting notes {i}: the quarterly budget review went well, numbers are on track." for i in range(4)]
                      + ["Budget for the garden: 300 pounds of seedlings and a new bench."], kind="note")
    hybrid = history.search("zanzibar-7731", k=1, mode="hybrid")
    assert "zanzibar-7731" in hybrid[0].content and hybrid[0].scores["bm25"] > 0 and "dense" in hybrid[0].scores

    query = "how did the budget review go"
    plain = history.search(query, k=3)
    assert all("quarterly budget review" in h.content for h in plain)  # near-duplicates crowd the top
    diverse = history.search(query, k=3, mmr=True, lambda_=0.5)
    assert diverse[0].item_id == plain[0].item_id and len({h.item_id for h in diverse}) == 3
    assert any("garden" in h.content for h in diverse)
    assert sum("quarterly budget review" in h.content for h in diverse) < 3
    assert history.search("budget", k=2, mmr=True, mode="hybrid", lambda_=0.3)


def test_delete_erases_item_vector_and_traces(vault, embedder, tmp_path):
    history = History(vault, embedder)
    marker = "The spare key is under the blue flowerpot by the gate."
    ids = history.add_texts([marker, "Another note about the weekly shopping list."], kind="note")
    assert history.add_texts([marker]) == ids[:1]  # a duplicate returns the existing id
    assert ids[0] in history.index
    assert history.search("where is the spare key", k=1, mode="hybrid")[0].item_id == ids[0]

    assert history.delete(ids[0]) and not history.delete(ids[0])
    assert history.get(ids[0]) is None and ids[0] not in history.index
    assert vault.cache.count("key like ?", [f"%{ids[0]}"]) == 0
    assert vault.fingerprints.count("item_id = ?", [ids[0]]) == 0
    assert all(h.item_id != ids[0] for h in history.search("spare key flowerpot", k=5, mode="hybrid"))
    # The saved index no longer holds it either, and the text can come back as a new item.
    assert ids[0] not in VectorIndex.from_bytes(vault.get_blob(INDEX_BLOB))
    (again,) = history.add_texts([marker])
    assert again != ids[0]
    folder = vault.path.parent
    for path in folder.iterdir():
        assert b"flowerpot" not in path.read_bytes(), f"plaintext in {path.name}"


def test_index_rebuilt_from_stored_vectors_or_texts(vault, embedder, tmp_path):
    history = History(vault, embedder)
    history.import_path(notes_folder(tmp_path / "notes"))
    ids = history.add_texts([f"Note number {i} about topic {i * 7}." for i in range(20)])
    expected = [h.item_id for h in history.search("boathouse locker code", k=5)]

    def fresh():
        counting = CountingEmbedder(embedder)
        return History(vault, counting), counting

    # Missing blob: rebuilt from the stored vectors, nothing re-embedded (only the query).
    vault.blobs.delete(INDEX_BLOB)
    h, counting = fresh()
    assert [x.item_id for x in h.search("boathouse locker code", k=5)] == expected and counting.calls == 1
    assert vault.blob_info(INDEX_BLOB)["count"] == 23

    # Damaged blob: same.
    vault.put_blob(INDEX_BLOB, b"\x00garbage" * 100, {"model": embedder.name})
    h, counting = fresh()
    assert len(h.index) == 23 and counting.calls == 0
    assert any("could not be read" in n for n in h.notes)

    # A stale blob (saved before some items were committed, as after a crash): caught up.
    stale = VectorIndex.from_bytes(vault.get_blob(INDEX_BLOB))
    stale.remove(ids[:5])
    vault.put_blob(INDEX_BLOB, stale.to_bytes(), {"model": embedder.name})
    h, counting = fresh()
    assert set(h.index.ids()) == set(vault.items.keys()) and counting.calls == 0

    # No stored vectors either: the texts are embedded again.
    vault.blobs.delete(INDEX_BLOB)
    vault.cache.delete_where("kind = 'embedding'")
    h, counting = fresh()
    assert len(h.index) == 23 and counting.calls == 23
    assert [x.item_id for x in h.search("boathouse locker code", k=5)] == expected


def test_cancel_then_resume_matches_an_uninterrupted_import(vault, embedder, tmp_path):
    box = write_mbox(tmp_path / "sent.mbox", synthetic_mailbox(50, seed=22))
    history = History(vault, embedder, batch_size=8)
    cancel = threading.Event()
    seen = []

    def progress(done, total, message):
        seen.append((done, total, message))
        if history.count() >= 16:
            cancel.set()

    first = history.import_path(box, progress=progress, cancel=cancel)
    assert not first.finished and 16 <= first.added < 40
    assert seen[0][1] == box.stat().st_size and all(d <= t for d, t, _ in seen)
    second = history.import_path(box)
    assert second.resumed and second.finished
    assert second.previously["added"] == first.added and second.duplicates == 0
    # A third run starts over (the import finished) and adds nothing.
    third = history.import_path(box)
    assert not third.resumed and third.added == 0

    with other_vault(tmp_path, "bob") as other:
        reference = History(other, embedder)
        ref_report = reference.import_path(box)
        assert ref_report.added == first.added + second.added
        assert sorted(history.texts()) == sorted(reference.texts())
        assert len(history.index) == history.count()


def test_ratings_csv_goes_to_interactions(vault, embedder, tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("item_id,rating,timestamp\n50,5,881250949\n172,4,881250999\n50,5,881250949\nx,bad,1\n")
    history = History(vault, embedder)
    report = history.import_path(path)
    assert report.interactions == 2 and report.duplicates == 1 and len(report.rejected) == 1
    rows = list(vault.interactions.rows(order_by="id"))
    assert [(r["signal"], r["item"], r["value"], r["time"]) for r in rows] == [
        ("rating", "50", 5.0, 881193600), ("rating", "172", 4.0, 881193600)]
    assert history.import_path(path).interactions == 0 and vault.interactions.count() == 2
    assert history.count() == 0  # ratings are not history items


def test_browsing(vault, embedder):
    history = History(vault, embedder)
    ids = history.add_texts(["First text here.", "Second text here."], kind="note",
                            metadata=[{"title": "one"}, {"title": "two"}], created=["2020-01-01", "2021-06-01"])
    history.add_texts(["An email body here."], kind="email", metadata={"subject": "Hi"})
    assert [i.content for i in history.items("note")] == ["Second text here.", "First text here."]
    assert [i.content for i in history.items(limit=1, offset=1)] == ["Second text here."]
    assert history.get(ids[0]).metadata == {"title": "one"} and history.get(ids[0]).created == 1577836800
    assert history.count("note", since="2021-01-01") == 1
    assert history.texts("email") == ["An email body here."]
    with pytest.raises(LocalpersError):
        history.add_texts(["   "])
    with pytest.raises(LocalpersError):
        history.add_texts(["a", "b"], metadata=[{}])


@pytest.mark.skipif(not PANZA.exists(), reason="shared Panza emails not present")
def test_panza_emails(vault, embedder):
    history = History(vault, embedder)
    report = history.import_path(PANZA)
    assert report.added == 166 and not report.rejected
    hits = history.search("invitation to give a talk", k=3)
    assert any(word in hits[0].metadata["subject"].lower() for word in ("talk", "speak", "invitation"))


@pytest.mark.slow
@pytest.mark.model
def test_llama_cpp_embeddings_are_pluggable(vault, embedder, tmp_path):
    from localpers.embed import LlamaEmbedder

    llama = LlamaEmbedder("gemma3-270m")
    history = History(vault, llama)
    history.import_path(notes_folder(tmp_path / "notes"))
    assert history.index.dim == llama.dim != embedder.dim
    assert "lentil" in history.search("what to cook for dinner", k=1)[0].content.lower()
    # Switching back to the default model rebuilds the index with its own vectors.
    default = History(vault, embedder)
    assert default.index.dim == embedder.dim and len(default.index) == 3
    assert len(default._stored_vectors(default.vault.items.keys(), llama.dim)) == 0  # another model's
    assert len(History(vault, llama)._stored_vectors(vault.items.keys(), llama.dim)) == 3
    assert np.isclose(np.linalg.norm(default.index.vectors(default.index.ids()[:1])), 1.0, atol=1e-3)


def test_index_round_trip_keeps_dtype_and_search_settings():
    import numpy as np

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(200, 16)).astype(np.float32)
    index = VectorIndex(16, expansion_search=24, expansion_add=40, dtype="f16")
    index.add([f"v{i}" for i in range(200)], vectors)
    again = VectorIndex.from_bytes(index.to_bytes())
    # usearch's saved file holds the graph and storage type only; the search settings come back from our header.
    assert (again.index.expansion_search, again.index.expansion_add) == (24, 40)
    assert str(again.index.dtype).endswith("F16") and len(again) == 200
    assert again.search(vectors[7], k=1)[0][0] == "v7"


def test_erasing_a_trained_on_item_leaves_no_trace_in_any_table_or_file(vault, embedder, tmp_path):
    """Everything derived from an item goes with it: embedding, index entry, playback instruction, checkpoint."""
    from localpers.writing import train
    from localpers.writing.playback import cache_key
    from localpers.vault import TABLES

    history = History(vault, embedder)
    marker = "zqtrace: the boathouse key hangs behind the third oar on the left wall."
    keep = "A different text about the allotment and its many marrows this autumn."
    ids = history.add_texts([marker, keep], kind="note")
    assert ids[0] in history.index
    # What training leaves behind: a cached playback instruction quoting the text, a checkpoint.
    vault.cache.insert({"key": cache_key(vault, marker), "kind": "instruction",
                        "value": {"text": "Write about zqtrace and the boathouse key.", "source": "model"}})
    import torch

    train._save_checkpoint(vault, "fingerprint", {"step": 1, "total_steps": 4, "lora": torch.zeros(2),
                                                  "samples": [ids[0], "zqtrace"]})
    before = {name: getattr(vault, name).count() for name in TABLES}
    assert history.delete(ids[0])

    def trace(value) -> bool:
        text = value.hex() if isinstance(value, bytes) else json.dumps(value, default=str)
        return "zqtrace" in text or ids[0] in text or "zqtrace".encode().hex() in text

    for name in TABLES:  # every row of every table, decrypted
        for row in getattr(vault, name).rows():
            assert not any(trace(v) for v in row.values()), f"{name} still holds {row}"
    assert ids[0] not in VectorIndex.from_bytes(vault.get_blob(INDEX_BLOB))
    assert vault.cache.count() < before["cache"] and vault.blob_info(train.CHECKPOINT_BLOB) is None
    assert history.get(ids[1]).content == keep  # the other item and its embedding stay
    assert history._stored_vectors([ids[1]], history.index.dim)
    for path in vault.path.parent.iterdir():
        assert b"zqtrace" not in path.read_bytes() and ids[0].encode() not in path.read_bytes(), path.name


def test_flipped_byte_in_the_index_blob_is_noticed_and_the_index_rebuilt(vault, embedder, tmp_path):
    history = History(vault, embedder)
    ids = history.add_texts(["Plant alders along the riverside path.", "Lentil soup with cumin and carrots."])
    assert len(history.index) == 2  # loading the index brings it up to date and saves it
    box = bytearray(vault.db.conn.execute("select data from blobs where name = ?", [INDEX_BLOB]).fetchone()[0])
    box[len(box) // 2] ^= 0x01
    vault.db.conn.execute("update blobs set data = ? where name = ?", [bytes(box), INDEX_BLOB])
    with pytest.raises(LocalpersError, match="failed authentication"):
        vault.get_blob(INDEX_BLOB)
    fresh = History(vault, CountingEmbedder(embedder))
    assert sorted(fresh.index.ids()) == sorted(ids)
    assert any("rebuilding it" in note for note in fresh.notes)
    assert fresh.embedder.calls == 0  # rebuilt from the stored vectors, not by embedding again
    assert VectorIndex.from_bytes(vault.get_blob(INDEX_BLOB)).ids()  # and saved sound again


def test_another_process_writes_are_followed_by_the_index_and_bm25(vault, embedder, tmp_path):
    """The app keeps its index in memory while the CLI imports and deletes (the vault is open twice at once)."""
    app = History(vault, embedder)
    first = app.add_texts(["Plant alders along the riverside path; birches hate wet feet."], kind="note")
    assert app.search("riverside trees", k=1, mode="hybrid")[0].item_id == first[0]  # index and BM25 loaded
    other = Vault.open("ada", "a test passphrase", home=tmp_path / "users")
    try:
        cli = History(other, embedder)
        (added,) = cli.add_texts(["The locker code for the boathouse is zanzibar-7731."], kind="note")
        cli.delete(first[0])
        # The app sees both changes at its next search, without reopening anything.
        hits = app.search("boathouse locker code", k=5, mode="hybrid")
        assert [h.item_id for h in hits] == [added]
        assert first[0] not in app.index and added in app.index
        # Its next save keeps what the other process added.
        app.add_texts(["Lentil soup: onions, carrots, cumin, simmer forty minutes."], kind="note")
        app.save_index()
        saved = VectorIndex.from_bytes(other.get_blob(INDEX_BLOB))
        assert added in saved and first[0] not in saved and len(saved) == 2
    finally:
        other.close()

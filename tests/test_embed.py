"""The torch-free embedder: it agrees with sentence-transformers, and the query path never loads torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from localpers.catalog import Catalog
from localpers.embed import Embedder, SentenceTransformerEmbedder
from support import CountingEmbedder

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
HEAVY = ("torch", "transformers", "sentence_transformers")

TEXTS = [
    "hello",
    "Can we move Thursday's budget review to Friday morning?",
    "Crème brûlée, naïve café — 東京 and Zürich, with emoji 🌱 and tabs\tand\nnewlines.",
    "word " * 400,  # past the model's 256 word pieces: both must cut it the same way
    "",
]


def _run(code: str, home: Path) -> dict:
    env = {**os.environ, "LOCALPERS_HOME": str(home)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def reference():
    return SentenceTransformerEmbedder()


def test_vectors_match_sentence_transformers(reference):
    new = Embedder.shared().encode(TEXTS)
    old = reference.encode(TEXTS)
    assert new.shape == old.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(new, axis=1), 1.0, atol=1e-5)
    # Measured: the two agree to ~4e-7 per coordinate; 1e-4 leaves room for other CPUs' kernels.
    assert np.abs(new - old).max() < 1e-4
    assert np.sum(new * old, axis=1).min() > 0.9999


def test_batching_by_length_keeps_each_text_its_own_vector():
    emb = Embedder.shared()
    alone = np.vstack([emb.encode([t]) for t in TEXTS])
    together = emb.encode(list(reversed(TEXTS)), batch_size=2)[::-1]  # mixed lengths, padded batches
    assert np.abs(alone - together).max() < 1e-4


@pytest.mark.skipif(not (SHARED / "panza-emails").exists(), reason="shared Panza e-mails not present")
def test_same_neighbours_as_before_on_panza_emails(reference):
    rows = [json.loads(line) for line in (SHARED / "panza-emails" / "david.jsonl").read_text().splitlines()][:80]
    corpus = reference.encode([r["email"] for r in rows])
    queries = [r.get("subject") or r["email"][:60] for r in rows]
    old_top = np.argsort(-(reference.encode(queries) @ corpus.T), axis=1)[:, :10]
    new_top = np.argsort(-(Embedder.shared().encode(queries) @ corpus.T), axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(old_top, new_top)])
    assert recall >= 0.99


def test_search_never_imports_torch(tmp_path):
    code = """
import json, sys
from localpers.history import History
from localpers.vault import Vault
vault = Vault.create("ada", "a test passphrase", kdf_seconds=0)
history = History(vault)
history.add_texts(["Plant alders along the riverside path.", "Lentil soup: onions, carrots, cumin."])
hits = history.search("what grows near the river", k=1)
print(json.dumps({"top": hits[0].content, "heavy": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)
    result = _run(code, tmp_path)
    assert result["top"].startswith("Plant alders")
    assert result["heavy"] == []


def test_light_imports(tmp_path):
    code = """
import json, subprocess, sys
import localpers.index, localpers.history
loaded = [m for m in ("llama_cpp", "usearch", "onnxruntime") + %r if m in sys.modules]
from localpers.cli import main
for argv in (["--help"], ["doctor"]):
    try:
        main(argv, standalone_mode=False)
    except SystemExit:
        pass
after_help = [m for m in ("llama_cpp", "onnxruntime", "usearch") + %r if m in sys.modules]
print(json.dumps({"loaded": loaded, "after_help": after_help}))
""" % (HEAVY, HEAVY)
    result = _run(code, tmp_path)
    assert result == {"loaded": [], "after_help": []}


def test_catalog_reimport_reuses_vectors_by_content(tmp_path):
    rows = [{"id": f"f{i}", "title": title, "tags": ["drama"]}
            for i, title in enumerate(["Metropolis", "Nosferatu", "The General", "Sunrise", "The Kid"])]
    source = tmp_path / "films.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    catalog = Catalog("films", home=tmp_path)
    counting = CountingEmbedder(Embedder.shared())
    catalog.import_file(source, embedder=counting)
    assert counting.calls == 5
    before = catalog.vectors().vectors(catalog.ids())
    catalog.remove(catalog.ids())
    renamed = tmp_path / "renamed.jsonl"  # the same texts under new ids: nothing to run the model on
    renamed.write_text("".join(json.dumps({**r, "id": "new-" + r["id"]}) + "\n" for r in rows))
    report = catalog.import_file(renamed, embedder=counting)
    assert counting.calls == 5 and report.embedded == 5
    assert np.allclose(catalog.vectors().vectors([f"new-f{i}" for i in range(5)]), before)
    rows[0]["title"] = "Metropolis (restored)"  # a changed text is embedded again
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    catalog.import_file(source, embedder=counting)
    assert counting.calls == 6


def test_import_and_catalog_import_show_their_phases(home, monkeypatch, tmp_path):
    from click.testing import CliRunner

    from localpers.cli import main
    from localpers.sources.synthetic import synthetic_mailbox, write_mbox
    from localpers.vault import Vault

    Vault.create("ada", "a test passphrase", kdf_seconds=0).close()
    monkeypatch.setenv("LOCALPERS_PASSPHRASE", "a test passphrase")
    box = write_mbox(tmp_path / "Sent.mbox", synthetic_mailbox(20, seed=5))
    result = CliRunner().invoke(main, ["import", str(box), "-u", "ada"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    phases = ["Sent.mbox: loading the embedding model...", "Sent.mbox: opening the search index...",
              "Sent.mbox: reading...", "Sent.mbox: 100%"]
    at = [result.output.find(p) for p in phases]
    assert -1 not in at and at == sorted(at), result.output

    films = tmp_path / "films.jsonl"
    films.write_text("".join(json.dumps({"id": f"f{i}", "title": f"Film number {i}"}) + "\n" for i in range(30)))
    result = CliRunner().invoke(main, ["catalog", "import", str(films)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    phases = ["films: loading the embedding model...", "films: reading films.jsonl...", "films: 30/30 items (100%)"]
    at = [result.output.find(p) for p in phases]
    assert -1 not in at and at == sorted(at), result.output

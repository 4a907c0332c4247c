"""The canary test: distinctive strings go in through every write path, and never show up in any file.

Canaries go into content, subjects, recipients, profile features, drafts, the
disclosure ledger, interactions, import state, an adapter-like blob and a real
usearch index (as ids and as vectors). Then every write path runs: insert,
update, replace, delete, erase, passphrase change, blob files (memfd and the
temp-file fallback), backup and restore, erasing a whole user. After each stage,
every byte of every file under LOCALPERS_HOME (the database, -wal, -shm,
-journal, lock, backups) and of every file created in the temp directories is
scanned for the canaries in UTF-8, UTF-16, hex and base64.

A positive control proves the scanner works: the explicit plaintext export,
written outside the data directory, does contain the canaries.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest

from localpers.index import VectorIndex
from localpers.vault import Vault, coarse_time, export_jsonl, restore_backup, write_backup

PASS = "canary test passphrase"


def encodings(text: str) -> list[bytes]:
    """The ways a string could sit in a file: raw UTF-8, UTF-16 (both orders), hex, base64 at any alignment."""
    raw = text.encode("utf-8")
    forms = [raw, text.encode("utf-16-le"), text.encode("utf-16-be"), raw.hex().encode()]
    for shift in range(3):  # base64 of the string at each of the three byte alignments; keep the stable middle
        forms.append(base64.b64encode(b"\0" * shift + raw)[4:-4])
    return forms


def scan(roots: list[Path], needles: dict[str, list[bytes]], since: float | None = None,
         skip: Path | None = None) -> list[str]:
    """Every (file, canary) where a form of the canary occurs."""
    hits = []
    for root in roots:
        paths = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
        for path in paths:
            if skip is not None and skip in path.parents:
                continue
            try:
                if since is not None and path.stat().st_mtime < since:
                    continue
                data = path.read_bytes()
            except OSError:  # vanished or unreadable (another process's file)
                continue
            hits += [f"{path}: {name}" for name, forms in needles.items() if any(f in data for f in forms)]
    return hits


def test_scanner_finds_every_encoding(tmp_path):
    canary = "CANARY-selftest-" + uuid.uuid4().hex
    for i, form in enumerate(encodings(canary)):
        (tmp_path / f"f{i}").write_bytes(os.urandom(7) + form + os.urandom(5))
    for shift in range(3):
        (tmp_path / f"b{shift}").write_bytes(base64.b64encode(os.urandom(shift) + canary.encode()))
    needles = {"c": encodings(canary)}
    assert len(scan([tmp_path], needles)) == len(encodings(canary)) + 3


@pytest.fixture
def system_tmp():
    """The machine's temp directory, as it was before the test redirected it."""
    return Path(tempfile.gettempdir())


@pytest.fixture
def scratch(tmp_path, monkeypatch, system_tmp):
    """A private temp directory for everything that might spill: Python's tempfile and SQLite's."""
    path = tmp_path / "tmp"
    path.mkdir()
    for var in ("TMPDIR", "SQLITE_TMPDIR"):
        monkeypatch.setenv(var, str(path))
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    return path


def test_no_canary_reaches_any_file(home, scratch, system_tmp, tmp_path, monkeypatch):
    tag = uuid.uuid4().hex[:12]
    canaries = {name: f"CANARY-{name}-{tag}" for name in (
        "content", "subject", "recipient", "feature-name", "feature-value", "draft", "final", "instruction",
        "ledger-recipient", "ledger-revealed", "interaction", "import-source", "index-id", "adapter", "updated",
        "deleted", "erased", "bob", "rolled-back")}
    needles = {name: encodings(text) for name, text in canaries.items()}
    # Vectors and adapter weights: distinctive binary patterns rather than text.
    vectors = np.random.default_rng(int(tag, 16) % 2**32).standard_normal((40, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    needles["vector-bytes"] = [vectors[3].tobytes()[:32]]
    adapter = os.urandom(100_000) + canaries["adapter"].encode() + os.urandom(50_000)
    needles["adapter-bytes"] = [adapter[5000:5032]]
    started = os.path.getmtime(home) - 1
    export = tmp_path / "export" / "ada.jsonl"  # the one file allowed plaintext: the explicit export

    def check(stage: str) -> None:
        # The data directory and the redirected temp directory whole; the system's temp
        # directory for every file changed since the test began.
        hits = scan([home, scratch], needles) + scan([system_tmp], needles, since=started, skip=export.parent)
        assert not hits, f"after {stage}: canaries in the clear: {hits}"

    vault = Vault.create("ada", PASS, kdf_seconds=0)
    # Every table, every secret column.
    item = vault.items.insert({"source_type": "mbox", "kind": "email", "created": coarse_time(),
                               "content": f"Hello, {canaries['content']} here.",
                               "metadata": {"subject": canaries["subject"], "to": [canaries["recipient"]]},
                               "source": "sent.mbox"})
    more = vault.items.insert_all([{"kind": "note", "content": f"{canaries['deleted']} {i}"} for i in range(30)])
    gone = vault.items.insert({"kind": "note", "content": canaries["erased"]})
    vault.fingerprints.insert({"digest": vault.keyed_hash(canaries["content"], "fp"), "item_id": item})
    vault.interactions.insert_all([{"signal": "rating", "time": coarse_time(), "item": gone, "value": 5,
                                    "metadata": {"note": canaries["interaction"]}}])
    feature = vault.features.insert({"updated": coarse_time(), "name": canaries["feature-name"],
                                     "value": canaries["feature-value"]})
    vault.drafts.insert({"mode": "compose", "created": coarse_time(), "instruction": canaries["instruction"],
                         "context": canaries["content"], "draft": canaries["draft"], "final": canaries["final"],
                         "examples": [item]})
    vault.ledger.insert({"time": coarse_time(), "purpose": "recommend", "recipient": canaries["ledger-recipient"],
                         "revealed": {"interest": canaries["ledger-revealed"]}, "withheld": [], "decision": "ok",
                         "steps": []})
    vault.imports.insert({"updated": coarse_time(), "source": canaries["import-source"], "state": {"done": 3}})
    vault.cache.insert({"key": vault.keyed_hash(item, "embedding"), "kind": "embedding", "value": vectors[3].tobytes()})
    # A real usearch index with canary ids and the distinctive vectors, saved to bytes and sealed.
    index = VectorIndex(dim=16)
    index.add([f"{canaries['index-id']}-{i}" for i in range(40)], vectors)
    vault.put_blob("history-index", index.to_bytes(), {"items": 40})
    vault.put_blob("adapter:style", adapter, {"rank": 8})
    check("inserting into every table (vault open, WAL live)")

    # Updates, replacements, a rolled-back transaction, deletes.
    vault.features.update(feature, {"value": canaries["updated"]})
    vault.put_blob("history-index", index.to_bytes(), {"items": 40})  # replace
    with pytest.raises(RuntimeError):
        with vault.transaction():
            vault.items.insert({"kind": "note", "content": canaries["rolled-back"]})
            raise RuntimeError("roll back")
    for key in more[:10]:
        vault.items.delete(key)
    vault.items.delete_where("kind = ?", ["note-none"])
    check("updates, replacements, rollback, deletes")

    # Blob files handed to native code: memfd, then the temp-file fallback.
    with vault.blob_file("history-index") as path:
        restored = VectorIndex.from_bytes(path.read_bytes())
        assert restored.search(vectors[3], k=1)[0][0] == f"{canaries['index-id']}-3"
    with monkeypatch.context() as m:
        m.delattr(os, "memfd_create", raising=False)
        m.setattr("localpers.vault.files.os.path.isdir", lambda p: False if p == "/dev/shm" else os.path.exists(p))
        with vault.blob_file("adapter:style") as path:
            assert scratch in path.parents and canaries["adapter"].encode() in path.read_bytes()
    check("blob files (memfd and temp-file fallback)")

    # Erase, passphrase change, backup, close.
    assert vault.erase_item(gone)
    vault.change_passphrase("another canary passphrase", kdf_seconds=0)
    write_backup(vault, home / "ada.lpbackup")
    vault.close()
    check("erase, passphrase change, backup, close")

    # Restore on "another machine" (another home), reopen, export outside the data directory.
    other_home = home / "machine-2"
    restored_vault = restore_backup(home / "ada.lpbackup", "another canary passphrase", home=other_home)
    assert restored_vault.items.get(item)["metadata"]["subject"] == canaries["subject"]
    restored_vault.close()
    with Vault.open("ada", "another canary passphrase") as vault:
        assert vault.features.get(feature)["value"] == canaries["updated"]
        export.parent.mkdir()
        export_jsonl(vault, export, include_blobs=True)
    check("restore, reopen")

    # Positive control: the explicit plaintext export does contain them (so the scanner can see).
    found = {hit.split(": ")[1] for hit in scan([export], needles)}
    assert {"content", "subject", "recipient", "feature-name", "updated", "draft", "ledger-revealed",
            "import-source", "index-id", "adapter"} <= found  # blobs appear base64-encoded
    # Gone for good: the erased item with the interaction that pointed at it, and the rolled-back insert.
    assert not {"erased", "interaction", "rolled-back"} & found and "deleted" in found

    # A second user, filled with canaries, then erased whole.
    bob = Vault.create("bob", "bob's canary passphrase", kdf_seconds=0)
    bob.items.insert_all([{"kind": "note", "content": canaries["bob"]} for _ in range(50)])
    bob.put_blob("adapter:bob", adapter)
    bob.erase_user()
    assert not (home / "users" / "bob").exists()
    check("erasing a whole user")
    assert not list(scratch.iterdir()), "temporary files were left behind"


def test_free_text_words_from_every_import_path_stay_sealed(home, tmp_path):
    """A JSONL record's own ``kind``, a CSV's ``signal`` and ``import --kind`` never reach a clear column."""
    from click.testing import CliRunner

    from localpers.cli import main

    canaries = {"jsonl-kind": "zqcanarykind7f3a", "csv-signal": "zqcanarysig9b2c", "option-kind": "zqcanaryopt5d1e"}
    notes = tmp_path / "in" / "notes.jsonl"
    notes.parent.mkdir()
    notes.write_text("\n".join(json.dumps({"text": f"A note about the garden number {i}, with enough words.",
                                           "kind": canaries["jsonl-kind"]}) for i in range(3)) + "\n")
    other = tmp_path / "in" / "more.jsonl"
    other.write_text(json.dumps({"text": "Another plain text that the option gives a kind."}) + "\n")
    ratings = tmp_path / "in" / "events.csv"
    ratings.write_text("item_id,signal,timestamp\nmovie:1,%s,1700000000\nmovie:2,%s,1700000100\n"
                       % (canaries["csv-signal"], canaries["csv-signal"]))
    runner = CliRunner()
    env = {"LOCALPERS_PASSPHRASE": PASS}
    assert runner.invoke(main, ["user", "create", "ada", "--kdf-seconds", "0"], env=env).exit_code == 0
    for args in (["import", str(notes)], ["import", str(ratings), "--format", "csv"],
                 ["import", str(other), "--kind", canaries["option-kind"]]):
        result = runner.invoke(main, [*args, "-u", "ada"], env=env)
        assert result.exit_code == 0, result.output
    with Vault.open("ada", PASS) as vault:  # the real words come back when read
        kinds = sorted(r["kind"] for r in vault.items.rows(columns=[]))
        assert kinds == sorted([canaries["jsonl-kind"]] * 3 + [canaries["option-kind"]])
        assert {r["signal"] for r in vault.interactions.rows(columns=[])} == {canaries["csv-signal"]}
    needles = {name: encodings(value) for name, value in canaries.items()}
    assert scan([home], needles) == []
    # Positive control: the same scan finds them in the inputs.
    assert len(scan([tmp_path / "in"], needles)) == 2  # the option's word is only on the command line

"""The encrypted vault: sealing, tamper detection, passphrases, users, locks, migrations, erasing, keyring."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from localpers.vault import store as vault_module
from localpers.errors import LocalpersError, TamperedData, VaultError, VaultLocked, WrongPassphrase
from localpers.session import open_vault
from localpers.vault import DAY, TABLES, Vault, coarse_time, plaintext_file

PASS = "correct horse battery staple"


@pytest.fixture
def vault(home):
    v = Vault.create("ada", PASS, kdf_seconds=0)
    yield v
    v.close()


def users_root(home: Path) -> Path:
    return home / "users"


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file's hash and modification time: to prove that nothing was written."""
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.iterdir()) if p.is_file()}


def raw(vault: Vault, table: str, column: str, key) -> bytes:
    pk = TABLES[table].pk
    return vault.db.conn.execute(f"select [{column}] from [{table}] where [{pk}] = ?", [key]).fetchone()[0]


def set_raw(vault: Vault, table: str, column: str, key, value) -> None:
    pk = TABLES[table].pk
    vault.db.conn.execute(f"update [{table}] set [{column}] = ? where [{pk}] = ?", [value, key])


def files_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


def fill(vault: Vault) -> dict:
    """One row in every table, with a secret value in every secret column."""
    item = vault.items.insert({"source_type": "mbox", "kind": "email", "created": coarse_time(),
                               "content": "Dear Bob, the budget is late.", "metadata": {"subject": "Budget", "to": ["bob@x.org"]},
                               "source": "sent.mbox#12"})
    vault.fingerprints.insert({"digest": vault.keyed_hash("Dear Bob", "fp"), "item_id": item})
    inter = vault.interactions.insert({"signal": "rating", "time": coarse_time(), "item": item, "value": 4.5,
                                       "metadata": {"device": "phone"}})
    feat = vault.features.insert({"updated": coarse_time(), "name": "occupation", "value": "nurse"})
    draft = vault.drafts.insert({"mode": "compose", "created": coarse_time(), "instruction": "reply to Bob",
                                 "context": "budget", "draft": "Hi Bob", "final": "Hi Bob!", "examples": [item]})
    led = vault.ledger.insert({"time": coarse_time(), "purpose": "recommend", "recipient": "shop.example",
                               "revealed": {"age": 34}, "withheld": ["occupation"], "decision": "ok", "steps": [1, 2]})
    vault.put_blob("adapter:style", os.urandom(5000), {"rank": 8})
    vault.cache.insert({"key": vault.keyed_hash(item, "embedding"), "kind": "embedding",
                        "value": np.ones(4, dtype=np.float32).tobytes()})
    imp = vault.imports.insert({"updated": coarse_time(), "source": "/home/ada/sent.mbox", "state": {"offset": 12}})
    return {"items": item, "interactions": inter, "features": feat, "drafts": draft, "ledger": led,
            "blobs": "adapter:style", "cache": vault.keyed_hash(item, "embedding"), "imports": imp}


# ---------------------------------------------------------------------- records


def test_every_table_round_trips_json_and_bytes(vault):
    keys = fill(vault)
    item = vault.items.get(keys["items"])
    assert item["content"] == "Dear Bob, the budget is late."
    assert item["metadata"] == {"subject": "Budget", "to": ["bob@x.org"]}
    assert item["kind"] == "email" and item["source_type"] == "mbox"
    assert vault.interactions.get(keys["interactions"])["value"] == 4.5
    assert vault.drafts.get(keys["drafts"])["examples"] == [keys["items"]]
    assert vault.ledger.get(keys["ledger"])["revealed"] == {"age": 34}
    assert vault.blob_info("adapter:style") == {"rank": 8} and len(vault.get_blob("adapter:style")) == 5000
    assert np.frombuffer(vault.cache.get(keys["cache"])["value"], dtype=np.float32).tolist() == [1, 1, 1, 1]
    assert vault.imports.get(keys["imports"])["state"] == {"offset": 12}
    assert vault.get_blob("missing") is None and vault.items.get("missing") is None
    # Secret columns hold ciphertext only; clear columns are plain.
    for table, key in keys.items():
        for column in TABLES[table].secret:
            box = raw(vault, table, column, key)
            assert isinstance(box, bytes) and len(box) >= 64 + 28
    assert raw(vault, "items", "kind", keys["items"]) == "email"


def test_same_plaintext_twice_gives_different_ciphertexts(vault):
    a, b = vault.items.insert_all([{"kind": "note", "content": "same"}, {"kind": "note", "content": "same"}])
    assert raw(vault, "items", "content", a) != raw(vault, "items", "content", b)
    vault.items.update(a, {"content": "same"})
    first = raw(vault, "items", "content", a)
    vault.items.update(a, {"content": "same"})
    assert raw(vault, "items", "content", a) != first


def test_ciphertext_length_hides_exact_content_length(vault):
    ids = vault.items.insert_all([{"kind": "note", "content": "x" * n} for n in range(1, 50)])
    assert len({len(raw(vault, "items", "content", i)) for i in ids}) == 1


@pytest.mark.parametrize("table", [t for t in TABLES if TABLES[t].secret])
def test_one_flipped_byte_in_any_ciphertext_is_detected(vault, table):
    keys = fill(vault)
    key = keys[table]
    for column in TABLES[table].secret:
        box = raw(vault, table, column, key)
        for position in (0, len(box) // 2, len(box) - 1):  # nonce, body, tag
            bad = bytearray(box)
            bad[position] ^= 0x40
            set_raw(vault, table, column, key, bytes(bad))
            with pytest.raises(TamperedData):
                getattr(vault, table).get(key)
        set_raw(vault, table, column, key, box)
        assert getattr(vault, table).get(key) is not None


def test_ciphertexts_swapped_between_rows_columns_or_tables_are_detected(vault):
    a, b = vault.items.insert_all([{"kind": "note", "content": "alpha", "metadata": "m-alpha"},
                                   {"kind": "note", "content": "beta", "metadata": "m-beta"}])
    box_a, box_b = raw(vault, "items", "content", a), raw(vault, "items", "content", b)
    # Rows swapped.
    set_raw(vault, "items", "content", a, box_b)
    set_raw(vault, "items", "content", b, box_a)
    for key in (a, b):
        with pytest.raises(TamperedData):
            vault.items.get(key)
    set_raw(vault, "items", "content", a, box_a)
    set_raw(vault, "items", "content", b, box_b)
    # Columns swapped within one row.
    set_raw(vault, "items", "metadata", a, box_a)
    with pytest.raises(TamperedData):
        vault.items.get(a, columns=["metadata"])
    with pytest.raises(TamperedData):  # the row MAC covers every sealed field, read or not
        vault.items.get(a, columns=["content"])
    # Moved to another table under the same key.
    vault.features.insert({"id": a, "name": "n", "value": "v"})
    set_raw(vault, "features", "value", a, box_a)
    with pytest.raises(TamperedData):
        vault.features.get(a)


def test_ciphertext_copied_from_another_users_vault_fails(home):
    with Vault.create("ada", PASS, kdf_seconds=0) as ada, Vault.create("bob", "bob's own passphrase", kdf_seconds=0) as bob:
        ada.items.insert({"id": "same-id", "kind": "note", "content": "ada's"})
        bob.items.insert({"id": "same-id", "kind": "note", "content": "bob's secret"})
        set_raw(ada, "items", "content", "same-id", raw(bob, "items", "content", "same-id"))
        with pytest.raises(TamperedData):
            ada.items.get("same-id")
        assert bob.items.get("same-id")["content"] == "bob's secret"


# ---------------------------------------------------------------------- table API


def test_integer_keys_are_distinct_in_one_batch_and_never_collide(vault):
    keys = vault.interactions.insert_all([{"signal": "click", "time": 1, "item": str(i)} for i in range(5)])
    assert keys == [1, 2, 3, 4, 5]
    keys = vault.interactions.insert_all([{"id": 9, "signal": "click", "time": 1}, {"signal": "read", "time": 2}])
    assert keys == [9, 10]
    assert vault.interactions.count() == 7
    assert vault.interactions.count("signal = ?", ["read"]) == 1


def test_rows_filters_orders_limits_and_decrypts_only_what_is_asked(vault):
    vault.items.insert_all([{"kind": k, "created": t * DAY, "content": f"{k}-{t}", "metadata": {"t": t}}
                            for k, t in [("email", 3), ("note", 1), ("email", 2), ("email", 1)]])
    rows = list(vault.items.rows("kind = ?", ["email"], order_by="created desc", limit=2))
    assert [r["content"] for r in rows] == ["email-3", "email-2"]
    only = next(vault.items.rows("kind = 'note'", columns=["content"]))
    assert only["content"] == "note-1" and "metadata" not in only
    assert len(vault.items.keys("created = ?", [DAY])) == 2


def test_clear_times_are_always_rounded_to_the_day(vault):
    exact = 1_700_000_123.456
    key = vault.items.insert({"kind": "email", "created": exact, "metadata": {"sent": exact}})
    assert raw(vault, "items", "created", key) == 1_699_920_000 == coarse_time(exact)
    assert vault.items.get(key)["metadata"]["sent"] == exact  # the exact time, sealed
    n = vault.interactions.insert({"signal": "click", "time": int(exact)})
    vault.interactions.update(n, {"time": int(exact) + 600})
    assert vault.interactions.get(n)["time"] == 1_699_920_000
    with pytest.raises(VaultError, match="no column"):
        list(vault.items.rows(columns=["nope"]))


def test_update_delete_and_bad_input(vault):
    key = vault.items.insert({"kind": "note", "content": "v1", "metadata": {"a": 1}})
    vault.items.update(key, {"content": "v2", "kind": "draft"})
    row = vault.items.get(key)
    assert (row["content"], row["kind"], row["metadata"]) == ("v2", "draft", {"a": 1})
    vault.items.update(key, {"metadata": None})
    assert vault.items.get(key)["metadata"] is None
    with pytest.raises(VaultError, match="no row"):
        vault.items.update("missing", {"content": "x"})
    with pytest.raises(VaultError, match="key cannot change"):
        vault.items.update(key, {"id": "other"})
    with pytest.raises(VaultError, match="no column"):
        vault.items.insert({"kind": "note", "colour": "red"})
    with pytest.raises(VaultError, match="JSON"):
        vault.items.insert({"kind": "note", "content": object()})
    with pytest.raises(VaultError, match="already exists"):
        vault.items.insert({"id": key, "kind": "note"})
    vault.items.insert({"id": key, "kind": "note", "content": "v3"}, replace=True)
    assert vault.items.get(key)["content"] == "v3"
    assert vault.items.count() == 1
    assert vault.items.delete(key) is True and vault.items.delete(key) is False
    vault.items.insert_all([{"kind": "note"}, {"kind": "note"}, {"kind": "email"}])
    assert vault.items.delete_where("kind = ?", ["note"]) == 2 and vault.items.count() == 1


def test_transaction_is_all_or_nothing_and_nests_as_savepoints(vault):
    with pytest.raises(RuntimeError):
        with vault.transaction():
            vault.items.insert({"kind": "note", "content": "lost"})
            vault.put_blob("b", b"lost too")
            raise RuntimeError("boom")
    assert vault.items.count() == 0 and vault.get_blob("b") is None
    with vault.transaction():
        vault.items.insert({"id": "kept", "kind": "note"})
        with pytest.raises(RuntimeError):
            with vault.transaction():
                vault.items.insert({"id": "inner", "kind": "note"})
                raise RuntimeError("inner only")
    assert vault.items.keys() == ["kept"]


def test_threads_share_one_vault_safely(vault):
    errors = []

    def writer(n):
        try:
            for i in range(30):
                with vault.transaction():
                    vault.items.insert({"kind": f"t{n}", "content": i})
                    vault.interactions.insert({"signal": "read", "time": n, "item": str(i)})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert vault.items.count() == 120 and vault.interactions.count() == 120
    assert sorted(vault.interactions.keys()) == list(range(1, 121))


def test_keyed_hash_is_stable_purpose_bound_and_per_vault(home, vault):
    h = vault.keyed_hash("Dear Bob", "fingerprint")
    assert h == vault.keyed_hash(b"Dear Bob", "fingerprint")
    assert h != vault.keyed_hash("Dear Bob", "cache") and len(h) == 64
    with Vault.create("bob", PASS, kdf_seconds=0) as bob:
        assert bob.keyed_hash("Dear Bob", "fingerprint") != h


def test_closed_vault_refuses_work(home):
    v = Vault.create("ada", PASS, kdf_seconds=0)
    v.close()
    v.close()  # twice is fine
    with pytest.raises((VaultError, sqlite3.ProgrammingError)):
        v.items.insert({"kind": "note", "content": "x"})
    assert "closed" in repr(v)


# ---------------------------------------------------------------------- passphrases and files


def test_wrong_passphrase_is_a_clear_error_and_writes_nothing(home):
    with Vault.create("ada", PASS, kdf_seconds=0) as v:
        v.items.insert({"kind": "note", "content": "hello"})
    folder = users_root(home) / "ada"
    before = snapshot(folder)
    with pytest.raises(WrongPassphrase, match="wrong passphrase for user 'ada'"):
        Vault.open("ada", "not the passphrase")
    assert snapshot(folder) == before  # same files, same bytes, same mtimes: no -wal, no -shm
    with Vault.open("ada", PASS) as v:
        assert next(v.items.rows())["content"] == "hello"


def test_files_are_private_to_the_os_user(vault, home):
    folder = users_root(home) / "ada"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "vault.db").stat().st_mode) == 0o600


def test_opening_what_is_not_a_vault_gives_a_clear_error(home):
    folder = users_root(home) / "eve"
    folder.mkdir(parents=True)
    db = folder / "vault.db"
    for content in (b"this is a text file, not a database" * 50, b""):
        db.write_bytes(content)
        with pytest.raises(VaultError, match="not a localpers vault"):
            Vault.open("eve", PASS)
        assert db.read_bytes() == content
    db.unlink()
    conn = sqlite3.connect(db)
    conn.execute("create table notes (x)")
    conn.commit()
    conn.close()
    with pytest.raises(VaultError, match="not a localpers vault"):
        Vault.open("eve", PASS)
    with pytest.raises(VaultError, match="no vault for user 'nobody'"):
        Vault.open("nobody", PASS)
    with pytest.raises(VaultError, match="invalid user name"):
        Vault.open("../etc", PASS)


def test_a_vault_moved_to_another_users_folder_is_refused(home):
    Vault.create("ada", PASS, kdf_seconds=0).close()
    (users_root(home) / "bob").mkdir()
    (users_root(home) / "bob" / "vault.db").write_bytes((users_root(home) / "ada" / "vault.db").read_bytes())
    with pytest.raises(VaultError, match="holds the vault of 'ada'"):
        Vault.open("bob", PASS)


def test_damaged_kdf_parameters_are_refused_before_any_work(home):
    Vault.create("ada", PASS, kdf_seconds=0).close()
    path = users_root(home) / "ada" / "vault.db"
    conn = sqlite3.connect(path)
    kdf = json.loads(conn.execute("select value from meta where key='kdf'").fetchone()[0])
    kdf["memory_kib"] = 1 << 40  # would exhaust memory if trusted
    conn.execute("update meta set value=? where key='kdf'", [json.dumps(kdf)])
    conn.commit()
    conn.close()
    with pytest.raises(VaultError, match="refusing Argon2id parameters"):
        Vault.open("ada", PASS)


def test_change_passphrase_rewraps_without_reencrypting(home):
    with Vault.create("ada", PASS, kdf_seconds=0) as v:
        key = v.items.insert({"kind": "note", "content": "kept"})
        box = raw(v, "items", "content", key)
        v.change_passphrase("a brand new passphrase", kdf_seconds=0)
        assert raw(v, "items", "content", key) == box
    with pytest.raises(WrongPassphrase):
        Vault.open("ada", PASS)
    with Vault.open("ada", "a brand new passphrase") as v:
        assert v.items.get(key)["content"] == "kept"
        with pytest.raises(VaultError):
            v.change_passphrase("")


def test_kdf_is_calibrated_and_stored_with_the_vault(home):
    with Vault.create("ada", PASS, kdf_seconds=0.3) as v:
        params = json.loads(v.meta("kdf"))
    assert params["memory_kib"] >= 19 * 1024 and params["iterations"] >= 2 and params["lanes"] == 1
    with Vault.create("bob", PASS, kdf_seconds=0) as v:
        assert json.loads(v.meta("kdf"))["memory_kib"] == 19 * 1024


def test_several_users_each_with_their_own_passphrase(home):
    with Vault.create("ada", "ada's passphrase", kdf_seconds=0) as ada:
        ada.items.insert({"kind": "note", "content": "ada's secret"})
    with Vault.create("bob", "bob's passphrase", kdf_seconds=0) as bob:
        bob.items.insert({"kind": "note", "content": "bob's secret"})
    assert Vault.users() == ["ada", "bob"]
    with pytest.raises(WrongPassphrase):
        Vault.open("ada", "bob's passphrase")
    with Vault.open("bob", "bob's passphrase") as bob:
        assert [r["content"] for r in bob.items.rows()] == ["bob's secret"]
    with pytest.raises(VaultError, match="already exists"):
        Vault.create("ada", "x", kdf_seconds=0)


def test_require_user_opens_demo_or_asks_for_a_passphrase(home):
    Vault.create("ada", PASS, kdf_seconds=0).close()
    with pytest.raises(LocalpersError, match="passphrase is needed"):
        open_vault("ada", None)
    open_vault("ada", PASS).close()


# ---------------------------------------------------------------------- several processes, one writer at a time


def test_two_opens_share_the_vault_and_their_writes_queue(home, monkeypatch):
    notices = []
    monkeypatch.setattr(vault_module, "wait_notice", notices.append)
    monkeypatch.setattr(vault_module, "PROCESS_NAME", "the app")
    app = Vault.create("ada", PASS, kdf_seconds=0)
    cli = Vault.open("ada", PASS)  # as a second process would (tests/test_parallel.py does it with 12 processes)
    second = threading.Thread(target=lambda: cli.items.insert({"kind": "note", "content": "from the CLI"}))
    with app.transaction():
        app.items.insert({"kind": "note", "content": "from the app"})
        second.start()
        second.join(1.0)
        assert second.is_alive()  # the CLI's write waits for the app's transaction...
        assert cli.items.count() == 0  # ...while its reads do not wait, and see the last commit
    second.join(30)
    assert not second.is_alive()
    assert notices == [f"waiting for the vault of 'ada', held by the app, pid {os.getpid()}..."]
    assert sorted(r["content"] for r in app.items.rows()) == sorted(r["content"] for r in cli.items.rows()) == [
        "from the CLI", "from the app"]
    # Erasing needs the vault to itself.
    with pytest.raises(VaultLocked, match="open in another localpers process"):
        app.erase_user()
    with pytest.raises(VaultLocked, match="open in another localpers process"):
        Vault.erase("ada")
    assert app.items.count() == 2  # a refused erase leaves the vault open and whole
    cli.close()
    app.erase_user()
    assert Vault.users() == []


def test_a_write_waits_only_so_long(home, monkeypatch):
    monkeypatch.setattr(vault_module, "wait_notice", lambda message: None)
    monkeypatch.setattr(vault_module, "WRITE_WAIT", 0.5)
    monkeypatch.setattr(vault_module, "PROCESS_NAME", "localpers")  # an app test earlier in this process renames it
    with Vault.create("ada", PASS, kdf_seconds=0) as app, Vault.open("ada", PASS) as cli:
        with app.transaction():
            with pytest.raises(VaultLocked, match=r"stayed busy for 0 s \(held by localpers, pid \d+\)"):
                cli.items.insert({"kind": "note", "content": "too late"})
        assert cli.items.insert({"kind": "note", "content": "in time"})
        assert [r["content"] for r in app.items.rows()] == ["in time"]


# ---------------------------------------------------------------------- schema versions


def test_migrations_upgrade_atomically(home, monkeypatch):
    with Vault.create("ada", PASS, kdf_seconds=0) as v:
        key = v.items.insert({"kind": "note", "content": "before"})

    def add_tags(vault):
        vault.db.conn.execute("alter table items add column tags blob")

    def broken(vault):
        vault.db.conn.execute("alter table items add column half blob")
        raise RuntimeError("migration bug")

    now = vault_module.SCHEMA_VERSION
    monkeypatch.setattr(vault_module, "SCHEMA_VERSION", now + 2)
    monkeypatch.setattr(vault_module, "MIGRATIONS", {now: add_tags, now + 1: broken})
    with pytest.raises(RuntimeError, match="migration bug"):
        Vault.open("ada", PASS)
    # Step 1 committed, step 2 rolled back entirely; the vault still opens one version up.
    monkeypatch.setattr(vault_module, "SCHEMA_VERSION", now + 1)
    with Vault.open("ada", PASS) as v:
        assert v.meta("schema_version") == str(now + 1)
        columns = {c[1] for c in v.db.conn.execute("pragma table_info(items)")}
        assert "tags" in columns and "half" not in columns
        assert v.items.get(key)["content"] == "before"
    monkeypatch.setattr(vault_module, "SCHEMA_VERSION", now)
    with pytest.raises(VaultError, match="newer localpers"):
        Vault.open("ada", PASS)


# ---------------------------------------------------------------------- blobs as files


def test_blob_file_is_in_memory_and_readable_by_native_code(vault):
    from localpers.index import _usearch_index  # usearch loaded the way localpers loads it (after ONNX Runtime)

    Index = _usearch_index()
    index = Index(ndim=8, metric="cos")
    index.add(np.arange(20, dtype=np.uint64), np.random.default_rng(0).random((20, 8), dtype=np.float32))
    vault.put_blob("raw-index", bytes(index.save()))
    with vault.blob_file("raw-index") as path:
        if sys.platform.startswith("linux"):
            assert str(path).startswith("/proc/") and os.readlink(path).startswith("/memfd:")
        restored = Index.restore(str(path))  # usearch's C++ reads the path itself
        assert len(restored) == 20
    assert not path.exists()
    with pytest.raises(VaultError, match="no blob named"):
        with vault.blob_file("nope"):
            pass


def test_blob_file_without_memfd_uses_a_private_temp_file_removed_after(vault, monkeypatch, tmp_path):
    monkeypatch.delattr(os, "memfd_create", raising=False)
    monkeypatch.setattr(os.path, "isdir", lambda p: False if p == "/dev/shm" else os.path.exists(p))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    vault.put_blob("adapter", b"weights" * 100)
    with vault.blob_file("adapter") as path:
        assert path.read_bytes() == b"weights" * 100
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert path.parent.parent == tmp_path
    assert not path.exists() and not path.parent.exists()
    with plaintext_file(b"x") as p:
        assert p.read_bytes() == b"x"


# ---------------------------------------------------------------------- erasing


def test_erase_item_removes_everything_pointing_at_it_and_every_trace(vault, home):
    keys = fill(vault)
    item = keys["items"]
    other = vault.items.insert({"kind": "note", "content": "stays"})
    vault.interactions.insert({"signal": "read", "time": 1, "item": other})
    secret_boxes = [raw(vault, "items", c, item) for c in ("content", "metadata", "source")]
    secret_boxes.append(raw(vault, "interactions", "value", keys["interactions"]))
    assert vault.erase_item(item, cache_keys=[keys["cache"]]) is True
    assert vault.items.get(item) is None and vault.items.get(other) is not None
    assert vault.fingerprints.count() == 0 and vault.cache.count() == 0
    assert [r["item"] for r in vault.interactions.rows()] == [other]
    data = files_bytes(users_root(home) / "ada")
    assert not [b for b in secret_boxes if b[12:44] in data]
    assert vault.erase_item(item) is False


def test_erase_leaves_no_stale_copy_after_heavy_churn(vault, home):
    """B-tree rebalancing can leave a stale copy of a row that was only *moved*; erase must catch those too."""
    rng = np.random.default_rng(3)
    live: set[str] = set()
    for _ in range(4):  # deterministic ids, so the page layout (and its stale copies) is reproducible
        rows = [{"id": rng.bytes(16).hex(), "kind": "note", "content": "x" * int(n)} for n in rng.integers(10, 1500, 800)]
        live |= set(vault.items.insert_all(rows))
        with vault.transaction():
            for key in rng.choice(sorted(live), 320, replace=False):
                vault.items.delete(key)
                live.discard(key)
            for key in rng.choice(sorted(live), 160, replace=False):
                vault.items.update(key, {"content": "z" * int(rng.integers(10, 750))})
    boxes = {key: raw(vault, "items", "content", key) for key in live}
    vault.db.conn.execute("pragma wal_checkpoint(TRUNCATE)")
    data = files_bytes(users_root(home) / "ada")
    stale = [key for key, box in boxes.items() if data.count(box[12:44]) > 1]  # live rows with a stale copy
    assert stale, "no stale copies arose: the test lost its point (SQLite's page layout changed?)"
    gone = sorted(stale) + sorted(live - set(stale))[::2]
    assert vault.erase_items(gone) == len(gone)
    data = files_bytes(users_root(home) / "ada")
    assert not [key for key in gone if boxes[key][12:44] in data]
    assert vault.items.count() == len(live) - len(gone)
    kept = sorted(live - set(gone))
    assert [vault.items.get(k)["content"][0] for k in kept[:100]] and all(boxes[k][12:44] in data for k in kept)


def test_erase_user_removes_the_folder_and_keeps_others(home):
    Vault.create("bob", "bob's passphrase", kdf_seconds=0).close()
    v = Vault.create("ada", PASS, kdf_seconds=0)
    fill(v)
    v.erase_user()
    assert not (users_root(home) / "ada").exists()
    assert Vault.users() == ["bob"]
    Vault.create("ada", "a new start", kdf_seconds=0).close()  # the name is free again
    # Without the passphrase (forgotten), but not while someone has it open.
    held = Vault.open("ada", "a new start")
    with pytest.raises(VaultLocked):
        Vault.erase("ada")
    held.close()
    Vault.erase("ada")
    assert Vault.users() == ["bob"]
    with pytest.raises(VaultError):
        Vault.erase("ada")


def test_stats_count_rows_and_bytes(vault):
    fill(vault)
    stats = vault.stats()
    assert stats["tables"]["items"] == 1 and stats["items_by_kind"] == {"email": 1}
    assert stats["bytes"] > 0 and "vault.db" in stats["files"] and stats["user"] == "ada"


# ---------------------------------------------------------------------- OS keyring


def unlock_secrets(backend) -> dict:
    """The keyring's unlock secrets (besides them, each vault mirrors its change counter there)."""
    return {k: v for k, v in backend.store.items() if not k[1].endswith("#counter")}


def test_keyring_unlock_round_trip(home, os_keyring):
    with Vault.create("ada", PASS, kdf_seconds=0) as v:
        v.items.insert({"kind": "note", "content": "via keyring"})
        assert not Vault.keyring_unlocks("ada")
        v.enable_keyring()
        assert v.keyring_enabled
    (secret,) = unlock_secrets(os_keyring).values()
    assert PASS not in secret  # a random secret, never the passphrase
    assert PASS.encode() not in files_bytes(users_root(home))
    assert Vault.keyring_unlocks("ada")
    with Vault.open("ada") as v:
        assert next(v.items.rows())["content"] == "via keyring"
    with open_vault("ada", None) as v:
        assert v.user == "ada"
    with Vault.open("ada", PASS) as v:  # the passphrase still works
        v.disable_keyring()
    assert os_keyring.store == {} and not Vault.keyring_unlocks("ada")
    with pytest.raises(VaultError, match="keyring unlock is not enabled"):
        Vault.open("ada")


def test_keyring_secret_lost_or_wrong_falls_back_to_the_passphrase(home, os_keyring):
    with Vault.create("ada", PASS, kdf_seconds=0) as v:
        v.enable_keyring()
    (account,) = unlock_secrets(os_keyring)
    os_keyring.store[account] = os.urandom(32).hex()
    with pytest.raises(WrongPassphrase, match="keyring"):
        Vault.open("ada")
    del os_keyring.store[account]
    with pytest.raises(VaultError, match="no unlock secret"):
        Vault.open("ada")
    with Vault.open("ada", PASS) as v:
        v.enable_keyring()
        v.erase_user()
    assert os_keyring.store == {}


def test_without_a_keyring_backend_enabling_says_so(vault, monkeypatch):
    monkeypatch.setattr(vault_module, "keyring_module", lambda: None)
    with pytest.raises(VaultError, match="no OS keyring is available"):
        vault.enable_keyring()
    assert not vault.keyring_enabled


def test_cli_keyring_on_then_commands_need_no_passphrase(home, os_keyring):
    from click.testing import CliRunner

    from localpers.cli import main

    runner = CliRunner()
    env = {"LOCALPERS_PASSPHRASE": PASS}
    assert runner.invoke(main, ["user", "create", "ada", "--kdf-seconds", "0"], env=env).exit_code == 0
    result = runner.invoke(main, ["user", "keyring", "on", "-u", "ada"], env=env)
    assert result.exit_code == 0 and "now unlocks ada" in result.output
    # No passphrase in the environment and none typed (empty stdin): the keyring unlocks it.
    result = runner.invoke(main, ["user", "backup", str(home / "ada.lpbackup"), "-u", "ada"], input="")
    assert result.exit_code == 0 and "encrypted backup" in result.output, result.output
    assert "Passphrase" not in result.output
    result = runner.invoke(main, ["user", "keyring", "off", "-u", "ada"])
    assert result.exit_code == 0 and os_keyring.store == {}
    result = runner.invoke(main, ["user", "backup", str(home / "b.lpbackup"), "-u", "ada"], input="wrong one\n")
    assert "Passphrase for ada" in result.output and result.exit_code == 1

"""Vault integrity: fixed clear vocabularies, row MACs, sealed row sums, rollback, damaged meta, file modes, rekey.

Each test first does what an attacker (or a damaged disk) would do to the file with
plain sqlite3 or byte edits, then checks that localpers notices with a one-line
error, or, where the module docstring says something cannot be detected, that it
indeed is not.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localpers.vault import store as vault_module
from localpers.errors import LocalpersError, TamperedData, VaultError, WrongPassphrase
from localpers.vault import OTHER, TABLES, Vault, coarse_time, restore_backup, write_backup

PASS = "integrity test passphrase"
FIXTURE_V1 = Path(__file__).parent / "data" / "vault_schema1.db"  # made by localpers before schema 2
FIXTURE_V1_PASS = "schema one passphrase"


def vault_file(home: Path, user: str = "ada") -> Path:
    return home / "users" / user / "vault.db"


def edit(path: Path, sql: str, params: list | tuple = ()) -> int:
    """Change the file behind localpers' back (the vault must be closed)."""
    conn = sqlite3.connect(path)
    try:
        n = conn.execute(sql, list(params)).rowcount
        conn.commit()
    finally:
        conn.close()
    return n


def one_line(exc: BaseException) -> bool:
    text = str(exc)
    return bool(text) and "\n" not in text and "Traceback" not in text


@pytest.fixture
def ada(home):
    with Vault.create("ada", PASS, kdf_seconds=0) as v:
        ids = v.items.insert_all([{"kind": "note", "created": coarse_time(), "content": f"note {i}"} for i in range(5)])
        v.interactions.insert({"signal": "like", "time": coarse_time(), "item": "movie:1"})
    return ids


# ---------------------------------------------------------------------- clear vocabularies


def test_free_text_in_clear_columns_is_sealed_and_given_back(home):
    with Vault.create("ada", PASS, kdf_seconds=0) as v:
        item = v.items.insert({"kind": "Diary of CANARY-K1", "source_type": "my-own-source CANARY-S1",
                               "content": "x"})
        event = v.interactions.insert({"signal": "binge CANARY-G1", "time": coarse_time(), "item": "m:1"})
        draft = v.drafts.insert({"mode": "sonnet CANARY-M1", "instruction": "i"})
        assert v.items.get(item)["kind"] == "Diary of CANARY-K1"
        assert v.items.get(item)["source_type"] == "my-own-source CANARY-S1"
        assert v.interactions.get(event)["signal"] == "binge CANARY-G1"
        assert v.drafts.get(draft)["mode"] == "sonnet CANARY-M1"
        assert v.items.count("kind = ?", [OTHER]) == 1  # the clear column only says "other"
        v.items.update(item, {"content": "y"})  # a rewrite keeps the real kind
        assert v.items.get(item)["kind"] == "Diary of CANARY-K1"
    data = b"".join(p.read_bytes() for p in vault_file(home).parent.iterdir())
    for canary in ("CANARY-K1", "CANARY-S1", "CANARY-G1", "CANARY-M1"):
        assert canary.encode() not in data


def test_every_clear_text_column_has_a_vocabulary():
    for spec in TABLES.values():
        for column, typ in spec.clear.items():
            if typ is str and column not in ("item_id",):  # item_id: a random id chosen by the code
                assert column in spec.vocab, f"{spec.name}.{column} is clear text without a word list"


# ---------------------------------------------------------------------- rows and tables


def test_changed_clear_column_fails_the_row_mac(home, ada):
    edit(vault_file(home), "update items set kind = 'email' where id = ?", [ada[0]])
    edit(vault_file(home), "update items set created = created - 86400 where id = ?", [ada[1]])
    with Vault.open("ada", PASS) as v:  # counts and sums hold (MACs untouched): the rows fail when read
        for key in ada[:2]:
            with pytest.raises(TamperedData, match="clear columns") as info:
                v.items.get(key, columns=[])
            assert one_line(info.value)
        assert v.items.get(ada[2])["content"] == "note 2"


def test_deleted_row_is_detected_at_open(home, ada):
    assert edit(vault_file(home), "delete from items where id = ?", [ada[3]]) == 1
    with pytest.raises(TamperedData, match=r"items .*1 row\(s\) missing") as info:
        Vault.open("ada", PASS)
    assert one_line(info.value)


def test_copied_row_mac_or_added_row_is_detected_at_open(home, ada):
    path = vault_file(home)
    # Delete one row and fix the count by duplicating another row under a new key: the sum gives it away.
    edit(path, "delete from items where id = ?", [ada[0]])
    edit(path, "insert into items (id, source_type, kind, created, content, metadata, source, _real, _mac) "
               "select 'forged', source_type, kind, created, content, metadata, source, _real, _mac "
               "from items where id = ?", [ada[1]])
    with pytest.raises(TamperedData, match="items"):
        Vault.open("ada", PASS)


def test_row_swapped_for_its_older_version_is_detected(home, ada):
    path = vault_file(home)
    old = sqlite3.connect(path).execute("select * from items where id = ?", [ada[0]]).fetchone()
    with Vault.open("ada", PASS) as v:
        v.items.update(ada[0], {"content": "edited later"})
    conn = sqlite3.connect(path)
    conn.execute("delete from items where id = ?", [ada[0]])
    conn.execute(f"insert into items values ({', '.join('?' * len(old))})", old)
    conn.commit()
    conn.close()
    with pytest.raises(TamperedData, match="rows replaced"):
        Vault.open("ada", PASS)


def test_meta_value_changed_is_detected(home, ada):
    edit(vault_file(home), "update meta set value = '1' where key = 'demo'")
    with pytest.raises(TamperedData, match="meta"):
        Vault.open("ada", PASS)


def test_integrity_record_removed_is_detected(home, ada):
    edit(vault_file(home), "delete from meta where key = 'integrity'")
    with pytest.raises(TamperedData, match="no integrity record"):
        Vault.open("ada", PASS)


def test_transactions_undone_leave_the_sums_right(home):
    with Vault.create("ada", PASS, kdf_seconds=0) as v:
        v.items.insert({"id": "a", "kind": "note", "content": "a"})
        with pytest.raises(RuntimeError):
            with v.transaction():
                v.items.insert({"id": "b", "kind": "note"})
                with pytest.raises(VaultError):
                    with v.transaction():
                        v.items.delete("a")
                        v.items.insert({"id": "b", "kind": "note"})  # duplicate key: savepoint undone
                raise RuntimeError("undo all")
        v.items.insert_all([{"id": "c", "kind": "note"}, {"id": "c", "kind": "email"}], replace=True)
        v.items.delete_where("kind = ?", ["nothing"])
    with Vault.open("ada", PASS) as v:
        assert sorted(v.items.keys()) == ["a", "c"] and v.items.get("c")["kind"] == "email"


# ---------------------------------------------------------------------- rollback


def test_rolled_back_file_is_detected_with_the_keyring(home, ada, os_keyring, tmp_path):
    with Vault.open("ada", PASS) as v:
        v.enable_keyring()
    old_copy = tmp_path / "old.db"
    shutil.copy(vault_file(home), old_copy)
    with Vault.open("ada", PASS) as v:
        v.items.insert({"kind": "note", "content": "newer"})
    shutil.copy(old_copy, vault_file(home))
    with pytest.raises(TamperedData, match="rolled back") as info:
        Vault.open("ada", PASS)
    assert one_line(info.value)


def test_restoring_a_backup_is_not_a_rollback(home, ada, os_keyring, tmp_path):
    with Vault.open("ada", PASS) as v:
        v.enable_keyring()
        write_backup(v, tmp_path / "a.lpbackup")
        v.items.insert({"kind": "note", "content": "after the backup"})
    restore_backup(tmp_path / "a.lpbackup", PASS, overwrite=True).close()
    with Vault.open("ada", PASS) as v:
        assert v.items.count() == 5


def test_without_the_keyring_a_whole_old_copy_opens(home, ada, tmp_path):
    """Documented as undetectable: nothing outside the file remembers how new it was."""
    old_copy = tmp_path / "old.db"
    shutil.copy(vault_file(home), old_copy)
    with Vault.open("ada", PASS) as v:
        v.items.insert({"kind": "note", "content": "newer"})
    shutil.copy(old_copy, vault_file(home))
    with Vault.open("ada", PASS) as v:
        assert v.items.count() == 5


# ---------------------------------------------------------------------- meta values and KDF bounds


@pytest.mark.parametrize("key, value, message", [
    ("wrapped_key", "not hex at all", "wrapped_key"),
    ("kdf", "{not json", "kdf"),
    ("kdf", "[1, 2]", "kdf"),
    ("key_version", "one", "key_version"),
    ("schema_version", "2.0", "schema_version"),
    ("kdf", None, "Argon2id"),  # filled in below: 1 GiB x 1,000 passes
])
def test_damaged_meta_row_gives_one_line(home, ada, key, value, message):
    if value is None:
        kdf = json.loads(sqlite3.connect(vault_file(home)).execute("select value from meta where key='kdf'").fetchone()[0])
        value = json.dumps({**kdf, "memory_kib": 1 << 20, "iterations": 1000})
    edit(vault_file(home), "update meta set value = ? where key = ?", [value, key])
    start = time.monotonic()
    with pytest.raises(VaultError, match=message) as info:
        Vault.open("ada", PASS)
    assert one_line(info.value) and time.monotonic() - start < 5


META_KEYS = ["format", "user", "vault_id", "schema_version", "key_version", "kdf", "wrapped_key", "demo", "created",
             "integrity"]
values = st.one_of(st.none(), st.text(max_size=40), st.integers(-2**63, 2**63 - 1), st.binary(max_size=40),
                   st.floats(allow_nan=True), st.sampled_from(["", "0", "3", "99999999999999999999", "{}", "[]",
                                                               '{"salt": "00", "memory_kib": 1}', "null"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(META_KEYS), value=values, mode=st.sampled_from(["set", "delete", "mutate"]))
def test_any_meta_mutation_gives_one_line_or_opens(tmp_path_factory, key, value, mode):
    home = tmp_path_factory.mktemp("meta")
    with Vault.create("ada", PASS, home=home, kdf_seconds=0) as v:
        v.items.insert({"id": "x", "kind": "note", "content": "kept"})
    path = home / "ada" / "vault.db"
    if mode == "delete":
        edit(path, "delete from meta where key = ?", [key])
    elif mode == "mutate":  # one changed character in the real value
        (old,) = sqlite3.connect(path).execute("select value from meta where key = ?", [key]).fetchone()
        pos = len(str(value)) % max(1, len(old))
        edit(path, "update meta set value = ? where key = ?", [old[:pos] + ("0" if old[pos:pos + 1] != "0" else "1")
                                                                 + old[pos + 1:], key])
    else:
        edit(path, "update meta set value = ? where key = ?", [value, key])
    start = time.monotonic()
    try:
        with Vault.open("ada", PASS, home=home) as v:
            assert v.items.get("x")["content"] == "kept"
    except LocalpersError as exc:
        assert one_line(exc), repr(exc)
    assert time.monotonic() - start < 10


def test_damaged_btree_pages_give_one_line(home, ada):
    with Vault.open("ada", PASS) as v:
        v.items.insert_all([{"kind": "note", "content": "filler " * 200} for _ in range(200)])
    path = vault_file(home)
    data = bytearray(path.read_bytes())
    page = 4096
    for n in range(3, len(data) // page, 3):  # every third page after the first few, meta's page spared
        data[n * page + 8:n * page + 200] = os.urandom(192)
    path.write_bytes(bytes(data))
    with pytest.raises(LocalpersError) as info:
        with Vault.open("ada", PASS) as v:
            list(v.items.rows())
    assert one_line(info.value)


# ---------------------------------------------------------------------- migration


def test_schema_1_vault_is_migrated(home):
    folder = home / "users" / "ada"
    folder.mkdir(parents=True)
    shutil.copy(FIXTURE_V1, folder / "vault.db")
    with Vault.open("ada", FIXTURE_V1_PASS) as v:
        assert v.meta("schema_version") == str(vault_module.SCHEMA_VERSION)
        assert v.items.get("item-a")["kind"] == "CANARY-KIND-7f3a"
        assert v.items.get("item-a")["metadata"] == {"x": 1}
        assert v.items.get("item-b")["kind"] == "email"
        signals = sorted(r["signal"] for r in v.interactions.rows())
        assert signals == ["CANARY-SIGNAL-9b2c", "rating"]
        assert v.get_blob("history-index") == b"index-bytes" * 10
        columns = {c[1] for c in v.db.conn.execute("pragma table_info(blobs)")}
        assert "size" not in columns
        assert v.cache.count("key like 'emb:all-minilm%'") == 0 and v.cache.get("instruction:abc")["value"] == {"text": "x"}
        assert v.db.conn.execute("select count(*) from interactions where value is null").fetchone()[0] == 0
    with Vault.open("ada", FIXTURE_V1_PASS) as v:  # and it opens again, integrity checked
        assert v.items.count() == 2
    data = b"".join(p.read_bytes() for p in folder.iterdir())
    assert b"CANARY-KIND" not in data and b"CANARY-SIGNAL" not in data and b"all-minilm" not in data


# ---------------------------------------------------------------------- file modes


def test_files_and_folders_are_private_under_umask_000(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o777)
    os.chmod(home, 0o777)
    code = ("import os; os.umask(0)\n"
            "from localpers.vault import Vault\nfrom localpers.paths import Config\nfrom localpers.catalog import Catalog\n"
            "Config().save()\nVault.create('ada', 'umask passphrase', kdf_seconds=0).close()\n"
            "Catalog('films').db['items'].count\n")
    env = {**os.environ, "LOCALPERS_HOME": str(home)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for path in [home, *home.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path.relative_to(tmp_path)} is {oct(mode)}"


# ---------------------------------------------------------------------- rekey


def test_rekey_reencrypts_under_a_new_key(home, ada, tmp_path):
    old_copy = tmp_path / "old.db"
    shutil.copy(vault_file(home), old_copy)
    with Vault.open("ada", PASS) as v:
        old_wrapped = v.meta("wrapped_key")
        with pytest.raises(WrongPassphrase):
            v.rekey("not the passphrase", kdf_seconds=0)
        seen = []
        v.rekey(PASS, kdf_seconds=0, progress=lambda done, total, table: seen.append((done, total)))
        assert v.key_version == 2 and v.meta("wrapped_key") != old_wrapped
        assert seen[-1][0] == seen[-1][1] == 6
        v.items.insert({"id": "after", "kind": "note", "content": "written after the rekey"})
    assert not (vault_file(home).parent / "vault.db.rekeying").exists()
    with Vault.open("ada", PASS) as v:
        assert sorted(r["content"] for r in v.items.rows())[:2] == ["note 0", "note 1"]
        assert v.items.get("after")["content"] == "written after the rekey"
        new_box = v.db.conn.execute("select content from items where id = 'after'").fetchone()[0]
    # The old file and the old passphrase no longer open what is written now.
    shutil.copy(old_copy, tmp_path / "old-vault")
    (tmp_path / "old-home" / "ada").mkdir(parents=True)
    shutil.copy(old_copy, tmp_path / "old-home" / "ada" / "vault.db")
    with Vault.open("ada", PASS, home=tmp_path / "old-home") as old:
        with pytest.raises(TamperedData):
            old.unseal(new_box, "items", "content", "after")


def test_rekey_interrupted_leaves_the_old_vault(home, ada, monkeypatch):
    with Vault.open("ada", PASS) as v:
        def boom(done, total, table):
            if done > 3:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            v.rekey(PASS, kdf_seconds=0, progress=boom)
        assert v.key_version == 1 and v.items.count() == 5
    assert not (vault_file(home).parent / "vault.db.rekeying").exists()
    with Vault.open("ada", PASS) as v:
        assert v.items.count() == 5


def test_cli_rekey_and_passwd_help(home, ada):
    from click.testing import CliRunner

    from localpers.cli import main

    runner = CliRunner()
    help_text = runner.invoke(main, ["user", "passwd", "--help"]).output
    assert "rewrapped" in help_text and "user rekey" in help_text
    result = runner.invoke(main, ["user", "rekey", "-u", "ada", "--kdf-seconds", "0"], env={"LOCALPERS_PASSPHRASE": PASS})
    assert result.exit_code == 0, result.output
    assert "new data key" in result.output
    with Vault.open("ada", PASS) as v:
        assert v.key_version == 2 and v.items.count() == 5

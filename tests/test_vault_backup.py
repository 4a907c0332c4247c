"""Encrypted backups that restore elsewhere, the explicit plaintext export, and the `localpers user` commands."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from localpers.vault import backup as backup_module
from localpers.errors import TamperedData, VaultError, VaultLocked, WrongPassphrase
from localpers.vault import Vault, export_jsonl, restore_backup, write_backup

PASS = "correct horse battery staple"


def make_vault(home: Path) -> Vault:
    vault = Vault.create("ada", PASS, kdf_seconds=0)
    vault.items.insert_all([{"id": f"i{n}", "kind": "note", "content": f"note {n}", "metadata": {"n": n}}
                            for n in range(200)])
    vault.interactions.insert({"signal": "rating", "time": 1, "item": "i3", "value": 4})
    vault.put_blob("adapter:style", os.urandom(3 << 20), {"rank": 8})  # several 1 MiB chunks
    return vault


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_backup_restores_on_another_machine_with_the_passphrase(home, tmp_path):
    vault = make_vault(home)
    blob = vault.get_blob("adapter:style")
    path = write_backup(vault, tmp_path / "ada.lpbackup")
    vault.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = path.read_bytes()
    assert b"note 1" not in data and blob[1000:1032] not in data and b"adapter:style" not in data
    header = backup_module.read_header(path)
    assert header["user"] == "ada" and header["chunks"] >= 3
    other = tmp_path / "other-machine" / "users"  # a separate data directory, as on another computer
    with restore_backup(path, PASS, home=other) as restored:
        assert restored.items.count() == 200 and restored.items.get("i7")["metadata"] == {"n": 7}
        assert restored.get_blob("adapter:style") == blob
        assert next(restored.interactions.rows())["value"] == 4
        restored.items.insert({"kind": "note", "content": "written after restore"})
    with Vault.open("ada", PASS, home=other) as again:
        assert again.items.count() == 201


def test_restore_with_wrong_passphrase_writes_nothing(home, tmp_path):
    with make_vault(home) as vault:
        path = write_backup(vault, tmp_path / "ada.lpbackup")
    other = tmp_path / "other" / "users"
    with pytest.raises(WrongPassphrase, match="backup of 'ada'"):
        restore_backup(path, "wrong", home=other)
    assert not other.exists()


def test_damaged_or_foreign_backups_are_refused(home, tmp_path):
    with make_vault(home) as vault:
        path = write_backup(vault, tmp_path / "ada.lpbackup")
    good = path.read_bytes()
    other = tmp_path / "other" / "users"
    header_end = len(backup_module.MAGIC) + 4 + int.from_bytes(good[16:20], "big")
    for name, damaged in {
        "flipped byte in chunk 0": good[:header_end + 100] + bytes([good[header_end + 100] ^ 1]) + good[header_end + 101:],
        "flipped last byte": good[:-1] + bytes([good[-1] ^ 1]),
        "truncated": good[:-1000],
        "extra bytes": good + b"\0",
    }.items():
        bad = tmp_path / f"{name}.lpbackup"
        bad.write_bytes(damaged)
        with pytest.raises(TamperedData):
            restore_backup(bad, PASS, home=other)
        assert not (other / "ada" / "vault.db").exists(), name
    # A changed header (here: its date) no longer matches the chunks it was sealed with.
    header = json.loads(good[20:header_end])
    header["created"] += 86400
    raw = json.dumps(header).encode()
    forged = tmp_path / "forged.lpbackup"
    forged.write_bytes(good[:16] + len(raw).to_bytes(4, "big") + raw + good[header_end:])
    with pytest.raises(TamperedData):
        restore_backup(forged, PASS, home=other)
    junk = tmp_path / "junk.lpbackup"
    junk.write_bytes(b"not a backup at all")
    with pytest.raises(VaultError, match="not a localpers backup"):
        restore_backup(junk, PASS, home=other)
    with pytest.raises(VaultError, match="no backup file"):
        restore_backup(tmp_path / "missing", PASS, home=other)


def test_restore_over_an_existing_vault_needs_overwrite_and_erases_the_old(home, tmp_path):
    vault = make_vault(home)
    path = write_backup(vault, tmp_path / "ada.lpbackup")
    vault.items.insert({"id": "after-backup", "kind": "note", "content": "newer"})
    with pytest.raises(VaultError, match="already has a vault"):
        restore_backup(path, PASS)
    with pytest.raises(VaultLocked):  # not while it is open
        restore_backup(path, PASS, overwrite=True)
    vault.close()
    with restore_backup(path, PASS, overwrite=True) as restored:
        assert restored.items.get("after-backup") is None and restored.items.count() == 200
    assert sorted(p.name for p in (home / "users" / "ada").iterdir()) == ["vault.db", "vault.lock"]


def test_backup_refuses_inside_a_transaction_and_newer_formats(home, tmp_path, monkeypatch):
    from localpers.vault import store as vault_module

    with make_vault(home) as vault:
        with vault.transaction():
            vault.items.insert({"kind": "note", "content": "not committed yet"})
            with pytest.raises(VaultError, match="inside a transaction"):
                write_backup(vault, tmp_path / "in-tx.lpbackup")
        path = write_backup(vault, tmp_path / "ada.lpbackup")
    assert not (tmp_path / "in-tx.lpbackup").exists()
    monkeypatch.setattr(vault_module, "SCHEMA_VERSION", 0)  # as if this localpers were older than the backup
    with pytest.raises(VaultError, match="newer localpers"):
        restore_backup(path, PASS, home=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_backup_keeps_the_passphrase_it_was_made_with(home, tmp_path):
    with make_vault(home) as vault:
        path = write_backup(vault, tmp_path / "ada.lpbackup")
        vault.change_passphrase("the newer passphrase", kdf_seconds=0)
    with pytest.raises(WrongPassphrase):
        restore_backup(path, "the newer passphrase", home=tmp_path / "x")
    restore_backup(path, PASS, home=tmp_path / "x").close()


def test_export_jsonl_is_plaintext_complete_and_private(home, tmp_path):
    with make_vault(home) as vault:
        n = export_jsonl(vault, tmp_path / "ada.jsonl")
        with_blobs = export_jsonl(vault, tmp_path / "all.jsonl", include_blobs=True)
        blob = vault.get_blob("adapter:style")
    lines = [json.loads(line) for line in (tmp_path / "ada.jsonl").read_text().splitlines()]
    assert lines[0]["localpers_export"] == 1 and lines[0]["plaintext"] is True and n == len(lines) - 1 == 202
    items = {r["row"]["id"]: r["row"] for r in lines[1:] if r["table"] == "items"}
    assert items["i5"]["content"] == "note 5" and items["i5"]["metadata"] == {"n": 5}
    (blob_row,) = [r["row"] for r in lines if r.get("table") == "blobs"]
    assert "data" not in blob_row and blob_row["info"] == {"rank": 8}
    assert stat.S_IMODE((tmp_path / "ada.jsonl").stat().st_mode) == 0o600
    full = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    (blob_row,) = [r["row"] for r in full if r.get("table") == "blobs"]
    assert base64.b64decode(blob_row["data"]["$base64"]) == blob and with_blobs == n


# ---------------------------------------------------------------------- the CLI


@pytest.fixture
def cli(home, monkeypatch):
    from localpers.cli import main

    runner = CliRunner()

    def run(*args: str, input: str | None = None, env: dict | None = None):
        return runner.invoke(main, list(args), input=input, env=env, catch_exceptions=False)

    return run


def test_cli_create_list_passwd_and_open(cli, home):
    result = cli("user", "create", "ada", "--kdf-seconds", "0", input=f"{PASS}\n{PASS}\n")
    assert result.exit_code == 0, result.output
    assert "Created the vault of ada" in result.output
    assert PASS not in result.output
    result = cli("user", "create", "bob", "--kdf-seconds", "0", input="short\nshort\n")
    assert result.exit_code == 1 and "too short" in result.output
    result = cli("user", "create", "ada", input=f"{PASS}\n{PASS}\n")
    assert result.exit_code == 1 and "already exists" in result.output
    result = cli("user", "create", "Bad Name!")
    assert result.exit_code == 1 and "invalid user name" in result.output
    result = cli("user", "list")
    assert result.output.split()[0] == "ada"
    result = cli("user", "passwd", "-u", "ada", "--kdf-seconds", "0",
                 env={"LOCALPERS_PASSPHRASE": PASS, "LOCALPERS_NEW_PASSPHRASE": "a new passphrase"})
    assert result.exit_code == 0, result.output
    with pytest.raises(WrongPassphrase):
        Vault.open("ada", PASS)
    Vault.open("ada", "a new passphrase").close()
    result = cli("user", "backup", str(home / "b.lpbackup"), "-u", "ada", env={"LOCALPERS_PASSPHRASE": "wrong one"})
    assert result.exit_code == 1 and "wrong passphrase" in result.output


def test_cli_backup_restore_export_erase(cli, home, tmp_path):
    env = {"LOCALPERS_PASSPHRASE": PASS}
    assert cli("user", "create", "ada", "--kdf-seconds", "0", env=env).exit_code == 0
    with Vault.open("ada", PASS) as vault:
        vault.items.insert({"kind": "note", "content": "from the cli test"})
    result = cli("user", "backup", str(tmp_path / "ada.lpbackup"), "-u", "ada", env=env)
    assert result.exit_code == 0 and "encrypted backup" in result.output
    result = cli("user", "export", str(tmp_path / "ada.jsonl"), "-u", "ada", env=env)
    assert result.exit_code == 1 and "--plaintext" in result.output
    assert not (tmp_path / "ada.jsonl").exists()
    result = cli("user", "export", str(tmp_path / "ada.jsonl"), "-u", "ada", "--plaintext", env=env)
    assert result.exit_code == 0 and "PLAINTEXT" in result.output
    assert "from the cli test" in (tmp_path / "ada.jsonl").read_text()
    result = cli("user", "erase", "ada", input="n\n", env=env)
    assert result.exit_code == 1 and Vault.exists("ada")  # declined
    result = cli("user", "erase", "ada", "--yes", env=env)
    assert result.exit_code == 0 and not Vault.exists("ada")
    result = cli("user", "restore", str(tmp_path / "ada.lpbackup"), env=env)
    assert result.exit_code == 0 and "Restored the vault of ada" in result.output
    result = cli("user", "restore", str(tmp_path / "ada.lpbackup"), env=env)
    assert result.exit_code == 1 and "--overwrite" in result.output
    result = cli("user", "erase", "ada", "--yes", "--forgot-passphrase")
    assert result.exit_code == 0 and not Vault.exists("ada")
    assert "No users yet" in cli("user", "list").output

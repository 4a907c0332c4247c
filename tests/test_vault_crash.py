"""Crash safety: SIGKILL a writing process at random points, many times; every committed record survives.

The writer prints a line only *after* each commit returns (and an intent line
before each delete or passphrase change), so the parent knows exactly what must
be in the vault, what must be gone, and what may go either way.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from localpers.vault.backup import read_backup
from localpers.errors import WrongPassphrase
from localpers.vault import Vault

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

REPO = Path(__file__).resolve().parents[1]
PASSPHRASES = ("first passphrase", "second passphrase")

WRITER = r"""
import os, random, sys
from localpers.vault import Vault, write_backup
seed, run, passphrase, backup = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
rng = random.Random(seed)
vault = Vault.open("ada", passphrase)
print("OPEN", flush=True)
n = 0
while True:
    batch = f"{run}-{n}"
    with vault.transaction():
        ids = vault.items.insert_all([
            {"id": f"{batch}-{j}", "kind": "note", "created": n,
             "content": f"content {batch} {j} " + "x" * rng.randint(0, 3000), "metadata": {"batch": batch}}
            for j in range(3)])
        vault.interactions.insert({"signal": "read", "time": n, "item": ids[0], "value": batch})
        vault.put_blob(f"blob-{n % 3}", os.urandom(rng.randint(1_000, 150_000)), {"batch": batch})
    print("C", batch, flush=True)
    if n % 4 == 3:
        victim = f"{run}-{n - 2}"
        print("d", victim, flush=True)
        vault.erase_items([f"{victim}-{j}" for j in range(3)])
        print("D", victim, flush=True)
    if n % 5 == 4:
        new = [p for p in ("first passphrase", "second passphrase") if p != passphrase][0]
        print("p", new, flush=True)
        vault.change_passphrase(new, kdf_seconds=0)
        passphrase = new
        print("P", new, flush=True)
    if n % 7 == 6:
        write_backup(vault, backup)
    n += 1
"""

CREATOR = r"""
import sys
from localpers.vault import Vault
Vault.create("carol", "carol's passphrase", kdf_seconds=0).close()
print("CREATED", flush=True)
"""


def spawn(code: str, args: list[str], home: Path) -> tuple[subprocess.Popen, list[str], threading.Thread]:
    env = {**os.environ, "LOCALPERS_HOME": str(home), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append(line.strip())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return proc, lines, reader


def kill_after(proc: subprocess.Popen, lines: list[str], reader: threading.Thread, delay: float,
               wait_for: str | None = None, may_finish: bool = False) -> None:
    """SIGKILL ``proc`` ``delay`` seconds after it printed ``wait_for`` (or after its start)."""
    deadline = time.monotonic() + 30
    while wait_for and wait_for not in lines and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(delay)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    reader.join(timeout=30)
    if proc.returncode != -signal.SIGKILL and not (may_finish and proc.returncode == 0):
        raise AssertionError(f"writer ended with {proc.returncode}: {proc.stderr.read()}")


def open_any(user: str, candidates: list[str]) -> tuple[Vault, str]:
    for passphrase in candidates:
        try:
            return Vault.open(user, passphrase), passphrase
        except WrongPassphrase:
            continue
    raise AssertionError(f"none of {candidates} opens the vault after the crash")


def test_sigkill_mid_transaction_never_loses_a_committed_record(home):
    rng = random.Random(1234)
    Vault.create("ada", PASSPHRASES[0], kdf_seconds=0).close()
    backup = home / "ada.lpbackup"
    committed: set[str] = set()  # batches whose commit was confirmed
    deleted: set[str] = set()  # batches whose erase was confirmed (or is now known to have landed)
    passphrase, kills_while_writing = PASSPHRASES[0], 0
    start = time.monotonic()
    for run in range(24):
        early = run % 6 == 5  # now and then, kill while it imports, unlocks or opens
        proc, lines, reader = spawn(WRITER, [str(run), f"r{run}", passphrase, str(backup)], home)
        if early:
            kill_after(proc, lines, reader, rng.uniform(0, 0.5))
        else:
            kill_after(proc, lines, reader, rng.uniform(0.02, 0.45), wait_for="OPEN")
        candidates, in_flight = [passphrase], set()
        for line in lines:
            kind, _, value = line.partition(" ")
            if kind == "C":
                committed.add(value)
            elif kind == "d":
                in_flight.add(value)
            elif kind == "D":
                deleted.add(value)
            elif kind == "p":
                candidates.append(value)
            elif kind == "P":
                passphrase, candidates = value, [value]
        kills_while_writing += any(line.startswith("C") for line in lines)

        vault, passphrase = open_any("ada", candidates)
        with vault:
            assert vault.db.conn.execute("pragma integrity_check").fetchone()[0] == "ok"
            batches: dict[str, int] = {}
            for row in vault.items.rows():
                batch = row["metadata"]["batch"]
                assert row["content"].startswith(f"content {batch} ")
                batches[batch] = batches.get(batch, 0) + 1
            assert all(n == 3 for n in batches.values()), "a transaction landed in part"
            must_have = committed - deleted - in_flight
            assert not must_have - set(batches), f"committed batches lost: {sorted(must_have - set(batches))}"
            assert not deleted & set(batches), "an erased batch came back"
            linked = {r["value"] for r in vault.interactions.rows()}
            assert linked == set(batches), "items and their interaction landed apart"
            for name in vault.blobs.keys():
                assert vault.get_blob(name) and vault.blob_info(name)["batch"].startswith("r")
        # An erase cut short either landed whole or not at all; from now on we know which.
        deleted |= {b for b in in_flight if b not in batches}
        if backup.exists():  # a backup is there whole, or not at all
            header, _, data = read_backup_any(backup)
            assert header["user"] == "ada" and len(data) == header["size"]
    assert kills_while_writing >= 15, "too few kills landed while writing"
    assert len(committed) > 50
    assert time.monotonic() - start < 150


def read_backup_any(path: Path):
    for passphrase in PASSPHRASES:  # the backup holds the passphrase in use when it was made
        try:
            return read_backup(path, passphrase)
        except WrongPassphrase:
            continue
    raise AssertionError("the backup opens with neither passphrase")


def test_sigkill_during_create_leaves_no_half_vault(home):
    rng = random.Random(99)
    for _ in range(6):
        proc, lines, reader = spawn(CREATOR, [], home)
        kill_after(proc, lines, reader, rng.uniform(0.2, 1.5), may_finish=True)
        if Vault.exists("carol"):
            with Vault.open("carol", "carol's passphrase") as vault:  # whole, or absent: never half
                assert vault.items.count() == 0
            Vault.erase("carol")
        assert not Vault.exists("carol")
        Vault.create("carol", "carol's passphrase", kdf_seconds=0).close()  # leftovers never block a new create
        Vault.erase("carol")

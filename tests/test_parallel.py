"""Several real ``localpers`` processes on one vault: writers queue (and say for whom), readers never wait.

The audit ran 12 ``localpers feedback`` calls at once and saw 11 refused ("the vault ... is open in
another localpers process"). Now each write takes the vault's write lock for one transaction only, and
a writer that finds it taken waits (bounded, see ``localpers.vault.WRITE_WAIT``) after saying who holds it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localpers.vault import store as vault_module
from localpers.catalog import Catalog
from localpers.vault import Vault

PASSPHRASE = "a test passphrase"
CLI = str(Path(sys.executable).with_name("localpers"))
N = 12


@pytest.fixture
def ada(home, monkeypatch, tmp_path):
    Vault.create("ada", PASSPHRASE, kdf_seconds=0).close()
    monkeypatch.setenv("LOCALPERS_PASSPHRASE", PASSPHRASE)
    films = tmp_path / "films.jsonl"
    films.write_text("".join(json.dumps({"id": f"f{i}", "title": f"Film number {i}", "kind": "film"}) + "\n"
                             for i in range(N)))
    Catalog("films").import_file(films)
    return home


def start(*args):
    return subprocess.Popen([CLI, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ.copy())


def test_twelve_parallel_writers_all_succeed_and_nothing_is_lost(ada):
    children = [start("feedback", "-u", "ada", f"f{i}", "like") for i in range(N)]
    results = [(c.wait(timeout=600), *c.communicate()) for c in children]
    for code, out, err in results:
        assert code == 0 and out.startswith("Recorded: like for Film number"), err
        assert "Traceback" not in err and "open in another" not in err, err
    with Vault.open("ada", PASSPHRASE) as vault:
        rows = list(vault.interactions.rows())
    assert sorted(r["item"] for r in rows) == sorted(f"f{i}" for i in range(N))
    assert {r["signal"] for r in rows} == {"like"} and len({r["id"] for r in rows}) == N


def test_a_reader_runs_while_a_writer_holds_the_vault_and_a_writer_waits_for_it(ada, monkeypatch):
    monkeypatch.setattr(vault_module, "PROCESS_NAME", "the app")
    with Vault.open("ada", PASSPHRASE) as app:
        app.items.insert({"kind": "note", "content": "A note about the river walk on Sunday morning."})
        with app.transaction():  # the app is in the middle of a write
            app.interactions.insert({"signal": "like", "item": "f1", "value": None, "metadata": {}, "time": 0})
            started = time.monotonic()
            reader = subprocess.run([CLI, "history", "list", "-u", "ada"], capture_output=True, text=True, timeout=300)
            assert reader.returncode == 0, reader.stderr
            assert "river walk" in reader.stdout  # the last commit, read while the write is under way
            writer = start("feedback", "-u", "ada", "f2", "dislike")
            deadline = time.monotonic() + 300
            err = ""
            while "waiting for the vault" not in err:  # the notice comes before the wait
                assert writer.poll() is None and time.monotonic() < deadline, writer.communicate()
                err += os.read(writer.stderr.fileno(), 4096).decode()
            assert f"waiting for the vault of 'ada', held by the app, pid {os.getpid()}..." in err
            time.sleep(1.0)
            assert writer.poll() is None  # still waiting: the app's transaction is not over
        out, rest = writer.communicate(timeout=120)
        assert writer.returncode == 0 and "Recorded: dislike" in out, err + rest
        signals = sorted(r["signal"] for r in app.interactions.rows())
    assert signals == ["dislike", "like"], signals
    assert time.monotonic() - started < 300

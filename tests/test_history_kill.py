"""Kill an import with SIGKILL midway, run it again, and end with exactly the items of an uninterrupted import."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from localpers.embed import Embedder
from localpers.history import History
from localpers.sources.synthetic import synthetic_mailbox, write_mbox
from localpers.vault import Vault

PASSPHRASE = "a test passphrase"

# Runs in a child process: import the mbox, printing progress lines, then the report as JSON.
CHILD = """
import json, sys
from pathlib import Path
from localpers.history import History
from localpers.vault import Vault

home, box = Path(sys.argv[1]), sys.argv[2]
vault = Vault.open("ada", sys.argv[3], home=home)
history = History(vault, batch_size=16)
report = history.import_path(box, progress=lambda done, total, msg: print("PROGRESS", done, total, msg, flush=True))
print("REPORT", json.dumps({"added": report.added, "duplicates": report.duplicates, "resumed": report.resumed,
                            "finished": report.finished, "previously": report.previously}), flush=True)
vault.close()
"""


def run_child(home, box):
    return subprocess.Popen([sys.executable, "-c", CHILD, str(home), str(box), PASSPHRASE], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.slow
def test_sigkill_midway_then_resume(tmp_path):
    home = tmp_path / "users"
    box = write_mbox(tmp_path / "sent.mbox", synthetic_mailbox(200, seed=31))
    Vault.create("ada", PASSPHRASE, home=home, kdf_seconds=0).close()

    child = run_child(home, box)
    killed_at = None
    deadline = time.monotonic() + 300
    for line in child.stdout:
        found = re.search(r"([\d,]+) added", line)
        if line.startswith("PROGRESS") and found:
            added = int(found.group(1).replace(",", ""))
            if added >= 60:  # a few batches are in: kill it hard, mid-batch
                killed_at = added
                child.send_signal(signal.SIGKILL)
                break
        assert time.monotonic() < deadline
    child.wait(timeout=60)
    assert killed_at is not None and child.returncode == -signal.SIGKILL, "the import ended before it could be killed"

    with Vault.open("ada", PASSPHRASE, home=home) as vault:
        committed = vault.items.count()
        assert 60 <= committed < 200  # stopped midway, with what was committed intact

    child = run_child(home, box)
    out, _ = child.communicate(timeout=600)
    assert child.returncode == 0
    resumed = json.loads(next(line for line in out.splitlines() if line.startswith("REPORT"))[7:])
    assert resumed["resumed"] and resumed["finished"]
    assert resumed["previously"]["added"] == committed
    assert resumed["duplicates"] == 0  # it went on exactly where the last commit stopped

    with Vault.open("ada", PASSPHRASE, home=home) as vault, \
            Vault.create("ref", PASSPHRASE, home=home, kdf_seconds=0) as ref_vault:
        history = History(vault, Embedder.shared())
        reference = History(ref_vault, Embedder.shared())
        uninterrupted = reference.import_path(box)
        assert committed + resumed["added"] == uninterrupted.added == history.count()

        def snapshot(h):
            return sorted((i.content, i.kind, i.created, i.metadata["message_id"], i.source["ref"]) for i in h.items())

        assert snapshot(history) == snapshot(reference)
        assert set(history.index.ids()) == set(vault.items.keys())
        assert vault.fingerprints.count() == ref_vault.fingerprints.count()

"""The ``localpers import`` / ``search`` / ``history`` commands, through click's runner and as a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from localpers.cli import main
from localpers.sources.synthetic import synthetic_mailbox, write_mbox
from localpers.vault import Vault

PASSPHRASE = "a test passphrase"


@pytest.fixture
def ada(home, monkeypatch):
    Vault.create("ada", PASSPHRASE, kdf_seconds=0).close()
    monkeypatch.setenv("LOCALPERS_PASSPHRASE", PASSPHRASE)
    return "ada"


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def test_import_search_browse_delete(ada, tmp_path):
    box = write_mbox(tmp_path / "archive.mbox", synthetic_mailbox(30, seed=41, others_share=0.3) + [
        b"From: ada@example.com\nSubject: Fwd: look\n\nFYI"])
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "soup.md").write_text("# Soup\nLentil soup: onions, carrots, cumin, simmer forty minutes.")

    code, out = run("import", box, notes, "--from", "ada@example.com", "-u", ada)
    assert code == 0, out
    assert "archive.mbox:" in out and "skipped (not sent by you)" in out and "1 forwarded message" in out
    assert "rejected archive.mbox#31: forwarded message" in out
    assert "soup.md" not in out and "notes: 1 added" in out

    code, out = run("import", box, "--from", "ada@example.com", "-u", ada)
    assert code == 0 and "0 added" in out

    code, out = run("search", "how long", "to cook lentils", "-k", "1", "-u", ada)
    assert code == 0 and "Lentil soup" in out and out.startswith("1. ")
    code, out = run("search", "lentils", "--hybrid", "--mmr", "--kind", "note", "--json", "-u", ada)
    hits = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(hits) == 1 and hits[0]["kind"] == "note"

    code, out = run("history", "list", "--kind", "note", "-u", ada)
    assert code == 0 and "Soup" in out
    item_id = hits[0]["id"]
    code, out = run("history", "show", item_id[:8], "-u", ada)
    assert code == 0 and "simmer forty minutes" in out
    code, out = run("history", "delete", item_id[:8], "--yes", "-u", ada)
    assert code == 0 and "Erased 1 item" in out
    code, out = run("search", "lentils", "--kind", "note", "-u", ada)
    assert code == 0 and "No results." in out
    code, out = run("history", "reindex", "-u", ada)
    assert code == 0 and "Index rebuilt" in out


def test_bad_input_gives_one_clear_line(ada, tmp_path):
    odd = tmp_path / "mystery.bin"
    odd.write_bytes(b"\x89PNG")
    code, out = run("import", odd, "-u", ada)
    assert code == 1 and out.startswith("Error: cannot tell what mystery.bin holds") and len(out.splitlines()) == 1
    two = write_mbox(tmp_path / "inbox.mbox", [b"From: a@x.example\nTo: b@y.example\n\nfirst words here ok",
                                               b"From: b@y.example\nTo: a@x.example\n\nsecond words here ok"])
    code, out = run("import", two, "-u", ada)
    assert code == 1 and "--from" in out
    code, out = run("import", two, "--column", "item", "-u", ada)
    assert code == 2 and "ROLE=NAME" in out
    code, out = run("import", tmp_path / "missing.mbox", "-u", ada)
    assert code == 2
    code, out = run("search", "anything", "-u", ada)
    assert code == 0 and "history is empty" in out
    with Vault.open("ada", PASSPHRASE) as vault:
        assert vault.items.count() == 0  # nothing half-imported


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_the_next_run_resumes(ada, tmp_path):
    box = write_mbox(tmp_path / "sent.mbox", synthetic_mailbox(400, seed=42))
    cmd = [str(Path(sys.executable).with_name("localpers")), "import", str(box), "-u", ada]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    # Wait for the first progress line (the model is loaded by then), let a batch or two in, then Ctrl-C.
    first = child.stderr.readline()
    assert first.startswith("sent.mbox:"), first
    time.sleep(3)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=300)
    assert child.returncode == 130, (out, err)
    assert "Stopping after the current batch" in err and "Run the same command again to resume" in err
    with Vault.open("ada", PASSPHRASE) as vault:
        first_count = vault.items.count()
    assert 0 < first_count < 400

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    assert "resumed an interrupted import" in done.stdout and "0 duplicates" in done.stdout
    with Vault.open("ada", PASSPHRASE) as vault:
        assert vault.items.count() == 400

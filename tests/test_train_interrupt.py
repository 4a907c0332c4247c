"""Ctrl-C in a real ``localpers train`` process pauses with a checkpoint in every phase; the next run resumes.

The audit saw 3 of 3 crashes (``KeyError: 'result'``, then an abort, exit 134) when Ctrl-C landed during
playback, the base model's evaluation, or a training step. Here SIGINT goes to the real CLI, whose stderr
is a pseudo-terminal (so every progress report is printed, as a user sees it), once in each phase, and a
last run finishes: the adapter is installed and no checkpoint is left.
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localpers.sources.synthetic import synthetic_mailbox, write_mbox
from localpers.writing.playback import PlaybackConfig, playback
from localpers.writing.train import checkpoint_step, collect_texts
from localpers.vault import Vault

# Four runs with playback of 50 texts: minutes on an idle 2-core machine, far more on a busy one.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

PASSPHRASE = "a test passphrase"
CLI = str(Path(sys.executable).with_name("localpers"))
# The smallest run the CLI offers: 4 optimizer steps on 64-token examples (the recipe needs 50 texts).
TRAIN = [CLI, "train", "-u", "ada", "--steps", "4", "--max-length", "64"]
PREPARED = 46  # of the 50 texts, played back before the first run
PHASE_TIMEOUT = 900  # seconds to reach a phase: playback of 50 texts on a busy 2-core machine


class Run:
    """One ``localpers train`` process; its stderr is a terminal we read as it goes."""

    def __init__(self) -> None:
        master, slave = pty.openpty()
        self.child = subprocess.Popen(TRAIN, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
                                      env=os.environ.copy())
        os.close(slave)
        self.master = master
        self.err = ""

    def _read(self, wait: float) -> bool:
        """Read what is there; False once the terminal is closed (the process ended)."""
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the child closed its end
            return False
        self.err += data.decode("utf-8", errors="replace")
        return bool(data)

    def wait_for(self, pattern: str) -> None:
        deadline = time.monotonic() + PHASE_TIMEOUT
        while not re.search(pattern, self.err):
            assert time.monotonic() < deadline, f"no {pattern!r} after {PHASE_TIMEOUT} s:\n{self.err[-2000:]}"
            if not self._read(1.0) and self.child.poll() is not None:
                pytest.fail(f"train ended (exit {self.child.returncode}) before {pattern!r}:\n{self.err[-2000:]}")

    def finish(self) -> tuple[int, str]:
        """Drain the terminal until the process exits; returns (exit code, stdout)."""
        deadline = time.monotonic() + PHASE_TIMEOUT
        while self._read(1.0) or self.child.poll() is None:
            assert time.monotonic() < deadline, f"train did not end:\n{self.err[-2000:]}"
        os.close(self.master)
        out = self.child.stdout.read().decode()
        return self.child.wait(), out

    def interrupt_at(self, pattern: str) -> tuple[int, str]:
        self.wait_for(pattern)
        self.child.send_signal(signal.SIGINT)
        return self.finish()


def instructions_cached() -> int:
    with Vault.open("ada", PASSPHRASE) as vault:
        return vault.cache.count("kind = ?", ["instruction"])


def saved_step() -> int | None:
    with Vault.open("ada", PASSPHRASE) as vault:
        return checkpoint_step(vault)


def assert_paused(code: int, out: str, err: str) -> None:
    assert "Traceback" not in err and "terminate called" not in err and "Error" not in err, err[-3000:]
    assert code == 130, (code, err[-3000:])
    assert "Pausing after the current step" in err and "cancelled (checkpoint saved; run again to resume)" in out


def test_sigint_in_each_phase_pauses_with_a_checkpoint_and_the_last_run_resumes_to_completion(home, monkeypatch,
                                                                                               tmp_path):
    Vault.create("ada", PASSPHRASE, kdf_seconds=0).close()
    monkeypatch.setenv("LOCALPERS_PASSPHRASE", PASSPHRASE)
    box = write_mbox(tmp_path / "sent.mbox", synthetic_mailbox(50, seed=5))
    imported = subprocess.run([CLI, "import", "-u", "ada", str(box)], capture_output=True, text=True, timeout=600)
    assert imported.returncode == 0, imported.stderr

    # Most instructions are made up front by the real playback code's extractive path (no generation), so
    # the runs below generate only the last few with the model: minutes, not half an hour, on a busy machine.
    with Vault.open("ada", PASSPHRASE) as vault:
        playback(vault, collect_texts(vault)[:PREPARED], config=PlaybackConfig(attempts=0))
    assert instructions_cached() == PREPARED

    # 1. During playback: the instructions made so far stay cached, the rest is left for the next run.
    code, out = (run := Run()).interrupt_at(rf"\[playback\] playback {PREPARED + 1}/")
    assert_paused(code, out, run.err)
    cached = instructions_cached()
    assert PREPARED < cached < 50, cached

    # 2. During the base model's held-out evaluation: playback goes on from the cache, then a checkpoint at step 0.
    code, out = (run := Run()).interrupt_at(r"held-out loss of the base model")
    assert_paused(code, out, run.err)
    done = [int(n) for n in re.findall(r"playback (\d+)/", run.err)]
    assert done and done[-1] == 50 and instructions_cached() == 50
    assert saved_step() == 0

    # 3. During a training step: a checkpoint at the step it paused after.
    code, out = (run := Run()).interrupt_at(r"\[training\] step 1/4")
    assert_paused(code, out, run.err)
    paused_at = saved_step()
    assert paused_at is not None and 1 <= paused_at < 4, paused_at
    assert "held-out loss of the base model" not in run.err  # the base loss came from the checkpoint

    # 4. Run again: it resumes after the saved step, finishes, installs the adapter and drops the checkpoint.
    code, out = (run := Run()).finish()
    assert code == 0 and "Traceback" not in run.err, run.err[-3000:]
    steps = [int(n) for n in re.findall(r"\[training\] step (\d+)/4", run.err)]
    assert steps and steps[0] == paused_at + 1 and steps[-1] == 4, steps
    assert "Installed:" in out and saved_step() is None

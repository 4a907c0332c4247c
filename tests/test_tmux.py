"""The app in a real terminal: `localpers tui --demo` under tmux, driven by keys, read back from the pane.

This checks what the pilot tests cannot: the installed command starts, draws in a
real terminal (escape sequences, sizes, function keys), and quits cleanly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tui_support import copy_demo_home

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
LOCALPERS = Path(sys.executable).parent / "localpers"


class Tmux:
    """One tmux session on a private server socket (never touches the user's own tmux)."""

    def __init__(self, command: str, env: dict[str, str], width: int = 100, height: int = 30) -> None:
        self.socket = f"localpers-test-{uuid.uuid4().hex[:8]}"
        self.name = "app"
        self.env = env
        self.run("new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height), command)

    def run(self, *args: str) -> str:
        result = subprocess.run(["tmux", "-L", self.socket, *args], env=self.env, capture_output=True, text=True,
                                timeout=30)
        if result.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.name)

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", self.name, *keys)

    def wait_for(self, text: str, timeout: float = 90.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} did not appear within {timeout} s; the screen shows:\n{self.screen()}")

    def alive(self) -> bool:
        return subprocess.run(["tmux", "-L", self.socket, "has-session", "-t", self.name], env=self.env,
                              capture_output=True).returncode == 0

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], env=self.env, capture_output=True)


@pytest.fixture
def terminal(tmp_path):
    home = copy_demo_home(tmp_path)
    env = {**os.environ, "LOCALPERS_HOME": str(home), "TERM": "xterm-256color"}
    env.pop("LOCALPERS_USER", None)
    env.pop("TMUX", None)
    # The echo shows how the app exited; the sleep keeps the pane (and any crash message) readable.
    tmux = Tmux(f"{LOCALPERS} tui --demo; echo EXITED $?; sleep 30", env)
    yield tmux, home
    tmux.kill()


def test_demo_in_a_real_terminal(terminal):
    tmux, home = terminal
    screen = tmux.wait_for("F6 Privacy")
    assert "DEMO" in screen and "Compose" in screen

    tmux.keys("F3")
    screen = tmux.wait_for("Because you", timeout=90)
    first = next(line for line in screen.splitlines() if line.strip().startswith("1 "))
    title = first.split()[1]
    tmux.keys("l")
    screen = tmux.wait_for("Liked:", timeout=60)
    assert "The list is updated" in screen
    new_first = next(line for line in tmux.screen().splitlines() if line.strip().startswith("1 "))
    assert new_first != first, f"{title} was liked but still leads the list"

    tmux.keys("F4")
    tmux.wait_for("days ago")
    tmux.keys("F1")
    tmux.wait_for("Everywhere")
    tmux.keys("Escape")
    tmux.keys("C-q")
    screen = tmux.wait_for("EXITED 0", timeout=30)

    from localpers.vault import Vault

    with Vault.open_demo(home=home / "users") as vault:  # the app closed it cleanly and kept the like
        assert [r["signal"] for r in vault.interactions.rows(order_by="id")][-1] == "like"

"""The `llm` plugin, through a real `llm` command: `llm -m localpers "..."` writes in the user's voice."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from localpers.history import History
from localpers.paths import Config
from localpers.vault import Vault

pytest.importorskip("llm")


def llm_command(args, env, timeout=300):
    return subprocess.run([sys.executable, "-m", "llm", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_llm_writes_in_the_users_voice_and_never_logs_in_clear(home, tmp_path):
    vault = Vault.create("mara", "pw", kdf_seconds=0)
    History(vault).add_texts(["Hi Sam,\n\nI booked the small room for Monday.\n\nCheers,\nMara"] * 2, kind="email")
    vault.close()
    Config(threads=1).save()
    canary = "CANARY-llm-" + uuid.uuid4().hex[:8]
    llm_home = tmp_path / "llm"
    env = {**os.environ, "LOCALPERS_HOME": str(home), "LOCALPERS_USER": "mara", "LLM_USER_PATH": str(llm_home)}
    env.pop("LOCALPERS_PASSPHRASE", None)

    listed = llm_command(["models"], env)
    assert "LocalpersWriter: localpers" in listed.stdout

    no_key = llm_command(["-n", "-m", "localpers", f"Thank Sam {canary}", "-o", "max_tokens", "4"], env)
    assert no_key.returncode == 1 and "LOCALPERS_PASSPHRASE" in no_key.stderr

    env["LOCALPERS_PASSPHRASE"] = "pw"
    logged = llm_command(["-m", "localpers", f"Thank Sam {canary}", "-o", "max_tokens", "4"], env)
    assert logged.returncode == 1 and "logs.db" in logged.stderr and "-n" in logged.stderr

    ok = llm_command(["-n", "-m", "localpers", f"Thank Sam for booking the room {canary}",
                      "-o", "max_tokens", "8"], env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() and canary not in ok.stdout
    # llm's own database holds nothing of either request.
    for path in llm_home.rglob("*"):
        if path.is_file():
            assert canary.encode() not in path.read_bytes(), path

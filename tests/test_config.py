"""config.toml: `localpers config`, `--model`, and every documented key taking effect where it should."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from localpers import threads
from localpers.paths import Config

CLI = str(Path(sys.executable).with_name("localpers"))


def localpers(*args):
    done = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    return lines[0]


# ---------------------------------------------------------------------- the command


def test_config_set_get_list_unset(home):
    assert localpers("config", "set", "context_size", "4096")[0] == 0
    assert localpers("config", "set", "writer_model", "smollm2-135m-instruct")[0] == 0
    code, out, _ = localpers("config", "get", "context_size")
    assert (code, out.strip()) == (0, "4096")
    path = home / "config.toml"
    assert tomllib.loads(path.read_text()) == {"context_size": 4096, "writer_model": "smollm2-135m-instruct"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Config.load().context_size == 4096
    code, out, _ = localpers("config", "list")
    lines = {line.split(" = ")[0]: line for line in out.splitlines() if " = " in line}
    assert set(lines) == set(Config.keys())
    assert lines["context_size"] == "context_size = 4096"
    assert lines["threads"].endswith("# default")
    assert localpers("config", "unset", "context_size")[0] == 0
    assert tomllib.loads(path.read_text()) == {"writer_model": "smollm2-135m-instruct"}
    assert list(home.glob("*.tmp")) == [] and list(home.glob(".config-*")) == []


@pytest.mark.parametrize("args, words", [
    (("get", "colour"), ["no setting named 'colour'", "writer_model", "threads"]),
    (("set", "colour", "red"), ["no setting named 'colour'"]),
    (("set", "threads", "two"), ["threads must be an integer", "'two'"]),
    (("set", "context_size", "0"), ["context_size must be at least 1"]),
    (("set", "writer_model", "gpt-5"), ["no model named 'gpt-5'", "gemma3-270m", "smollm2-135m-instruct", ".gguf"]),
    (("set", "writer_model", "all-minilm-l6-v2"), ["embedding model", "gemma3-270m"]),
    (("set", "playback_model", "/no/such.gguf"), ["no such file", "/no/such.gguf"]),
    (("set", "default_user", "bob"), ["no user 'bob'", "localpers user create bob"]),
    (("set", "theme", "neon"), ["no theme named 'neon'", "nord"]),
])
def test_bad_keys_and_values_are_refused_in_one_line_and_nothing_is_written(home, args, words):
    localpers("config", "set", "theme", "nord")
    before = (home / "config.toml").read_bytes()
    code, _, err = localpers("config", *args)
    line = one_error_line(err)
    assert code == 1
    for word in words:
        assert word in line, line
    assert (home / "config.toml").read_bytes() == before


@pytest.mark.parametrize("command", [("write", "Thank Ann"), ("train",)])
def test_model_option_names_what_is_available(home, command):
    code, _, err = localpers(*command, "--model", "llama-9000")
    line = one_error_line(err)
    assert code == 1 and "no model named 'llama-9000'" in line and "gemma3-270m" in line and ".gguf" in line


# ---------------------------------------------------------------------- each key takes effect


@pytest.mark.model
def test_context_size_and_threads_reach_the_engine_opened_the_product_way(home):
    import llama_cpp

    from localpers.llm import Engine

    Config(context_size=768, threads=1, writer_model="smollm2-135m-instruct").save()
    Engine._shared.clear()  # an engine an earlier test loaded was made with the default settings
    engine = Engine.shared(Config.load().writer_model)  # as Writer, serve and recommend open it
    try:
        assert engine.llm.n_ctx() == 768
        assert engine.adaptive and engine.most_threads == 1
        assert llama_cpp.llama_n_threads(engine.llm.ctx) == llama_cpp.llama_n_threads_batch(engine.llm.ctx) == 1
        assert engine.complete("Hello", max_tokens=3, min_tokens=3)  # and it runs with them
    finally:
        Engine._shared.clear()


def test_threads_reach_torch(home):
    import torch

    before = torch.get_num_threads()
    try:
        Config(threads=1).save()
        assert threads.configured() == 1
        assert threads.set_torch_threads() == 1 and torch.get_num_threads() == 1
        assert threads.set_torch_threads(2) == 2 and torch.get_num_threads() == 2  # a fixed count wins
    finally:
        torch.set_num_threads(before)


@pytest.mark.model
def test_playback_uses_the_configured_playback_model(home):
    from localpers import models
    from localpers.llm import Engine
    from localpers.writing.playback import PlaybackConfig, playback
    from localpers.vault import Vault

    Config(playback_model="gemma3-270m").save()
    vault = Vault.create("ada", "a test passphrase", kdf_seconds=0)
    Engine._shared.clear()
    try:
        made = playback(vault, ["Dear Tom,\nCould you reopen Peter's account on Thursday?\nDavid"],
                        config=PlaybackConfig(attempts=1, max_tokens=8, use_cache=False))
        assert made[0] is not None
        loaded = {Path(key[0]) for key in Engine._shared}
        assert loaded == {models.ensure("gemma3-270m")}  # not the default SmolLM2
    finally:
        Engine._shared.clear()
        vault.close()


# ---------------------------------------------------------------------- adaptive threads


def test_available_threads_stay_within_one_and_the_most():
    assert threads.available(1) == 1
    assert 1 <= threads.available(64) <= len(threads.cores())


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="measures /proc/stat")
def test_a_competitor_on_every_core_leaves_one_thread():
    n = len(threads.cores())
    competitors = [subprocess.Popen([sys.executable, "-c", "while True:\n    pass\n"]) for _ in range(n)]
    try:
        time.sleep(0.5)
        threads.others_busy()  # start a window while they run
        time.sleep(1.0)
        # n spinning processes use most of the n cores whatever else runs (at least their fair share)
        assert threads.others_busy() >= 0.7
        assert threads.available(n) < n or n == 1
    finally:
        for p in competitors:
            p.kill()
            p.wait()


@pytest.mark.model
def test_the_thread_count_does_not_change_the_text():
    """Adapting threads mid-generation keeps the engine's same-prompt-same-text promise."""
    import llama_cpp

    from localpers.llm import Engine

    prompt = "Write a short note to Tom about moving our meeting to Thursday."
    one = Engine("smollm2-135m-instruct", n_ctx=512, threads=1).complete(prompt, max_tokens=40, min_tokens=40)
    two = Engine("smollm2-135m-instruct", n_ctx=512, threads=2)
    assert two.complete(prompt, max_tokens=40, min_tokens=40) == one
    two.reset()
    pieces = []
    for i, piece in enumerate(two.stream(prompt, max_tokens=40, min_tokens=40)):
        pieces.append(piece)
        if i == 10:
            llama_cpp.llama_set_n_threads(two.llm.ctx, 1, 1)  # what adapt_threads does
    assert "".join(pieces) == one

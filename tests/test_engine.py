"""The LLM engine against the real embedded Gemma 3 270M GGUF."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import textwrap

import gguf
import numpy as np
import pytest

from localpers import models
from localpers.errors import LocalpersError, ModelNotFound
from localpers.llm import PROMPT_CHUNK, Engine


pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def engine():
    return Engine("gemma3-270m", n_ctx=512)


def write_lora(path, *, rank=4, scale=0.05, seed=0, layers=(0, 1, 2)):
    """A small random LoRA adapter for Gemma 3 270M, in llama.cpp's GGUF LoRA format."""
    reader = gguf.GGUFReader(str(models.ensure("gemma3-270m")))
    shapes = {t.name: [int(x) for x in t.shape] for t in reader.tensors}
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "gemma3")
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(rank))
    for layer in layers:
        for proj in ("attn_q", "attn_v", "ffn_up"):
            name = f"blk.{layer}.{proj}.weight"
            n_in, n_out = shapes[name]  # ggml order: columns (inputs) first
            writer.add_tensor(f"{name}.lora_a", (rng.standard_normal((rank, n_in)) * scale).astype(np.float32))
            writer.add_tensor(f"{name}.lora_b", (rng.standard_normal((n_out, rank)) * scale).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_generate_is_deterministic_and_stops(engine):
    first = engine.complete("The capital of France is", max_tokens=12)
    again = engine.complete("The capital of France is", max_tokens=12)
    assert first == again and first.strip()
    stopped = engine.complete("One, two, three, four,", max_tokens=30, stop=["six"])
    assert "six" not in stopped


def test_stream_yields_pieces_that_make_the_completion(engine):
    pieces = list(engine.stream("Dear Ada,\n", max_tokens=16))
    assert len(pieces) > 3
    assert "".join(pieces) == engine.complete("Dear Ada,\n", max_tokens=16)


# A shared opening longer than two prompt chunks, so later prompts reuse cached chunks.
OPENING = "Examples of how I write:\n" + "".join(
    f"---\nHi {name},\nthanks for the {thing}. See you on {day}.\nBest, Ada\n"
    for name, thing, day in [("Tom", "notes", "Monday"), ("Eva", "cake", "Friday"), ("Sam", "slides", "Tuesday"),
                             ("Kim", "tip", "Sunday"), ("Liz", "book", "Thursday"), ("Bob", "map", "Saturday")])


def test_the_same_request_gives_the_same_text_whatever_ran_before(engine, tmp_path):
    """Streamed or not, first or after other prompts (sharing a prefix or not), before or after an adapter."""
    assert engine.count_tokens(OPENING) > 2 * PROMPT_CHUNK
    prompts = [OPENING + "Instruction: thank Ann for the flowers.\n\nEmail:\n",
               OPENING + "Instruction: ask Max about the budget.\n\nEmail:\n",
               "Dear Ada,\n", "One, two, three,"]
    sampled = {"temperature": 0.8, "max_tokens": 16}

    def fresh(prompt, **options):
        engine.reset()
        return engine.complete(prompt, **options)

    expected = {p: fresh(p, max_tokens=16) for p in prompts}
    expected_sampled = fresh(prompts[0], **sampled)
    engine.load_adapter("other", write_lora(tmp_path / "other.gguf", scale=0.2, seed=3))
    engine.reset()
    order = [0, 1, 0, 2, 1, 3, 0, 0, 3, 1]
    for step, i in enumerate(order):
        prompt = prompts[i]
        if step % 3 == 2:  # something else in between: another adapter, or a long generation
            engine.complete(prompt, max_tokens=4, adapter="other")
        text = "".join(engine.stream(prompt, max_tokens=16)) if step % 2 else engine.complete(prompt, max_tokens=16)
        assert text == expected[prompt], (step, prompt[-40:])
        assert text.strip()
    assert "".join(engine.stream(prompts[0], **sampled)) == expected_sampled  # sampling repeats too
    engine.unload_adapter("other")
    logits = engine.next_token_logits(prompts[1])  # after all that, the same numbers as from an empty cache
    engine.reset()
    np.testing.assert_array_equal(logits, engine.next_token_logits(prompts[1]))


def test_json_schema_constrains_output(engine):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}, "sunny": {"type": "boolean"}},
        "required": ["city", "sunny"],
    }
    text = engine.complete("Describe the weather in Paris as JSON:", max_tokens=48, schema=schema)
    data = json.loads(text)
    assert set(data) == {"city", "sunny"} and isinstance(data["sunny"], bool)


def test_grammar_constrains_output(engine):
    text = engine.complete("Is water wet? Answer:", max_tokens=4, grammar='root ::= " yes" | " no"')
    assert text in (" yes", " no")


def test_chat_uses_a_prompt_and_answers(engine):
    prompt = engine.chat_prompt([{"role": "user", "content": "Say hello."}])
    assert "Say hello." in prompt
    assert isinstance(engine.chat([{"role": "user", "content": "Say hello."}], max_tokens=8), str)


def test_lora_swap_changes_output_and_clearing_restores_base_exactly(engine, tmp_path):
    prompt = "My favourite thing about Sundays is"
    base = engine.complete(prompt, max_tokens=20)
    base_logits = engine.next_token_logits(prompt)

    engine.load_adapter("strong", write_lora(tmp_path / "strong.gguf", scale=0.2))
    engine.load_adapter("other", write_lora(tmp_path / "other.gguf", scale=0.2, seed=1))
    with_adapter = engine.next_token_logits(prompt, adapter="strong")
    assert not np.allclose(with_adapter, base_logits, atol=1e-3)
    assert engine.active_adapter == "strong"

    # Per-request selection: another adapter, then none, with no reload.
    other = engine.next_token_logits(prompt, adapter="other")
    assert not np.allclose(other, with_adapter, atol=1e-3)
    assert engine.complete(prompt, max_tokens=20) == base
    np.testing.assert_array_equal(engine.next_token_logits(prompt), base_logits)

    engine.unload_adapter("strong")
    engine.unload_adapter("other")
    assert engine.adapters == []
    with pytest.raises(LocalpersError, match="no adapter named"):
        engine.complete(prompt, max_tokens=2, adapter="strong")


def test_adapter_file_can_vanish_after_loading(engine, tmp_path):
    path = write_lora(tmp_path / "gone.gguf", scale=0.2)
    engine.load_adapter("gone", path)
    path.unlink()
    assert engine.complete("Hello", max_tokens=4, adapter="gone")
    engine.unload_adapter("gone")


def test_bad_adapter_is_refused(engine, tmp_path):
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf at all")
    with pytest.raises(LocalpersError, match="could not load the LoRA adapter"):
        engine.load_adapter("bogus", bogus)


def test_concurrent_callers_do_not_interleave(engine):
    prompts = ["Roses are red,", "The quick brown fox"]
    expected = {p: engine.complete(p, max_tokens=10) for p in prompts}
    results: dict[str, str] = {}

    def run(p):
        results[p] = "".join(engine.stream(p, max_tokens=10))

    threads = [threading.Thread(target=run, args=(p,)) for p in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == expected


def test_prompt_too_long_is_a_clear_error(engine):
    with pytest.raises(LocalpersError, match="exceeds the context"):
        engine.complete("word " * 600, max_tokens=16)


def test_user_supplied_gguf_path_works(tmp_path):
    # Any GGUF path works, here the instruct model's file under another name.
    copy = tmp_path / "my-model.gguf"
    shutil.copy(models.ensure("smollm2-135m-instruct"), copy)
    engine = Engine(copy, n_ctx=256)
    assert engine.complete("1, 2, 3,", max_tokens=4).strip()
    with pytest.raises(ModelNotFound, match="no model named"):
        models.ensure(tmp_path / "missing.gguf")
    not_gguf = tmp_path / "fake.gguf"
    not_gguf.write_bytes(b"hello")
    with pytest.raises(ModelNotFound, match="not a GGUF file"):
        models.ensure(not_gguf)


def test_shared_engine_is_loaded_once():
    assert Engine.shared("gemma3-270m", n_ctx=256) is Engine.shared("gemma3-270m", n_ctx=256)


def test_engine_works_with_python_sockets_blocked(no_network):
    engine = Engine("gemma3-270m", n_ctx=256)
    assert engine.complete("Hello", max_tokens=4).strip()
    assert no_network == []


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_engine_and_embedder_work_in_a_namespace_without_network(tmp_path):
    """At the OS level: a process in its own network namespace has no interface to reach anything."""
    probe = subprocess.run(["unshare", "--net", "--map-root-user", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("this kernel does not allow unprivileged network namespaces")
    script = textwrap.dedent(
        """
        import socket
        try:
            socket.create_connection(("1.1.1.1", 443), timeout=2)
            print("NETWORK-REACHABLE")
        except OSError:
            print("network-unreachable")
        from localpers.llm import PROMPT_CHUNK, Engine
        from localpers.embed import Embedder
        print("generated:", bool(Engine("gemma3-270m", n_ctx=256).complete("Hi", max_tokens=4).strip()))
        print("embedded:", Embedder("all-minilm-l6-v2").encode(["hello"]).shape)
        """
    )
    env = {"LOCALPERS_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    import os

    env["LOCALPERS_MODELS"] = str(models.models_dir())
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    out = subprocess.run(["unshare", "--net", "--map-root-user", sys.executable, "-c", script],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "network-unreachable" in out.stdout
    assert "generated: True" in out.stdout
    assert "embedded: (1, 384)" in out.stdout


def test_min_tokens_holds_back_the_end_of_the_text(engine):
    prompt = "The capital of France is"
    free = engine.complete(prompt, max_tokens=6)
    first = engine.tokenize(free, add_bos=False)[0]
    # The base model rarely ends this early on its own: stand its first choice in for the end token.
    real_ends, engine._end_tokens = engine._end_tokens, [first]
    try:
        held = engine.complete(prompt, max_tokens=6, min_tokens=1)
    finally:
        engine._end_tokens = real_ends
    assert engine.tokenize(held, add_bos=False)[0] != first and held.strip()
    assert engine.complete(prompt, max_tokens=6) == free  # without min_tokens, nothing is held back

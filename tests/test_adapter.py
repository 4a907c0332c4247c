"""Recipes, GGUF LoRA export, llama.cpp-vs-peft verification, sealed install and guarded load.

Real parts throughout: Gemma 3 270M dequantized into transformers + peft, the same GGUF in
llama.cpp, a real vault.
"""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch

from localpers import models
from localpers.writing import adapter
from localpers.adapters import available, load_recipe, recipe_for_model
from localpers.errors import LocalpersError
from localpers.llm import Engine
from localpers.writing.train import attach_lora, load_base
from localpers.vault import Vault, plaintext_file

pytestmark = pytest.mark.model

PROMPT = "Instruction: Thank Anna for the notes.\n\nEmail:\n"


@pytest.fixture(scope="module")
def recipe():
    return load_recipe("gemma3-270m")


@pytest.fixture(scope="module")
def lora(recipe):
    """A peft LoRA on Gemma with small random weights (an adapter with a visible effect)."""
    base, tokenizer = load_base("gemma3-270m")
    torch.manual_seed(0)  # before attach_lora too: its lora_A starts random, and the check depends on it
    model = attach_lora(base, recipe)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.01)
    model.eval()
    return model, tokenizer


@pytest.fixture(scope="module")
def engine():
    return Engine.shared("gemma3-270m")


@pytest.fixture(scope="module")
def exported(lora, recipe):
    return adapter.export_gguf(lora[0], recipe, base_model_id="sha256:test")


@pytest.fixture
def vault(home):
    v = Vault.create("mara", "pw", kdf_seconds=0)
    yield v
    v.close()


def corrupt(data: bytes, blocks=("blk.1.", "blk.2.", "blk.3."), factor=-20.0) -> bytes:
    """The adapter with some lora_b tensors scaled (sign flipped and blown up): a damaged export."""
    with plaintext_file(data) as path:
        reader = gguf.GGUFReader(str(path), "r+")
        for t in reader.tensors:
            if t.name.endswith(".lora_b") and t.name.startswith(blocks):
                t.data[:] = t.data * factor
        reader.data.flush()
        with open(path, "rb") as f:
            return f.read()


# ---------------------------------------------------------------------- recipes


def test_recipe_maps_peft_names_to_llama_cpp_names(recipe):
    assert "gemma3-270m" in available()
    assert recipe.gguf_name("base_model.model.model.layers.0.self_attn.q_proj") == "blk.0.attn_q.weight"
    assert recipe.gguf_name("model.layers.17.self_attn.o_proj") == "blk.17.attn_output.weight"
    assert recipe.gguf_name("model.layers.5.mlp.down_proj") == "blk.5.ffn_down.weight"
    with pytest.raises(LocalpersError, match="no llama.cpp name"):
        recipe.gguf_name("model.layers.0.self_attn.rotary")


def test_recipe_lookup_by_path_and_clear_errors(tmp_path):
    assert recipe_for_model(models.ensure("gemma3-270m")).name == "gemma3-270m"
    with pytest.raises(LocalpersError, match="supported base models"):
        load_recipe("llama-70b")
    assert recipe_for_model(models.ensure("smollm2-135m-instruct")).name == "smollm2-135m-instruct"
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nname = 'x'\narchitecture = 'gemma3'\n[lora]\nrnak = 4\n")
    with pytest.raises(LocalpersError, match="unknown setting"):
        load_recipe(bad)


def test_prompt_layout_keeps_blocks_in_order(recipe):
    p = recipe.format_prompt("Decline politely.", examples=["Hi A,\nNo.\nM"], style="Short.", facts="Lives in Oslo",
                             context="Can you come?", mode="reply")
    order = [p.index(s) for s in ("About my writing:", "About me:", "Examples of my writing:",
                                  "Message I am replying to:", "Instruction:", "Email:\n")]
    assert order == sorted(order) and p.endswith("Email:\n")
    assert "Message I am" not in recipe.format_prompt("x", context="ignored in compose")
    with pytest.raises(LocalpersError, match="unknown writing mode"):
        recipe.format_prompt("x", mode="poem")


# ---------------------------------------------------------------------- export


def test_export_writes_llama_cpp_lora_layout(exported, recipe, lora):
    with plaintext_file(exported) as path:
        reader = gguf.GGUFReader(str(path))
        fields = {name: f.contents() for name, f in reader.fields.items() if not name.startswith("GGUF.")}
        shapes = {t.name: [int(x) for x in t.shape] for t in reader.tensors}
    assert fields["general.type"] == "adapter" and fields["adapter.type"] == "lora"
    assert fields["general.architecture"] == "gemma3"
    assert fields["adapter.lora.alpha"] == pytest.approx(recipe.alpha)
    assert fields["localpers.base_model_id"] == "sha256:test"
    assert len(shapes) == 18 * len(recipe.target_modules) * 2
    # ggml order (columns first): lora_a [n_in, rank], lora_b [rank, n_out]
    assert shapes["blk.0.attn_q.weight.lora_a"] == [640, recipe.rank]
    assert shapes["blk.0.attn_q.weight.lora_b"] == [recipe.rank, 1024]
    assert shapes["blk.4.attn_output.weight.lora_a"] == [1024, recipe.rank]
    a, b = adapter.lora_pairs(lora[0])["base_model.model.model.layers.0.self_attn.q_proj"]
    assert a.shape == (recipe.rank, 640) and b.shape == (1024, recipe.rank)


# ---------------------------------------------------------------------- verification


def test_llama_cpp_and_peft_agree_on_a_good_adapter(engine, exported, lora):
    model, tokenizer = lora
    check = adapter.verify(engine, exported, model, tokenizer)
    assert check.passed, check.reason
    assert check.correlation >= 0.99 and check.error_ratio <= 1.0
    # The adapter's effect shows up in llama.cpp. Measured over 5 LoRA seeds x 4 probes (2026-11-29):
    # per probe 0.767-0.938, mean per seed 0.858-0.912; the bounds keep a margin of 0.15.
    assert np.mean(check.effect_correlations) > 0.7 and check.effect_correlation > 0.6
    # ...and the adapter really changes what llama.cpp predicts.
    base = adapter.peft_logits(model, tokenizer, PROMPT, adapter=False)
    adapted = adapter.peft_logits(model, tokenizer, PROMPT, adapter=True)
    assert np.abs(adapted - base).max() > 0.5


def test_corrupted_adapter_is_rejected(engine, exported, lora):
    check = adapter.verify(engine, corrupt(exported), *lora)
    assert not check.passed
    assert check.correlation < 0.99 or check.error_ratio > 1.0
    assert check.reason


def test_a_file_llama_cpp_refuses_fails_verification(engine, lora):
    check = adapter.verify(engine, b"GGUF" + b"\0" * 64, *lora)
    assert not check.passed and "refused" in check.reason


# ---------------------------------------------------------------------- install and load


def test_install_seals_the_adapter_and_load_uses_it(vault, engine, exported, lora, recipe):
    info = adapter.install_verified(vault, exported, lora[0], lora[1], engine, recipe=recipe, n_texts=60,
                                    scores={"heldout_loss": 2.0})
    assert info.base_model_id == models.model_id(engine.model_path)
    assert info.scores["logit_correlation"] >= 0.99 and info.n_texts == 60
    assert adapter.installed(vault).digest == info.digest
    # Sealed at rest: no 64-byte run of the adapter's tensor data is in the database file.
    vault.db.execute("pragma wal_checkpoint(TRUNCATE)")
    on_disk = vault.path.read_bytes()
    chunk = exported[len(exported) // 2: len(exported) // 2 + 64]
    assert chunk not in on_disk and b"lora_b" not in on_disk

    name = adapter.load(vault, engine)
    assert name == "user:mara" and name in engine.adapters
    assert adapter.load(vault, engine) == name  # loaded once, reused
    with_adapter = engine.next_token_logits(PROMPT, adapter=name)
    without = engine.next_token_logits(PROMPT)
    assert np.abs(with_adapter - without).max() > 0.5
    assert adapter.Adapter.of(vault).info.digest == info.digest
    engine.unload_adapter(name)


def test_a_corrupted_adapter_is_never_installed(vault, engine, exported, lora, recipe):
    adapter.install_verified(vault, exported, lora[0], lora[1], engine, recipe=recipe, n_texts=60)
    good = adapter.installed(vault).digest
    with pytest.raises(adapter.AdapterError, match="not installed"):
        adapter.install_verified(vault, corrupt(exported), lora[0], lora[1], engine, recipe=recipe, n_texts=60)
    assert adapter.installed(vault).digest == good  # the previous adapter stays


def test_adapter_for_another_base_model_is_refused(vault, exported, recipe):
    adapter.install(vault, exported, recipe=recipe, base_model_id=models.model_id(models.ensure("gemma3-270m")),
                    n_texts=60)
    smollm = Engine.shared("smollm2-135m-instruct")
    with pytest.raises(adapter.AdapterError, match="another base model"):
        adapter.load(vault, smollm)
    adapter.install(vault, exported, recipe=recipe, base_model_id="sha256:" + "0" * 64, n_texts=60)
    with pytest.raises(adapter.AdapterError, match="train a new adapter"):
        adapter.load(vault, Engine.shared("gemma3-270m"))
    assert adapter.remove(vault) and adapter.load(vault, smollm) is None


def test_install_refuses_what_is_not_gguf(vault, recipe):
    with pytest.raises(adapter.AdapterError, match="not a GGUF"):
        adapter.install(vault, b"PK\x03\x04 zip", recipe=recipe, base_model_id="x", n_texts=1)

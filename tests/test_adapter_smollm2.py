"""A second architecture end to end: SmolLM2 135M Instruct (llama) beside Gemma 3.

Real parts throughout: playback, a few LoRA steps on the dequantized SmolLM2 GGUF, GGUF
export (q/k LoRA rows permuted as llama.cpp stores llama's rope weights), the same
llama.cpp/peft logit check as Gemma, a sealed install, hot swaps between two users on one
loaded engine, and the refusals: an adapter on another base, a GGUF with no recipe.
"""

from __future__ import annotations

import dataclasses

import gguf
import numpy as np
import pytest
import torch

from localpers import models
from localpers.writing import adapter
from localpers.adapters import recipe_for_model
from localpers.errors import LocalpersError
from localpers.history import History
from localpers.llm import Engine
from localpers.writing.playback import PlaybackConfig
from localpers.writing.train import TrainConfig, attach_lora, load_base, train_adapter
from localpers.vault import Vault
from support import train_small_vault
from test_train import TEXTS

pytestmark = [pytest.mark.slow, pytest.mark.model]

SMOL = "smollm2-135m-instruct"
SMALL = dict(model=SMOL, max_steps=4, max_length=160, batch_size=2, min_texts=6, eval_every=2, checkpoint_every=2,
             learning_rate=2e-3, memory_limit_mb=16000, playback=PlaybackConfig(attempts=1))


@pytest.fixture(scope="module")
def engine():
    return Engine.shared(SMOL)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, engine):
    for vault, _history, result, seen in train_small_vault(tmp_path_factory, TrainConfig(**SMALL), engine, TEXTS):
        yield vault, result, seen


def random_lora(recipe, modules, std, seed=0):
    """A peft LoRA on SmolLM2 with random B (an adapter with a visible effect)."""
    base, tokenizer = load_base(SMOL)
    torch.manual_seed(seed)
    model = attach_lora(base, dataclasses.replace(recipe, target_modules=tuple(modules)))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, std)
    return model.eval(), tokenizer


def test_recipe_is_found_by_architecture_and_uses_the_gguf_chat_template(engine):
    by_name = recipe_for_model(SMOL)
    by_path = recipe_for_model(str(models.ensure(SMOL)))
    assert by_name.name == by_path.name == SMOL and by_path.architecture == "llama"
    assert recipe_for_model(models.ensure("gemma3-270m")).architecture == "gemma3"
    prompt = by_path.format_prompt("Thank Tom for the book.", examples=["Dear Ann,\nThanks!\nDavid"], style="Short.")
    user = dataclasses.replace(by_path, chat_template="").format_prompt(
        "Thank Tom for the book.", examples=["Dear Ann,\nThanks!\nDavid"], style="Short.").strip()
    # The same text llama.cpp's own chat formatting makes of the model's template.
    assert prompt == engine.chat_prompt([{"role": "user", "content": user}])
    assert prompt.endswith("<|im_start|>assistant\n") and "Instruction: Thank Tom for the book." in prompt


def test_a_gguf_of_an_unsupported_architecture_is_refused_by_name(tmp_path, home):
    path = tmp_path / "tiny-mamba.gguf"
    writer = gguf.GGUFWriter(str(path), "mamba")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    for attempt in (lambda: recipe_for_model(path), lambda: TrainConfig(model=str(path)).recipe()):
        with pytest.raises(LocalpersError) as err:
            attempt()
        message = str(err.value)
        assert "tiny-mamba.gguf" in message and "'mamba'" in message
        assert "gemma3 (gemma3-270m)" in message and "llama (smollm2-135m-instruct)" in message
    vault = Vault.create("nia", "pw", kdf_seconds=0)
    History(vault).add_texts(TEXTS, kind="email")
    with pytest.raises(LocalpersError, match="architecture 'mamba'"):
        train_adapter(vault, TrainConfig(model=str(path), min_texts=6))
    vault.close()


def test_train_export_verify_install_on_smollm2(trained, engine):
    vault, result, seen = trained
    phases = [p.phase for p in seen]
    for phase in ("playback", "loading", "training", "exporting", "verifying", "done"):
        assert phase in phases
    assert result.steps == 4 and result.recipe.name == SMOL and result.tokens_per_s > 0
    info = result.adapter
    assert info is not None and info.recipe == SMOL and adapter.installed(vault).digest == info.digest
    assert info.base_model_id == models.model_id(models.ensure(SMOL))
    assert info.scores["logit_correlation"] >= 0.99 and info.scores["error_ratio"] <= 1.0
    # Training saw the chat layout: the response follows the assistant header and ends with <|im_end|>.
    assert result.tokenizer.eos_token == "<|im_end|>"


def test_q_and_k_loras_need_llama_cpp_rope_row_order(engine):
    """Without the permutation, a q/k LoRA's effect in llama.cpp is unrelated to peft's.

    Measured (2026-11-30, std 0.03 on q and k): effect correlation per probe 0.62-0.82 with the
    permutation, -0.23-0.07 without; the bounds keep a margin of 0.15.
    """
    recipe = recipe_for_model(SMOL)
    model, tokenizer = random_lora(recipe, ("q_proj", "k_proj"), 0.03)
    probes = adapter.probes_for(recipe)
    right = adapter.verify(engine, adapter.export_gguf(model, recipe), model, tokenizer, probes)
    wrong = adapter.verify(engine, adapter.export_gguf(model, dataclasses.replace(recipe, rope_permute={})),
                           model, tokenizer, probes)
    assert np.mean(right.effect_correlations) > 0.55
    assert np.mean(wrong.effect_correlations) < 0.25
    assert right.correlation > wrong.correlation


def test_two_users_hot_swap_on_one_smollm2_engine(trained, engine, home):
    vault_a, result, _ = trained
    recipe = recipe_for_model(SMOL)
    other, _ = random_lora(recipe, recipe.target_modules, 0.02, seed=1)
    vault_b = Vault.create("ben", "pw", kdf_seconds=0)
    base_id = models.model_id(engine.model_path)
    adapter.install(vault_b, adapter.export_gguf(other, recipe, base_model_id=base_id), recipe=recipe,
                    base_model_id=base_id, n_texts=10)
    prompt = recipe.format_prompt("Ask Omar whether the printer sent the invoice.")
    base_text = engine.complete(prompt, max_tokens=24, min_tokens=24, temperature=0.0)
    base_logits = engine.next_token_logits(prompt)
    name_a, name_b = adapter.load(vault_a, engine), adapter.load(vault_b, engine)
    assert {name_a, name_b} <= set(engine.adapters)
    a1 = engine.complete(prompt, max_tokens=24, min_tokens=24, temperature=0.0, adapter=name_a)
    b1 = engine.complete(prompt, max_tokens=24, min_tokens=24, temperature=0.0, adapter=name_b)
    none = engine.complete(prompt, max_tokens=24, min_tokens=24, temperature=0.0, adapter=None)
    a2 = engine.complete(prompt, max_tokens=24, min_tokens=24, temperature=0.0, adapter=name_a)
    assert a1 == a2 and none == base_text  # each swap starts clean: nothing carries over
    assert b1 != base_text and b1 != a1
    assert np.abs(engine.next_token_logits(prompt, adapter=name_a) - base_logits).max() > 0.2
    engine.unload_adapter(name_a)
    engine.unload_adapter(name_b)
    vault_b.close()


def test_an_adapter_for_smollm2_is_refused_on_gemma(trained):
    vault, result, _ = trained
    gemma = Engine.shared("gemma3-270m")
    with pytest.raises(adapter.AdapterError, match="another base model"):
        adapter.load(vault, gemma)
    data = adapter.export_gguf(result.model, result.recipe)
    with pytest.raises(adapter.AdapterError, match="trained on SmolLM2-135M"):
        adapter.install_verified(vault, data, result.model, result.tokenizer, gemma, recipe=result.recipe,
                                 n_texts=10, base_model=SMOL)
    assert adapter.installed(vault).digest == result.adapter.digest  # the installed one stays

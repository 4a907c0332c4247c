"""Training a personal adapter end to end on a small sample, with real models throughout.

playback (SmolLM2) -> a few LoRA steps (peft on the dequantized Gemma GGUF) -> GGUF export ->
llama.cpp/peft logit agreement -> sealed install -> writing with the adapter in llama.cpp.
Plus the loop's promises: response-only loss, checkpoints, cancel and resume, a memory ceiling.
"""

from __future__ import annotations

import dataclasses
import threading

import pytest
import torch

from localpers.writing import adapter
from localpers.adapters import load_recipe
from localpers.errors import LocalpersError
from localpers.history import History
from localpers.llm import Engine
from localpers.writing.train import (
    CHECKPOINT_BLOB,
    Sample,
    TrainConfig,
    batch_plan,
    checkpoint_step,
    encode,
    estimate_training,
    response_loss,
    train_adapter,
)
from localpers.vault import Vault
from support import train_small_vault
from localpers.writing.writer import Writer

pytestmark = [pytest.mark.slow, pytest.mark.model]

TEXTS = [
    "Hi Jonas,\n\nCould you send me the slides from Tuesday's workshop? I want to reuse the chart for the board "
    "update.\n\nCheers,\nMara",
    "Hi Petra,\n\nThanks for covering the support queue yesterday. I owe you a coffee, or two.\n\nCheers,\nMara",
    "Hi team,\n\nThe release moves to Friday because the payment tests failed again. Please keep Thursday "
    "afternoon free for a last check.\n\nCheers,\nMara",
    "Hi Sam,\n\nI booked the small meeting room for Monday at ten. Bring the printed budget if you can.\n\n"
    "Cheers,\nMara",
    "Hi Lena,\n\nGreat news about the grant! Let's celebrate on Thursday, my treat.\n\nCheers,\nMara",
    "Hi Omar,\n\nThe invoice from the printer is still missing. Could you chase them this week?\n\nCheers,\nMara",
    "Hi Jonas,\n\nI read your draft of the hiring plan. Two small comments inline, otherwise ready to go.\n\n"
    "Cheers,\nMara",
    "Hi all,\n\nThe office is closed on Monday for the holiday. Enjoy the long weekend!\n\nCheers,\nMara",
    "Hi Petra,\n\nCan we move our one-to-one to Wednesday? Tuesday is full of interviews.\n\nCheers,\nMara",
    "Hi Sam,\n\nThe new laptops arrive next week. I will send the setup guide before then.\n\nCheers,\nMara",
]
# The test process holds several models at once, so its memory ceiling is set above the recipe's.
SMALL = dict(max_steps=4, max_length=128, batch_size=2, min_texts=6, eval_every=2, checkpoint_every=2,
             memory_limit_mb=16000)


@pytest.fixture(scope="module")
def engine():
    return Engine.shared("gemma3-270m")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, engine):
    """One vault with the sample, trained and installed once for the tests that inspect the result."""
    yield from train_small_vault(tmp_path_factory, TrainConfig(**SMALL), engine, TEXTS)


def test_end_to_end_playback_training_export_install_generate(trained, engine):
    vault, history, result, seen = trained
    phases = [p.phase for p in seen]
    for phase in ("playback", "loading", "training", "evaluating", "exporting", "verifying", "done"):
        assert phase in phases
    steps = [p for p in seen if p.phase == "training"]
    assert [p.step for p in steps] == [1, 2, 3, 4]
    assert all(p.tokens_per_s > 0 and p.eta_s is not None for p in steps) and steps[-1].eta_s == 0
    assert result.steps == 4 and result.n_train + result.n_heldout == len(TEXTS) and result.n_heldout >= 2
    assert result.base_heldout_loss is not None and result.heldout_loss is not None
    assert sum(result.playback_sources.values()) == len(TEXTS)

    info = result.adapter
    assert info is not None and adapter.installed(vault).digest == info.digest
    assert info.scores["logit_correlation"] >= 0.99 and info.n_texts == len(TEXTS)
    assert vault.blob_info(CHECKPOINT_BLOB) is None  # installed: the checkpoint is gone

    writer = Writer(vault, engine=engine, history=history)
    assert writer.adapter == "user:mara"
    draft = writer.compose("Ask Omar whether the printer sent the invoice.", max_tokens=40)
    pieces = list(draft)
    assert len(pieces) > 3 and draft.text.strip()
    assert draft.adapter == "user:mara" and draft.examples
    assert "Examples of my writing" in draft.prompt and "Cheers" in draft.style


def test_logit_check_passes_the_trained_adapter_and_rejects_a_corrupted_one(trained, engine):
    from test_adapter import corrupt

    _, _, result, _ = trained
    data = adapter.export_gguf(result.model, result.recipe)
    good = adapter.verify(engine, data, result.model, result.tokenizer)
    assert good.passed and good.correlation >= 0.99
    bad = adapter.verify(engine, corrupt(data, blocks=("blk.",), factor=-300.0), result.model, result.tokenizer)
    assert not bad.passed


def test_response_only_loss_equals_the_plain_loss(trained):
    _, _, result, _ = trained
    recipe = result.recipe
    sample = Sample("x", TEXTS[0], "Ask Jonas for the workshop slides.", [TEXTS[1], TEXTS[2]])
    ids, labels = encode(result.tokenizer, recipe, sample, with_examples=True, style="Short.")
    x, y = torch.tensor([ids]), torch.tensor([labels])
    with torch.no_grad():
        ours, n = response_loss(result.model, x, y)
        plain = result.model(input_ids=x, labels=y).loss
    assert n == sum(1 for v in labels[1:] if v != -100)
    assert float(ours) / n == pytest.approx(float(plain), rel=1e-4)


def test_examples_mask_the_prompt_and_fit_max_length(trained):
    recipe, tokenizer = trained[2].recipe, trained[2].tokenizer
    sample = Sample("x", TEXTS[2] * 3, "Tell the team the release moves to Friday.", [TEXTS[0] * 3, TEXTS[1] * 3])
    for max_length in (64, 128, 320):
        r = dataclasses.replace(recipe, max_length=max_length)
        ids, labels = encode(tokenizer, r, sample, with_examples=True)
        assert len(ids) == len(labels) <= max_length
        first = next(i for i, v in enumerate(labels) if v != -100)
        assert all(v == -100 for v in labels[:first]) and labels[first:] == ids[first:]
        assert tokenizer.decode(ids[:first]).rstrip().endswith("Email:")
    short = Sample("x", "Thanks!", "Thank Sam.", [])
    ids, labels = encode(tokenizer, recipe, short, with_examples=False)
    assert labels[-1] == tokenizer.eos_token_id  # the model learns to stop


def test_batch_plan_is_deterministic_and_mixes_retrieval():
    recipe = dataclasses.replace(load_recipe("gemma3-270m"), batch_size=4, seed=3)
    plan = batch_plan(50, recipe, 100)
    assert plan == batch_plan(50, recipe, 100) and len(plan) == 100
    flags = [rag for step in plan for _, rag in step]
    assert 0.45 < sum(flags) / len(flags) < 0.65  # Panza's 0.55
    first_epoch = [i for step in plan[:12] for i, _ in step] + [i for i, _ in plan[12][:2]]
    assert sorted(first_epoch) == list(range(50))


def test_cancel_leaves_a_checkpoint_and_the_next_run_resumes(trained):
    vault, history, _, _ = trained
    config = TrainConfig(**{**SMALL, "checkpoint_every": 1, "seed": 7})
    cancel = threading.Event()

    def stop_after_two(p):
        if p.phase == "training" and p.step == 2:
            cancel.set()

    first = train_adapter(vault, config, progress=stop_after_two, cancel=cancel, history=history, install=False)
    assert first.cancelled and first.steps == 2 and checkpoint_step(vault) == 2
    steps = []
    second = train_adapter(vault, config, progress=lambda p: steps.append(p.step) if p.phase == "training" else None,
                           history=history, install=False)
    assert not second.cancelled and second.resumed_from == 2 and second.steps == 4
    assert steps == [3, 4] and "resumed from the checkpoint at step 2" in second.notes
    # Other settings: the old checkpoint does not apply, training starts over.
    other = train_adapter(vault, TrainConfig(**{**SMALL, "max_steps": 1, "seed": 8}), history=history, install=False)
    assert other.resumed_from == 0 and any("starting over" in n for n in other.notes)


def test_memory_ceiling_stops_with_advice_and_a_checkpoint(trained):
    vault, history, _, _ = trained
    vault.blobs.delete(CHECKPOINT_BLOB)
    with pytest.raises(LocalpersError, match="max_length"):
        train_adapter(vault, TrainConfig(**{**SMALL, "memory_limit_mb": 1}), history=history, install=False)
    assert checkpoint_step(vault) == 1


def test_too_few_texts_says_how_many_more(home):
    vault = Vault.create("newbie", "pw", kdf_seconds=0)
    History(vault).add_texts(TEXTS[:3], kind="email")
    with pytest.raises(LocalpersError, match="needs 47 more"):
        train_adapter(vault, TrainConfig())
    assert estimate_training(vault, TrainConfig(max_steps=100)) > estimate_training(vault, TrainConfig(max_steps=10)) > 0
    vault.close()

"""Personal adapters on two architectures: Gemma 3 270M (gemma3) vs SmolLM2 135M Instruct (llama).

Both train the same examples (the demo profile's e-mails, each with a fixed instruction, laid
out by each model's recipe) for the same number of LoRA steps, then export the adapter and
run the llama.cpp/peft logit check. Figures per model: training tokens/s and CPU seconds,
and on the verification probes: logit correlation, max |llama.cpp - peft| of the adapted
logits (and of the base logits, the quantization noise), top-1 agreement, error ratio.

    python bench/architectures.py            # 16 steps each
    python bench/architectures.py --quick    # 6 steps each (under two minutes idle)

Ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from importlib import resources

import numpy as np

from localpers.writing import adapter
from localpers.adapters import recipe_for_model
from localpers.llm import Engine
from localpers.writing.train import Sample, encode, response_loss, training_model

MODELS = ("gemma3-270m", "smollm2-135m-instruct")


def samples() -> list[Sample]:
    rows = resources.files("localpers").joinpath("demo_data/history.jsonl").read_text().splitlines()
    texts = [json.loads(r) for r in rows]
    return [Sample(str(i), t["text"], f"Write the e-mail about: {t.get('subject') or 'this'}.")
            for i, t in enumerate(texts) if t.get("kind") == "email"]


def run(name: str, data: list[Sample], steps: int) -> dict:
    import torch

    recipe = recipe_for_model(name)
    model, tokenizer = training_model(recipe, name, dtype=torch.float32)
    model.train()
    encoded = [encode(tokenizer, recipe, s, with_examples=False) for s in data]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.learning_rate)
    tokens, cpu0, wall0 = 0, time.process_time(), time.perf_counter()
    for step in range(steps):
        batch = [encoded[(step * recipe.batch_size + j) % len(encoded)] for j in range(recipe.batch_size)]
        n = sum(sum(1 for x in labels[1:] if x != -100) for _, labels in batch)
        for ids, labels in batch:
            loss, _ = response_loss(model, torch.tensor([ids]), torch.tensor([labels]))
            (loss / n).backward()
            tokens += len(ids)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    model.eval()
    engine = Engine.shared(name)
    probes = adapter.probes_for(recipe)
    gguf_bytes = adapter.export_gguf(model, recipe)
    check = adapter.verify(engine, gguf_bytes, model, tokenizer, probes)
    from localpers.vault import plaintext_file

    with plaintext_file(gguf_bytes) as path:
        engine.load_adapter("bench", path)
    diffs, noise, top1 = [], [], []
    for probe in probes:
        ours, theirs = engine.next_token_logits(probe, adapter="bench"), adapter.peft_logits(model, tokenizer, probe)
        base_ours = engine.next_token_logits(probe)
        base_theirs = adapter.peft_logits(model, tokenizer, probe, adapter=False)
        diffs.append(float(np.abs(ours - theirs).max()))
        noise.append(float(np.abs(base_ours - base_theirs).max()))
        top1.append(int(ours.argmax() == theirs.argmax()))
    engine.unload_adapter("bench")
    return {"model": name, "architecture": recipe.architecture, "steps": steps, "train_tokens": tokens,
            "tokens_per_s": round(tokens / wall, 1), "cpu_s": round(cpu, 1), "cpu_tokens_per_s": round(tokens / cpu, 1),
            "passed": check.passed, "correlation": round(check.correlation, 5),
            "error_ratio": round(check.error_ratio, 3), "max_abs_diff": round(max(diffs), 3),
            "max_abs_diff_base": round(max(noise), 3), "top1_agreement": sum(top1) / len(top1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 steps per model instead of 16")
    args = parser.parse_args()
    steps = 6 if args.quick else 16
    data = samples()
    rows = [run(name, data, steps) for name in MODELS]
    print(f"{'':24}" + "".join(f"{r['model']:>24}" for r in rows))
    for key in ("architecture", "train_tokens", "tokens_per_s", "cpu_tokens_per_s", "passed", "correlation",
                "error_ratio", "max_abs_diff", "max_abs_diff_base", "top1_agreement"):
        print(f"{key:24}" + "".join(f"{str(r[key]):>24}" for r in rows))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory {peak:.0f} MB")
    print(json.dumps({"steps": steps, "models": rows, "peak_mb": round(peak)}))


if __name__ == "__main__":
    main()

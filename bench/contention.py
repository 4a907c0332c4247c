"""Playback and training speed with and without one CPU-bound competitor: adaptive threads vs fixed 2.

llama.cpp's and torch's threads spin-wait for each other, so on a two-core machine
one other busy process can slow two fixed threads twenty-fold. localpers adapts
(:mod:`localpers.threads`): before every text, every 32 tokens and every training
step it uses only the cores other processes leave free. This bench measures

- playback: the playback model (SmolLM2) writing an instruction for each demo text,
  every text a fixed amount of work (its playback prompt and 32 new tokens), in texts/s
  and tokens/s (prompt and new tokens, as llama.cpp processes them);
- training: LoRA steps on the writer (Gemma 3 270M, peft + torch), in tokens/s;

for two thread policies (ours: adaptive, up to every core; baseline: threads=2 fixed),
each idle (no competitor started by us) and busy (one pure-Python spin loop in another
process, on no particular core). The four cells run alternately, round after round, so
background load from other users of the machine falls on all of them alike; the
figure that matters is each policy's busy/idle ratio (target for ours: >= 0.4).

    python bench/contention.py --quick     # under two minutes
    python bench/contention.py             # three rounds, longer windows

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from localpers import threads  # noqa: E402

NEW_TOKENS = 32  # generated per playback text: fixed, so every policy does the same work per text
SPIN = "while True:\n    pass\n"


def demo_texts(n: int) -> list[str]:
    """Synthetic e-mails and notes of the demo profile (no personal data)."""
    path = Path(__file__).resolve().parent.parent / "localpers" / "demo_data" / "history.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = [r["text"] for r in rows if len(r.get("text", "")) > 200]
    return (texts * (n // max(len(texts), 1) + 1))[:n]


def stop_at_deadline(engine) -> list[float]:
    """Make llama.cpp abort a computation once ``deadline[0]`` (time.monotonic) has passed.

    Two collapsed threads can take minutes for one prompt; the window must end on time.
    """
    import llama_cpp

    deadline = [float("inf")]

    @llama_cpp.ggml_abort_callback
    def over(_data) -> bool:
        return time.monotonic() > deadline[0]

    engine._bench_abort = over  # keep the ctypes callback alive as long as the engine
    llama_cpp.llama_set_abort_callback(engine.llm.ctx, over, None)
    return deadline


def playback_rate(engine, deadline: list[float], prompts: list[str], seconds: float) -> dict:
    """Tokens/s and texts/s over a window of ``seconds``.

    Work is counted as llama.cpp does it: a text's prompt tokens when its first new token
    arrives (the prompt is evaluated before it), or the whole chunks of it evaluated when the
    window ends inside the prompt; then each new token. A text is its prompt plus
    :data:`NEW_TOKENS`, so a window that ends inside a text counts the share done.
    """
    tokens, work_per_text, start, threads_seen = 0, [], time.monotonic(), []
    deadline[0] = start + seconds
    for prompt in prompts:
        n_prompt = len(engine.tokenize(prompt))
        work_per_text.append(n_prompt + NEW_TOKENS)
        stream = engine.stream(prompt, max_tokens=NEW_TOKENS, min_tokens=NEW_TOKENS)
        made = 0
        try:
            for _ in stream:
                tokens += n_prompt + 1 if made == 0 else 1
                made += 1
                if time.monotonic() > deadline[0]:
                    break
        except RuntimeError:  # llama_decode aborted at the deadline
            if made == 0:
                tokens += len(engine._chunks)  # the whole prompt chunks it had evaluated
            engine.reset()
        finally:
            stream.close()
        threads_seen.append(engine.threads)
        if time.monotonic() > deadline[0]:
            break
    deadline[0] = float("inf")
    elapsed = time.monotonic() - start
    per_text = sum(work_per_text) / len(work_per_text)
    return {"texts_per_s": tokens / per_text / elapsed, "tokens_per_s": tokens / elapsed, "threads": threads_seen}


def training_rate(model, batch, params, optimizer, seconds: float, fixed: int | None) -> dict:
    """LoRA training tokens/s over at least one step and about ``seconds``."""
    import torch

    from localpers.writing.train import response_loss

    tokens, steps, start, used = 0, 0, time.monotonic(), []
    while steps == 0 or time.monotonic() - start < seconds:
        used.append(threads.set_torch_threads(fixed))  # what train_adapter does before every step
        for ids, labels in batch:
            loss, _ = response_loss(model, torch.tensor([ids]), torch.tensor([labels]))
            loss.backward()
            tokens += len(ids)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        steps += 1
    elapsed = time.monotonic() - start
    return {"tokens_per_s": tokens / elapsed, "steps": steps, "threads": used}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round, short windows (under two minutes)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None, help="length of each measured window")
    parser.add_argument("--no-training", action="store_true", help="playback only")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    window = args.seconds or (5.0 if args.quick else 12.0)
    most = len(threads.cores())
    print(f"cores {most}, load average {os.getloadavg()[0]:.1f} at start (the machine may be shared)", flush=True)

    from localpers.llm import Engine
    from localpers.writing.playback import _PREFIX, _messages, PlaybackConfig

    engines = {"ours": Engine("smollm2-135m-instruct", n_ctx=1024), "fixed2": Engine("smollm2-135m-instruct",
                                                                                      n_ctx=1024, threads=2)}
    engines["ours"].most_threads = most  # every core, whatever config.toml says
    deadlines = {arm: stop_at_deadline(engine) for arm, engine in engines.items()}
    cfg = PlaybackConfig(max_chars_in=500 if args.quick else 1200)  # quick: shorter prompts (texts' openings)
    prompts = [engines["ours"].chat_prompt(_messages(t, 1, cfg)) + _PREFIX for t in demo_texts(40)]

    trainer = None
    if not args.no_training:
        import torch

        from localpers.adapters import load_recipe
        from localpers.writing.train import training_model

        recipe = load_recipe("gemma3-270m")
        model, tokenizer = training_model(recipe, "gemma3-270m", dtype=torch.float32)
        model.train()
        batch = []
        for text in demo_texts(1 if args.quick else 2):
            ids = tokenizer(text, truncation=True, max_length=32 if args.quick else 64)["input_ids"]
            batch.append((ids, [-100] * (len(ids) // 2) + ids[len(ids) // 2:]))
        params = [p for p in model.parameters() if p.requires_grad]
        trainer = (model, batch, params, torch.optim.AdamW(params, lr=1e-4))

    results: dict = {(cond, arm, task): [] for cond in ("idle", "busy") for arm in engines
                     for task in ("playback", "training")}
    started = time.monotonic()
    for r in range(rounds):
        for cond in ("idle", "busy"):
            competitor = None
            if cond == "busy":
                competitor = subprocess.Popen([sys.executable, "-c", SPIN])
                time.sleep(0.5)
            try:
                for arm, engine in engines.items():
                    pb = playback_rate(engine, deadlines[arm], prompts, window)
                    results[(cond, arm, "playback")].append(pb)
                    line = (f"round {r + 1} {cond:<4} {arm:<6} playback {pb['texts_per_s']:.2f} texts/s "
                            f"{pb['tokens_per_s']:6.1f} tok/s threads {sorted(set(pb['threads']))}")
                    if trainer is not None:
                        tr = training_rate(*trainer, window, None if arm == "ours" else 2)
                        results[(cond, arm, "training")].append(tr)
                        line += f" | training {tr['tokens_per_s']:6.1f} tok/s ({tr['steps']} steps, threads " \
                                f"{sorted(set(tr['threads']))})"
                    print(line, flush=True)
            finally:
                if competitor is not None:
                    competitor.kill()
                    competitor.wait()

    def mean(cond: str, arm: str, task: str, key: str) -> float | None:
        rows = results[(cond, arm, task)]
        return sum(x[key] for x in rows) / len(rows) if rows else None

    figures: dict = {"bench": "contention", "quick": args.quick, "rounds": rounds, "window_s": window, "cores": most,
                     "load_avg_end": round(os.getloadavg()[0], 2)}
    print(f"\n{'':<24}{'ours (adaptive)':>18}{'fixed threads=2':>18}")
    for task, key, unit in (("playback", "texts_per_s", "texts/s"), ("playback", "tokens_per_s", "tokens/s"),
                            ("training", "tokens_per_s", "tokens/s")):
        if mean("idle", "ours", task, key) is None:
            continue
        cells = {}
        for cond in ("idle", "busy"):
            row = [mean(cond, arm, task, key) for arm in engines]
            print(f"{task + ' ' + unit + ' ' + cond:<24}{row[0]:>18.2f}{row[1]:>18.2f}")
            cells[cond] = row
        ratio = [b / i if i else None for b, i in zip(cells["busy"], cells["idle"])]  # None: nothing done idle
        shown = [f"{r:>17.2f}x" if r is not None else f"{'n/a':>18}" for r in ratio]
        print(f"{task + ' ' + unit + ' busy/idle':<24}{shown[0]}{shown[1]}")
        name = f"{task}_{unit.replace('/', '_per_')}"
        figures[name] = {"ours": {"idle": round(cells["idle"][0], 3), "busy": round(cells["busy"][0], 3),
                                  "ratio": ratio[0] and round(ratio[0], 3)},
                         "fixed2": {"idle": round(cells["idle"][1], 3), "busy": round(cells["busy"][1], 3),
                                    "ratio": ratio[1] and round(ratio[1], 3)}}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory {peak:.0f} MB; {time.monotonic() - started:.0f} s measured")
    figures["peak_rss_mb"] = round(peak)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

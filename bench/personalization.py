"""Personalization quality and cost on the shared Panza users (train on the first 80%, test on the last 20%).

For each user: their first 80% of emails go into a fresh (encrypted, temporary) vault; data
playback turns them into instructions; an adapter is trained, exported, verified and
installed; then every held-out email is rewritten from its own playback instruction (as
Panza evaluates) in four settings, side by side:

==================  =========  ==================  =============
setting             adapter    retrieved examples  style summary
==================  =========  ==================  =============
base                no         no                  no
retrieval only      no         yes                 yes
adapter only        yes        no                  yes
adapter+retrieval   yes        yes                 yes
==================  =========  ==================  =============

Scores: ROUGE-1/2/L F1 (rouge-score, stemmed), BLEU = mean of sentence BLEU-1..4 (sacrebleu),
and a style score: the embedding similarity of each generated email to the user's held-out
emails minus its similarity to the other user's (and the share where it is closer to its own).
Targets: adapter+retrieval beats base by >= 20% relative ROUGE-L for every user, and beats
retrieval only.

Costs: playback wall time, texts/s and generated tokens/s; training wall time and tokens/s,
and our loop against a plain peft loop (``model(input_ids, labels=labels)``, fp32) on the
same examples, timed alternately in this process; peak memory.

    python bench/personalization.py            # full (~15-20 min per user on 2 cores)
    python bench/personalization.py --quick    # a handful of texts and steps (about two minutes)

Ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "panza-emails"
USERS = ("david", "isabel")
SETTINGS = {  # name: (adapter, examples, style summary and profile facts)
    "base": (False, False, False),
    "retrieval only": (False, True, True),
    "adapter only": (True, False, True),
    "adapter+retrieval": (True, True, True),
}


def load_user(name: str) -> tuple[list[dict], list[dict]]:
    rows = [json.loads(line) for line in (DATA / f"{name}.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [{"email": r["email"].replace("\r\n", "\n").strip(), "subject": r.get("subject", "")} for r in rows]
    cut = int(len(rows) * 0.8)
    return rows[:cut], rows[cut:]


def scores(generated: list[str], references: list[str]) -> dict:
    from rouge_score import rouge_scorer
    from sacrebleu.metrics import BLEU

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    out = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0, "bleu": 0.0}
    bleus = [BLEU(max_ngram_order=n, effective_order=True) for n in (1, 2, 3, 4)]
    for hyp, ref in zip(generated, references):
        r = scorer.score(ref, hyp)
        for key in ("rouge1", "rouge2", "rougeL"):
            out[key] += r[key].fmeasure
        out["bleu"] += sum(b.sentence_score(hyp, [ref]).score / 100 for b in bleus) / 4
    return {k: v / max(1, len(generated)) for k, v in out.items()}


def style_scores(embedder, generated: list[str], own: list[str], other: list[str]) -> dict:
    g, o, x = embedder.encode(generated), embedder.encode(own), embedder.encode(other)
    own_sim, other_sim = (g @ o.T).mean(axis=1), (g @ x.T).mean(axis=1)
    return {"style_margin": float((own_sim - other_sim).mean()), "style_closer": float((own_sim > other_sim).mean())}


def compare_loops(result, n_examples: int, rounds: int) -> dict:
    """Our training step against a plain peft step on the same examples, alternating, same process.

    Ours: the training loop's model (bf16 base where the CPU has it, float32 LoRA) and the
    response-only loss. Plain: float32 peft model, ``model(input_ids, labels=labels).loss``.
    Both start from the trained LoRA weights and take real optimizer steps.
    """
    import torch

    from localpers.writing.train import _lora_state, encode, response_loss, training_model

    recipe, tokenizer = result.recipe, result.tokenizer
    samples = result.samples[:n_examples]
    encoded = [encode(tokenizer, recipe, s, with_examples=i % 2 == 0, style=result.style) for i, s in enumerate(samples)]
    ours_model, _ = training_model(recipe, lora_state=_lora_state(result.model))
    models = {"ours": ours_model, "plain": result.model}
    optimizers = {k: torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-6)
                  for k, m in models.items()}
    for m in models.values():
        m.train()

    def step(kind: str) -> tuple[int, float]:
        model = models[kind]
        started, tokens = time.perf_counter(), 0
        for ids, labels in encoded:
            x, y = torch.tensor([ids]), torch.tensor([labels])
            if kind == "ours":
                loss, n = response_loss(model, x, y)
                (loss / n).backward()
            else:
                model(input_ids=x, labels=y).loss.backward()
            tokens += len(ids)
        optimizers[kind].step()
        optimizers[kind].zero_grad(set_to_none=True)
        return tokens, time.perf_counter() - started

    step("ours")  # warm-up, not counted
    step("plain")
    totals = {"ours": [0, 0.0], "plain": [0, 0.0]}
    for _ in range(rounds):
        for kind in ("ours", "plain"):
            tokens, seconds = step(kind)
            totals[kind][0] += tokens
            totals[kind][1] += seconds
    del models, optimizers, ours_model
    ours, plain = (totals[k][0] / totals[k][1] for k in ("ours", "plain"))
    return {"ours_tokens_per_s": ours, "plain_peft_tokens_per_s": plain, "speedup": ours / plain,
            "examples": len(encoded), "rounds": rounds}


def run_user(name: str, other_heldout: list[str], args, engine, playback_engine, embedder) -> dict:
    from localpers.writing import playback as pb
    from localpers.history import History
    from localpers.writing.train import TrainConfig, collect_texts, train_adapter
    from localpers.vault import Vault
    from localpers.writing.writer import Writer

    train_rows, test_rows = load_user(name)
    if args.quick:
        train_rows, test_rows = train_rows[:8], test_rows[:2]
    elif args.eval_limit:
        test_rows = test_rows[:args.eval_limit]
    report: dict = {"train_texts": len(train_rows), "test_texts": len(test_rows)}
    with tempfile.TemporaryDirectory(prefix="localpers-bench-") as home:
        os.environ["LOCALPERS_HOME"] = home
        vault = Vault.create(name, "bench", kdf_seconds=0)
        history = History(vault)
        history.add_texts([r["email"] for r in train_rows], kind="email",
                          metadata=[{"subject": r["subject"]} for r in train_rows])

        # Playback of the training texts (timed on its own; train_adapter then reads the cache).
        items = [{"content": t["content"], "metadata": t["metadata"]} for t in collect_texts(vault)]
        started = time.perf_counter()
        made = pb.playback(vault, items, playback_engine)
        playback_s = time.perf_counter() - started
        generated_tokens = sum(playback_engine.count_tokens(m.text) for m in made)
        report["playback"] = {"seconds": playback_s, "texts_per_s": len(items) / playback_s,
                              "generated_tokens_per_s": generated_tokens / playback_s,
                              "from_model": sum(m.source == "model" for m in made), "fallback":
                                  sum(m.source == "fallback" for m in made)}
        print(f"[{name}] playback: {len(items)} texts in {playback_s:.0f}s "
              f"({report['playback']['from_model']} by the model, {report['playback']['fallback']} fallback)",
              file=sys.stderr)

        config = TrainConfig(min_texts=5, **({"max_steps": 2, "max_length": 128, "batch_size": 2, "eval_every": 2}
                                             if args.quick else {}))
        if args.steps:
            config.max_steps = args.steps
        last = [0.0]

        def progress(p) -> None:
            if p.phase != "training" or time.monotonic() - last[0] > 30 or p.step == p.total_steps:
                last[0] = time.monotonic()
                print(f"[{name}] {p}", file=sys.stderr)

        started = time.perf_counter()
        result = train_adapter(vault, config, progress=progress, history=history, writer=engine)
        train_s = time.perf_counter() - started
        report["training"] = {"seconds_total": train_s, "steps": result.steps, "train_tokens": result.train_tokens,
                              "tokens_per_s": result.tokens_per_s, "base_heldout_loss": result.base_heldout_loss,
                              "heldout_loss": result.heldout_loss, "stopped_early": result.stopped_early,
                              "logit_correlation": result.adapter.scores["logit_correlation"],
                              "error_ratio": result.adapter.scores["error_ratio"]}
        report["loop_vs_plain_peft"] = compare_loops(result, 4 if args.quick else 8, 1 if args.quick else 2)
        report["loop_vs_plain_peft"]["plain_wall_s_estimated"] = (
            result.train_tokens / report["loop_vs_plain_peft"]["plain_peft_tokens_per_s"])
        del result
        gc.collect()

        # Held-out instructions from playback on the held-out texts (the texts themselves never enter the vault's history).
        instructions = pb.playback(vault, [{"content": r["email"], "metadata": {"subject": r["subject"]}}
                                           for r in test_rows], playback_engine)
        references = [r["email"] for r in test_rows]
        report["settings"] = {}
        for setting, (use_adapter, use_examples, use_style) in SETTINGS.items():
            writer = Writer(vault, engine=engine, history=history, use_adapter=use_adapter,
                            use_examples=use_examples, use_style=use_style, use_facts=use_style,
                            max_tokens=args.max_tokens)
            started = time.perf_counter()
            outputs = [writer.compose(i.text).result() for i in instructions]
            seconds = time.perf_counter() - started
            figures = scores(outputs, references)
            figures.update(style_scores(embedder, outputs, references, other_heldout))
            figures["seconds"] = seconds
            for k in range(min(args.show, len(outputs))):
                print(f"--- [{name} / {setting}] {instructions[k].text}\n{outputs[k]}\n", file=sys.stderr)
            report["settings"][setting] = figures
            print(f"[{name}] {setting:<18} ROUGE-L {figures['rougeL']:.3f}  BLEU {figures['bleu']:.3f}  "
                  f"style {figures['style_margin']:+.3f}  ({seconds:.0f}s)", file=sys.stderr)
            if setting == "adapter+retrieval":
                report["sample"] = {"instruction": instructions[0].text, "output": outputs[0][:300]}
        vault.close()
    s = report["settings"]
    base_l, full_l, retr_l = s["base"]["rougeL"], s["adapter+retrieval"]["rougeL"], s["retrieval only"]["rougeL"]
    report["rougeL_gain_vs_base"] = (full_l - base_l) / base_l if base_l else float("inf")
    report["beats_base_by_20pct"] = report["rougeL_gain_vs_base"] >= 0.20
    report["beats_retrieval_only"] = full_l > retr_l
    return report


def print_table(results: dict) -> None:
    print(f"\n{'user':<8} {'setting':<18} {'ROUGE-1':>8} {'ROUGE-2':>8} {'ROUGE-L':>8} {'BLEU':>8} "
          f"{'style+':>8} {'closer':>7}")
    for user, rep in results.items():
        for setting, f in rep["settings"].items():
            print(f"{user:<8} {setting:<18} {f['rouge1']:8.3f} {f['rouge2']:8.3f} {f['rougeL']:8.3f} {f['bleu']:8.3f} "
                  f"{f['style_margin']:+8.3f} {f['style_closer']:7.0%}")
        print(f"{user:<8} adapter+retrieval vs base: {rep['rougeL_gain_vs_base']:+.0%} ROUGE-L "
              f"(target +20%: {'met' if rep['beats_base_by_20pct'] else 'NOT met'}); beats retrieval only: "
              f"{'yes' if rep['beats_retrieval_only'] else 'NO'}")
    print(f"\n{'user':<8} {'playback':>22} {'training':>26} {'ours vs plain peft':>32}")
    for user, rep in results.items():
        p, t, c = rep["playback"], rep["training"], rep["loop_vs_plain_peft"]
        print(f"{user:<8} {p['seconds']:6.0f}s {p['texts_per_s']:5.2f} texts/s  "
              f"{t['seconds_total']:6.0f}s {t['tokens_per_s']:6.0f} tok/s ({t['steps']} steps)  "
              f"{c['ours_tokens_per_s']:6.0f} vs {c['plain_peft_tokens_per_s']:6.0f} tok/s = {c['speedup']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 texts, 2 steps, 2 test emails per user")
    parser.add_argument("--steps", type=int, default=0, help="override the training steps")
    parser.add_argument("--eval-limit", type=int, default=0, help="evaluate on at most this many held-out emails")
    parser.add_argument("--max-tokens", type=int, default=0, help="tokens per generated email")
    parser.add_argument("--users", default=",".join(USERS))
    parser.add_argument("--show", type=int, default=0, help="print this many generated emails per setting")
    args = parser.parse_args()
    args.max_tokens = args.max_tokens or (40 if args.quick else 160)
    if not DATA.exists():
        sys.exit(f"no Panza data at {DATA}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from localpers.embed import Embedder
    from localpers.llm import Engine

    started = time.perf_counter()
    engine = Engine.shared("gemma3-270m")
    playback_engine = Engine.shared("smollm2-135m-instruct")
    embedder = Embedder.shared()
    users = args.users.split(",")
    heldout = {u: [r["email"] for r in load_user(u)[1]] for u in USERS}
    results = {}
    for user in users:
        other = heldout[next(u for u in USERS if u != user)]
        results[user] = run_user(user, other[:20] if args.quick else other, args, engine, playback_engine, embedder)
    print_table(results)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    total = time.perf_counter() - started
    print(f"\npeak memory {peak_mb:.0f} MB, wall {total:.0f}s")
    summary = {"bench": "personalization", "quick": args.quick, "wall_s": round(total, 1), "peak_rss_mb": round(peak_mb),
               "targets_met": all(r["beats_base_by_20pct"] and r["beats_retrieval_only"] for r in results.values()),
               "users": {u: {"settings": {k: {m: round(v, 4) for m, v in f.items()} for k, f in r["settings"].items()},
                             "rougeL_gain_vs_base": round(r["rougeL_gain_vs_base"], 4),
                             "beats_base_by_20pct": r["beats_base_by_20pct"],
                             "beats_retrieval_only": r["beats_retrieval_only"],
                             "playback": {k: round(v, 3) for k, v in r["playback"].items()},
                             "training": {k: (round(v, 4) if isinstance(v, float) else v)
                                          for k, v in r["training"].items()},
                             "loop_vs_plain_peft": {k: round(v, 3) for k, v in r["loop_vs_plain_peft"].items()}}
                         for u, r in results.items()}}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

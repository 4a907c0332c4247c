"""Personalization quality and cost on the shared Panza users (train on the first 80%, test on the last 20%).

For each user: their first 80% of emails go into a fresh (encrypted, temporary) vault; data
playback turns them into instructions; an adapter is trained, exported, verified and
installed; then every held-out email is rewritten from its own playback instruction (as
Panza evaluates) in these settings, side by side:

=========================  ===================  =========  ==================  =============
setting                    writer               adapter    retrieved examples  style summary
=========================  ===================  =========  ==================  =============
cold start                 cold-start (chat)    no         no (empty vault)    no
retrieval only             Gemma, plain prompt  no         yes                 yes
few texts                  cold-start (chat)    no         from 10 texts       from 10 texts
base                       Gemma, plain prompt  no         no                  no
cold-start + retrieval     cold-start (chat)    no         yes                 yes
adapter only               Gemma + adapter      yes        no                  yes
adapter+retrieval          Gemma + adapter      yes        yes                 yes
=========================  ===================  =========  ==================  =============

"Cold-start (chat)" is what :class:`localpers.writing.writer.Writer` uses for a user without an
adapter: an instruction-tuned model (SmolLM2 135M Instruct by default, ``--cold-start-model``
to try another GGUF) with its chat template. "base" and "retrieval only" are the
pretrained Gemma writer with the recipe's plain prompt (what users without an adapter got
before), kept as the baselines. "few texts" is a second vault holding only the user's 10
most recent training texts: a user's first minute after importing a handful. The settings
without an adapter run first, setting by setting for every user, so that a run cut short
still compares them; training and the adapter settings follow.

Scores: ROUGE-1/2/L F1 (rouge-score, stemmed), BLEU = mean of sentence BLEU-1..4 (sacrebleu);
a style score: the embedding similarity of each generated email to the user's held-out
emails minus its similarity to the other user's (and the share where it is closer to its own);
and instruction fidelity:

- **key-fact recall**: the share of the instruction's key facts found in the draft, averaged
  over the instructions that have any (``facts``), and the same for the real email's key
  facts (``email facts``). Key facts are found by :func:`localpers.writing.writer.key_facts`: e-mail
  addresses and URLs; numbers with their separators and am/pm ("10/24", "3:30", "6 pm");
  weekday and month names (also abbreviated) anywhere; capitalized words that do not open a
  sentence or line (names of people, places, products). A fact counts as found when it
  appears in the draft as a word of its own, case-insensitively ("6PM" = "6 pm").
- **similarity**: the cosine similarity of the draft's embedding to the real email's
  (all-MiniLM-L6-v2 through localpers' own Embedder), averaged.

Targets: adapter+retrieval beats base by >= 20% relative ROUGE-L for every user, and beats
retrieval only; cold start has key-fact recall >= 0.6, adapter+retrieval >= 0.8.

Costs: playback wall time, texts/s and generated tokens/s; training wall time and tokens/s,
and our loop against a plain peft loop (``model(input_ids, labels=labels)``, fp32) on the
same examples, timed alternately in this process; peak memory.

    python bench/personalization.py            # full (~15-20 min per user on 2 cores, idle)
    python bench/personalization.py --quick    # a handful of texts and steps (about two minutes)
    python bench/personalization.py --no-adapter --cold-start-model /path/to/other.gguf   # compare writers only

After the table it prints five held-out emails per user, chosen by a fixed seed: the
instruction, the real email, the cold-start draft and the adapter+retrieval draft.
Ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "panza-emails"
USERS = ("david", "isabel")
SETTINGS = {  # name: (adapter, examples, style summary and profile facts, writer, vault)
    "cold start": (False, False, False, "cold", "empty"),
    "retrieval only": (False, True, True, "gemma", "all"),
    "few texts": (False, True, True, "cold", "few"),
    "base": (False, False, False, "gemma", "all"),
    "cold-start + retrieval": (False, True, True, "cold", "all"),
    "adapter only": (True, False, True, "gemma", "all"),
    "adapter+retrieval": (True, True, True, "gemma", "all"),
}
ALT_SETTINGS = {  # with --compare-cold-start: the same as "cold start" and "few texts" with another writer
    "cold start [alt]": (False, False, False, "alt", "empty"),
    "few texts [alt]": (False, True, True, "alt", "few"),
}
FEW_TEXTS = 10
SAMPLES, SAMPLE_SEED = 5, 13


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


def fidelity_scores(embedder, generated: list[str], references: list[str], instructions: list[str]) -> dict:
    """Key-fact recall of the instruction's and the real email's facts, and draft-to-real-email similarity."""
    from localpers.writing.context import has_fact, key_facts

    def recall(sources: list[str]) -> float:
        shares = []
        for hyp, src in zip(generated, sources):
            facts = key_facts(src)
            if facts:
                shares.append(sum(has_fact(hyp, f) for f in facts) / len(facts))
        return sum(shares) / len(shares) if shares else float("nan")

    g, r = embedder.encode(generated), embedder.encode(references)
    return {"fact_recall": recall(instructions), "email_fact_recall": recall(references),
            "similarity": float((g * r).sum(axis=1).mean())}


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


def prepare_user(name: str, args, playback_engine) -> dict:
    """The user's vaults (all training texts, the 10 most recent, none) and the held-out instructions."""
    from localpers.writing import playback as pb
    from localpers.history import History
    from localpers.vault import Vault

    train_rows, test_rows = load_user(name)
    if args.quick:
        train_rows, test_rows = train_rows[:8], test_rows[:2]
    elif args.eval_limit:
        test_rows = test_rows[:args.eval_limit]
    vaults = {}
    for which, rows in (("all", train_rows), ("few", train_rows[-FEW_TEXTS:]), ("empty", [])):
        vault = Vault.create(name if which == "all" else f"{name}-{which}", "bench", kdf_seconds=0)
        history = History(vault) if rows else None
        if rows:
            history.add_texts([r["email"] for r in rows], kind="email", metadata=[{"subject": r["subject"]} for r in rows])
        vaults[which] = (vault, history)
    # Held-out instructions from playback on the held-out texts (the texts themselves never enter a history).
    instructions = pb.playback(vaults["all"][0], [{"content": r["email"], "metadata": {"subject": r["subject"]}}
                                                  for r in test_rows], playback_engine)
    print(f"[{name}] {len(instructions)} held-out instructions", file=sys.stderr, flush=True)
    return {"name": name, "vaults": vaults, "texts": [i.text for i in instructions],
            "references": [r["email"] for r in test_rows], "outputs": {},
            "report": {"train_texts": len(train_rows), "test_texts": len(test_rows), "settings": {}}}


def evaluate(user: dict, settings: list[str], args, engine, embedder, other_heldout: list[str],
             cold_engines: dict) -> None:
    """Write every held-out instruction in each of ``settings``; figures go to the user's report."""
    from localpers.writing.writer import Writer

    name, texts, references = user["name"], user["texts"], user["references"]
    for setting in settings:
        use_adapter, use_examples, use_style, writer_kind, which = SETTINGS.get(setting) or ALT_SETTINGS[setting]
        vault, history = user["vaults"][which]
        writer = Writer(vault, engine=engine, history=history, use_adapter=use_adapter, use_examples=use_examples,
                        use_style=use_style, use_facts=use_style, max_tokens=args.max_tokens,
                        cold_start=False if writer_kind == "gemma" else None,
                        cold_start_engine=cold_engines.get(writer_kind))
        if use_adapter and writer.adapter is None:
            sys.exit(f"[{name}] {setting}: no adapter was loaded")
        started = time.perf_counter()
        outputs = [writer.compose(t).result() for t in texts]
        seconds = time.perf_counter() - started
        figures = scores(outputs, references)
        figures.update(style_scores(embedder, outputs, references, other_heldout))
        figures.update(fidelity_scores(embedder, outputs, references, texts))
        figures["seconds"] = seconds
        for k in range(min(args.show, len(outputs))):
            print(f"--- [{name} / {setting}] {texts[k]}\n{outputs[k]}\n", file=sys.stderr)
        user["report"]["settings"][setting] = figures
        user["outputs"][setting] = outputs
        print(f"[{name}] {setting:<22} ROUGE-L {figures['rougeL']:.3f}  BLEU {figures['bleu']:.3f}  "
              f"style {figures['style_margin']:+.3f}  facts {figures['fact_recall']:.2f}  "
              f"sim {figures['similarity']:.3f}  ({seconds:.0f}s)", file=sys.stderr, flush=True)


def train_user(user: dict, args, engine, playback_engine) -> None:
    """Playback of the training texts (timed on its own; training then reads the cache), then the adapter."""
    from localpers.writing import playback as pb
    from localpers.writing.train import collect_texts

    name, report = user["name"], user["report"]
    vault, history = user["vaults"]["all"]
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
          file=sys.stderr, flush=True)
    train(name, vault, history, engine, args, report)


def finish_user(user: dict) -> dict:
    """Samples by a fixed seed, the targets, and the vaults closed."""
    report, texts, outputs = user["report"], user["texts"], user["outputs"]
    chosen = sorted(random.Random(SAMPLE_SEED).sample(range(len(texts)), min(SAMPLES, len(texts))))
    report["samples"] = [{"instruction": texts[i], "real": user["references"][i],
                          **{k: outputs[k][i] for k in ("cold start", "adapter+retrieval") if k in outputs}}
                         for i in chosen]
    for vault, _ in user["vaults"].values():
        vault.close()
    s = report["settings"]
    if {"adapter+retrieval", "base", "retrieval only"} <= set(s):
        base_l, full_l, retr_l = s["base"]["rougeL"], s["adapter+retrieval"]["rougeL"], s["retrieval only"]["rougeL"]
        report["rougeL_gain_vs_base"] = (full_l - base_l) / base_l if base_l else float("inf")
        report["beats_base_by_20pct"] = report["rougeL_gain_vs_base"] >= 0.20
        report["beats_retrieval_only"] = full_l > retr_l
    return report


def train(name: str, vault, history, engine, args, report: dict) -> None:
    """Train, export, verify and install the user's adapter; its costs go to ``report``."""
    from localpers.writing.train import TrainConfig, train_adapter

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


def print_table(results: dict) -> None:
    print(f"\n{'user':<8} {'setting':<22} {'ROUGE-1':>8} {'ROUGE-2':>8} {'ROUGE-L':>8} {'BLEU':>7} "
          f"{'style+':>7} {'closer':>7} {'facts':>6} {'email facts':>11} {'similarity':>10}")
    for user, rep in results.items():
        for setting, f in rep["settings"].items():
            print(f"{user:<8} {setting:<22} {f['rouge1']:8.3f} {f['rouge2']:8.3f} {f['rougeL']:8.3f} {f['bleu']:7.3f} "
                  f"{f['style_margin']:+7.3f} {f['style_closer']:7.0%} {f['fact_recall']:6.2f} "
                  f"{f['email_fact_recall']:11.2f} {f['similarity']:10.3f}")
        s = rep["settings"]
        if "cold start" in s and "retrieval only" in s:
            print(f"{user:<8} cold start: key-fact recall {s['cold start']['fact_recall']:.2f} (target 0.6), ROUGE-L "
                  f"{s['cold start']['rougeL']:.3f} vs retrieval only {s['retrieval only']['rougeL']:.3f}")
        if "rougeL_gain_vs_base" in rep:
            print(f"{user:<8} adapter+retrieval: key-fact recall {s['adapter+retrieval']['fact_recall']:.2f} "
                  f"(target 0.8); vs base {rep['rougeL_gain_vs_base']:+.0%} ROUGE-L "
                  f"(target +20%: {'met' if rep['beats_base_by_20pct'] else 'NOT met'}); beats retrieval only: "
                  f"{'yes' if rep['beats_retrieval_only'] else 'NO'}")
    if not all("training" in rep for rep in results.values()):
        return
    print(f"\n{'user':<8} {'playback':>22} {'training':>26} {'ours vs plain peft':>32}")
    for user, rep in results.items():
        p, t, c = rep["playback"], rep["training"], rep["loop_vs_plain_peft"]
        print(f"{user:<8} {p['seconds']:6.0f}s {p['texts_per_s']:5.2f} texts/s  "
              f"{t['seconds_total']:6.0f}s {t['tokens_per_s']:6.0f} tok/s ({t['steps']} steps)  "
              f"{c['ours_tokens_per_s']:6.0f} vs {c['plain_peft_tokens_per_s']:6.0f} tok/s = {c['speedup']:.2f}x")


def print_samples(results: dict) -> None:
    """The seeded side-by-side samples: instruction, real email, cold-start and adapter+retrieval drafts."""
    for user, rep in results.items():
        for n, sample in enumerate(rep["samples"], 1):
            print(f"\n=== {user} sample {n}\n--- instruction\n{sample['instruction']}")
            for key in ("real", "cold start", "adapter+retrieval"):
                if key in sample:
                    print(f"--- {'real email' if key == 'real' else key}\n{sample[key].strip()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 texts, 2 steps, 2 test emails per user")
    parser.add_argument("--steps", type=int, default=0, help="override the training steps")
    parser.add_argument("--eval-limit", type=int, default=0, help="evaluate on at most this many held-out emails")
    parser.add_argument("--max-tokens", type=int, default=0, help="tokens per generated email")
    parser.add_argument("--users", default=",".join(USERS))
    parser.add_argument("--show", type=int, default=0, help="print this many generated emails per setting")
    parser.add_argument("--no-adapter", action="store_true",
                        help="train nothing: only the settings without an adapter (to compare writers quickly)")
    parser.add_argument("--threads", type=int, default=1,
                        help="llama.cpp threads (default 1: on a busy 2-core machine two threads spin-wait and "
                             "generate ~17x slower; 0 = the library's default)")
    parser.add_argument("--settings", default="", help="only these settings, comma-separated (default: all)")
    parser.add_argument("--compare-cold-start", default="", metavar="GGUF",
                        help="also measure this cold-start writer (settings 'cold start [alt]', 'few texts [alt]')")
    parser.add_argument("--cold-start-model", default="",
                        help="the cold-start writer to measure (registry name or GGUF path; default: the library's)")
    args = parser.parse_args()
    args.max_tokens = args.max_tokens or (40 if args.quick else 160)
    if not DATA.exists():
        sys.exit(f"no Panza data at {DATA}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from localpers.embed import Embedder
    from localpers.llm import Engine

    started = time.perf_counter()
    threads = {"threads": args.threads} if args.threads else {}
    engine = Engine.shared("gemma3-270m", **threads)
    playback_engine = Engine.shared("smollm2-135m-instruct", **threads)
    from localpers.writing.writer import COLD_START_MODEL

    cold_engines = {"cold": Engine.shared(args.cold_start_model or COLD_START_MODEL, **threads)}
    if args.compare_cold_start:
        cold_engines["alt"] = Engine.shared(args.compare_cold_start, **threads)
    embedder = Embedder.shared()
    heldout = {u: [r["email"] for r in load_user(u)[1]] for u in USERS}
    others = {u: heldout[next(o for o in USERS if o != u)] for u in USERS}
    others = {u: (o[:20] if args.quick else o) for u, o in others.items()}
    chosen = [k.strip() for k in args.settings.split(",")] if args.settings else [*SETTINGS, *ALT_SETTINGS]
    unknown = [k for k in chosen if k not in SETTINGS and k not in ALT_SETTINGS]
    if unknown:
        sys.exit(f"unknown setting(s) {', '.join(unknown)}; choose from: {', '.join([*SETTINGS, *ALT_SETTINGS])}")
    untrained = [k for k, v in SETTINGS.items() if not v[0] and k in chosen]
    untrained += [k for k in ALT_SETTINGS if k in chosen] if args.compare_cold_start else []
    trained = [k for k, v in SETTINGS.items() if v[0] and k in chosen]
    with tempfile.TemporaryDirectory(prefix="localpers-bench-") as home:
        os.environ["LOCALPERS_HOME"] = home
        # Every user's settings without an adapter first (minutes), then training and the adapter settings.
        users = {name: prepare_user(name, args, playback_engine) for name in args.users.split(",")}
        for setting in untrained:  # setting by setting, so that a partial run has every user's figures
            for name, user in users.items():
                evaluate(user, [setting], args, engine, embedder, others[name], cold_engines)
        if trained and not args.no_adapter:
            for name, user in users.items():
                train_user(user, args, engine, playback_engine)
                evaluate(user, trained, args, engine, embedder, others[name], cold_engines)
        results = {name: finish_user(user) for name, user in users.items()}
    print_table(results)
    print_samples(results)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    total = time.perf_counter() - started
    print(f"\npeak memory {peak_mb:.0f} MB, wall {total:.0f}s")

    def rounded(d: dict) -> dict:
        return {k: ((None if v != v else round(v, 4)) if isinstance(v, float) else v) for k, v in d.items()}

    def figures(r: dict) -> dict:
        s = r["settings"]
        out = {"settings": {k: rounded(f) for k, f in s.items()}}
        if "cold start" in s and "retrieval only" in s:
            out["cold_start_fact_recall_ok"] = s["cold start"]["fact_recall"] >= 0.6
            out["cold_start_beats_retrieval_only"] = s["cold start"]["rougeL"] > s["retrieval only"]["rougeL"]
        if "training" in r:
            out["playback"] = rounded(r["playback"])
            out["training"] = rounded(r["training"])
            out["loop_vs_plain_peft"] = rounded(r["loop_vs_plain_peft"])
        if "rougeL_gain_vs_base" in r:
            out.update({"adapter_fact_recall_ok": s["adapter+retrieval"]["fact_recall"] >= 0.8,
                        "rougeL_gain_vs_base": round(r["rougeL_gain_vs_base"], 4),
                        "beats_base_by_20pct": r["beats_base_by_20pct"],
                        "beats_retrieval_only": r["beats_retrieval_only"]})
        return out

    summary = {"bench": "personalization", "quick": args.quick, "wall_s": round(total, 1), "peak_rss_mb": round(peak_mb),
               "cold_start_model": args.cold_start_model or "default",
               # The adapter targets; None when no adapter setting ran (nothing to judge).
               "targets_met": (all(r["beats_base_by_20pct"] and r["beats_retrieval_only"] for r in results.values())
                               if all("beats_base_by_20pct" in r for r in results.values()) else None),
               "users": {u: figures(r) for u, r in results.items()}}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

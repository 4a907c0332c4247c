"""Engine overhead: localpers.llm vs bare llama_cpp.Llama, and adapter swap vs model reload.

Both sides load the same GGUF with the same context, threads and greedy sampling, and
generate from the same prompt; runs alternate (ours, bare, ours, bare...) so that
background load hits both alike. Figures: decode tokens/s, time to first token, their
ratios, the latency of switching a LoRA adapter in and out, and of reloading the model
(the alternative to hot swapping), plus peak memory.

    python bench/engine.py            # full: 5 rounds of 128 tokens
    python bench/engine.py --quick    # under two minutes

Ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import llama_cpp  # noqa: E402

from localpers import models  # noqa: E402
from localpers.llm import Engine  # noqa: E402
from localpers.paths import default_threads  # noqa: E402

PROMPT = "Write a short note to a colleague about moving our weekly meeting to Thursday.\n\nHi Sam,\n"


def timed_stream(pieces) -> tuple[float, float, int]:
    """(time to first token, decode tokens/s after the first, tokens) for an iterator of pieces."""
    start = time.perf_counter()
    first = None
    n = 0
    for _ in pieces:
        n += 1
        if first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    return first - start, (n - 1) / (end - first) if n > 1 else 0.0, n


def bare_pieces(llm: llama_cpp.Llama, max_tokens: int):
    llm.reset()
    for chunk in llm.create_completion(PROMPT, max_tokens=max_tokens, temperature=0.0, top_p=0.95, top_k=40,
                                       repeat_penalty=1.1, stream=True):
        yield chunk["choices"][0]["text"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and tokens (under two minutes)")
    args = parser.parse_args()
    rounds, max_tokens, swaps = (3, 48, 20) if args.quick else (5, 128, 100)
    threads = default_threads()
    path = models.ensure("gemma3-270m")

    ours = Engine(path, n_ctx=1024, threads=threads)
    bare = llama_cpp.Llama(model_path=str(path), n_ctx=1024, n_threads=threads, n_threads_batch=threads,
                           seed=0, verbose=False)

    # Warm both up once (first evaluation pays one-off allocation costs), then measure.
    ours.complete(PROMPT, max_tokens=2)
    list(bare_pieces(bare, 2))
    results = {"ours": [], "bare": []}
    for _ in range(rounds):
        ours.reset()
        results["ours"].append(timed_stream(ours.stream(PROMPT, max_tokens=max_tokens)))
        results["bare"].append(timed_stream(bare_pieces(bare, max_tokens)))
    tps = {k: statistics.median(r[1] for r in v) for k, v in results.items()}
    ttft = {k: statistics.median(r[0] for r in v) for k, v in results.items()}

    # Adapter swap: select adapter A, then none, each followed by the context reset a swap needs.
    from test_engine import write_lora

    with tempfile.TemporaryDirectory() as tmp:
        ours.load_adapter("a", write_lora(Path(tmp) / "a.gguf", scale=0.1))
        ours.load_adapter("b", write_lora(Path(tmp) / "b.gguf", scale=0.1, seed=1))
    swap_times = []
    for i in range(swaps):
        start = time.perf_counter()
        with ours.lock:
            ours._select("a" if i % 2 == 0 else "b")
        swap_times.append(time.perf_counter() - start)
    swap_ms = statistics.median(swap_times) * 1000

    # What a user waits for: the first token with the other adapter, swapping vs reloading the model with it.
    with tempfile.TemporaryDirectory() as tmp:
        lora_path = write_lora(Path(tmp) / "c.gguf", scale=0.1, seed=2)
        reload_times, after_swap, after_reload = [], [], []
        for i in range(2 if args.quick else 3):
            start = time.perf_counter()
            next(iter(ours.stream(PROMPT, max_tokens=1, adapter="a" if i % 2 else "b")))
            after_swap.append(time.perf_counter() - start)
            start = time.perf_counter()
            fresh = llama_cpp.Llama(model_path=str(path), n_ctx=1024, n_threads=threads, verbose=False,
                                    lora_path=str(lora_path))
            reload_times.append(time.perf_counter() - start)
            next(iter(bare_pieces(fresh, 1)))
            after_reload.append(time.perf_counter() - start)
            del fresh
    reload_ms = statistics.median(reload_times) * 1000
    first_after_swap_ms = statistics.median(after_swap) * 1000
    first_after_reload_ms = statistics.median(after_reload) * 1000

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures = {
        "bench": "engine",
        "quick": args.quick,
        "model": path.name,
        "threads": threads,
        "tokens_per_s_ours": round(tps["ours"], 2),
        "tokens_per_s_bare": round(tps["bare"], 2),
        "tokens_per_s_ratio": round(tps["ours"] / tps["bare"], 3),
        "ttft_ms_ours": round(ttft["ours"] * 1000, 1),
        "ttft_ms_bare": round(ttft["bare"] * 1000, 1),
        "ttft_ratio_bare_over_ours": round(ttft["bare"] / ttft["ours"], 3),
        "adapter_swap_ms": round(swap_ms, 3),
        "model_reload_ms": round(reload_ms, 1),
        "swap_speedup_vs_reload": round(reload_ms / swap_ms, 1),
        "first_token_after_swap_ms": round(first_after_swap_ms, 1),
        "first_token_after_reload_ms": round(first_after_reload_ms, 1),
        "peak_rss_mb": round(peak_mb, 1),
    }
    print(f"{'':28}{'localpers.llm':>16}{'bare Llama':>14}{'ratio':>10}")
    print(f"{'decode tokens/s':28}{tps['ours']:>16.1f}{tps['bare']:>14.1f}{figures['tokens_per_s_ratio']:>10.3f}")
    print(f"{'time to first token (ms)':28}{ttft['ours'] * 1000:>16.1f}{ttft['bare'] * 1000:>14.1f}"
          f"{figures['ttft_ratio_bare_over_ours']:>10.3f}")
    print(f"adapter swap (select + reset): {swap_ms:.3f} ms   model reload: {reload_ms:.1f} ms   "
          f"({figures['swap_speedup_vs_reload']}x faster)")
    print(f"first token with another adapter: {first_after_swap_ms:.1f} ms by swapping, "
          f"{first_after_reload_ms:.1f} ms by reloading the model with it")
    print(f"peak memory: {peak_mb:.0f} MB")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

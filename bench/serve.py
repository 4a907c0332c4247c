"""The loopback API's overhead: the model through `localpers serve` vs the library directly.

One engine serves both sides. Rounds alternate (library, server, library, server...) so that
background load hits both alike. Each round streams the same greedy completion, once by
iterating ``Engine.stream`` (the library) and once as server-sent events from a real uvicorn
server on a loopback port read by a real HTTP client (the server), and likewise for the
personal writer (``Writer.compose`` vs ``POST /v1/chat/completions`` with ``model=localpers``).
Figures: time to first token and decode tokens/s on each side and their ratios (target >= 0.9x),
then 4 concurrent clients against the server: requests, errors, total tokens/s, vs 1 client.

    python bench/serve.py            # full: 5 rounds of 128 tokens
    python bench/serve.py --quick    # 2 rounds of 32 tokens (under two minutes on an idle machine)
    python bench/serve.py --threads 2

Ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx2 as httpx  # noqa: E402
from engine import timed_stream  # noqa: E402  (bench/engine.py, beside this script)

PROMPT = "Write a short note to a colleague about moving our weekly meeting to Thursday.\n\nHi Sam,\n"
INSTRUCTION = "Tell Sam our weekly meeting moves to Thursday."
TEXTS = [  # synthetic e-mails of a fictional user, so the writer has examples to retrieve
    "Hi Jonas,\n\nCould you send me the slides from Tuesday's workshop? I want to reuse the chart.\n\nCheers,\nMara",
    "Hi Petra,\n\nThanks for covering the support queue yesterday. I owe you a coffee.\n\nCheers,\nMara",
    "Hi team,\n\nThe release moves to Friday because the payment tests failed. Keep Thursday free.\n\nCheers,\nMara",
    "Hi Sam,\n\nI booked the small meeting room for Monday at ten. Bring the budget.\n\nCheers,\nMara",
]


def sse_pieces(client: httpx.Client, path: str, body: dict):
    with client.stream("POST", path, json={**body, "stream": True}) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            choice = json.loads(line[6:])["choices"][0]
            piece = choice.get("text") if "text" in choice else choice["delta"].get("content")
            if piece:
                yield piece


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and tokens (under two minutes)")
    parser.add_argument("--threads", type=int, default=1,
                        help="llama.cpp threads (default 1: steadier on a shared machine)")
    args = parser.parse_args()
    rounds, tokens = (2, 32) if args.quick else (5, 128)
    per_client, concurrent_tokens = (1, 12) if args.quick else (4, 32)

    home = tempfile.mkdtemp(prefix="localpers-bench-serve-")
    os.environ["LOCALPERS_HOME"] = home
    from localpers.history import History
    from localpers.llm import Engine
    from localpers.serve import LocalServer, Service, create_app
    from localpers.vault import Vault
    from localpers.writing.writer import Writer

    vault = Vault.create("bench", "bench passphrase", kdf_seconds=0)
    History(vault).add_texts(TEXTS, kind="email")
    engine = Engine("gemma3-270m", threads=args.threads)
    writer = Writer(vault, engine=engine, use_facts=False)
    service = Service(vault, writer, queue_size=4)
    token = "bench-token"
    results: dict[str, list] = {k: [] for k in ("lib", "srv", "lib_writer", "srv_writer")}
    with LocalServer(create_app(service, token)) as server:
        client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=600)
        base = {"model": service.base_model, "prompt": PROMPT, "max_tokens": tokens, "temperature": 0}
        chat = {"model": "localpers", "max_tokens": tokens, "temperature": 0,
                "messages": [{"role": "user", "content": INSTRUCTION}]}
        timed_stream(sse_pieces(client, "/v1/completions", {**base, "max_tokens": 4}))  # warm both paths up
        timed_stream(engine.stream(PROMPT, max_tokens=4))
        runs = {"lib": lambda: engine.stream(PROMPT, max_tokens=tokens),
                "srv": lambda: sse_pieces(client, "/v1/completions", base),
                "lib_writer": lambda: writer.compose(INSTRUCTION, max_tokens=tokens),
                "srv_writer": lambda: sse_pieces(client, "/v1/chat/completions", chat)}
        for r in range(rounds):
            for key, run in runs.items():
                engine.reset()  # a cold KV cache for each: otherwise the second of a pair reuses the prompt
                results[key].append(timed_stream(run()))
            print(f"round {r + 1}/{rounds}: " + ", ".join(
                f"{k} {v[-1][0] * 1000:.0f} ms, {v[-1][1]:.1f} tok/s" for k, v in results.items()), flush=True)

        # Throughput: the same requests from 1 client, then from 4 at once.
        def burst(n_clients: int) -> tuple[float, int, int, int]:
            counts, errors = [0], [0]
            lock = threading.Lock()
            body = {**base, "max_tokens": concurrent_tokens}

            def one_client() -> None:
                with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"},
                                  timeout=600) as c:
                    for _ in range(per_client):
                        r = c.post("/v1/completions", json=body)
                        with lock:
                            if r.status_code == 200:
                                counts[0] += r.json()["usage"]["completion_tokens"]
                            else:
                                errors[0] += 1

            start = time.perf_counter()
            workers = [threading.Thread(target=one_client) for _ in range(n_clients)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            return time.perf_counter() - start, counts[0], errors[0], n_clients * per_client

        one_s, one_tokens, one_errors, one_n = burst(1)
        four_s, four_tokens, four_errors, four_n = burst(4)
        client.close()
    vault.close()
    shutil.rmtree(home, ignore_errors=True)

    def med(key: str, i: int) -> float:
        return statistics.median(r[i] for r in results[key])

    lengths = {k: sorted({r[2] for r in v}) for k, v in results.items()}
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures = {
        "bench": "serve", "quick": args.quick, "threads": args.threads, "rounds": rounds, "max_tokens": tokens,
        "lib_first_token_ms": round(med("lib", 0) * 1000, 1), "srv_first_token_ms": round(med("srv", 0) * 1000, 1),
        "lib_tokens_per_s": round(med("lib", 1), 1), "srv_tokens_per_s": round(med("srv", 1), 1),
        "decode_ratio": round(med("srv", 1) / med("lib", 1), 3),
        "first_token_ratio": round(med("lib", 0) / med("srv", 0), 3),
        "writer_lib_first_token_ms": round(med("lib_writer", 0) * 1000, 1),
        "writer_srv_first_token_ms": round(med("srv_writer", 0) * 1000, 1),
        "writer_lib_tokens_per_s": round(med("lib_writer", 1), 1),
        "writer_srv_tokens_per_s": round(med("srv_writer", 1), 1),
        "writer_decode_ratio": round(med("srv_writer", 1) / med("lib_writer", 1), 3),
        "writer_first_token_ratio": round(med("lib_writer", 0) / med("srv_writer", 0), 3),
        "pieces": lengths,
        "clients1_requests": one_n, "clients1_errors": one_errors,
        "clients1_tokens_per_s": round(one_tokens / one_s, 1),
        "clients4_requests": four_n, "clients4_errors": four_errors,
        "clients4_tokens_per_s": round(four_tokens / four_s, 1),
        "peak_rss_mb": round(peak_mb, 1),
    }
    print()
    print(f"{'':26}{'library':>12}{'server':>12}{'ratio':>8}")
    print(f"{'base first token (ms)':26}{figures['lib_first_token_ms']:>12}{figures['srv_first_token_ms']:>12}"
          f"{figures['first_token_ratio']:>7}x")
    print(f"{'base decode (tokens/s)':26}{figures['lib_tokens_per_s']:>12}{figures['srv_tokens_per_s']:>12}"
          f"{figures['decode_ratio']:>7}x")
    print(f"{'writer first token (ms)':26}{figures['writer_lib_first_token_ms']:>12}"
          f"{figures['writer_srv_first_token_ms']:>12}{figures['writer_first_token_ratio']:>7}x")
    print(f"{'writer decode (tokens/s)':26}{figures['writer_lib_tokens_per_s']:>12}"
          f"{figures['writer_srv_tokens_per_s']:>12}{figures['writer_decode_ratio']:>7}x")
    print(f"1 client:  {one_n} requests, {one_errors} errors, {figures['clients1_tokens_per_s']} tokens/s")
    print(f"4 clients: {four_n} requests, {four_errors} errors, {figures['clients4_tokens_per_s']} tokens/s")
    print(f"peak memory: {peak_mb:.0f} MB")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

"""Benchmark cold start: each command's time to its first output, in fresh processes.

Each command runs ``--runs`` times (default 5) as a new process, against a demo profile
made once beforehand in a private data directory, and reports the median wall time to the
first byte on stdout (``write``: the first token of the draft; the TUI: the Write screen
mounted with its instruction box focused, in Textual's headless mode), the CPU time
(user+sys, which a busy machine inflates less than wall time) and the peak memory (max
RSS) of the process. Baselines: ``python -c pass`` and ``python -c "import localpers"``.

Usage::

    .venv/bin/python bench/startup.py            # 5 runs each
    .venv/bin/python bench/startup.py --quick    # 3 runs each (under two minutes)

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent / "localpers"
TARGETS = {"search": 1.0, "recommend": 1.5, "write": 2.0, "tui": 3.0}  # seconds, idle 2-core machine

TUI_DRIVER = """
import asyncio
from localpers.tui.app import LocalpersApp
from localpers.tui.screens.write import WriteScreen
from textual.widgets import Input

async def main():
    app = LocalpersApp(demo=True)
    async with app.run_test(headless=True, size=(120, 40)) as pilot:
        while not (isinstance(app.screen, WriteScreen) and isinstance(app.focused, Input)):
            await pilot.pause(0.005)
        print("WRITE SCREEN READY", flush=True)
        app.exit()

asyncio.run(main())
"""

COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import localpers": [sys.executable, "-c", "import localpers"],
    "--help": [str(BIN), "--help"],
    "doctor": [str(BIN), "doctor"],
    "search": [str(BIN), "search", "budget for the garden", "-k", "3"],
    "recommend": [str(BIN), "recommend", "-n", "5"],
    "write": [str(BIN), "write", "Ask Tom to move our meeting to Thursday.", "--max-tokens", "8"],
    "privacy ledger": [str(BIN), "privacy", "ledger"],
    "tui": [sys.executable, "-c", TUI_DRIVER],
}


def run_once(argv: list[str], env: dict) -> dict:
    """Wall seconds to the first stdout byte (or to exit, for silent commands), CPU seconds, peak MiB."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    first = None
    fds = [proc.stdout.fileno(), proc.stderr.fileno()]
    err = b""
    while fds:
        ready, _, _ = select.select(fds, [], [], 60)
        if not ready:
            break
        for fd in ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                fds.remove(fd)
            elif fd == proc.stdout.fileno():
                first = first or time.perf_counter() - start
            else:
                err += chunk
    _, status, usage = os.wait4(proc.pid, 0)
    end = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    return {"first_s": first if first is not None else end, "exit_s": end, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_mib": usage.ru_maxrss / 1024, "rc": code, "stderr": err.decode(errors="replace")[-300:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 runs per command instead of 5")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--only", nargs="*", help="only these commands (names as printed)")
    args = parser.parse_args()
    runs = args.runs or (3 if args.quick else 5)
    results = {}
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "LOCALPERS_HOME": home, "PYTHONPATH": str(ROOT)}
        env.pop("LOCALPERS_USER", None)
        print("setting up the demo profile (not timed)...", flush=True)
        for warm in (["recommend", "-n", "1"], ["write", "Hello.", "--max-tokens", "2"]):
            subprocess.run([str(BIN), *warm], env=env, capture_output=True, timeout=600)
        print(f"{'command':<18}{'first output':>13}{'exit':>8}{'CPU':>8}{'peak MiB':>10}{'target':>8}", flush=True)
        for name, argv in COMMANDS.items():
            if args.only and name not in args.only:
                continue
            samples = [run_once(argv, env) for _ in range(runs)]
            ok = [s for s in samples if s["rc"] == 0]
            row = {"first_s": round(statistics.median(s["first_s"] for s in samples), 3),
                   "exit_s": round(statistics.median(s["exit_s"] for s in samples), 3),
                   "cpu_s": round(statistics.median(s["cpu_s"] for s in samples), 3),
                   "peak_mib": round(max(s["peak_mib"] for s in samples)), "failed": runs - len(ok)}
            results[name] = row
            target = TARGETS.get(name)
            note = f"{target:>7.1f}s" if target else ""
            if row["failed"]:
                note += f"  FAILED {row['failed']}/{runs}: {samples[-1]['stderr'].strip().splitlines()[-1:]}"
            print(f"{name:<18}{row['first_s']:>12.2f}s{row['exit_s']:>7.2f}s{row['cpu_s']:>7.2f}s"
                  f"{row['peak_mib']:>10}{note}", flush=True)
    load = os.getloadavg()[0]
    print(f"(median of {runs} fresh processes; load average {load:.1f} on {os.cpu_count()} CPUs: "
          f"{'busy, wall times inflated' if load > 1.5 else 'idle'})")
    print(json.dumps({"runs": runs, "load_avg": round(load, 1), "cpus": os.cpu_count(), "commands": results}))


if __name__ == "__main__":
    main()

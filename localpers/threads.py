"""How many CPU threads to compute with right now: the configured most, fewer while others keep cores busy.

llama.cpp's and torch's worker threads wait for each other at every operation by
spinning. When another program holds one of two cores, one of our two threads keeps
being descheduled while the other spins waiting for it, and generation becomes about
twenty times slower than with one thread. So before each text (playback, a draft) and
each training step, :func:`available` looks at how much of our cores *other* processes
used since it last looked, and answers with the cores they leave free (at least one).

It reads ``/proc/stat`` (the cores in this process's affinity set) and subtracts this
process's own CPU time, so our threads never count as competition. Elsewhere (macOS,
Windows) it answers with the most it may use.

Example::

    >>> from localpers import threads
    >>> 1 <= threads.available(2) <= 2
    True
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

from .paths import Config

# A window shorter than this says little: a look this soon after the last keeps its answer.
MIN_WINDOW = 0.05
# Leave a core to others once they use more than this much of it (a mostly idle core is still worth using).
SHARE_LEFT = 0.3


def cores() -> list[int]:
    """The CPU numbers this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        return list(range(os.cpu_count() or 1))


@dataclass
class _Sample:
    at: float  # time.monotonic()
    busy: float  # seconds of CPU the cores spent busy (all processes), since boot
    total: float  # seconds of CPU the cores existed, since boot
    own: float  # seconds of CPU this process used
    running: int  # threads runnable right now, on the whole machine (this one included)


def _sample(cpus: list[int]) -> _Sample | None:
    try:
        with open("/proc/stat", encoding="ascii") as f:
            lines = f.readlines()
    except OSError:
        return None
    wanted = {f"cpu{n}" for n in cpus}
    busy = total = running = 0
    for line in lines:
        parts = line.split()
        if parts and parts[0] in wanted:
            # user nice system idle iowait irq softirq steal: steal (the hypervisor's) is as lost as a busy core
            user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in parts[1:9])
            busy += user + nice + system + irq + softirq + steal
            total += user + nice + system + idle + iowait + irq + softirq + steal
        elif parts and parts[0] == "procs_running":
            running = int(parts[1])
    if not total:
        return None
    hz = os.sysconf("SC_CLK_TCK")
    t = os.times()
    return _Sample(time.monotonic(), busy / hz, total / hz, t.user + t.system, running)


_lock = threading.Lock()
_last: _Sample | None = None
_others = 0.0  # cores other processes used in the last window


def others_busy() -> float:
    """How many of our cores other processes kept busy since the last look.

    The first look has no window yet: it counts the threads runnable right now, less the
    caller's own.
    """
    global _last, _others
    cpus = cores()
    with _lock:
        now = _sample(cpus)
        if now is None:
            return 0.0
        if _last is None:
            _others = float(min(len(cpus), max(0, now.running - 1)))
        elif now.at - _last.at < MIN_WINDOW:
            return _others  # looked a moment ago: that answer stands
        else:
            window = now.total - _last.total
            if window > 0:
                others = (now.busy - _last.busy) - (now.own - _last.own)
                _others = max(0.0, min(float(len(cpus)), others / window * len(cpus)))
        _last = now
        return _others


def available(most: int) -> int:
    """Threads to use now: ``most``, less the cores other processes are using, and at least 1.

    >>> available(1)
    1
    """
    if most <= 1:
        return 1
    free = len(cores()) - others_busy()
    return max(1, min(most, int(free + SHARE_LEFT)))


def configured() -> int:
    """``threads`` from config.toml: the most localpers computes with (default: every core it may use)."""
    return Config.load().threads


def set_torch_threads(fixed: int | None = None) -> int:
    """Set torch's threads to ``fixed``, or to what :func:`available` allows now under :func:`configured`.

    Training calls it before every step, so a competitor that starts mid-run costs a step, not the run.
    """
    import torch  # deferred: only training and exports use torch

    n = fixed or available(configured())
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n

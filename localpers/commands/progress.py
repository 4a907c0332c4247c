"""Progress on stderr for long commands: named phases from the first second, then counts, rate and ETA.

Example (what a user sees)::

    Sent.mbox: loading the embedding model... 0.4 s
    Sent.mbox: opening the search index... 0.1 s
    Sent.mbox: reading... 0.0 s
    Sent.mbox: 12%  ETA 0:44  1,150 added, 50 duplicates
    Embedding: 1,200/1,682 items (71%)  310/s  ETA 0:01

On a terminal the count line is rewritten in place (at most ten times a second);
otherwise a line is written every five seconds, and at the end.
"""

from __future__ import annotations

import sys
import time

import click


class Progress:
    """Callable as ``progress(done, total, message="")``; :meth:`phase` announces a step before it runs."""

    def __init__(self, label: str, *, unit: str = "", counts: bool = True) -> None:
        self.label = label
        self.unit = unit
        self.counts = counts  # False when done/total are bytes: show the share and ETA only
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()
        self.counting_since: float | None = None
        self.first_done = 0
        self.last = 0.0
        self.open_line = False
        self._phase: tuple[str, float] | None = None

    def phase(self, message: str) -> "Progress":
        """Print ``message...`` now; the time it took follows when the next phase or count starts."""
        self._end_phase()
        click.echo(f"{self.label}: {message}...", err=True, nl=False)
        self._phase = (message, time.monotonic())
        return self

    def _end_phase(self) -> None:
        if self._phase is not None:
            click.echo(f" {time.monotonic() - self._phase[1]:.1f} s", err=True)
            self._phase = None

    def __call__(self, done: int, total: int | None, message: str = "") -> None:
        self._end_phase()
        now = time.monotonic()
        if self.counting_since is None:
            self.counting_since, self.first_done = now, done
        final = bool(total) and done >= (total or 0)
        if not final and now - self.last < (0.1 if self.tty else 5.0):
            return
        self.last = now
        line = f"{self.label}: {self.where(done, total, now)}{'  ' + message if message else ''}"
        if self.tty:
            width = max(20, click.get_terminal_size()[0] - 1)
            click.echo("\r" + line[:width].ljust(width), err=True, nl=False)
            self.open_line = True
        else:
            click.echo(line, err=True)

    def where(self, done: int, total: int | None, now: float) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if not self.counts:
            text = f"{100 * done / total:.0f}%" if total else ""
        else:
            text = f"{done:,}/{total:,}{unit} ({100 * done / total:.0f}%)" if total else f"{done:,}{unit}"
        elapsed = now - (self.counting_since or now)
        if elapsed > 0.5 and done > self.first_done:
            rate = (done - self.first_done) / elapsed
            if self.counts:
                text += f"  {rate:,.0f}/s"
            if total and done < total:
                eta = (total - done) / rate
                text += f"  ETA {int(eta // 60)}:{int(eta % 60):02d}"
        return text

    def close(self) -> None:
        self._end_phase()
        if self.open_line:
            click.echo("", err=True)
            self.open_line = False

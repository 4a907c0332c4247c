"""``localpers train``: train (or resume training) the user's personal adapter.

Examples::

    localpers train -u ada                 # playback, training, export, verification, install
    localpers train -u ada --steps 40      # a short run
    localpers train -u ada --estimate      # how long a run would take, without running it
    localpers train -u ada --status        # the installed adapter and what it scored
    localpers train -u ada --model gemma3-270m   # for another base model than writer_model in config.toml

Ctrl-C pauses after the current step and saves a checkpoint (encrypted, in the vault), in
every phase (playback, evaluation, training steps); running the same command again resumes.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import click

from .options import user_option

if TYPE_CHECKING:
    from ..vault import Vault



class _Line:
    """One status line, rewritten in place on a terminal and printed every few seconds otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = 0.0
        self.width = 0

    def __call__(self, progress: Any) -> None:
        text = str(progress)
        now = time.monotonic()
        if self.tty:
            click.echo("\r" + text.ljust(self.width), nl=False, err=True)
            self.width = len(text)
        elif now - self.last >= 5 or progress.phase not in ("training", "playback"):
            click.echo(text, err=True)
            self.last = now

    def done(self) -> None:
        if self.tty and self.width:
            click.echo("", err=True)
            self.width = 0


def _status(vault: Vault) -> None:
    from ..writing import adapter
    from ..writing.train import checkpoint_step
    from ..writing.context import adapter_readiness

    have, needed = adapter_readiness(vault)
    info = adapter.installed(vault)
    click.echo(f"texts in history: {have}" + (f" ({needed} more needed for an adapter)" if needed else ""))
    if info is None:
        click.echo("adapter: none")
    else:
        scores = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.scores.items())
        click.echo(f"adapter: {info.recipe}, rank {info.rank}, trained on {info.n_texts} texts, "
                   f"{time.strftime('%Y-%m-%d', time.localtime(info.created))}, {info.size / 2**20:.1f} MiB")
        click.echo(f"scores: {scores}")
    step = checkpoint_step(vault)
    if step is not None:
        click.echo(f"checkpoint: step {step} (the next `localpers train` resumes from it)")


@click.command()
@user_option
@click.option("--steps", type=click.IntRange(1), default=None, help="Optimizer steps (default: the recipe's epochs).")
@click.option("--epochs", type=click.IntRange(1), default=None, help="Passes over the texts.")
@click.option("--max-length", type=click.IntRange(32, 4096), default=None, help="Tokens per example.")
@click.option("--rank", type=click.IntRange(1, 256), default=None, help="LoRA rank.")
@click.option("--lr", "learning_rate", type=float, default=None, help="Peak learning rate.")
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]), default=None,
              help="Matrix products in bf16 where the CPU has it (auto), always, or never.")
@click.option("--model", "-m", default=None, metavar="NAME|PATH",
              help="The base model to train for: a name from `localpers models` or a .gguf file "
                   "(default: writer_model in config).")
@click.option("--fresh", is_flag=True, help="Discard a saved checkpoint and start over.")
@click.option("--estimate", is_flag=True, help="Only print how long training would take.")
@click.option("--status", is_flag=True, help="Only show the installed adapter and readiness.")
def train(user: str | None, steps: int | None, epochs: int | None, max_length: int | None, rank: int | None,
          learning_rate: float | None, precision: str | None, model: str | None, fresh: bool, estimate: bool,
          status: bool) -> None:
    """Train your personal writing adapter from your history (on this machine)."""
    from ..cli import open_vault
    from ..models import require_gguf
    from ..paths import Config
    from ..writing.train import TrainConfig, discard_checkpoint, estimate_training, format_seconds, train_adapter

    model = model or Config.load().writer_model
    require_gguf(model)  # before the passphrase prompt
    with open_vault(user) as vault:
        if status:
            _status(vault)
            return
        config = TrainConfig(model=model, max_steps=steps, epochs=epochs, max_length=max_length,
                             rank=rank, learning_rate=learning_rate, precision=precision)
        if estimate:
            click.echo(f"about {format_seconds(estimate_training(vault, config))}")
            return
        if fresh:
            discard_checkpoint(vault)
        cancel = threading.Event()
        line = _Line()

        # Ctrl-C only asks training to pause (after the current text or step, with a checkpoint);
        # a second Ctrl-C stops at once. Training runs in this thread: a worker joined with a
        # timeout loses its outcome when Ctrl-C lands inside join() on Python 3.11.
        def pause(signum: int, frame: Any) -> None:
            if cancel.is_set():
                raise KeyboardInterrupt
            cancel.set()
            line.done()
            click.echo("Pausing after the current step (a checkpoint will be saved; Ctrl-C again stops at once)...",
                       err=True)

        previous = signal.signal(signal.SIGINT, pause)
        try:
            result = train_adapter(vault, config, progress=line, cancel=cancel)
        finally:
            signal.signal(signal.SIGINT, previous)
        line.done()
        click.echo(result.summary())
        if result.cancelled:
            sys.exit(130)
        if result.adapter is not None:
            s = result.adapter.scores
            click.echo(f"Installed: llama.cpp/peft logit correlation {s['logit_correlation']:.4f}. "
                       "`localpers write` now uses it.")


commands = [train]

"""``localpers write``: a draft in your style, streamed to stdout.

Examples::

    localpers write "Ask Tom to move our meeting to Thursday" -u ada
    localpers write "Say yes, but only after 3pm" --mode reply --input message.txt -u ada
    localpers write "Make it shorter" --mode rewrite --input draft.txt -u ada
    cat draft.txt | localpers write --mode continue --input - -u ada
    localpers write "Thank Ann for the book" --no-adapter --show-examples -u ada
    localpers write "Thank Ann for the book" --model ~/models/other.gguf -u ada
"""

from __future__ import annotations

import sys

import click

from ..adapters import MODES
from .options import user_option



@click.command()
@user_option
@click.argument("instruction", required=False, default="")
@click.option("--mode", type=click.Choice(MODES), default="compose", show_default=True,
              help="compose from the instruction, reply to a message, rewrite or continue a draft.")
@click.option("--input", "input_file", type=click.File("r", encoding="utf-8"), default=None,
              help="The message (reply) or draft (rewrite, continue); '-' reads stdin.")
@click.option("--no-adapter", is_flag=True, help="Write without your personal adapter.")
@click.option("--no-examples", is_flag=True, help="Do not put examples of your writing in the prompt.")
@click.option("--no-facts", is_flag=True,
              help="Tell the model no profile facts (by default minimal disclosure picks the few it needs).")
@click.option("--max-tokens", type=click.IntRange(1, 2048), default=300, show_default=True)
@click.option("--temperature", type=click.FloatRange(0, 2), default=0.0, show_default=True)
@click.option("--show-examples", is_flag=True, help="List the examples of your writing the model was shown.")
@click.option("--save", is_flag=True, help="Keep the draft in your history (future training data).")
@click.option("--model", "-m", default=None, metavar="NAME|PATH",
              help="The writer model: a name from `localpers models` or a .gguf file (default: writer_model in config).")
def write(user: str | None, instruction: str, mode: str, input_file, no_adapter: bool, no_examples: bool,
          no_facts: bool, max_tokens: int, temperature: float, show_examples: bool, save: bool,
          model: str | None) -> None:
    """Write a draft in your style: INSTRUCTION says what to write.

    Before the draft, a line on stderr says which profile facts the model was told
    and which were withheld (see `localpers privacy ledger`).
    """
    from ..cli import open_vault
    from ..errors import LocalpersError
    from ..models import require_gguf
    from ..session import Session

    context = input_file.read() if input_file is not None else ""
    if mode != "compose" and not context.strip():
        raise LocalpersError(f"--mode {mode} needs the text to work on: pass --input FILE (or --input - for stdin)")
    if model is not None:
        require_gguf(model)  # before the passphrase prompt
    with open_vault(user) as vault:
        writer = Session(vault, engine_model=model).writer(
            use_adapter=not no_adapter, use_examples=not no_examples, use_facts=not no_facts, max_tokens=max_tokens,
            temperature=temperature)
        if writer.notice:
            click.echo(writer.notice, err=True)
        draft = writer.write(mode, instruction, context=context)
        if draft.disclosure is not None:
            click.echo(draft.disclosure.summary(), err=True)
        if show_examples:
            for e in draft.examples:
                click.echo(f"[example {e.item_id[:8]} {e.score:.2f}] {e.snippet}", err=True)
        if mode == "continue":
            click.echo(context, nl=False)
        for piece in draft:
            click.echo(piece, nl=False)
            sys.stdout.flush()
        click.echo()
        if save:
            row = writer.save(draft)
            click.echo(f"Saved as draft {row}.", err=True)


commands = [write]

"""``localpers tui``: open the terminal app."""

from __future__ import annotations

import os
import sys

import click

from .options import user_option_with


@click.command()
@click.option("--demo", is_flag=True, help="Open the demo profile (synthetic data, no passphrase).")
@user_option_with("Open this user's vault (the app asks for the passphrase).")
def tui(demo: bool, user: str | None) -> None:
    """Open the terminal app: write, get recommendations, browse history, train, review privacy.

    Examples:

        localpers tui --demo        # try it on the synthetic demo profile

        localpers tui --user ada    # your own vault
    """
    from localpers.errors import LocalpersError
    from localpers.vault import DEMO_USER

    if demo and user and user != DEMO_USER:
        raise LocalpersError("choose either --demo or --user, not both")
    if user and user != DEMO_USER:
        from localpers.cli import require_vault

        require_vault(user)  # say so now, not after the app asked for a passphrase
    from localpers.tui import run

    code = run(user=None if user == DEMO_USER else user, demo=demo or user == DEMO_USER)
    # The app has closed the vault. Left to itself, the interpreter would now spend seconds
    # tearing down torch, transformers and llama.cpp (measured: 5-6 s once the embedding model
    # is loaded) while the terminal shows a blank screen; nothing of that needs doing.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


commands = [tui]

"""The ``localpers`` command line: a thin wrapper over the library.

Exit codes: 0 ok, 1 a user error (one line saying what to do), 2 bad usage.

Each task's commands live in a module of :mod:`localpers.commands` that exposes
``commands``, a list of click commands; this module only gathers them.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from . import __version__
from .errors import LocalpersError

COMMAND_MODULES = ["user", "models", "history", "train", "write", "recommend", "privacy", "tui"]


class Group(click.Group):
    """A click group that turns LocalpersError into one line on stderr and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LocalpersError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("Cancelled.", err=True)
            sys.exit(130)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="localpers")
def main() -> None:
    """On-device personalization: a local LLM that writes like you and recommends what fits you.

    Everything personal stays on this machine, encrypted. Data lives in
    $LOCALPERS_HOME (default: your user data directory).
    """


# Options every command that opens a vault shares.
def user_options(fn: Callable) -> Callable:
    fn = click.option("--user", "-u", envvar="LOCALPERS_USER", default=None,
                      help="Whose vault to open (default: the demo profile, or default_user in config.toml).")(fn)
    return fn


def open_vault(user: str | None) -> Any:
    """Open ``user``'s vault, asking for the passphrase unless LOCALPERS_PASSPHRASE is set."""
    from .paths import Config
    from .vault import DEMO_USER, Vault, require_user

    user = user or Config.load().default_user or DEMO_USER
    passphrase = None
    if user != DEMO_USER:
        require_vault(user)  # before asking for a passphrase
        passphrase = os.environ.get("LOCALPERS_PASSPHRASE") or None
        if not passphrase and not Vault.keyring_unlocks(user):  # no prompt when the OS keyring unlocks it
            passphrase = click.prompt(f"Passphrase for {user}", hide_input=True)
    return require_user(user, passphrase)


def require_vault(user: str) -> None:
    """Fail with one line naming the users there are when ``user`` has no vault on this machine."""
    from .errors import VaultError
    from .vault import DEMO_USER, Vault

    if not Vault.exists(user):
        others = [u for u in Vault.users() if u != DEMO_USER]
        raise VaultError(f"no user {user!r} on this machine" + (f" (users: {', '.join(others)})" if others else "")
                         + f"; create one with: localpers user create {user}")


for _name in COMMAND_MODULES:
    for _command in importlib.import_module(f"localpers.commands.{_name}").commands:
        main.add_command(_command)

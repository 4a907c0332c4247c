"""What the commands share: the ``--user`` option, and a decorator that hands a command the open vault.

Example::

    @click.command()
    @with_vault
    def count(vault: Vault) -> None:
        click.echo(vault.items.count())

``localpers count --user ada`` then asks for ada's passphrase (unless the keyring or
``LOCALPERS_PASSPHRASE`` unlocks it), runs the command, and closes the vault whatever happens.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click



def user_option_with(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``--user`` option (also read from ``LOCALPERS_USER``) with a help text of its own."""
    return click.option("--user", "-u", envvar="LOCALPERS_USER", default=None, help=help)


user_option = user_option_with("Whose vault to open (default: default_user in config.toml, else the demo profile).")


def with_vault(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--user`` to ``command`` and call it with ``vault=`` that user's open vault (closed afterwards)."""

    @functools.wraps(command)
    def run(*args: Any, user: str | None, **kwargs: Any) -> Any:
        from ..cli import open_vault

        with open_vault(user) as vault:
            return command(*args, vault=vault, **kwargs)

    return user_option(run)

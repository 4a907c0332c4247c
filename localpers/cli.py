"""The ``localpers`` command line: a thin wrapper over the library.

Exit codes: 0 ok, 1 a user error (one line saying what to do), 2 bad usage.

Each task's commands live in a module of :mod:`localpers.commands` that exposes
``commands``, a list of click commands; this module only gathers them.
"""

from __future__ import annotations

import importlib
import sqlite3
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from . import __version__
from .errors import LocalpersError
from .text import one_line  # noqa: F401  (the CLI's one-line errors; importable from here)

if TYPE_CHECKING:
    from .vault import Vault

COMMAND_MODULES = ["user", "models", "config", "history", "train", "write", "recommend", "privacy", "tui", "serve"]


class Group(click.Group):
    """A click group that turns LocalpersError into one line on stderr and exit code 1.

    OS and SQLite errors that slipped past the library (a full disk, an unreadable
    file, a damaged database) also end in one line and exit 1, never a traceback.
    """

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        from .vault import store  # heavy: sqlite-utils and cryptography, which `localpers --help` never needs

        name, command, rest = super().resolve_command(ctx, args)
        store.PROCESS_NAME = f"`localpers {name}`"  # how another process waiting for the vault names this one
        return name, command, rest

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LocalpersError as exc:
            fail(str(exc))
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            fail(f"{exc.strerror or exc}{where}; check the path and its permissions")
        except sqlite3.DatabaseError as exc:
            fail(f"the database cannot be read ({exc}); it may be damaged: restore it from a backup")
        except KeyboardInterrupt:
            click.echo("Cancelled.", err=True)
            sys.exit(130)


def fail(message: str) -> NoReturn:
    """Print ``Error: message`` as one line on stderr and exit with status 1."""
    click.echo(f"Error: {one_line(message)}", err=True)
    sys.exit(1)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="localpers")
def main() -> None:
    """On-device personalization: a local LLM that writes like you and recommends what fits you.

    Everything personal stays on this machine, encrypted. Data lives in
    $LOCALPERS_HOME (default: your user data directory).
    """


def open_vault(user: str | None) -> Vault:
    """Open ``user``'s vault, asking for the passphrase unless LOCALPERS_PASSPHRASE is set."""
    from . import session  # heavy: the vault, history and catalog, which `localpers --help` never needs

    return session.unlock(user, lambda name: click.prompt(f"Passphrase for {name}", hide_input=True))


def require_vault(user: str) -> None:
    """Fail with one line naming the users there are when ``user`` has no vault on this machine."""
    from . import session  # heavy: the vault, history and catalog, which `localpers --help` never needs

    session.require_vault(user)


for _name in COMMAND_MODULES:
    for _command in importlib.import_module(f"localpers.commands.{_name}").commands:
        main.add_command(_command)

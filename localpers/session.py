"""One way to open a vault and the things that work on it, for the CLI, the app and the llm plugin alike.

Which vault (the named user, ``default_user`` from ``config.toml``, or the demo), how it unlocks (a passphrase,
``LOCALPERS_PASSPHRASE``, the OS keyring, or none for the demo) and where the demo's catalog lives are decided
here once; the CLI and the TUI only ask the person and show the result.

Example::

    >>> from localpers.session import open_vault
    >>> vault = open_vault("ada", "a long passphrase")   # doctest: +SKIP
    >>> open_vault(None, None).is_demo                     # no user named: the demo profile   # doctest: +SKIP
    True
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .demo import open_demo
from .errors import LocalpersError, VaultError
from .paths import Config
from .vault import DEMO_USER, MIN_PASSPHRASE, Vault, check_new_passphrase

__all__ = ["MIN_PASSPHRASE", "check_new_passphrase", "chosen_user", "open_vault", "require_vault", "unlock"]

def chosen_user(user: str | None, config: Config | None = None) -> str:
    """The user to open: the one named, else ``default_user`` from the config, else the demo profile."""
    if user:
        return user
    return (config or Config.load()).default_user or DEMO_USER


def require_vault(user: str, *, home: Path | None = None) -> None:
    """Fail with one line naming the users there are when ``user`` has no vault on this machine."""
    if not Vault.exists(user, home):
        others = [u for u in Vault.users(home) if u != DEMO_USER]
        raise VaultError(f"no user {user!r} on this machine" + (f" (users: {', '.join(others)})" if others else "")
                         + f"; create one with: localpers user create {user}")


def open_vault(user: str | None, passphrase: str | None, *, home: Path | None = None) -> Vault:
    """Open the named vault, or the demo one when ``user`` is None or 'demo'.

    With ``passphrase=None`` the OS keyring is tried when the user enabled it.
    """
    if not user or user == DEMO_USER:
        return open_demo(home=home)
    if passphrase is None and not Vault.keyring_unlocks(user, home=home):
        raise LocalpersError(f"a passphrase is needed to open {user!r}: set LOCALPERS_PASSPHRASE or type it when asked")
    return Vault.open(user, passphrase, home=home)


def unlock(user: str | None, ask: Callable[[str], str], *, home: Path | None = None,
           config: Config | None = None) -> Vault:
    """Open ``user``'s vault (see :func:`chosen_user`), calling ``ask(user)`` for the passphrase only when needed:
    not for the demo, not when ``LOCALPERS_PASSPHRASE`` is set, not when the OS keyring unlocks it."""
    user = chosen_user(user, config)
    passphrase = None
    if user != DEMO_USER:
        require_vault(user, home=home)  # before asking for a passphrase
        passphrase = os.environ.get("LOCALPERS_PASSPHRASE") or None
        if not passphrase and not Vault.keyring_unlocks(user, home=home):
            passphrase = ask(user)
    return open_vault(user, passphrase, home=home)

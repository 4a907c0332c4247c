"""One way to open a vault and the things that work on it, for the CLI, the app and the llm plugin alike.

Which vault (the named user, ``default_user`` from ``config.toml``, or the demo), how it unlocks (a passphrase,
``LOCALPERS_PASSPHRASE``, the OS keyring, or none for the demo) and where the demo's catalog lives are decided
here once; the CLI and the TUI only ask the person and show the result.

A :class:`Session` then holds what works on the open vault (the engine, the history, the
writer), each built once, from the configuration read once.

Example::

    >>> from localpers.session import Session, open_vault
    >>> vault = open_vault("ada", "a long passphrase")   # doctest: +SKIP
    >>> open_vault(None, None).is_demo                     # no user named: the demo profile   # doctest: +SKIP
    True
    >>> Session(vault).writer().compose("Thank Tom for the notes.").result()   # doctest: +SKIP
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import models
from .demo import open_demo
from .errors import LocalpersError, VaultError
from .history import History
from .llm import Engine
from .paths import Config, data_dir
from .vault import DEMO_USER, MIN_PASSPHRASE, Vault, check_new_passphrase
from .writing.writer import Writer

__all__ = ["MIN_PASSPHRASE", "Session", "check_new_passphrase", "check_setting", "chosen_user", "open_vault", "require_vault", "unlock"]

def check_setting(key: str, value: object) -> None:
    """Refuse, in one line, a setting that names something this machine lacks (a model, a user)."""
    if key in ("writer_model", "playback_model"):
        models.require_gguf(str(value))
    elif key == "embedding_model":
        models.ensure(str(value))
    elif key == "default_user" and value and value != DEMO_USER and not Vault.exists(str(value)):
        users = ", ".join(Vault.users()) or "none yet"
        raise LocalpersError(f"no user {value!r} on this machine (users: {users}); "
                             f"create one with: localpers user create {value}")


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


class Session:
    """One open vault and what works on it, each made once and shared (thread-safe to build lazily).

    ``config`` is read once (``Config.load()`` when not given); ``engine_model`` defaults to its writer model
    and ``home`` (the data folder, where catalogs live) to the usual one.
    """

    def __init__(self, vault: Vault, *, config: Config | None = None, engine_model: str | None = None,
                 home: Path | None = None) -> None:
        self.vault = vault
        self.config = config or Config.load()
        self.engine_model = engine_model or self.config.writer_model
        self.home = home or data_dir()
        self._lock = threading.RLock()
        self._history: History | None = None
        self._writers: dict[tuple, Writer] = {}

    def engine(self) -> Engine:
        """The writer model (loaded once per process; about a second the first time)."""
        return Engine.shared(self.engine_model)

    def use_model(self, model: str) -> Engine:
        """Write with ``model`` (a registry name or a GGUF path) from now on; loads it (call from a worker)."""
        engine = Engine.shared(model)  # first, so a model that fails to load changes nothing
        with self._lock:
            self.engine_model = model
            self._writers.clear()  # the next draft is written by the new model (with its adapter, if any)
        return engine

    def history(self) -> History:
        """The user's :class:`~localpers.history.History` (one per session: its index stays loaded)."""
        with self._lock:
            if self._history is None:
                self._history = History(self.vault)
            return self._history

    def writer(self, *, use_adapter: bool = True, use_examples: bool = True, **options: Any) -> Writer:
        """A :class:`~localpers.writing.writer.Writer` on this session's engine and history (one per settings)."""
        key = (use_adapter, use_examples, *sorted(options.items()))
        with self._lock:
            if key not in self._writers:
                self._writers[key] = Writer(self.vault, engine=self.engine(),
                                            history=self.history() if use_examples else None,
                                            use_adapter=use_adapter, use_examples=use_examples, **options)
            return self._writers[key]

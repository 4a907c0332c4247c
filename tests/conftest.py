"""Shared fixtures: a private data directory per test, a vault, an in-memory OS keyring, and a network that
refuses every connection."""

from __future__ import annotations

import socket

import pytest

from localpers.vault import Vault
from support import MemoryKeyring


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh LOCALPERS_HOME for one test (models stay in the shared cache)."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("LOCALPERS_HOME", str(path))
    monkeypatch.delenv("LOCALPERS_USER", raising=False)
    monkeypatch.delenv("LOCALPERS_PASSPHRASE", raising=False)
    return path


@pytest.fixture
def vault(tmp_path):
    """A fresh vault of "ada" under ``tmp_path`` (no key stretching: tests need speed, not Argon2id's cost)."""
    v = Vault.create("ada", "correct horse", home=tmp_path / "users", kdf_seconds=0)
    yield v
    v.close()


@pytest.fixture
def os_keyring():
    """The OS keyring replaced by one in memory (no keyring service runs on a CI machine)."""
    keyring = pytest.importorskip("keyring")
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


class NetworkBlocked(RuntimeError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    """Make every attempt to open a network connection fail loudly, and record it."""
    attempts: list[tuple] = []
    real_connect = socket.socket.connect

    def guarded_connect(self, address, *args, **kwargs):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise NetworkBlocked(f"network access attempted: {address}")
        return real_connect(self, address, *args, **kwargs)

    def guarded_create_connection(address, *args, **kwargs):
        attempts.append(address)
        raise NetworkBlocked(f"network access attempted: {address}")

    def guarded_getaddrinfo(host, *args, **kwargs):
        attempts.append(host)
        raise NetworkBlocked(f"DNS lookup attempted: {host}")

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect)
    monkeypatch.setattr(socket, "create_connection", guarded_create_connection)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    return attempts

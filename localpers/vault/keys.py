"""The vault's keys: the data key wrapped under the passphrase, and optionally under a key kept in the OS keyring.

The data key never leaves memory unwrapped. The passphrase wraps it through Argon2id (:mod:`.crypto`); with
keyring unlock on, a second copy is wrapped under a random key stored in the OS keyring, so the vault opens
without typing the passphrase on this machine only.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from . import crypto
from ..errors import LocalpersError, TamperedData, VaultError, WrongPassphrase

KEYRING_SERVICE = "localpers"
MIN_PASSPHRASE = 8  # characters a new passphrase needs (the CLI and the app both ask for this many)


def check_new_passphrase(passphrase: str) -> None:
    """Refuse a passphrase shorter than :data:`MIN_PASSPHRASE` characters, with a one-line reason."""
    if len(passphrase) < MIN_PASSPHRASE:
        raise LocalpersError(f"the passphrase is too short: use at least {MIN_PASSPHRASE} characters "
                             "(a few unrelated words are easy to remember and hard to guess)")


def wrap_aad(user: str, key_version: int) -> bytes:
    return f"wrapped-data-key|{user}|{key_version}".encode()


def keyring_aad(user: str, key_version: int) -> bytes:
    return f"keyring-wrapped-data-key|{user}|{key_version}".encode()


def damaged(name: str, why: str) -> VaultError:
    return VaultError(f"the vault's setting {name!r} is damaged ({why}); restore the vault from a backup")


def meta_int(value: Any, name: str) -> int:
    """A whole-number setting of the meta table, or a one-line error naming it."""
    text = str(value)
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise damaged(name, f"not a whole number: {text[:20]!r}")
    return int(text)


def meta_hex(value: Any, name: str) -> bytes:
    try:
        raw = bytes.fromhex(str(value))
    except ValueError:
        raise damaged(name, "not hexadecimal") from None
    if not 16 < len(raw) <= 4096:
        raise damaged(name, f"{len(raw)} bytes")
    return raw


def kdf_params(value: Any) -> crypto.KDFParams:
    try:
        params = json.loads(str(value))
    except ValueError:
        raise damaged("kdf", "not JSON") from None
    if not isinstance(params, dict):
        raise damaged("kdf", "not a JSON object")
    return crypto.KDFParams.from_dict(params)


def unwrap(meta: dict[str, str], user: str, passphrase: str) -> bytes:
    params = kdf_params(meta["kdf"])
    kek = crypto.derive_key(passphrase, params)
    try:
        return crypto.unseal(kek, meta_hex(meta["wrapped_key"], "wrapped_key"),
                             aad=wrap_aad(user, meta_int(meta["key_version"], "key_version")))
    except TamperedData:
        raise WrongPassphrase(f"wrong passphrase for user {user!r}") from None


def keyring_module() -> Any:
    """The ``keyring`` package when it is installed and has a usable backend, else None."""
    try:
        # deferred: the OS keyring backends load only when a vault uses them
        import keyring
        from keyring.backends import fail
    except ImportError:
        return None
    try:
        backend = keyring.get_keyring()
    except Exception:
        return None
    return None if isinstance(backend, fail.Keyring) else keyring


def keyring_unwrap(meta: dict[str, str], user: str) -> bytes:
    hint = "type the passphrase, or set LOCALPERS_PASSPHRASE"
    if "keyring_wrapped_key" not in meta:
        raise VaultError(f"a passphrase is needed to open {user!r} (keyring unlock is not enabled): {hint}")
    kr = keyring_module()
    if kr is None:
        raise VaultError(f"a passphrase is needed to open {user!r}: no OS keyring is available here; {hint}")
    try:
        secret = kr.get_password(KEYRING_SERVICE, f"{user}@{meta.get('vault_id')}")
    except Exception as exc:
        raise VaultError(f"the OS keyring could not be read ({exc}); {hint}") from None
    if secret is None:
        raise VaultError(f"the OS keyring has no unlock secret for {user!r}; {hint}")
    try:
        return crypto.unseal(crypto.subkey(bytes.fromhex(secret), "keyring"),
                             meta_hex(meta["keyring_wrapped_key"], "keyring_wrapped_key"),
                             aad=keyring_aad(user, meta_int(meta["key_version"], "key_version")))
    except (TamperedData, ValueError):
        raise WrongPassphrase(f"the OS keyring's secret does not unlock {user!r}; {hint}") from None


def keyring_forget(user: str, vault_id: str | None) -> None:
    kr = keyring_module()
    if kr is None or vault_id is None:
        return
    for account in (f"{user}@{vault_id}", f"{user}@{vault_id}#counter"):
        with contextlib.suppress(Exception):  # already gone, or the backend refuses: nothing else to do
            kr.delete_password(KEYRING_SERVICE, account)



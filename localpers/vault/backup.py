"""Encrypted backups of a vault, and the one explicit plaintext export.

A backup is a single file that restores on any machine with the passphrase that
was in use when it was made. Layout::

    b"localpers-backup"  magic (16 bytes)
    u32 big-endian       length of the header
    header (JSON)        user, vault id, schema and key version, Argon2id parameters,
                         the wrapped data key, a random salt, chunk size and count
    chunks               u32 length + AES-256-GCM(chunk) for each 1 MiB of the database

The database inside is the vault file itself (its personal columns already
sealed), taken as a consistent snapshot with SQLite's backup API. The whole of it
is encrypted again, under a key derived (HKDF) from the data key and the
header's salt, so nothing, not even the clear columns, is readable in a backup.
Each chunk's associated data holds a hash of the header and the chunk's index:
a changed header, a reordered, missing or altered chunk all fail to decrypt.

A vault restores under the user name it was made for (the name is bound into
every ciphertext). Restoring unwraps the data key with the passphrase (Argon2id, as when opening),
decrypts and checks every chunk in memory, writes the database next to its final
place, checks it with SQLite, and only then renames it into place: a wrong
passphrase or a damaged file writes nothing.

Example::

    >>> from localpers.vault import restore_backup, write_backup
    >>> write_backup(vault, "/media/usb/ada.lpbackup")                              # doctest: +SKIP
    >>> restore_backup("/media/usb/ada.lpbackup", "correct horse battery staple")  # doctest: +SKIP
    <Vault 'ada' at /home/ada/.local/share/localpers/users/ada/vault.db>
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import struct
import time
from pathlib import Path
from typing import IO, Any

from . import crypto
from ..errors import TamperedData, VaultError, WrongPassphrase
from ..paths import private_dir
from .files import LOCK_FILE, acquire_lock, fsync_dir, release_lock, remove_db_files, replace_whole, shred
from .keys import wrap_aad
from .sealed import TABLES, coarse_time
from . import store
from .store import VAULT_FILE, Vault

MAGIC = b"localpers-backup"
FORMAT = 1
CHUNK = 1 << 20
_MAX_HEADER = 1 << 16


def write_backup(vault: Vault, path: str | Path) -> Path:
    """Write an encrypted backup of ``vault`` to ``path`` atomically (a crash leaves no half file)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise VaultError(f"{path} is a folder; give a file name for the backup")
    _check_folder(path, "backup")
    with vault.snapshot() as data:
        meta = {k: vault.meta(k) for k in ("user", "vault_id", "schema_version", "key_version", "kdf", "wrapped_key")}
    salt = os.urandom(16)
    n_chunks = max(1, -(-len(data) // CHUNK))
    header = json.dumps({
        "format": FORMAT, "user": meta["user"], "vault_id": meta["vault_id"],
        "schema_version": int(meta["schema_version"]), "key_version": int(meta["key_version"]),
        "kdf": json.loads(meta["kdf"]), "wrapped_key": meta["wrapped_key"], "salt": salt.hex(),
        "chunk_size": CHUNK, "chunks": n_chunks, "size": len(data), "created": coarse_time(),
    }).encode()
    aead = crypto.cipher(vault.subkey("backup", salt))
    digest = hashlib.sha256(MAGIC + header).digest()
    with replace_whole(path) as out:
        out.write(MAGIC + struct.pack(">I", len(header)) + header)
        view = memoryview(data)
        for i in range(n_chunks):
            box = crypto.seal(aead, view[i * CHUNK:(i + 1) * CHUNK], aad=_chunk_aad(digest, i))
            out.write(struct.pack(">I", len(box)) + box)
    return path


def _check_folder(path: Path, what: str) -> None:
    """Refuse early, in one line, a destination whose folder does not exist."""
    if not path.parent.is_dir():
        raise VaultError(f"the folder {path.parent} does not exist; create it or choose another place for the {what}")


def _chunk_aad(digest: bytes, index: int) -> bytes:
    return b"localpers-backup|" + digest + struct.pack(">Q", index)


def read_header(path: Path) -> dict:
    """The clear header of a backup file (who it belongs to, when it was made); checks nothing secret."""
    with open(path, "rb") as f:
        return _read_header(f, path)[0]


def _read_header(f: IO[bytes], path: Path) -> tuple[dict, bytes]:
    head = f.read(len(MAGIC) + 4)
    if len(head) < len(MAGIC) + 4 or head[:len(MAGIC)] != MAGIC:
        raise VaultError(f"{path} is not a localpers backup")
    (n,) = struct.unpack(">I", head[len(MAGIC):])
    raw = f.read(n) if n <= _MAX_HEADER else b""
    try:
        header = json.loads(raw)
        if header["format"] != FORMAT:
            raise VaultError(f"{path} is a backup format this localpers cannot read ({header['format']})")
        for key in ("user", "kdf", "wrapped_key", "salt", "chunks", "size", "key_version", "chunk_size"):
            header[key]  # noqa: B018 - presence check
    except (ValueError, KeyError, TypeError) as exc:
        raise VaultError(f"{path} is not a readable localpers backup ({exc})") from None
    return header, hashlib.sha256(MAGIC + raw).digest()


def read_backup(path: Path, passphrase: str) -> tuple[dict, bytes, bytes]:
    """Decrypt a backup in memory: ``(header, data key, database bytes)``.

    Raises :class:`WrongPassphrase` or :class:`TamperedData`; touches no other file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise VaultError(f"no backup file at {path}")
    with open(path, "rb") as f:
        header, digest = _read_header(f, path)
        user = header["user"]
        params = crypto.KDFParams.from_dict(header["kdf"])
        kek = crypto.derive_key(passphrase, params)
        try:
            data_key = crypto.unseal(kek, bytes.fromhex(header["wrapped_key"]),
                                     aad=wrap_aad(user, int(header["key_version"])))
        except TamperedData:
            raise WrongPassphrase(f"wrong passphrase for the backup of {user!r} "
                                  "(it needs the passphrase in use when the backup was made)") from None
        aead = crypto.cipher(crypto.subkey(data_key, "backup", bytes.fromhex(header["salt"])))
        limit = int(header["chunk_size"]) + crypto.NONCE_BYTES + crypto.TAG_BYTES
        parts = []
        for i in range(int(header["chunks"])):
            size = f.read(4)
            if len(size) < 4:
                raise TamperedData(f"{path} is truncated (chunk {i + 1} of {header['chunks']} missing)")
            (n,) = struct.unpack(">I", size)
            box = f.read(n) if n <= limit else b""
            try:
                parts.append(crypto.unseal(aead, box, aad=_chunk_aad(digest, i)))
            except TamperedData:  # the default message would quote the binary AAD and blame the vault
                raise TamperedData(f"the backup file {path} was altered or is damaged (chunk {i + 1} of "
                                   f"{header['chunks']} fails authentication); restore from another copy") from None
        if f.read(1):
            raise TamperedData(f"{path} has extra bytes after its last chunk")
    data = b"".join(parts)
    if len(data) != int(header["size"]):
        raise TamperedData(f"{path} does not hold the size its header announces")
    return header, data_key, data


def restore_backup(path: str | Path, passphrase: str, *, home: Path | None = None, overwrite: bool = False) -> Vault:
    """Recreate a vault from a :func:`write_backup` file under its user name in ``home``; returns it open.

    Wrong passphrase: :class:`WrongPassphrase`, nothing written. An existing vault of
    the same user is replaced only with ``overwrite=True`` (and is erased first).
    """
    header = read_header(Path(path).expanduser()) if Path(path).expanduser().is_file() else None
    if header is not None and int(header.get("schema_version", 0)) > store.SCHEMA_VERSION:
        raise VaultError(f"this backup was written by a newer localpers (schema {header['schema_version']}); "
                         "upgrade localpers to restore it")
    header, data_key, data = read_backup(path, passphrase)
    user = header["user"]
    folder = Vault.user_dir(user, home)
    if (folder / VAULT_FILE).exists() and not overwrite:
        raise VaultError(f"user {user!r} already has a vault here; erase it first or restore with overwrite "
                         "(localpers user restore --overwrite)")
    private_dir(folder)
    lock = acquire_lock(folder, user)
    try:
        tmp = folder / (VAULT_FILE + ".restoring")
        remove_db_files(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        try:
            _check_database(tmp, user)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        # The old vault (if any) goes only once the new one is complete on disk.
        for p in sorted(folder.iterdir()):
            if p.name not in (LOCK_FILE, tmp.name) and p.is_file():
                shred(p)
        os.replace(tmp, folder / VAULT_FILE)
        fsync_dir(folder)
        # A backup is older than the live vault by nature: its counter resets the keyring's mirror.
        return Vault.open_unlocked(folder / VAULT_FILE, user, data_key, int(header["key_version"]), lock,
                                  accept_rollback=True)
    except BaseException:
        release_lock(lock)
        raise


def _check_database(path: Path, user: str) -> None:
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?immutable=1", uri=True)
    except sqlite3.DatabaseError as exc:
        raise TamperedData(f"the backup's database cannot be opened ({exc})") from None
    try:
        ok = conn.execute("pragma quick_check").fetchone()[0]
        owner = conn.execute("select value from meta where key = 'user'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise TamperedData(f"the backup's database is damaged ({exc})") from None
    finally:
        conn.close()
    if ok != "ok" or owner is None or owner[0] != user:
        raise TamperedData(f"the backup's database is damaged or belongs to another user ({ok})")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def export_jsonl(vault: Vault, path: str | Path, *, include_blobs: bool = False) -> int:
    """Write every record decrypted, one JSON object per line; returns the number of records.

    The first line describes the export; then ``{"table": ..., "row": {...}}`` lines.
    Bytes appear as ``{"$base64": "..."}``. Blobs (vector index, adapters: large,
    derived from the rest) are listed without their data unless ``include_blobs``.
    The file is created 0600 and appears whole or not at all.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise VaultError(f"{path} is a folder; give a file name for the export")
    _check_folder(path, "export")
    count = 0
    with replace_whole(path, text=True) as out:
        out.write(json.dumps({"localpers_export": 1, "user": vault.user, "schema_version": int(vault.meta("schema_version") or 0),
                              "exported": int(time.time()), "plaintext": True}) + "\n")
        for name in TABLES:
            columns = None if include_blobs or name != "blobs" else ["info"]
            for row in getattr(vault, name).rows(columns=columns):
                out.write(json.dumps({"table": name, "row": _jsonable(row)}, ensure_ascii=False) + "\n")
                count += 1
    return count

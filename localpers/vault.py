"""The encrypted vault: one SQLite file per user where everything personal is sealed.

A :class:`Vault` is a ``sqlite-utils`` database whose personal columns hold
AES-256-GCM ciphertexts (see :mod:`localpers.crypto`). Each table is described by
a :class:`Table`: its clear columns (ids, coarse times, kinds: what SQLite needs to
index and what reveals nothing of the content) and its secret columns (everything
else). Secret values may be any JSON value or raw ``bytes``.

What stays in the clear, and why:

- row ids (random UUIDs or integers): needed to address rows, say nothing;
- ``kind`` / ``source_type`` / ``signal`` / ``mode``: a small fixed vocabulary
  ("email", "note", "rating", "compose"), needed to filter without decrypting;
- ``created`` / ``time`` rounded to the day: needed for recency and "since" filters;
- KDF parameters, the wrapped data key, the schema and key version.

Example::

    >>> from localpers.vault import Vault
    >>> vault = Vault.create("ada", "correct horse battery staple")   # doctest: +SKIP
    >>> item_id = vault.items.insert({"kind": "note", "content": "Buy milk"})  # doctest: +SKIP
    >>> vault.items.get(item_id)["content"]                               # doctest: +SKIP
    'Buy milk'
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from . import crypto
from .errors import LocalpersError, VaultError, VaultLocked, WrongPassphrase
from .paths import users_dir

SCHEMA_VERSION = 1
DAY = 86400
DEMO_USER = "demo"
DEMO_PASSPHRASE = "demo"  # the demo vault is still encrypted; its passphrase is public on purpose
_USER_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")


def coarse_time(t: float | None = None) -> int:
    """A timestamp rounded down to the day: enough for recency, little for profiling."""
    t = time.time() if t is None else t
    return int(t // DAY * DAY)


@dataclass(frozen=True)
class Table:
    """How one vault table splits into clear and sealed columns."""

    name: str
    pk: str
    clear: dict[str, type]  # column -> python type, besides the primary key
    secret: tuple[str, ...]
    pk_type: type = str


TABLES: dict[str, Table] = {
    t.name: t
    for t in [
        # Things the user wrote or read: emails, notes, documents, drafts they kept.
        Table("items", "id", {"source_type": str, "kind": str, "created": int}, ("content", "metadata", "source")),
        # Deduplication: a keyed hash of content, so equal texts are found without revealing them.
        Table("fingerprints", "digest", {"item_id": str}, ()),
        # What the user did: read, like, dislike, rating, click, not-interested.
        Table("interactions", "id", {"signal": str, "time": int}, ("item", "value", "metadata"), int),
        # Profile facts about the user (age, occupation, stated interests, style summary).
        Table("features", "id", {"updated": int}, ("name", "value")),
        # Generated drafts and the user's final edit (future training data).
        Table("drafts", "id", {"mode": str, "created": int}, ("instruction", "context", "draft", "final", "examples")),
        # Every disclosure of profile features: what was revealed, to whom, why.
        Table("ledger", "id", {"time": int}, ("purpose", "recipient", "revealed", "withheld", "decision", "steps"), int),
        # Encrypted files other parts need: the vector index, LoRA adapters, checkpoints.
        Table("blobs", "name", {"updated": int, "size": int}, ("data", "info")),
        # Derived values worth keeping (playback instructions, embeddings), keyed by a keyed hash.
        Table("cache", "key", {"kind": str}, ("value",)),
        # Import progress, so an interrupted import resumes where it stopped.
        Table("imports", "id", {"updated": int}, ("source", "state")),
    ]
}


def _encode(value: Any) -> bytes:
    # One type byte, so bytes (embeddings, files) stay compact and everything else is JSON.
    if isinstance(value, (bytes, bytearray, memoryview)):
        return b"B" + bytes(value)
    return b"J" + json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _decode(raw: bytes) -> Any:
    return raw[1:] if raw[:1] == b"B" else json.loads(raw[1:].decode("utf-8"))


class SealedTable:
    """Insert, read, update and delete rows of one table, sealing secret columns on the way.

    Rows go in and come out as plain dicts; only ciphertext ever reaches SQLite.
    """

    def __init__(self, vault: "Vault", spec: Table) -> None:
        self.vault = vault
        self.spec = spec

    @property
    def table(self) -> sqlite_utils.db.Table:
        return self.vault.db[self.spec.name]

    def _seal_row(self, row: dict) -> dict:
        unknown = set(row) - {self.spec.pk, *self.spec.clear, *self.spec.secret}
        if unknown:
            raise VaultError(f"table {self.spec.name} has no column(s) {', '.join(sorted(unknown))}")
        pk = row[self.spec.pk]
        out = {k: row.get(k) for k in (self.spec.pk, *self.spec.clear) if k in row}
        for col in self.spec.secret:
            if col in row and row[col] is not None:
                out[col] = self.vault.seal(_encode(row[col]), self.spec.name, col, pk)
        return out

    def _open_row(self, raw: dict, columns: Iterable[str] | None = None) -> dict:
        pk = raw[self.spec.pk]
        out = {k: raw.get(k) for k in (self.spec.pk, *self.spec.clear)}
        for col in self.spec.secret if columns is None else columns:
            box = raw.get(col)
            out[col] = None if box is None else _decode(self.vault.unseal(box, self.spec.name, col, pk))
        return out

    def insert(self, row: dict, *, replace: bool = False) -> Any:
        """Insert one row and return its primary key (a new UUID / integer when absent)."""
        return self.insert_all([row], replace=replace)[0]

    def insert_all(self, rows: Iterable[dict], *, replace: bool = False) -> list[Any]:
        keys: list[Any] = []
        sealed = []
        for row in rows:
            row = dict(row)
            if row.get(self.spec.pk) is None:
                row[self.spec.pk] = self._next_key()
            keys.append(row[self.spec.pk])
            sealed.append(self._seal_row(row))
        with self.vault.transaction():
            # Integer keys are assigned above rather than by SQLite: the key is part of the AAD,
            # so it must be known before sealing.
            self.table.insert_all(sealed, pk=self.spec.pk, replace=replace, alter=False)
        return keys

    def _next_key(self) -> Any:
        if self.spec.pk_type is int:
            row = self.vault.db.execute(f"select coalesce(max({self.spec.pk}), 0) + 1 from [{self.spec.name}]").fetchone()
            return row[0]
        return uuid.uuid4().hex

    def update(self, key: Any, values: dict) -> None:
        """Change some columns of one row (secret columns are resealed)."""
        current = self.get(key)
        if current is None:
            raise VaultError(f"no row {key!r} in {self.spec.name}")
        current.update(values)
        with self.vault.transaction():
            self.table.update(key, self._seal_row(current))

    def get(self, key: Any, columns: Iterable[str] | None = None) -> dict | None:
        rows = list(self.vault.db.query(f"select * from [{self.spec.name}] where [{self.spec.pk}] = ?", [key]))
        return self._open_row(rows[0], columns) if rows else None

    def rows(self, where: str | None = None, params: Iterable[Any] = (), *, order_by: str | None = None,
             limit: int | None = None, columns: Iterable[str] | None = None) -> Iterator[dict]:
        """Iterate decrypted rows. ``where`` may only test clear columns.

        ``columns`` limits which secret columns are decrypted (faster when you need one).
        """
        for raw in self.table.rows_where(where, list(params), order_by=order_by, limit=limit):
            yield self._open_row(raw, columns)

    def keys(self, where: str | None = None, params: Iterable[Any] = ()) -> list[Any]:
        return [r[self.spec.pk] for r in self.table.rows_where(where, list(params), select=f"[{self.spec.pk}]")]

    def count(self, where: str | None = None, params: Iterable[Any] = ()) -> int:
        return self.table.count_where(where, list(params)) if where else self.table.count

    def delete(self, key: Any) -> bool:
        """Delete one row; with secure_delete on, its bytes are overwritten in the file."""
        with self.vault.transaction():
            cur = self.vault.db.execute(f"delete from [{self.spec.name}] where [{self.spec.pk}] = ?", [key])
        return cur.rowcount > 0

    def delete_where(self, where: str, params: Iterable[Any] = ()) -> int:
        with self.vault.transaction():
            cur = self.vault.db.execute(f"delete from [{self.spec.name}] where {where}", list(params))
        return cur.rowcount


class Vault:
    """One user's encrypted store. Open it with :meth:`create` or :meth:`open`; close it when done.

    Only one process may have a vault open at a time: a second one gets :class:`VaultLocked`.
    """

    def __init__(self, path: Path, db: sqlite_utils.Database, user: str, data_key: bytes, key_version: int,
                 lock_file: Any) -> None:
        self.path = path
        self.db = db
        self.user = user
        self._key = data_key
        self.key_version = key_version
        self._lock_file = lock_file
        self._depth = 0
        for spec in TABLES.values():
            setattr(self, spec.name, SealedTable(self, spec))

    # Declared for type checkers; set in __init__.
    items: SealedTable
    fingerprints: SealedTable
    interactions: SealedTable
    features: SealedTable
    drafts: SealedTable
    ledger: SealedTable
    blobs: SealedTable
    cache: SealedTable
    imports: SealedTable

    # ------------------------------------------------------------------ opening

    @staticmethod
    def user_dir(user: str, home: Path | None = None) -> Path:
        if not _USER_NAME.match(user):
            raise VaultError(f"invalid user name {user!r}: use 1-40 lowercase letters, digits, '.', '_' or '-'")
        return (home or users_dir()) / user

    @staticmethod
    def users(home: Path | None = None) -> list[str]:
        """Names of the users that have a vault on this machine."""
        root = home or users_dir()
        return sorted(p.name for p in root.iterdir() if (p / "vault.db").exists()) if root.exists() else []

    @classmethod
    def exists(cls, user: str, home: Path | None = None) -> bool:
        return (cls.user_dir(user, home) / "vault.db").exists()

    @classmethod
    def create(cls, user: str, passphrase: str, *, home: Path | None = None, kdf_seconds: float = 0.5,
               demo: bool = False) -> "Vault":
        """Make a new vault for ``user`` protected by ``passphrase``."""
        if not passphrase:
            raise VaultError("a passphrase is required to create a vault")
        folder = cls.user_dir(user, home)
        if (folder / "vault.db").exists():
            raise VaultError(f"user {user!r} already exists; open it, or erase it first")
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = _acquire_lock(folder, user)
        try:
            params = crypto.calibrate(kdf_seconds) if kdf_seconds > 0 else crypto.KDFParams(os.urandom(16))
            data_key = crypto.new_data_key()
            kek = crypto.derive_key(passphrase, params)
            tmp = folder / "vault.db.creating"
            tmp.unlink(missing_ok=True)
            db = _connect(tmp)
            _create_schema(db)
            wrapped = crypto.seal(kek, data_key, aad=_wrap_aad(user, 1))
            db["meta"].insert_all([
                {"key": "user", "value": user},
                {"key": "schema_version", "value": str(SCHEMA_VERSION)},
                {"key": "key_version", "value": "1"},
                {"key": "kdf", "value": json.dumps(params.to_dict())},
                {"key": "wrapped_key", "value": wrapped.hex()},
                {"key": "demo", "value": "1" if demo else "0"},
                {"key": "created", "value": str(coarse_time())},
            ], pk="key")
            db.conn.close()
            os.replace(tmp, folder / "vault.db")  # the vault appears whole or not at all
            for suffix in ("-wal", "-shm"):
                Path(str(tmp) + suffix).unlink(missing_ok=True)
        except BaseException:
            _release_lock(lock)
            raise
        return cls._unlock(folder, user, passphrase, lock)

    @classmethod
    def open(cls, user: str, passphrase: str, *, home: Path | None = None) -> "Vault":
        """Unlock an existing vault. Wrong passphrase: :class:`WrongPassphrase`, nothing written."""
        folder = cls.user_dir(user, home)
        if not (folder / "vault.db").exists():
            raise VaultError(f"no vault for user {user!r}; create one with: localpers user create {user}")
        lock = _acquire_lock(folder, user)
        try:
            return cls._unlock(folder, user, passphrase, lock)
        except BaseException:
            _release_lock(lock)
            raise

    @classmethod
    def open_demo(cls, *, home: Path | None = None) -> "Vault":
        """The demo profile: created from the bundled synthetic sample on first use."""
        if cls.exists(DEMO_USER, home):
            return cls.open(DEMO_USER, DEMO_PASSPHRASE, home=home)
        vault = cls.create(DEMO_USER, DEMO_PASSPHRASE, home=home, kdf_seconds=0, demo=True)
        from .demo import populate

        populate(vault)
        return vault

    @classmethod
    def _unlock(cls, folder: Path, user: str, passphrase: str, lock: Any) -> "Vault":
        db = _connect(folder / "vault.db")
        meta = {r["key"]: r["value"] for r in db.query("select key, value from meta")}
        params = crypto.KDFParams.from_dict(json.loads(meta["kdf"]))
        key_version = int(meta["key_version"])
        kek = crypto.derive_key(passphrase, params)
        try:
            data_key = crypto.unseal(kek, bytes.fromhex(meta["wrapped_key"]), aad=_wrap_aad(user, key_version))
        except crypto.TamperedData:
            db.conn.close()
            raise WrongPassphrase(f"wrong passphrase for user {user!r}") from None
        _migrate(db, int(meta["schema_version"]))
        return cls(folder / "vault.db", db, user, data_key, key_version, lock)

    def close(self) -> None:
        if self._lock_file is None:
            return
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("pragma wal_checkpoint(TRUNCATE)")
        self.db.conn.close()
        self._key = b""
        _release_lock(self._lock_file)
        self._lock_file = None

    def __enter__(self) -> "Vault":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ sealing

    def _aad(self, table: str, column: str, key: Any) -> bytes:
        return f"{table}|{column}|{key}|{self.user}|{self.key_version}".encode()

    def seal(self, plaintext: bytes, table: str, column: str, key: Any) -> bytes:
        return crypto.seal(self._key, plaintext, aad=self._aad(table, column, key))

    def unseal(self, box: bytes, table: str, column: str, key: Any) -> bytes:
        return crypto.unseal(self._key, box, aad=self._aad(table, column, key))

    def keyed_hash(self, data: bytes | str, purpose: str = "") -> str:
        """A hash only this vault can compute (HMAC-SHA256 under a key derived from the data key).

        Use it to find equal content (deduplication, caches) without storing the content.
        """
        import hashlib
        import hmac

        if isinstance(data, str):
            data = data.encode("utf-8")
        mac_key = hashlib.sha256(b"localpers-hmac|" + purpose.encode() + b"|" + self._key).digest()
        return hmac.new(mac_key, data, hashlib.sha256).hexdigest()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes so they all land or none does (nested calls join the outer one)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._depth = 1
        self.db.execute("begin immediate")
        try:
            yield
        except BaseException:
            self.db.execute("rollback")
            raise
        else:
            self.db.execute("commit")
        finally:
            self._depth = 0

    # ------------------------------------------------------------------ info

    @property
    def is_demo(self) -> bool:
        return self.meta("demo") == "1"

    def meta(self, key: str) -> str | None:
        row = list(self.db.query("select value from meta where key = ?", [key]))
        return row[0]["value"] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self.db["meta"].upsert({"key": key, "value": value}, pk="key")

    def stats(self) -> dict:
        """Counts and sizes for the privacy screen: rows per table, items per kind, bytes on disk."""
        kinds = {r["kind"]: r["n"] for r in self.db.query("select kind, count(*) n from items group by kind")}
        tables = {name: self.db[name].count for name in TABLES}
        files = {p.name: p.stat().st_size for p in self.path.parent.iterdir() if p.is_file()}
        return {"user": self.user, "tables": tables, "items_by_kind": kinds, "files": files,
                "bytes": sum(files.values()), "demo": self.is_demo}

    # ------------------------------------------------------------------ blobs

    def put_blob(self, name: str, data: bytes, info: dict | None = None) -> None:
        """Store a file's bytes encrypted (the vector index, an adapter, a checkpoint)."""
        self.blobs.insert({"name": name, "data": data, "info": info or {}, "updated": coarse_time(),
                           "size": len(data)}, replace=True)

    def get_blob(self, name: str) -> bytes | None:
        row = self.blobs.get(name, columns=["data"])
        return None if row is None else row["data"]

    def blob_info(self, name: str) -> dict | None:
        row = self.blobs.get(name, columns=["info"])
        return None if row is None else row["info"]

    @contextlib.contextmanager
    def blob_file(self, name: str) -> Iterator[Path]:
        """A path to a decrypted copy of a blob that never reaches persistent storage.

        Linux: an anonymous in-memory file (memfd), reachable as ``/proc/self/fd/N``.
        Elsewhere: a file in a fresh 0700 directory, removed as soon as the block ends.
        Use it for libraries that only take paths, like llama.cpp's adapter loader.
        """
        data = self.get_blob(name)
        if data is None:
            raise VaultError(f"no blob named {name!r} in the vault of {self.user!r}")
        with plaintext_file(data) as path:
            yield path

    # ------------------------------------------------------------------ passphrase, erase, backup

    def change_passphrase(self, new_passphrase: str, *, kdf_seconds: float = 0.5) -> None:
        """Rewrap the data key under a new passphrase. No record is re-encrypted."""
        if not new_passphrase:
            raise VaultError("the new passphrase must not be empty")
        params = crypto.calibrate(kdf_seconds) if kdf_seconds > 0 else crypto.KDFParams(os.urandom(16))
        wrapped = crypto.seal(crypto.derive_key(new_passphrase, params), self._key,
                              aad=_wrap_aad(self.user, self.key_version))
        with self.transaction():
            self.db["meta"].upsert({"key": "kdf", "value": json.dumps(params.to_dict())}, pk="key")
            self.db["meta"].upsert({"key": "wrapped_key", "value": wrapped.hex()}, pk="key")

    def scrub(self) -> None:
        """Leave no trace of deleted rows: checkpoint and empty the WAL, then rebuild the file."""
        self.db.execute("pragma wal_checkpoint(TRUNCATE)")
        self.db.execute("vacuum")
        self.db.execute("pragma wal_checkpoint(TRUNCATE)")

    def erase_user(self) -> None:
        """Delete this user entirely: overwrite the files, remove the folder, close the vault."""
        folder = self.path.parent
        self.close()
        for p in folder.iterdir():
            if p.is_file() and p.name != "vault.lock":
                size = p.stat().st_size
                with open(p, "r+b") as f:
                    f.write(b"\0" * size)
                    f.flush()
                    os.fsync(f.fileno())
        shutil.rmtree(folder)


# ---------------------------------------------------------------------- helpers


def _wrap_aad(user: str, key_version: int) -> bytes:
    return f"wrapped-data-key|{user}|{key_version}".encode()


def _connect(path: Path) -> sqlite_utils.Database:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=5)
    db = sqlite_utils.Database(conn)
    for pragma in (
        "journal_mode = WAL",  # readers never block the writer; crash-safe commits
        "synchronous = FULL",  # a commit is on disk before it returns
        "secure_delete = ON",  # deleted rows are overwritten with zeros, not left in free pages
        "temp_store = MEMORY",  # sorts and temp tables never spill to a temp file
        "foreign_keys = ON",
    ):
        db.execute(f"pragma {pragma}")
    os.chmod(path, 0o600)
    return db


def _create_schema(db: sqlite_utils.Database) -> None:
    db["meta"].create({"key": str, "value": str}, pk="key")
    for spec in TABLES.values():
        columns: dict[str, Any] = {spec.pk: spec.pk_type, **spec.clear}
        columns.update({c: bytes for c in spec.secret})
        db[spec.name].create(columns, pk=spec.pk)
    db["items"].create_index(["kind", "created"])
    db["interactions"].create_index(["signal", "time"])
    db["fingerprints"].create_index(["item_id"])


# Each migration takes the database from version N to N+1; none yet past version 1.
MIGRATIONS: dict[int, Any] = {}


def _migrate(db: sqlite_utils.Database, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise VaultError(f"this vault was written by a newer localpers (schema {version}); upgrade localpers")
    while version < SCHEMA_VERSION:
        with db.conn:
            MIGRATIONS[version](db)
            version += 1
            db["meta"].upsert({"key": "schema_version", "value": str(version)}, pk="key")


def _acquire_lock(folder: Path, user: str) -> Any:
    lock_path = folder / "vault.lock"
    f = open(lock_path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise VaultLocked(f"the vault of {user!r} is open in another localpers process; close it and try again") from None
    return f


def _release_lock(f: Any) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(f, fcntl.LOCK_UN)
    f.close()


@contextlib.contextmanager
def plaintext_file(data: bytes) -> Iterator[Path]:
    """Expose ``data`` at a path without writing it to persistent storage (see :meth:`Vault.blob_file`)."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("localpers-blob", 0)
        try:
            _write_all(fd, data)
            yield Path(f"/proc/{os.getpid()}/fd/{fd}")
        finally:
            os.close(fd)
        return
    folder = tempfile.mkdtemp(prefix="localpers-")
    os.chmod(folder, 0o700)
    path = Path(folder) / "blob"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        _write_all(fd, data)
        os.close(fd)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def require_user(user: str | None, passphrase: str | None, *, home: Path | None = None) -> Vault:
    """Open the named vault, or the demo one when ``user`` is None or 'demo' (for the CLI and TUI)."""
    if not user or user == DEMO_USER:
        return Vault.open_demo(home=home)
    if passphrase is None:
        raise LocalpersError(f"a passphrase is needed to open {user!r}: set LOCALPERS_PASSPHRASE or type it when asked")
    return Vault.open(user, passphrase, home=home)

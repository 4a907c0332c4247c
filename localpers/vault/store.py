"""The encrypted vault: one SQLite file per user where everything personal is sealed.

A :class:`Vault` is a ``sqlite-utils`` database whose personal columns hold
AES-256-GCM ciphertexts (see :mod:`localpers.vault.crypto`). Each table is described by
a :class:`Table`: its clear columns (ids, coarse times, kinds: what SQLite needs to
index and what reveals nothing of the content) and its secret columns (everything
else). Secret values may be any JSON value or raw ``bytes``.

Example::

    >>> from localpers.vault import Vault
    >>> vault = Vault.create("ada", "correct horse battery staple")   # doctest: +SKIP
    >>> item_id = vault.items.insert({"kind": "note", "content": "Buy milk"})  # doctest: +SKIP
    >>> vault.items.get(item_id)["content"]                               # doctest: +SKIP
    'Buy milk'
    >>> vault.close()                                                      # doctest: +SKIP

Keys
----
A random 256-bit *data key* encrypts every field. It is stored only wrapped
(AES-GCM) under a key derived from the passphrase with Argon2id; the Argon2id
parameters are calibrated to about half a second on the machine that created the
vault and never go below OWASP's minimum (19 MiB, 2 passes, 1 lane); parameters
read from a file are refused beyond 4 GiB, 20 passes, or 8 GiB x passes. Changing the
passphrase rewraps the data key; no record is re-encrypted, so an old copy of the
file still opens with the old passphrase. :meth:`Vault.rekey` re-encrypts everything
under a new data key (built in a new file, swapped in atomically). Optionally a second
wrapping under a random secret kept in the OS keyring allows unlocking without
typing the passphrase (:meth:`Vault.enable_keyring`); the passphrase itself is
never stored anywhere.

Each field is sealed with a fresh random nonce and with associated data
``table|column|row key|user|key version``: a ciphertext copied to another row,
column, table or user's vault fails to decrypt (:class:`~localpers.errors.TamperedData`).
Plaintexts are padded (:func:`localpers.vault.crypto.pad`): a ciphertext's size tells only
the rough size of what it hides (at least 64 bytes, then buckets at most 12% apart).

What stays in the clear, and why
--------------------------------
Someone who copies the vault file learns the following, and nothing else:

============  =====================================  ==========================================
table         clear columns                          why they are clear
============  =====================================  ==========================================
meta          user name, schema and key version,     needed before the key exists: to check the
              Argon2id parameters and salt, the      passphrase and migrate the schema. The
              wrapped data key(s), a random vault    wrapped key is useless without the
              id, demo flag, day of creation; the    passphrase (Argon2id makes guessing slow)
              sealed integrity record
items         id (random UUID), source_type, kind    address rows; filter by kind and recency
              (from fixed word lists), created (day) without decrypting
fingerprints  digest (HMAC-SHA256 under a key        deduplicate imports; an HMAC reveals
              derived from the data key), item_id    nothing without the key
interactions  id (counter), signal (a fixed word     filter by signal and time; *which* item
              list), time (day)                      and the value are sealed
features      id, updated (day)                      the feature's name and value are sealed
drafts        id, mode (a fixed word list),          every text is sealed
              created (day)
ledger        id (counter), time (day)               what was revealed, to whom, why: sealed
blobs         name (chosen by the code, e.g.         find a blob without decrypting them all
              "history.index"), updated (day)
cache         key (an HMAC, or a name chosen by      look up derived values by keyed hash
              the code), kind (a fixed word list)
imports       id, updated (day)                      the source path and progress are sealed
============  =====================================  ==========================================

Every table also has ``_real`` (sealed) and ``_mac`` (a 16-byte MAC). Clear text
columns only ever hold a word from a list fixed in this module (``ITEM_KINDS``,
``SOURCE_TYPES``, ``SIGNALS``, ``DRAFT_MODES``, ``CACHE_KINDS``); any other value
(a JSONL record's own ``kind``, a CSV's ``signal``, ``import --kind``) is stored as
``"other"`` and its real value sealed in ``_real``, and reads give the real value
back. Empty secret fields are sealed like any other, so whether a value is missing
does not show. Also visible: the number of rows in each table, and each
ciphertext's padded size. The clear time columns are rounded down to the day on
every write (:func:`coarse_time`); exact times, when needed, go in a sealed column.

Integrity
---------
- Each row carries a MAC (keyed BLAKE2b, 128 bits, under a key derived from the
  data key) over its table, key, clear values and the nonce of each sealed field. A
  changed ``kind`` or ``created``, or a sealed field swapped for an older version of
  itself, fails the MAC on the next read of that row (:class:`TamperedData`).
- Per table, a row count and the XOR of all row MACs, and a hash of the meta table,
  are kept in one sealed record (meta ``integrity``), rewritten in the same
  transaction as every change, together with a commit counter. Every open checks
  them (one 16-byte column per row is read: milliseconds for tens of thousands of
  rows). A deleted or added row, an edited meta value, or a file stitched from
  rows of different ages fails to open.
- Rollback: the commit counter is mirrored in the OS keyring when keyring unlock
  is on (:meth:`enable_keyring`); an open that finds a smaller counter in the file
  than the keyring saw refuses (restoring a backup resets the mirror).

What cannot be detected, and why: a *whole* copy of an older file, consistent in
itself, when keyring unlock is off (nothing outside the file remembers how new it
was; anything else we could write beside it can be rolled back with it), or when
the keyring entry is rolled back too; a rollback to within the last session (the
mirror is written when the vault closes, so a crash before that leaves it one
session behind); and deleting the whole vault. The Argon2id parameters and the
wrapped key are read before any key exists, so they are checked for sanity (bounded
parameters, well-formed values) and then by the unwrapping itself, not by a MAC.
The search index blob is sealed like every field: a flipped byte fails its
authentication, and :class:`~localpers.history.History` rebuilds the index from the
stored vectors (and says so) rather than failing.

Erasing
-------
SQLite runs with ``secure_delete`` on, so a deleted row's bytes are overwritten
in the database file, and with ``temp_store = MEMORY``, so sorts and VACUUM never
spill to temp files. B-tree rebalancing can still leave a stale copy of a *moved*
row in a page's free space, and the write-ahead log keeps old page images until a
checkpoint. :meth:`Vault.scrub` (checkpoint, VACUUM, checkpoint with truncation)
removes both; :meth:`Vault.erase_items` deletes items with everything that points
at them and then scrubs; :meth:`Vault.erase_user` overwrites and removes the
user's folder. Overwriting cannot reach blocks an SSD or copy-on-write file system
has already remapped, but those only ever held ciphertext.

Files and processes
-------------------
``<home>/users/<name>/vault.db`` (plus ``-wal``/``-shm`` while open) and
``vault.lock``. Several processes may have a vault open at once (the app and the
CLI side by side): each holds a shared advisory lock on ``vault.lock``; creating,
erasing or restoring a vault needs it exclusively, so those fail with
:class:`~localpers.errors.VaultLocked` while another process has the vault open.
Writes queue: each write transaction holds an exclusive lock on the user's folder,
and a second writer waits for it (up to :data:`WRITE_WAIT` seconds, telling the
user who holds it: ``vault.lock`` names the holder's pid and program, nothing
personal). Readers never wait: SQLite's WAL lets them read the last commit while
a write is under way. Commits are atomic and durable (WAL, ``synchronous = FULL``):
a crash at any point leaves the vault openable with every committed transaction intact.
What a process keeps in memory from the vault (the history's vector index) is
checked against ``PRAGMA data_version`` and caught up when another process wrote.

For libraries that only read files from a path (llama.cpp loading a LoRA adapter,
usearch), :meth:`Vault.blob_file` hands out a decrypted copy that never reaches
persistent storage: an anonymous in-memory file (``memfd_create``) on Linux;
elsewhere a file in a fresh 0700 temporary directory that is removed as soon as
the ``with`` block ends, so load and leave the block at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import sqlite_utils

from . import crypto
from ..errors import TamperedData, VaultError, VaultLocked
from .files import (acquire_lock, flock_folder, fsync_dir, lock_holder, make_exclusive, name_holder,
                    open_folder, plaintext_file, release_lock, remove_db_files, share_lock, shred_folder, unflock_folder)
from .keys import (KEYRING_SERVICE, kdf_params, keyring_aad, keyring_forget, keyring_module, keyring_unwrap, meta_hex,
                   meta_int, unwrap, wrap_aad)
from .sealed import MAC, REAL, TABLES, SealedTable, coarse_time, decode_value, xor_macs
from ..paths import private_dir, users_dir

SCHEMA_VERSION = 2
DEMO_USER = "demo"
DEMO_PASSPHRASE = "demo"  # the demo vault is still encrypted; its passphrase is public on purpose
VAULT_FILE = "vault.db"
_USER_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")
_REQUIRED_META = ("user", "schema_version", "key_version", "kdf", "wrapped_key")
WRITE_WAIT = 60.0  # seconds a write waits for another process's write before giving up
# How other processes name this one while it writes ("waiting for the vault, held by the app, pid 42"):
# the default of every vault's ``program``.
PROCESS_NAME = "localpers"


def _print_notice(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# Told once when a write has to wait for another process (the CLI prints it on stderr).
wait_notice: Callable[[str], None] = _print_notice


def _migrate_1_to_2(vault: "Vault") -> None:
    """Schema 2: clear words from fixed vocabularies, a MAC per row, sealed empty fields, no clear blob size.

    Every row is read with schema 1's layout and written again through the new one
    (which maps free-text words to "other" and computes the MACs and the table sums).
    Embedding cache rows, keyed by item id in the clear, are dropped: they are
    recomputed when needed (the search index keeps its own vectors).
    """
    conn = vault.db.conn
    for spec in TABLES.values():
        conn.execute(f"alter table [{spec.name}] add column [{REAL}] blob")
        conn.execute(f"alter table [{spec.name}] add column [{MAC}] blob")
    conn.execute("alter table blobs drop column size")
    conn.execute("delete from cache where key like 'emb:%'")
    vault._state = {name: [0, 0] for name in TABLES}
    for spec in TABLES.values():
        columns = (spec.pk, *spec.clear, *spec.secret)
        select = f"select {', '.join(f'[{c}]' for c in columns)} from [{spec.name}] where [{spec.pk}] = ?"
        keys = [k for (k,) in conn.execute(f"select [{spec.pk}] from [{spec.name}]").fetchall()]
        for start in range(0, len(keys), 256):
            rows = []
            for key in keys[start:start + 256]:
                row = dict(zip(columns, conn.execute(select, [key]).fetchone()))
                for c in spec.secret:
                    if row[c] is not None:
                        row[c] = decode_value(vault.unseal(row[c], spec.name, c, key))
                rows.append(row)
            conn.executemany(f"delete from [{spec.name}] where [{spec.pk}] = ?", [(r[spec.pk],) for r in rows])
            getattr(vault, spec.name).insert_all(rows)


# Each migration takes an open vault from schema version N to N+1, inside one transaction.
MIGRATIONS: dict[int, Callable[["Vault"], None]] = {1: _migrate_1_to_2}


class Vault:
    """One user's encrypted store. Open it with :meth:`create` or :meth:`open`; close it when done.

    Several processes may have it open; their writes queue (see "Files and processes" above).
    """

    def __init__(self, path: Path, db: sqlite_utils.Database, user: str, data_key: bytes, key_version: int,
                 lock_file: Any) -> None:
        self.path = path
        self.db = db
        self.user = user
        self._key = data_key
        self._aead = crypto.cipher(data_key)
        self._hmac_keys: dict[str, bytes] = {}
        self._mac_key = crypto.subkey(data_key, "row-mac")
        # Per table: [row count, XOR of row MACs], and a commit counter; sealed in meta
        # "integrity" at every commit that changed something (see "Integrity" above).
        self._state: dict[str, list[int]] = {name: [0, 0] for name in TABLES}
        self._counter = 0
        self._mirrored = 0  # the counter last written to the OS keyring
        self._dirty = False
        self._snapshots: list[tuple[dict[str, list[int]], bool]] = []
        self._seen_version: int | None = None  # data_version when the state above was last in step
        self.key_version = key_version
        self._lock_file = lock_file
        # How other processes name this one while it writes; the app sets "the app" on the vaults it opens.
        self.program = PROCESS_NAME
        self._tx_lock = threading.RLock()
        self._depth = 0
        self._folder_fd = open_folder(path.parent)  # flocked around each write
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

    def __repr__(self) -> str:
        return f"<Vault {self.user!r} at {self.path}{'' if self.is_open else ' (closed)'}>"

    # ------------------------------------------------------------------ opening

    @staticmethod
    def user_dir(user: str, home: Path | None = None) -> Path:
        if not isinstance(user, str) or not _USER_NAME.match(user):
            raise VaultError(f"invalid user name {user!r}: use 1-40 lowercase letters, digits, '.', '_' or '-'")
        return (home or users_dir()) / user

    @staticmethod
    def users(home: Path | None = None) -> list[str]:
        """Names of the users that have a vault on this machine."""
        root = home or users_dir()
        return sorted(p.name for p in root.iterdir() if (p / VAULT_FILE).exists()) if root.exists() else []

    @classmethod
    def exists(cls, user: str, home: Path | None = None) -> bool:
        return (cls.user_dir(user, home) / VAULT_FILE).exists()

    @classmethod
    def create(cls, user: str, passphrase: str, *, home: Path | None = None, kdf_seconds: float = 0.5,
               demo: bool = False) -> "Vault":
        """Make a new vault for ``user`` protected by ``passphrase``; returns it open.

        ``kdf_seconds`` is how long unlocking should take (Argon2id is calibrated to it);
        0 means OWASP's minimum parameters, for tests and the public demo vault.
        """
        if not passphrase:
            raise VaultError("a passphrase is required to create a vault")
        folder = cls.user_dir(user, home)
        if (folder / VAULT_FILE).exists():
            raise VaultError(f"user {user!r} already exists; open it, or erase it first")
        private_dir(folder)
        lock = acquire_lock(folder, user)
        try:
            params = crypto.calibrate(kdf_seconds) if kdf_seconds > 0 else crypto.minimum_params()
            data_key = crypto.new_data_key()
            wrapped = crypto.seal(crypto.derive_key(passphrase, params), data_key, aad=wrap_aad(user, 1))
            # Built under a temporary name (left over from a crash, it is simply rebuilt).
            tmp = folder / (VAULT_FILE + ".creating")
            remove_db_files(tmp)
            db = _connect(tmp)
            try:
                db.conn.execute("begin immediate")
                _create_schema(db)
                db["meta"].insert_all([
                    {"key": "format", "value": "localpers-vault"},
                    {"key": "user", "value": user},
                    {"key": "vault_id", "value": uuid.uuid4().hex},
                    {"key": "schema_version", "value": str(SCHEMA_VERSION)},
                    {"key": "key_version", "value": "1"},
                    {"key": "kdf", "value": json.dumps(params.to_dict())},
                    {"key": "wrapped_key", "value": wrapped.hex()},
                    {"key": "demo", "value": "1" if demo else "0"},
                    {"key": "created", "value": str(coarse_time())},
                ], pk="key")
                db.conn.execute("commit")
                db.conn.execute("pragma wal_checkpoint(TRUNCATE)")
            finally:
                db.conn.close()
            os.replace(tmp, folder / VAULT_FILE)  # the vault appears whole or not at all
            fsync_dir(folder)
            remove_db_files(tmp)
            return cls.open_unlocked(folder / VAULT_FILE, user, data_key, 1, lock, fresh=True)
        except BaseException:
            release_lock(lock)
            raise

    @classmethod
    def open(cls, user: str, passphrase: str | None = None, *, home: Path | None = None) -> "Vault":
        """Unlock an existing vault.

        Wrong passphrase: :class:`WrongPassphrase`, and nothing is written: the key is
        checked on a read-only view of the file before the database is opened for writing.
        ``passphrase=None`` unlocks with the OS keyring (see :meth:`enable_keyring`).
        """
        folder = cls.user_dir(user, home)
        path = folder / VAULT_FILE
        if not path.exists():
            raise VaultError(f"no vault for user {user!r}; create one with: localpers user create {user}")
        lock = acquire_lock(folder, user, shared=True, wait=WRITE_WAIT)
        try:
            meta = _read_meta(path, user)
            if passphrase is None:
                data_key = keyring_unwrap(meta, user)
            else:
                data_key = unwrap(meta, user, passphrase)
            return cls.open_unlocked(path, user, data_key, meta_int(meta["key_version"], "key_version"), lock)
        except BaseException:
            release_lock(lock)
            raise

    @classmethod
    def open_unlocked(cls, path: Path, user: str, data_key: bytes, key_version: int, lock: Any, *,
                      fresh: bool = False, accept_rollback: bool = False) -> "Vault":
        """Open a vault file whose data key is already unwrapped, holding its exclusive ``lock`` (create, restore)."""
        share_lock(lock)  # created or restored under an exclusive lock: now others may open it too
        try:
            db = _connect(path)
        except sqlite3.DatabaseError as exc:
            release_lock(lock)
            raise VaultError(f"{path} is damaged ({exc}); restore it from a backup") from None
        vault = cls(path, db, user, data_key, key_version, lock)
        try:
            if fresh:
                with vault.transaction():
                    vault._dirty = True  # writes the first integrity record
            else:
                vault._migrate()
                vault._verify_integrity()
            vault._check_rollback(accept=accept_rollback or fresh)
        except BaseException:
            vault._close_folder()
            db.conn.close()
            raise
        return vault

    def _migrate(self) -> None:
        version = meta_int(self.meta("schema_version") or "0", "schema_version")
        if version > SCHEMA_VERSION:
            raise VaultError(f"this vault was written by a newer localpers (schema {version}); upgrade localpers")
        if version < SCHEMA_VERSION and version >= 2:
            self._load_integrity()  # later migrations update the sealed sums as they write
        migrated = version < SCHEMA_VERSION
        while version < SCHEMA_VERSION:
            if version not in MIGRATIONS:
                raise VaultError(f"no migration from schema {version}; this vault cannot be upgraded")
            with self.transaction():  # a migration lands whole or not at all
                MIGRATIONS[version](self)
                version += 1
                self.set_meta("schema_version", str(version))
        if migrated:
            self.scrub()  # no copy of a row in its old layout stays in free pages or the WAL

    # ------------------------------------------------------------------ integrity

    def _fetch(self, sql: str, params: Iterable[Any] = (), *, one: bool = False) -> Any:
        """Run a read; a damaged file gives a one-line :class:`VaultError`, not sqlite3's exception."""
        try:
            cur = self.db.conn.execute(sql, list(params))
            return cur.fetchone() if one else cur.fetchall()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "no such" in str(exc):
                raise  # a programming error (bad column in a where clause), not damage
            raise VaultError(f"the vault file of {self.user!r} is damaged ({exc}); restore it from a backup") from None

    def _account(self, table: str, removed: list[bytes], added: list[bytes]) -> None:
        state = self._state[table]
        state[0] += len(added) - len(removed)
        state[1] ^= xor_macs(removed) ^ xor_macs(added)
        self._dirty = True

    def _meta_digest(self) -> str:
        rows = self._fetch("select key, value from meta where key != 'integrity' order by key")
        return hashlib.sha256(repr(rows).encode()).hexdigest()

    def _write_integrity(self) -> None:
        self._counter += 1
        record = {"counter": self._counter, "meta": self._meta_digest(),
                  "tables": {name: [n, f"{x:032x}"] for name, (n, x) in self._state.items()}}
        box = self.seal(json.dumps(record).encode(), "meta", "integrity", "vault")
        self.db.conn.execute("insert or replace into meta (key, value) values ('integrity', ?)", [box.hex()])

    def _load_integrity(self) -> dict:
        raw = self.meta("integrity")
        if raw is None:
            raise TamperedData(f"the vault of {self.user!r} has no integrity record: it was modified outside "
                               "localpers; restore it from a backup")
        try:
            record = json.loads(self.unseal(bytes.fromhex(raw), "meta", "integrity", "vault"))
            self._counter = int(record["counter"])
            self._state = {name: [int(record["tables"][name][0]), int(record["tables"][name][1], 16)]
                           for name in TABLES}
        except TamperedData:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise TamperedData(f"the integrity record of {self.user!r} is unreadable ({exc}): the vault was "
                               "modified outside localpers; restore it from a backup") from None
        return record

    def _verify_integrity(self) -> None:
        """Check the row counts, MAC sums and meta values against the sealed record (at every open).

        Reads one 16-byte column per row: about 10 ms per 10,000 rows.
        """
        conn = self.db.conn
        conn.execute("begin")  # one snapshot for every read below: another process may commit meanwhile
        try:
            self._check_record()
        finally:
            with contextlib.suppress(sqlite3.Error):  # a read-only transaction: ending it cannot lose anything
                conn.execute("commit")

    def _check_record(self) -> None:
        record = self._load_integrity()
        if record.get("meta") != self._meta_digest():
            raise TamperedData(f"the settings (meta table) of {self.user!r}'s vault were changed outside "
                               "localpers; restore it from a backup")
        for name, (count, xor) in self._state.items():
            macs = [m for (m,) in self._fetch(f"select [{MAC}] from [{name}]")]
            if len(macs) != count or xor_macs(macs) != xor or None in macs:
                what = (f"{count - len(macs)} row(s) missing" if len(macs) < count else
                        f"{len(macs) - count} row(s) added" if len(macs) > count else "rows replaced")
                raise TamperedData(f"table {name} of {self.user!r}'s vault does not match its sealed record "
                                   f"({what}): it was modified outside localpers; restore it from a backup")

    def _counter_account(self) -> str | None:
        vault_id = self.meta("vault_id")
        return None if vault_id is None else f"{self.user}@{vault_id}#counter"

    def _check_rollback(self, *, accept: bool = False) -> None:
        """Compare the commit counter with its mirror in the OS keyring (when keyring unlock is on)."""
        kr = keyring_module() if self.keyring_enabled else None
        account = self._counter_account()
        if kr is None or account is None:
            return
        try:
            seen = kr.get_password(KEYRING_SERVICE, account)
        except Exception:  # an unreadable keyring only means: nothing to compare with
            return
        if not accept and seen is not None and seen.isdigit() and int(seen) > self._counter:
            raise TamperedData(f"the vault of {self.user!r} is older than the last one this machine saw (change "
                               f"{self._counter} < {seen}): the file was rolled back to an earlier copy. "
                               "Restore your newest backup with: localpers user restore")
        self._mirror_counter(force=True)

    def _mirror_counter(self, *, force: bool = False) -> None:
        if not force and self._counter == self._mirrored:
            return
        kr = keyring_module() if self.keyring_enabled else None
        account = self._counter_account()
        if kr is None or account is None:
            return
        with contextlib.suppress(Exception):
            kr.set_password(KEYRING_SERVICE, account, str(self._counter))
            self._mirrored = self._counter

    @property
    def is_open(self) -> bool:
        return self._lock_file is not None

    def close(self) -> None:
        """Checkpoint, close the database and release the lock (safe to call twice)."""
        if self._lock_file is None:
            return
        with contextlib.suppress(VaultError, sqlite3.Error):
            self._mirror_counter()
        self._close_db()
        release_lock(self._lock_file)
        self._lock_file = None

    def _close_db(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.db.conn.execute("pragma wal_checkpoint(TRUNCATE)")
        self.db.conn.close()
        self._close_folder()
        # Python cannot wipe immutable bytes; dropping the references is the best it offers.
        self._key = b""
        self._aead = None  # type: ignore[assignment]
        self._hmac_keys.clear()

    def __enter__(self) -> "Vault":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ sealing

    def _aad(self, table: str, column: str, key: Any) -> bytes:
        return f"{table}|{column}|{key}|{self.user}|{self.key_version}".encode()

    def seal(self, plaintext: bytes, table: str, column: str, key: Any) -> bytes:
        """Encrypt ``plaintext`` bound to one place: ``table``, ``column``, row ``key``."""
        if self._aead is None:
            raise VaultError(f"the vault of {self.user!r} is closed")
        return crypto.seal(self._aead, plaintext, aad=self._aad(table, column, key))

    def unseal(self, box: bytes, table: str, column: str, key: Any) -> bytes:
        """Decrypt what :meth:`seal` made for the same place; :class:`TamperedData` otherwise."""
        if self._aead is None:
            raise VaultError(f"the vault of {self.user!r} is closed")
        return crypto.unseal(self._aead, box, aad=self._aad(table, column, key))

    def keyed_hash(self, data: bytes | str, purpose: str = "") -> str:
        """A hash only this vault can compute (HMAC-SHA256 under a key derived from the data key).

        Use it to find equal content (deduplication, caches) without storing the content.

        Example::

            >>> vault.keyed_hash("Buy milk", "fingerprint") == vault.keyed_hash("Buy milk", "fingerprint")  # doctest: +SKIP
            True
        """
        if isinstance(data, str):
            data = data.encode("utf-8")
        mac_key = self._hmac_keys.get(purpose)
        if mac_key is None:
            mac_key = self._hmac_keys[purpose] = crypto.subkey(self._key, "hmac|" + purpose)
        return hmac.new(mac_key, data, hashlib.sha256).hexdigest()

    def _close_folder(self) -> None:
        if self._folder_fd is not None:
            os.close(self._folder_fd)
            self._folder_fd = None

    def data_version(self) -> int:
        """A number that changes whenever *another* connection commits (SQLite's ``PRAGMA data_version``).

        Keep it with anything cached from the vault; a different value means reload.
        """
        return self.db.conn.execute("pragma data_version").fetchone()[0]

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the vault's write lock; another process's write waits (bounded) until this one ends."""
        fd = self._folder_fd
        if fd is None or flock_folder is None:  # no folder locks here (Windows): SQLite's own lock still serializes
            yield
            return
        try:
            flock_folder(fd, exclusive=True, wait=False)
        except OSError:
            holder = lock_holder(self._lock_file)
            wait_notice(f"waiting for the vault of {self.user!r}, held by {holder}...")
            deadline = time.monotonic() + WRITE_WAIT
            while True:
                time.sleep(0.05)
                try:
                    flock_folder(fd, exclusive=True, wait=False)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise VaultLocked(f"the vault of {self.user!r} stayed busy for {WRITE_WAIT:.0f} s (held by "
                                          f"{lock_holder(self._lock_file)}); try again when it is done") from None
        try:
            name_holder(self._lock_file, self.program)
            yield
        finally:
            unflock_folder(fd)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes so they all land or none does.

        Nested blocks become savepoints: an error inside one undoes only that block
        (if the caller catches it). Other threads wait until the outermost block ends.
        """
        with self._tx_lock:
            conn = self.db.conn
            # The integrity state goes back with the data when a block is undone.
            self._snapshots.append(({k: list(v) for k, v in self._state.items()}, self._dirty))
            try:
                if self._depth:
                    name = f"lp_{self._depth}"
                    conn.execute(f"savepoint {name}")
                    self._depth += 1
                    try:
                        yield
                    except BaseException:
                        if conn.in_transaction:
                            conn.execute(f"rollback to {name}")
                            conn.execute(f"release {name}")
                        self._state, self._dirty = self._snapshots[-1]
                        raise
                    else:
                        conn.execute(f"release {name}")
                    finally:
                        self._depth -= 1
                    return
                with self._writing():
                    conn.execute("begin immediate")
                    self._depth = 1
                    counter = self._counter
                    try:
                        self._catch_up()
                        yield
                        if self._dirty:
                            self._write_integrity()
                        conn.execute("commit")
                        self._dirty = False
                    except BaseException:
                        if conn.in_transaction:
                            conn.execute("rollback")
                        self._state, self._dirty = self._snapshots[-1]
                        self._counter = counter
                        self._seen_version = None  # reload the committed record at the next write
                        raise
                    finally:
                        self._depth = 0
            finally:
                self._snapshots.pop()

    def _catch_up(self) -> None:
        """Reload the integrity record if another process committed since this one last wrote or read it.

        Called inside the write transaction, so nobody can commit between the reload and our write.
        """
        version = self.data_version()
        if version != self._seen_version:
            if self.meta("integrity") is not None:  # None only before a new vault's first commit
                self._load_integrity()
            self._seen_version = version

    # ------------------------------------------------------------------ info

    @property
    def is_demo(self) -> bool:
        return self.meta("demo") == "1"

    def meta(self, key: str) -> str | None:
        row = self._fetch("select value from meta where key = ?", [key], one=True)
        return row[0] if row else None

    def set_meta(self, key: str, value: str | None) -> None:
        """Set a clear setting of the vault (``None`` removes it). Never put personal data here."""
        with self.transaction():
            if value is None:
                self.db.conn.execute("delete from meta where key = ?", [key])
            else:
                self.db.conn.execute("insert or replace into meta (key, value) values (?, ?)", [key, value])
            self._dirty = True

    def stats(self) -> dict:
        """Counts and sizes for the privacy screen: rows per table, items per kind, bytes on disk."""
        kinds = {r[0]: r[1] for r in self.db.conn.execute("select kind, count(*) from items group by kind")}
        tables = {name: getattr(self, name).count() for name in TABLES}
        files = {p.name: p.stat().st_size for p in self.path.parent.iterdir() if p.is_file()}
        return {"user": self.user, "tables": tables, "items_by_kind": kinds, "files": files,
                "bytes": sum(files.values()), "demo": self.is_demo, "keyring": self.keyring_enabled}

    # ------------------------------------------------------------------ blobs

    def put_blob(self, name: str, data: bytes, info: dict | None = None) -> None:
        """Store a file's bytes encrypted (the vector index, an adapter, a checkpoint), replacing any old one.

        Example::

            >>> vault.put_blob("history-index", index.to_bytes(), {"dim": 384})   # doctest: +SKIP
            >>> VectorIndex.from_bytes(vault.get_blob("history-index"))           # doctest: +SKIP
        """
        self.blobs.insert({"name": name, "data": bytes(data), "info": info or {}, "updated": coarse_time()},
                          replace=True)

    def get_blob(self, name: str) -> bytes | None:
        row = self.blobs.get(name, columns=["data"])
        return None if row is None else row["data"]

    def blob_info(self, name: str) -> dict | None:
        row = self.blobs.get(name, columns=["info"])
        return None if row is None else row["info"]

    @contextlib.contextmanager
    def blob_file(self, name: str) -> Iterator[Path]:
        """A path to a decrypted copy of a blob that never reaches persistent storage.

        Linux: an anonymous in-memory file (memfd), reachable as ``/proc/<pid>/fd/N``.
        Elsewhere: a file in a fresh 0700 directory, removed as soon as the block ends.
        Use it for libraries that only take paths, like llama.cpp's adapter loader;
        load inside the block and leave it at once.

        Example::

            >>> with vault.blob_file("adapter:style") as path:      # doctest: +SKIP
            ...     engine.load_adapter("style", path)
        """
        data = self.get_blob(name)
        if data is None:
            raise VaultError(f"no blob named {name!r} in the vault of {self.user!r}")
        with plaintext_file(data) as path:
            yield path

    # ------------------------------------------------------------------ passphrase and keyring

    def change_passphrase(self, new_passphrase: str, *, kdf_seconds: float = 0.5) -> None:
        """Rewrap the data key under a new passphrase. No record is re-encrypted.

        The old passphrase stops working on this file at once (its wrapping is
        overwritten); backups and any old copy of the file keep working with the old
        one, and since the data key is the same, such a copy with the old passphrase
        also opens whatever is written later. Follow with :meth:`rekey` to cut that link.
        """
        if not new_passphrase:
            raise VaultError("the new passphrase must not be empty")
        params = crypto.calibrate(kdf_seconds) if kdf_seconds > 0 else crypto.minimum_params()
        wrapped = crypto.seal(crypto.derive_key(new_passphrase, params), self._key,
                              aad=wrap_aad(self.user, self.key_version))
        with self.transaction():
            self.set_meta("kdf", json.dumps(params.to_dict()))
            self.set_meta("wrapped_key", wrapped.hex())
        self.db.conn.execute("pragma wal_checkpoint(TRUNCATE)")  # the old wrapping leaves the WAL too

    def rekey(self, passphrase: str, *, kdf_seconds: float = 0.5,
              progress: Callable[[int, int, str], None] | None = None) -> None:
        """Re-encrypt everything under a new random data key (and a new key version).

        :meth:`change_passphrase` only rewraps the data key, so an old copy of the file
        plus the old passphrase still opens what is written later. After ``rekey`` it
        does not: every field, MAC and sum is remade under the new key. The new vault
        is built in a separate file and swapped in with one atomic rename; a crash at
        any point leaves either the old vault or the new one, whole. The old file is
        overwritten with zeros once the new one is in place. Keyring unlocking, if on,
        is set up again with a new secret. ``progress(done, total, table)`` is called
        as rows are copied.

        Example::

            >>> vault.rekey("correct horse battery staple", kdf_seconds=0)   # doctest: +SKIP
        """
        with self._tx_lock:
            if self._depth:
                raise VaultError("rekey() cannot run inside a transaction")
            if self._aead is None:
                raise VaultError(f"the vault of {self.user!r} is closed")
            meta = dict(self._fetch("select key, value from meta"))
            unwrap({**meta, "key_version": str(self.key_version)}, self.user, passphrase)  # WrongPassphrase
            # Other processes would keep writing under the old key: rekey only with the vault to ourselves.
            make_exclusive(self._lock_file, self.user)
            try:
                self._rekey(meta, passphrase, kdf_seconds, progress)
            finally:
                share_lock(self._lock_file)

    def _rekey(self, meta: dict, passphrase: str, kdf_seconds: float,
               progress: Callable[[int, int, str], None] | None) -> None:
        keyring_on = self.keyring_enabled
        params = crypto.calibrate(kdf_seconds) if kdf_seconds > 0 else crypto.minimum_params()
        new_key, version = crypto.new_data_key(), self.key_version + 1
        wrapped = crypto.seal(crypto.derive_key(passphrase, params), new_key, aad=wrap_aad(self.user, version))
        tmp = self.path.with_name(VAULT_FILE + ".rekeying")
        remove_db_files(tmp)
        db = _connect(tmp)
        fresh = Vault(tmp, db, self.user, new_key, version, None)
        try:
            fresh._counter = self._counter  # the keyring's mirror must not see a smaller number
            fresh._seen_version = fresh.data_version()  # nobody else knows this file: nothing to catch up on
            skip = {"integrity", "wrapped_key", "keyring_wrapped_key", "kdf", "key_version"}
            total = sum(getattr(self, name).count() for name in TABLES)
            done = 0
            with fresh.transaction():
                _create_schema(db)
                db.conn.executemany("insert into meta (key, value) values (?, ?)",
                                    [(k, v) for k, v in meta.items() if k not in skip] +
                                    [("kdf", json.dumps(params.to_dict())), ("wrapped_key", wrapped.hex()),
                                     ("key_version", str(version))])
                fresh._dirty = True
                for name in TABLES:
                    source, target = getattr(self, name), getattr(fresh, name)
                    for key_chunk in _chunks(source.keys(), 256):
                        marks = ", ".join("?" * len(key_chunk))
                        target.insert_all(source.rows(f"[{source.spec.pk}] in ({marks})", key_chunk))
                        done += len(key_chunk)
                        if progress:
                            progress(done, total, name)
            db.conn.execute("pragma wal_checkpoint(TRUNCATE)")
        except BaseException:
            db.conn.close()
            remove_db_files(tmp)
            raise
        finally:
            fresh._close_folder()
        db.conn.close()
        # Swap: the old file stays reachable through ``old`` until it has been zeroed.
        with contextlib.suppress(sqlite3.Error):
            self.db.conn.execute("pragma wal_checkpoint(TRUNCATE)")
        self.db.conn.close()
        with open(self.path, "r+b") as old:
            os.replace(tmp, self.path)
            fsync_dir(self.path.parent)
            size = os.fstat(old.fileno()).st_size
            zeros = bytes(1 << 20)
            for start in range(0, size, len(zeros)):
                old.write(zeros[:min(len(zeros), size - start)])
            old.flush()
            os.fsync(old.fileno())
        remove_db_files(tmp)
        self._close_folder()
        self.__init__(self.path, _connect(self.path), self.user, new_key, version, self._lock_file)  # type: ignore[misc]
        self._load_integrity()
        if keyring_on:
            self.enable_keyring()

    @property
    def keyring_enabled(self) -> bool:
        """Whether this vault can be unlocked from the OS keyring."""
        return self.meta("keyring_wrapped_key") is not None

    def enable_keyring(self) -> None:
        """Let the OS keyring unlock this vault (``Vault.open(user)`` with no passphrase).

        A random secret goes into the keyring (macOS Keychain, GNOME Keyring,
        KWallet, Windows Credential Locker) and wraps the data key a second time. The
        passphrase is not stored; it keeps working. Needs the optional ``keyring``
        package (``pip install 'localpers[keyring]'``) and a working backend.
        """
        kr = keyring_module()
        if kr is None:
            raise VaultError("no OS keyring is available here: install localpers[keyring] and a keyring service "
                             "(macOS Keychain, GNOME Keyring, KWallet or Windows Credential Locker)")
        secret = os.urandom(crypto.KEY_BYTES)
        try:
            kr.set_password(KEYRING_SERVICE, self._keyring_account(), secret.hex())
        except Exception as exc:  # keyring backends raise their own error types
            raise VaultError(f"the OS keyring refused to store the unlock secret ({exc})") from None
        wrapped = crypto.seal(crypto.subkey(secret, "keyring"), self._key, aad=keyring_aad(self.user, self.key_version))
        self.set_meta("keyring_wrapped_key", wrapped.hex())
        self._mirror_counter(force=True)  # from now on a rolled-back file is noticed

    def disable_keyring(self) -> None:
        """Stop keyring unlocking: forget the second wrapping and delete the keyring entry."""
        self.set_meta("keyring_wrapped_key", None)
        self.db.conn.execute("pragma wal_checkpoint(TRUNCATE)")
        keyring_forget(self.user, self.meta("vault_id"))

    def _keyring_account(self) -> str:
        vault_id = self.meta("vault_id")
        if vault_id is None:
            vault_id = uuid.uuid4().hex
            self.set_meta("vault_id", vault_id)
        return f"{self.user}@{vault_id}"

    @classmethod
    def keyring_unlocks(cls, user: str, *, home: Path | None = None) -> bool:
        """Whether ``Vault.open(user)`` would succeed without a passphrase (keyring set up and reachable)."""
        try:
            path = cls.user_dir(user, home) / VAULT_FILE
            if not path.exists():
                return False
            meta = _read_meta(path, user)
            if "keyring_wrapped_key" not in meta:
                return False
            kr = keyring_module()
            return kr is not None and kr.get_password(KEYRING_SERVICE, f"{user}@{meta.get('vault_id')}") is not None
        except Exception:  # any failure just means: ask for the passphrase
            return False

    # ------------------------------------------------------------------ erasing

    def scrub(self) -> None:
        """Leave no trace of deleted rows anywhere in the files.

        Checkpoints and empties the write-ahead log, rebuilds the database (VACUUM,
        in memory because ``temp_store = MEMORY``) so no stale copy survives in free
        space, then empties the log again.
        """
        with self._tx_lock:
            if self._depth:
                raise VaultError("scrub() cannot run inside a transaction")
            with self._writing():
                self._checkpoint()
                self.db.conn.execute("vacuum")
                self._checkpoint()

    def _checkpoint(self) -> None:
        busy, _, _ = self.db.conn.execute("pragma wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            raise VaultError("the vault is busy (an unfinished read); retry the erase when it ends")

    def erase_items(self, item_ids: Iterable[str], *, cache_keys: Iterable[str] = ()) -> int:
        """Delete items so that no trace stays in any file; returns how many items were found.

        Removes each item, its fingerprints, the interactions that point at it, and the
        given ``cache_keys`` (derived values: its embeddings, its playback instruction;
        :meth:`History.delete <localpers.history.History.delete>` passes them), in one
        transaction, then :meth:`scrub`. Derived files are the caller's: remove the items from the
        vector index and ``put_blob`` it *before* calling this, so the scrub also wipes
        the old index.

        Example::

            >>> vault.erase_items([item_id])     # doctest: +SKIP
            1
        """
        ids = list(dict.fromkeys(str(i) for i in item_ids))
        wanted = set(ids)
        found = 0
        with self.transaction():
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                marks = ", ".join("?" * len(chunk))
                found += self.items.delete_where(f"id in ({marks})", chunk)
                self.fingerprints.delete_where(f"item_id in ({marks})", chunk)
            # The item an interaction points at is sealed, so finding them means decrypting that column.
            stale = [r["id"] for r in self.interactions.rows(columns=["item"]) if str(r["item"]) in wanted]
            for start in range(0, len(stale), 500):
                chunk = stale[start:start + 500]
                self.interactions.delete_where(f"id in ({', '.join('?' * len(chunk))})", chunk)
            keys = list(cache_keys)
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                self.cache.delete_where(f"key in ({', '.join('?' * len(chunk))})", chunk)
        self.scrub()
        return found

    def embedding_key(self, item_id: str, model: str) -> str:
        """The cache key of an item's embedding: a keyed hash, so the file shows neither the item nor the model."""
        return "emb:" + self.keyed_hash(f"{model}\0{item_id}", "embedding")

    def erase_item(self, item_id: str, *, cache_keys: Iterable[str] = ()) -> bool:
        """Erase one item and everything pointing at it, leaving no trace (see :meth:`erase_items`)."""
        return self.erase_items([item_id], cache_keys=cache_keys) > 0

    def erase_user(self) -> None:
        """Delete this user entirely: overwrite every file with zeros, remove the folder, close the vault.

        Not while another process has the vault open (:class:`VaultLocked`). The lock is
        held until the folder is gone, so no other process can open it midway.
        """
        if self._lock_file is None:
            raise VaultError(f"the vault of {self.user!r} is closed")
        make_exclusive(self._lock_file, self.user)
        vault_id = self.meta("vault_id") if self.keyring_enabled else None
        folder = self.path.parent
        self._close_db()
        try:
            if vault_id:
                keyring_forget(self.user, vault_id)
            shred_folder(folder)
        finally:
            release_lock(self._lock_file)
            self._lock_file = None

    @classmethod
    def erase(cls, user: str, *, home: Path | None = None) -> None:
        """Erase ``user``'s vault without unlocking it (for a forgotten passphrase).

        Same as :meth:`erase_user`; fails with :class:`VaultLocked` while the vault is open.
        """
        folder = cls.user_dir(user, home)
        if not folder.exists():
            raise VaultError(f"no vault for user {user!r}")
        lock = acquire_lock(folder, user)
        try:
            with contextlib.suppress(VaultError):
                meta = _read_meta(folder / VAULT_FILE, user)
                if "keyring_wrapped_key" in meta:
                    keyring_forget(user, meta.get("vault_id"))
            shred_folder(folder)
        finally:
            release_lock(lock)

    # ------------------------------------------------------------------ backup and export

    # ------------------------------------------------------------------ for backups

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[bytes]:
        """The committed database as bytes; writes from this process wait until the block ends.

        :func:`localpers.vault.backup.backup` encrypts it. Refused inside a :meth:`transaction`,
        whose uncommitted changes it would copy.
        """
        with self._tx_lock:  # no write from another thread lands halfway through the snapshot
            if self._depth:
                raise VaultError("backup() cannot run inside a transaction: it would copy uncommitted changes")
            copy = sqlite3.connect(":memory:")
            try:
                self.db.conn.backup(copy)
                data = copy.serialize()
            finally:
                copy.close()
            yield data

    def subkey(self, purpose: str, salt: bytes) -> bytes:
        """A key derived from the data key for one purpose (a backup file's key, with its salt)."""
        return crypto.subkey(self._key, purpose, salt)


# ---------------------------------------------------------------------- helpers


def _chunks(values: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _read_meta(path: Path, user: str) -> dict[str, str]:
    """The clear settings of a vault file, read without writing anything.

    SQLite creates ``-wal``/``-shm`` files even for a read-only connection to a WAL
    database; after a clean close there is no WAL, so the file is opened as
    immutable instead (safe: with no WAL no other process has the vault open, and
    a new one cannot write before it has read the same meta under the open lock).
    """
    wal = Path(str(path) + "-wal")
    option = "mode=ro" if wal.exists() else "immutable=1"
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?{option}", uri=True)
        try:
            meta = dict(conn.execute("select key, value from meta").fetchall())
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise VaultError(f"{path} is not a localpers vault, or it is damaged ({exc})") from None
    missing = [k for k in _REQUIRED_META if k not in meta]
    if missing:
        raise VaultError(f"{path} is not a localpers vault (no {', '.join(missing)})")
    if meta["user"] != user:
        raise VaultError(f"{path} holds the vault of {meta['user']!r}, not {user!r}")
    schema = meta_int(meta["schema_version"], "schema_version")
    if schema > SCHEMA_VERSION:
        raise VaultError(f"this vault was written by a newer localpers (schema {schema}); upgrade localpers")
    meta_int(meta["key_version"], "key_version")
    kdf_params(meta["kdf"])
    meta_hex(meta["wrapped_key"], "wrapped_key")
    if meta.get("keyring_wrapped_key") is not None:
        meta_hex(meta["keyring_wrapped_key"], "keyring_wrapped_key")
    return meta


def _connect(path: Path) -> sqlite_utils.Database:
    # Created 0600 before SQLite sees it: SQLite gives its -wal and -shm files the same mode.
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=WRITE_WAIT)
    db = sqlite_utils.Database(conn)
    for pragma in (
        "journal_mode = WAL",  # readers never block the writer; crash-safe commits
        "synchronous = FULL",  # a commit is on disk before it returns
        "secure_delete = ON",  # deleted rows are overwritten with zeros, not left in free pages
        "temp_store = MEMORY",  # sorts, temp tables and VACUUM never spill to a temp file
        "foreign_keys = ON",
    ):
        conn.execute(f"pragma {pragma}")
    os.chmod(path, 0o600)
    return db


def _create_schema(db: sqlite_utils.Database) -> None:
    db["meta"].create({"key": str, "value": str}, pk="key")
    for spec in TABLES.values():
        # The MAC goes before the sealed columns: the check at open reads it without
        # walking the overflow pages of long texts.
        columns: dict[str, Any] = {spec.pk: spec.pk_type, **spec.clear, MAC: bytes}
        columns.update({c: bytes for c in (*spec.secret, REAL)})
        db[spec.name].create(columns, pk=spec.pk)
    _create_indexes(db)


def _create_indexes(db: sqlite_utils.Database) -> None:
    db["items"].create_index(["kind", "created"], if_not_exists=True)
    db["interactions"].create_index(["signal", "time"], if_not_exists=True)
    db["fingerprints"].create_index(["item_id"], if_not_exists=True)

"""Sealed tables: which columns of each vault table stay clear, and the table object that seals the rest.

Every row is read and written through a :class:`SealedTable` (``vault.items``, ``vault.interactions``...): secret
columns are encrypted with AES-GCM under the vault's data key, clear columns hold only words from fixed lists
(or a day), and each row carries a MAC over its key, clear values and nonces. See :mod:`localpers.vault.store`
for the whole scheme.

Example::

    >>> from localpers.vault.sealed import TABLES, clear_word
    >>> TABLES["items"].secret
    ('content', 'metadata', 'source')
    >>> clear_word("items", "kind", "journal"), clear_word("items", "kind", "poem")
    ('journal', 'other')
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlite_utils
from cryptography.exceptions import InvalidTag

from . import crypto
from ..errors import TamperedData, VaultError

if TYPE_CHECKING:
    from .store import Vault

DAY = 86400


def coarse_time(t: float | None = None) -> int:
    """A timestamp rounded down to the day: enough for recency, little for profiling.

    Example::

        >>> coarse_time(1_700_000_123.4)
        1699920000
    """
    t = time.time() if t is None else t
    return int(t // DAY * DAY)


# Fixed vocabularies of the clear text columns. A value outside its column's list is
# stored as "other" in the clear and its real value sealed in the row's ``_real``
# column (and given back on read), so no free text a user or a file chose ever lands
# unsealed. Filtering on an unlisted value (``kind = 'journal'``) matches nothing:
# filter on "other" and check the decrypted value instead.
OTHER = "other"
ITEM_KINDS = frozenset({"email", "note", "message", "post", "text", "document", "draft", "chat", "article",
                        "review", "letter", "journal", "comment", "rating", OTHER})
SOURCE_TYPES = frozenset({"mbox", "maildir", "eml", "notes", "jsonl", "csv", "demo", "draft", "text", "api", OTHER})
SIGNALS = frozenset({"like", "dislike", "not_interested", "rating", "read", "click", "interaction", OTHER})
# The kinds a user wrote themselves: what training, examples and the style summary read.
WRITTEN_KINDS = ("email", "note", "message", "post", "text", "document")
DRAFT_MODES = frozenset({"compose", "reply", "rewrite", "continue", OTHER})
CACHE_KINDS = frozenset({"embedding", "instruction", "interest-vector", "stat", OTHER})

# Two hidden columns in every table: ``_real`` (sealed: the real values of clear
# columns mapped to "other") and ``_mac`` (a keyed MAC over the row: key, clear values
# and the nonce of every sealed field, so no clear value can change and no sealed
# field can be swapped for an older one unnoticed).
REAL = "_real"
MAC = "_mac"
MAC_BYTES = 16


@dataclass(frozen=True)
class Table:
    """How one vault table splits into clear and sealed columns."""

    name: str
    pk: str
    clear: dict[str, type]  # column -> python type, besides the primary key
    secret: tuple[str, ...]
    pk_type: type = str
    vocab: dict[str, frozenset[str]] = field(default_factory=dict)  # clear text column -> allowed words


TABLES: dict[str, Table] = {
    t.name: t
    for t in [
        # Things the user wrote or read: emails, notes, documents, drafts they kept.
        Table("items", "id", {"source_type": str, "kind": str, "created": int}, ("content", "metadata", "source"),
              vocab={"source_type": SOURCE_TYPES, "kind": ITEM_KINDS}),
        # Deduplication: a keyed hash of content, so equal texts are found without revealing them.
        Table("fingerprints", "digest", {"item_id": str}, ()),
        # What the user did: read, like, dislike, rating, click, not-interested.
        Table("interactions", "id", {"signal": str, "time": int}, ("item", "value", "metadata"), int,
              vocab={"signal": SIGNALS}),
        # Profile facts about the user (age, occupation, stated interests, style summary).
        Table("features", "id", {"updated": int}, ("name", "value")),
        # Generated drafts and the user's final edit (future training data).
        Table("drafts", "id", {"mode": str, "created": int}, ("instruction", "context", "draft", "final", "examples"),
              vocab={"mode": DRAFT_MODES}),
        # Every disclosure of profile features: what was revealed, to whom, why.
        Table("ledger", "id", {"time": int}, ("purpose", "recipient", "revealed", "withheld", "decision", "steps"), int),
        # Encrypted files other parts need: the vector index, LoRA adapters, checkpoints.
        Table("blobs", "name", {"updated": int}, ("data", "info")),
        # Derived values worth keeping (playback instructions, embeddings), keyed by a keyed hash.
        Table("cache", "key", {"kind": str}, ("value",), vocab={"kind": CACHE_KINDS}),
        # Import progress, so an interrupted import resumes where it stopped.
        Table("imports", "id", {"updated": int}, ("source", "state")),
    ]
}


def clear_word(table: str, column: str, value: Any) -> Any:
    """What is stored in the clear for ``value`` in a vocabulary column: itself, or "other".

    Example::

        >>> clear_word("items", "kind", "email"), clear_word("items", "kind", "my secret diary")
        ('email', 'other')
    """
    vocab = TABLES[table].vocab.get(column)
    if vocab is None or value is None or value in vocab:
        return value
    return OTHER


_json_decode = json.JSONDecoder().decode


def encode_value(value: Any) -> bytes:
    # One type byte: text (the common case) and bytes (embeddings, files) are stored
    # as they are, everything else as JSON. Then padding, so that the ciphertext's
    # length hides the exact length of the value.
    if isinstance(value, str):
        return crypto.pad(b"S" + value.encode("utf-8"))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return crypto.pad(b"B" + bytes(value))
    return crypto.pad(b"J" + json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def decode_value(raw: bytes) -> Any:
    end = raw.rfind(0x80)  # crypto.unpad without its check of the zeros (authenticated anyway)
    if end < 1:
        raise TamperedData("bad padding in a decrypted field: the vault is corrupted")
    kind = raw[0]
    if kind == 0x53:  # "S"
        return raw[1:end].decode("utf-8")
    if kind == 0x42:  # "B"
        return raw[1:end]
    return _json_decode(raw[1:end].decode("utf-8"))


# Clear columns that hold a time: always stored rounded down to the day (the policy
# above), whatever the caller passes; exact times belong in a sealed column.
COARSE_TIME_COLUMNS = frozenset({"created", "time", "updated"})


def _opens(aead: Any, box: bytes | None, aad: bytes) -> bool:
    """Whether ``box`` decrypts (only used to name the culprit in an error message)."""
    if box is None:
        return True
    try:
        aead.decrypt(box[:crypto.NONCE_BYTES], box[crypto.NONCE_BYTES:], aad)
    except (InvalidTag, ValueError, TypeError):
        return False
    return True


def _clear_typed(typ: type, column: str, value: Any) -> Any:
    # Stored as the declared type, so the row MAC computed now matches what SQLite gives back.
    if value is None:
        return None
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise VaultError(f"column {column} takes a whole number, not {value!r}")
        return coarse_time(value) if column in COARSE_TIME_COLUMNS else int(value)
    return str(value)


def xor_macs(macs: Iterable[bytes | None]) -> int:
    out = 0
    for m in macs:
        out ^= int.from_bytes(m, "big") if m else 0
    return out


_NO_NONCE = bytes(crypto.NONCE_BYTES)


def _quote(value: Any) -> str:
    """A clear value as SQLite's ``quote()`` writes it (the row MAC's message is built by SQLite on reads)."""
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


class SealedTable:
    """Insert, read, update and delete rows of one table, sealing secret columns on the way.

    Rows go in and come out as plain dicts; only ciphertext ever reaches SQLite.
    Every row carries a MAC checked on every read, and every write updates the
    table's sealed row count and MAC sum (see "Integrity" in the module docstring).

    Example::

        >>> n = vault.interactions.insert({"signal": "rating", "time": coarse_time(),   # doctest: +SKIP
        ...                                "item": "movie:50", "value": 5})
        >>> [r["value"] for r in vault.interactions.rows("signal = ?", ["rating"])]      # doctest: +SKIP
        [5]
    """

    def __init__(self, vault: "Vault", spec: Table) -> None:
        self.vault = vault
        self.spec = spec
        self._columns = (spec.pk, *spec.clear, *spec.secret)
        self._clear_names = (spec.pk, *spec.clear)
        self._sealed = (*spec.secret, REAL)  # every sealed column, the hidden one last
        # The associated data is ``table|column|key|user|key version`` (see Vault.seal);
        # its fixed parts are built once here because they are needed for every field.
        self._aad_prefix = {c: f"{spec.name}|{c}|".encode() for c in self._sealed}
        self._aad_suffix = f"|{vault.user}|{vault.key_version}".encode()
        # One MAC key per table (so a row cannot move between tables); the message is
        # the row's clear values and nonces, spelled the same here and in _message_sql.
        self._mac_key = hashlib.blake2b(f"{spec.name}|{vault.user}|{vault.key_version}".encode(),
                                        key=vault._mac_key).digest()
        parts = [f"quote([{c}])" for c in self._clear_names]
        parts += [f"coalesce(substr([{c}], 1, {crypto.NONCE_BYTES}), zeroblob({crypto.NONCE_BYTES}))"
                  for c in self._sealed]
        self._message_sql = "cast(" + " || ',' || ".join(parts) + " as blob)"

    def __repr__(self) -> str:
        return f"<SealedTable {self.spec.name} of {self.vault.user!r}>"

    @property
    def table(self) -> sqlite_utils.db.Table:
        """The underlying sqlite-utils table (its secret columns hold ciphertext)."""
        return self.vault.db[self.spec.name]

    # ------------------------------------------------------------------ sealing rows

    def _check_columns(self, names: Iterable[str]) -> None:
        unknown = set(names) - set(self._columns)
        if unknown:
            raise VaultError(f"table {self.spec.name} has no column(s) {', '.join(sorted(unknown))}")

    def _seal_value(self, column: str, value: Any, key: Any, nonce: bytes | None = None) -> bytes:
        try:
            plaintext = encode_value(value)
        except (TypeError, ValueError) as exc:
            raise VaultError(f"{self.spec.name}.{column} takes JSON values or bytes ({exc})") from None
        aead = self.vault._aead
        if aead is None:
            raise VaultError(f"the vault of {self.vault.user!r} is closed")
        nonce = nonce or os.urandom(crypto.NONCE_BYTES)
        aad = self._aad_prefix[column] + str(key).encode() + self._aad_suffix
        return nonce + aead.encrypt(nonce, plaintext, aad)

    def _row_mac(self, key: Any, clear: Iterable[Any], nonces: Iterable[bytes | None]) -> bytes:
        """The MAC of one row: its key, clear values, and which ciphertext each sealed column holds."""
        message = (",".join([_quote(key), *map(_quote, clear)]).encode() + b"," +
                   b",".join([n[:crypto.NONCE_BYTES] if n is not None else _NO_NONCE for n in nonces]))
        return self._mac(message)

    def _mac(self, message: bytes) -> bytes:
        # Keyed BLAKE2b is a MAC in one native call: it runs for every row read.
        return hashlib.blake2b(message, key=self._mac_key, digest_size=MAC_BYTES).digest()

    def _clear_and_real(self, row: dict) -> tuple[list[Any], dict]:
        clear, real = [], {}
        for c, typ in self.spec.clear.items():
            value = _clear_typed(typ, c, row.get(c))
            word = clear_word(self.spec.name, c, value)
            if word != value:
                real[c] = value
            clear.append(word)
        return clear, real

    def _sealed_tuple(self, row: dict) -> tuple:
        key = row[self.spec.pk]
        n = crypto.NONCE_BYTES
        nonces = os.urandom(n * len(self._sealed))  # one system call per row, not per field
        clear, real = self._clear_and_real(row)
        # Empty values are sealed too: whether a field is empty is not visible.
        sealed = [self._seal_value(c, row.get(c), key, nonces[i * n:(i + 1) * n])
                  for i, c in enumerate(self.spec.secret)]
        sealed.append(self._seal_value(REAL, real, key, nonces[-n:]) if real else None)
        return (key, *clear, *sealed, self._row_mac(key, clear, sealed))

    def _secret_columns(self, columns: Iterable[str] | None) -> tuple[str, ...]:
        if columns is None:
            return self.spec.secret
        columns = list(columns)
        self._check_columns(columns)
        return tuple(c for c in columns if c in self.spec.secret)

    def _select(self, secret: tuple[str, ...]) -> str:
        # SQLite also spells out the MAC's message, unread sealed columns' nonces included.
        return ", ".join([*(f"[{c}]" for c in (*self._clear_names, *secret, REAL, MAC)), self._message_sql])

    def _open(self, raw: tuple, secret: tuple[str, ...]) -> dict:
        return self._open_many([raw], secret)[0]

    def _tampered(self, key: Any, what: str) -> TamperedData:
        return TamperedData(f"{what} ({self.spec.name}|{key}): the vault was modified outside localpers "
                            "or is corrupted; restore it from a backup")

    def _open_many(self, raws: list[tuple], secret: tuple[str, ...]) -> list[dict]:
        """Check and decrypt fetched rows, column by column: the hot path of every read.

        Vault.unseal is inlined and the loops are comprehensions: per-field Python
        overhead, not AES, is what bounds read speed here.
        """
        aead = self.vault._aead
        if aead is None:
            raise VaultError(f"the vault of {self.vault.user!r} is closed")
        decrypt, n = aead.decrypt, crypto.NONCE_BYTES
        n_clear = len(self._clear_names)
        blake2b, mac_key = hashlib.blake2b, self._mac_key  # self._mac, inlined
        bad = next((raw for raw in raws if raw[-2] != blake2b(raw[-1], key=mac_key, digest_size=MAC_BYTES).digest()),
                   None)
        if bad is not None:
            raise self._tampered(bad[0], "a row's clear columns or sealed fields were changed")
        outs = [dict(zip(self._clear_names, raw)) for raw in raws]
        keys = [str(raw[0]).encode() + self._aad_suffix for raw in raws]
        j_real = n_clear + len(secret)
        if all(raw[j_real] is None for raw in raws):  # the common case: no word outside the lists
            columns: tuple[str, ...] = secret
        else:
            columns = (*secret, REAL)
        for j, col in enumerate(columns, start=n_clear):
            prefix = self._aad_prefix[col]
            try:
                plains = [None if raw[j] is None else decrypt(raw[j][:n], raw[j][n:], prefix + key)
                          for raw, key in zip(raws, keys)]
            except (InvalidTag, ValueError, TypeError):
                culprit = next((raw[0] for raw, key in zip(raws, keys) if not _opens(aead, raw[j], prefix + key)), "?")
                raise TamperedData(f"a ciphertext failed authentication ({self.spec.name}|{col}|{culprit}): "
                                   "the vault was modified outside localpers or is corrupted") from None
            if col == REAL:
                for out, plain in zip(outs, plains):
                    if plain is not None:
                        out.update(decode_value(plain))
            else:
                for out, plain in zip(outs, plains):
                    out[col] = None if plain is None else decode_value(plain)
        return outs

    def _macs(self, where: str, params: Iterable[Any]) -> list[bytes]:
        return [r[0] for r in self.vault.db.conn.execute(f"select [{MAC}] from [{self.spec.name}] where {where}",
                                                           list(params))]

    def _macs_of(self, keys: list[Any]) -> list[bytes]:
        out: list[bytes] = []
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            out += self._macs(f"[{self.spec.pk}] in ({', '.join('?' * len(chunk))})", chunk)
        return out

    # ------------------------------------------------------------------ writing

    def insert(self, row: dict, *, replace: bool = False) -> Any:
        """Insert one row and return its primary key (a new UUID / integer when absent)."""
        return self.insert_all([row], replace=replace)[0]

    def insert_all(self, rows: Iterable[dict], *, replace: bool = False) -> list[Any]:
        """Insert rows in one transaction; returns their keys. ``replace=True`` overwrites equal keys."""
        rows = [dict(r) for r in rows]
        for row in rows:
            self._check_columns(row)
        pk = self.spec.pk
        names = (*self._clear_names, *self._sealed, MAC)
        sql = (f"insert {'or replace ' if replace else ''}into [{self.spec.name}] "
               f"({', '.join(f'[{c}]' for c in names)}) values ({', '.join('?' * len(names))})")
        with self.vault.transaction():
            # Keys are assigned here rather than by SQLite: the key is part of the
            # associated data, so it must be known before sealing.
            missing = [r for r in rows if r.get(pk) is None]
            for row, key in zip(missing, self._new_keys(len(missing), rows)):
                row[pk] = key
            for row in rows:  # stored as the declared type, as the MAC and the associated data see it
                row[pk] = _clear_typed(self.spec.pk_type, pk, row[pk])
            sealed = [self._sealed_tuple(r) for r in rows]
            replaced = self._macs_of(list({r[pk]: None for r in rows})) if replace else []
            try:
                self.vault.db.conn.executemany(sql, sealed)
            except sqlite3.IntegrityError as exc:
                raise VaultError(f"{self.spec.name}: a row with that key already exists ({exc}); "
                                 "pass replace=True to overwrite") from None
            # With equal keys inside one batch only the last row stays.
            self.vault._account(self.spec.name, replaced, list({t[0]: t[-1] for t in sealed}.values()))
        return [r[pk] for r in rows]

    def _new_keys(self, n: int, batch: list[dict]) -> list[Any]:
        if self.spec.pk_type is not int:
            return [uuid.uuid4().hex for _ in range(n)]
        (top,) = self.vault.db.conn.execute(f"select coalesce(max([{self.spec.pk}]), 0) from [{self.spec.name}]").fetchone()
        given = [r[self.spec.pk] for r in batch if isinstance(r.get(self.spec.pk), int)]
        start = max([top, *given]) + 1
        return list(range(start, start + n))

    def update(self, key: Any, values: dict) -> None:
        """Change some columns of one row (the secret ones among them are resealed).

        The primary key cannot change: it is bound into every ciphertext of the row.
        """
        values = dict(values)
        if self.spec.pk in values and values.pop(self.spec.pk) != key:
            raise VaultError(f"{self.spec.name}: a row's key cannot change (it is part of its encryption)")
        self._check_columns(values)
        with self.vault.transaction():
            row = self.get(key)  # checked and decrypted: the row is resealed whole, with a new MAC
            if row is None:
                raise VaultError(f"no row {key!r} in {self.spec.name}")
            if values:
                row.update(values)
                self.insert(row, replace=True)

    def delete(self, key: Any) -> bool:
        """Delete one row; its bytes are overwritten in the file (see :meth:`Vault.scrub` for the rest)."""
        return self.delete_where(f"[{self.spec.pk}] = ?", [key]) > 0

    def delete_where(self, where: str, params: Iterable[Any] = ()) -> int:
        """Delete the rows matching ``where`` (clear columns only); returns how many."""
        params = list(params)
        with self.vault.transaction():
            removed = self._macs(where, params)
            cur = self.vault.db.conn.execute(f"delete from [{self.spec.name}] where {where}", params)
            self.vault._account(self.spec.name, removed, [])
        return cur.rowcount

    # ------------------------------------------------------------------ reading

    def get(self, key: Any, columns: Iterable[str] | None = None) -> dict | None:
        """One decrypted row, or None. ``columns`` limits which secret columns are decrypted."""
        secret = self._secret_columns(columns)
        raw = self.vault._fetch(f"select {self._select(secret)} from [{self.spec.name}] where [{self.spec.pk}] = ?",
                                [key], one=True)
        return None if raw is None else self._open(raw, secret)

    def rows(self, where: str | None = None, params: Iterable[Any] = (), *, order_by: str | None = None,
             limit: int | None = None, columns: Iterable[str] | None = None) -> Iterator[dict]:
        """Iterate decrypted rows. ``where`` and ``order_by`` may only use clear columns.

        ``columns`` limits which secret columns are decrypted (faster when you need one).
        """
        secret = self._secret_columns(columns)
        sql = f"select {self._select(secret)} from [{self.spec.name}]"
        if where:
            sql += f" where {where}"
        if order_by:
            sql += f" order by {order_by}"
        if limit is not None:
            sql += f" limit {int(limit)}"
        # Fetch everything first: a cursor left open would hold a read snapshot and
        # block a later checkpoint (scrub) or VACUUM.
        raws = self.vault._fetch(sql, list(params))
        for start in range(0, len(raws), 1024):
            yield from self._open_many(raws[start:start + 1024], secret)

    def keys(self, where: str | None = None, params: Iterable[Any] = ()) -> list[Any]:
        """Primary keys of the rows matching ``where`` (clear columns only)."""
        sql = f"select [{self.spec.pk}] from [{self.spec.name}]" + (f" where {where}" if where else "")
        return [r[0] for r in self.vault._fetch(sql, list(params))]

    def count(self, where: str | None = None, params: Iterable[Any] = ()) -> int:
        sql = f"select count(*) from [{self.spec.name}]" + (f" where {where}" if where else "")
        return self.vault._fetch(sql, list(params), one=True)[0]



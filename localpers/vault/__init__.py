"""The encrypted vault: one SQLite file per user, every personal value sealed (see :mod:`.store` for the scheme).

The package in layers, each importing only those below it:

- :mod:`.crypto`: AES-GCM, Argon2id, HKDF;
- :mod:`.files`: locks, durable renames, shredding, a plaintext file that never reaches the disk;
- :mod:`.keys`: the data key wrapped under the passphrase and, optionally, the OS keyring;
- :mod:`.sealed`: which columns stay clear, and :class:`SealedTable`, which seals the rest;
- :mod:`.store`: :class:`Vault` itself (create, open, transactions, blobs, rekey, erase);
- :mod:`.backup`: encrypted backups and the one plaintext export, on the vault's public API.

The demo vault opens through :func:`localpers.demo.open_demo`, above this package.

Example::

    >>> from localpers.vault import Vault
    >>> vault = Vault.create("ada", "a long passphrase")        # doctest: +SKIP
    >>> vault.items.insert({"kind": "note", "content": "hi"})   # doctest: +SKIP
"""

from .backup import export_jsonl, read_header, restore_backup, write_backup
from .files import LOCK_FILE, plaintext_file
from .keys import MIN_PASSPHRASE, check_new_passphrase
from .sealed import (CACHE_KINDS, DAY, DRAFT_MODES, ITEM_KINDS, OTHER, SIGNALS, SOURCE_TYPES, TABLES, SealedTable, Table,
                     WRITTEN_KINDS, clear_word, coarse_time)
from .store import DEMO_PASSPHRASE, DEMO_USER, SCHEMA_VERSION, VAULT_FILE, Vault

__all__ = [
    "CACHE_KINDS", "DAY", "DEMO_PASSPHRASE", "DEMO_USER", "DRAFT_MODES", "ITEM_KINDS", "LOCK_FILE", "MIN_PASSPHRASE", "OTHER",
    "SCHEMA_VERSION", "SIGNALS", "SOURCE_TYPES", "TABLES", "VAULT_FILE", "WRITTEN_KINDS", "SealedTable", "Table", "Vault",
    "check_new_passphrase", "clear_word", "coarse_time", "export_jsonl", "plaintext_file", "read_header", "restore_backup", "write_backup",
]

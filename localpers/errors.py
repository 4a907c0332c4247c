"""Errors that localpers raises for things the user can fix.

Every error says what went wrong and what to do about it. The CLI prints the
message on one line and exits with status 1; the TUI shows it as a notification.
"""


class LocalpersError(Exception):
    """Base class for errors the user can act on (bad input, missing model, wrong passphrase)."""


class ModelNotFound(LocalpersError):
    """A base model could not be found or its weights package is not installed."""


class VaultError(LocalpersError):
    """Something is wrong with an encrypted vault."""


class WrongPassphrase(VaultError):
    """The passphrase does not unlock this vault."""


class VaultLocked(VaultError):
    """Another process is writing to this vault."""


class TamperedData(VaultError):
    """A ciphertext failed authentication: it was changed, moved or corrupted."""

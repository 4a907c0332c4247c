"""Helpers several test modules share (fixtures live in conftest.py)."""

from __future__ import annotations

# Synthetic e-mails of a fictional user (Mara), for the writer to retrieve examples from.
MARA_TEXTS = [
    "Hi Jonas,\n\nCould you send me the slides from Tuesday's workshop? I want to reuse the chart.\n\nCheers,\nMara",
    "Hi Petra,\n\nThanks for covering the support queue yesterday. I owe you a coffee.\n\nCheers,\nMara",
    "Hi team,\n\nThe release moves to Friday because the payment tests failed. Keep Thursday free.\n\nCheers,\nMara",
    "Hi Sam,\n\nI booked the small meeting room for Monday at ten. Bring the budget.\n\nCheers,\nMara",
    "Hi Lena,\n\nGreat news about the grant! Let's celebrate on Thursday, my treat.\n\nCheers,\nMara",
]


def train_small_vault(tmp_path_factory, config, engine, texts):
    """A fresh home with user "mara" holding ``texts``, trained once with ``config`` on ``engine``.

    Yields ``(vault, history, result, progress events)``; for module-scoped fixtures.
    """
    import pytest

    from localpers.history import History
    from localpers.vault import Vault
    from localpers.writing.train import train_adapter

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOCALPERS_HOME", str(tmp_path_factory.mktemp("home")))
        vault = Vault.create("mara", "pw", kdf_seconds=0)
        history = History(vault)
        history.add_texts(texts, kind="email")
        seen: list = []
        result = train_adapter(vault, config, progress=seen.append, history=history, writer=engine)
        yield vault, history, result, seen


class CountingEmbedder:
    """The real embedder, counting how many texts it was asked to embed."""

    def __init__(self, inner) -> None:
        self.inner, self.dim, self.name, self.calls = inner, inner.dim, inner.name, 0

    def encode(self, texts, *, batch_size: int = 32):
        self.calls += len(texts)
        return self.inner.encode(texts, batch_size=batch_size)


class MemoryKeyring:
    """A stand-in for the OS keyring service (none runs on a CI machine), plugged in through keyring's API."""

    def __new__(cls):
        import keyring.backend

        class _Backend(keyring.backend.KeyringBackend):
            priority = 1

            def __init__(self):
                super().__init__()
                self.store = {}

            def get_password(self, service, username):
                return self.store.get((service, username))

            def set_password(self, service, username, password):
                self.store[(service, username)] = password

            def delete_password(self, service, username):
                import keyring.errors

                if self.store.pop((service, username), None) is None:
                    raise keyring.errors.PasswordDeleteError(username)

        return _Backend()

"""What the app holds while a vault is open: the vault and the library objects built on it.

Screens ask the session for what they need (the history, the writer, the recommender,
training) and never build those themselves, so each is made once per unlock and
shared. Model loading happens on first use, always from a worker thread.

Example::

    >>> session = Session(open_demo())        # doctest: +SKIP
    >>> session.recommend(3)                        # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localpers.history import heading
from localpers.paths import Config
from localpers.session import Session as VaultSession
from localpers.writing.writer import Writer

if TYPE_CHECKING:
    from textual.app import App

    from localpers.vault import Vault


class SessionClosed(Exception):
    """The vault is being closed or erased: no new work may start on it."""


class CatalogChoiceNeeded(Exception):
    """There are several catalogs and this user has not picked one yet (``names`` lists them)."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(f"several catalogs ({', '.join(names)}): choose one")
        self.names = names


class Session(VaultSession):
    """One unlocked vault and its services (see :class:`localpers.session.Session`), plus what the app needs
    around them: workers that must finish before the vault closes, cancelling, the catalog's own thread."""

    def __init__(self, vault: Vault, *, engine_model: str | None = None, home: Path | None = None,
                 train_config: Any = None, config: Config | None = None) -> None:
        super().__init__(vault, config=config, engine_model=engine_model, home=home)
        self.train_config = train_config  # a localpers.writing.train.TrainConfig; None: the recipe's defaults
        self.use_adapter = True  # the Adapter screen's on/off switch; the Write screen reads it
        self.cancel = threading.Event()  # set when the session closes: long work stops at its next step
        self._stops: list[threading.Event] = []
        self._working = 0  # workers using the vault right now (see busy())
        self._closing = False  # set once close() or erase_user() starts: busy() refuses new work
        self._idle = threading.Condition()
        self._catalog_obj: Any = None
        self._recommender_obj: Any = None
        self._catalog_thread: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ models

    def warm_up(self, app: "App") -> None:
        """Load the writer model in the background, so the first draft starts at once."""
        app.run_worker(self._warm, thread=True, group="warm-up", exit_on_error=False)

    def _warm(self) -> None:
        with contextlib.suppress(Exception):  # a failure shows later, when the model is really needed
            self.engine()

    # ------------------------------------------------------------------ writing

    def writer(self) -> Writer:  # type: ignore[override]
        """The :class:`localpers.writing.writer.Writer`, with or without the adapter as the switch says."""
        return super().writer(use_adapter=bool(self.use_adapter))

    def describe_examples(self, examples: list[Any]) -> list[dict]:
        """The retrieved examples of a draft as ``{"title", "text", "score"}`` for display."""
        history = self.history()
        out = []
        for example in examples:
            item = history.get(example.item_id)
            title = heading(item.metadata if item is not None else None)
            out.append({"title": title, "text": example.text, "score": float(example.score)})
        return out

    @staticmethod
    def stop_draft(draft: Any, pieces: Any) -> None:
        """End a draft's generation early, keeping what was written so far.

        ``pieces`` is the iterator over the draft. Closing it and the engine's stream
        here, in the worker thread, releases the engine's lock (held while a generation
        runs) in the thread that took it.
        """
        with contextlib.suppress(Exception):
            pieces.close()
        with contextlib.suppress(Exception):  # the engine's stream may already be gone
            draft.close()

    # ------------------------------------------------------------------ the adapter

    def training_data(self) -> dict:
        """How much there is to learn from, and what training would cost here."""
        from localpers.writing.train import TrainConfig, collect_texts, estimate_training
        from localpers.writing.context import adapter_readiness

        config = self.train_config or TrainConfig(model=self.engine_model)
        texts = collect_texts(self.vault, config.kinds, config.max_text_chars)
        have, needed = adapter_readiness(self.vault, min_texts=config.recipe().min_texts, n_texts=len(texts))
        tokens = sum(len(t["content"]) for t in texts) // 4  # about 4 characters a token
        data: dict[str, Any] = {"texts": have, "tokens": tokens, "needed": needed, "estimate_seconds": None}
        if not needed:
            data["estimate_seconds"] = estimate_training(self.vault, config)
        return data

    def readiness(self) -> tuple[int, int]:
        """``(texts the user wrote, texts still needed for an adapter)``: a quick count, no decryption."""
        from localpers.writing.train import TrainConfig
        from localpers.writing.context import adapter_readiness

        return adapter_readiness(self.vault, min_texts=(self.train_config or TrainConfig(model=self.engine_model)).recipe().min_texts)

    def adapter_info(self) -> Any:
        """The installed adapter's :class:`localpers.writing.adapter.AdapterInfo`, or None."""
        from localpers.writing.adapter import installed

        return installed(self.vault)

    def checkpoint_step(self) -> int | None:
        """The step a resumed training would start from (None: no checkpoint)."""
        from localpers.writing.train import checkpoint_step

        return checkpoint_step(self.vault)

    def train(self, *, progress: Callable[[Any], None], cancel: threading.Event, resume: bool) -> Any:
        """Train the adapter (from the checkpoint when ``resume``); it is verified and installed when done."""
        from localpers.writing.train import TrainConfig, discard_checkpoint, train_adapter

        if not resume:
            discard_checkpoint(self.vault)
        result = train_adapter(self.vault, self.train_config or TrainConfig(model=self.engine_model), progress=progress, cancel=cancel,
                               history=self.history(), writer=self.engine())
        if not result.cancelled:
            with self._lock:
                self._writers.clear()  # the next draft loads the new adapter
        return result

    # ------------------------------------------------------------------ recommendations
    #
    # A Catalog holds a SQLite connection that only the thread that opened it may use,
    # so everything touching the catalog runs on one dedicated thread.

    def _on_catalog_thread(self, fn: Callable[[], Any]) -> Any:
        with self._lock:
            if self._catalog_thread is None:
                self._catalog_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="localpers-catalog")
            pool = self._catalog_thread
        return pool.submit(fn).result()

    def catalog_choice(self) -> tuple[list[str], str | None]:
        """The catalogs there are and the one this user recommends from (None: several, none picked yet).

        The demo profile always uses the bundled demo catalog, and so does a new user
        until a catalog is imported; with several, the user's pick is kept (sealed) in their vault.
        """
        from localpers.catalog import Catalog

        names = Catalog.names(self.home)
        if self.vault.is_demo or not names:
            return ["demo"], "demo"
        if len(names) == 1:
            return names, names[0]
        chosen = Catalog.remembered(self.vault)  # the same pick as `localpers recommend --catalog`
        if chosen not in names:
            chosen = "default" if "default" in names else None
        return names, chosen

    def choose_catalog(self, name: str) -> None:
        """Recommend from catalog ``name`` from now on (remembered in the vault)."""
        from localpers.catalog import Catalog

        if not Catalog.exists(name, self.home):
            from localpers.errors import LocalpersError

            raise LocalpersError(f"no catalog named {name!r}; there is {', '.join(Catalog.names(self.home))}")
        Catalog.remember(self.vault, name)

        def forget() -> None:
            self._catalog_obj = self._recommender_obj = None

        self._on_catalog_thread(forget)

    def _catalog(self) -> Any:
        from localpers.catalog import Catalog

        if self._catalog_obj is None:
            names, chosen = self.catalog_choice()
            if chosen is None:
                raise CatalogChoiceNeeded(names)
            self._catalog_obj = Catalog.demo(self.home) if chosen == "demo" else Catalog(chosen, home=self.home)
        return self._catalog_obj

    def _recommender(self) -> Any:
        from localpers.recommend import Recommender

        if self._recommender_obj is None:
            self._recommender_obj = Recommender(self._catalog())
        return self._recommender_obj

    def recommend(self, n: int = 20, *, kinds: list[str] | None = None, tags: list[str] | None = None) -> list[Any]:
        """A ranked list of :class:`localpers.recommend.Recommendation`, each with its reason.

        The list is a :class:`localpers.recommend.Recommendations`: its ``disclosure`` says which
        profile facts it used and which it withheld.
        """
        return self._on_catalog_thread(lambda: self._recommender().recommend(self.vault, n=n, kinds=kinds, tags=tags))

    def catalog_kinds(self) -> dict[str, int]:
        """How many catalog items of each kind (for the filter)."""
        return self._on_catalog_thread(lambda: self._catalog().kinds())

    def feedback(self, item_id: str, signal: str) -> int:
        """Record like / dislike / not_interested on a catalog item (sealed in the vault)."""
        from localpers.recommend import record_feedback

        return self._on_catalog_thread(lambda: record_feedback(self.vault, self._catalog(), item_id, signal))

    # ------------------------------------------------------------------ privacy

    def ledger(self) -> list[dict]:
        """Every disclosure of profile facts, newest first (see :mod:`localpers.disclosure.ledger`).

        Each entry's dict also has ``sentences``: the entry as a person reads it.
        """
        from localpers.disclosure import describe_entry, ledger_entries

        return [{**entry.to_dict(), "sentences": describe_entry(entry)} for entry in ledger_entries(self.vault)]

    def erase_user(self) -> None:
        """Erase this user's vault for good, once running work has stopped (the session ends)."""
        self._wind_down(None)
        with self._lock:
            self._stop_catalog_thread()
            self.vault.erase_user()

    # ------------------------------------------------------------------ ending

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Mark a worker as using the vault, so :meth:`close` waits for it to finish.

        Raises :class:`SessionClosed` once the vault is closing: the vault's SQLite
        connection must never be used while (or after) it is closed.
        """
        with self._idle:
            if self._closing:
                raise SessionClosed("the vault is closing")
            self._working += 1
        try:
            yield
        finally:
            with self._idle:
                self._working -= 1
                self._idle.notify_all()

    def stop_event(self) -> threading.Event:
        """A new event to stop one piece of long work; :meth:`cancel_all` sets it too."""
        event = threading.Event()
        with self._lock:
            self._stops = [e for e in self._stops if not e.is_set()] + [event]
            if self.cancel.is_set():
                event.set()
        return event

    def cancel_all(self) -> None:
        """Ask long work (training, imports, generation) to stop at its next step."""
        self.cancel.set()
        with self._lock:
            for event in self._stops:
                event.set()

    def _stop_catalog_thread(self) -> None:
        if self._catalog_thread is not None:
            self._catalog_thread.shutdown(wait=True)
            self._catalog_thread = None

    def _wind_down(self, timeout: float | None) -> bool:
        """Refuse new work, ask running work to stop, and wait until none uses the vault (True) or time is up."""
        with self._idle:
            self._closing = True
        self.cancel_all()
        with self._idle:
            return self._idle.wait_for(lambda: self._working == 0, timeout=timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Stop long work, wait for workers to let go of the vault, then close it.

        With a ``timeout`` that passes while a worker still runs (the app is quitting
        mid-step), the vault is left for the process exit to release: closing it under
        the worker could crash, and SQLite's journal keeps every commit safe anyway.
        Returns whether the vault was closed.
        """
        if not self._wind_down(timeout):
            return False
        with self._lock:
            self._stop_catalog_thread()
            if getattr(self.vault, "is_open", True):
                self.vault.close()
        return True

"""localpers: on-device, privacy-preserving personalization.

The library API in a few lines::

    from localpers import Vault, History, Engine

    vault = Vault.create("ada", "a long passphrase")     # or Vault.open(...)
    history = History(vault)
    history.import_path("~/Mail/sent.mbox")               # emails, notes, JSONL, ratings CSV
    history.search("quarterly budget", k=5)

    engine = Engine.shared("gemma3-270m")                 # any GGUF path works too
    engine.complete("Dear team,", max_tokens=40)

Heavy modules (torch, llama.cpp) load only when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public names and the module that defines each; imported lazily so `import localpers` stays fast.
_EXPORTS = {
    "Vault": "localpers.vault",
    "Engine": "localpers.llm",
    "Config": "localpers.paths",
    "LocalpersError": "localpers.errors",
    "History": "localpers.history",
    "Catalog": "localpers.catalog",
    "Recommender": "localpers.recommend",
    "Writer": "localpers.writing.writer",
    "Adapter": "localpers.writing.adapter",
}

if TYPE_CHECKING:  # pragma: no cover
    from .errors import LocalpersError
    from .llm import Engine
    from .paths import Config
    from .vault import Vault


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'localpers' has no attribute {name!r}")

"""Writing in the user's style, and the personal adapter that learns it.

The package in layers, each importing only those below it:

- :mod:`.context`: what a draft is written from (retrieved examples, the style summary, adapter readiness);
- :mod:`.playback`: instructions recovered from the user's own texts (the training pairs);
- :mod:`.adapter`: the adapter file in the vault (export to GGUF, verify, install, load);
- :mod:`.train`: LoRA training on CPU, then :func:`~.train.install_trained`;
- :mod:`.writer`: :class:`~.writer.Writer`, which drafts with all of the above.

Names are imported lazily (``from localpers.writing import Writer``), so the history can use
:mod:`.context` and :mod:`.playback` without loading the writer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Writer": "writer", "Draft": "writer",
    "Adapter": "adapter", "AdapterInfo": "adapter", "AdapterError": "adapter",
    "TrainConfig": "train", "TrainProgress": "train", "TrainResult": "train", "train_adapter": "train",
    "install_trained": "train",
    "retrieve": "context", "style_summary": "context", "adapter_readiness": "context", "WRITTEN_KINDS": "context",
}

if TYPE_CHECKING:  # pragma: no cover
    from .adapter import Adapter, AdapterError, AdapterInfo
    from .context import WRITTEN_KINDS, adapter_readiness, retrieve, style_summary
    from .train import TrainConfig, TrainProgress, TrainResult, install_trained, train_adapter
    from .writer import Draft, Writer


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Sentence embeddings on the CPU, offline.

The default is the bundled all-MiniLM-L6-v2 (384 dimensions, via
sentence-transformers). Anything with ``dim`` and ``encode(texts) -> float32
array of unit rows`` can stand in: :class:`LlamaEmbedder` uses a GGUF model's
own embeddings through llama.cpp.

Example::

    >>> from localpers.embed import Embedder
    >>> emb = Embedder.shared()                       # doctest: +SKIP
    >>> emb.encode(["hello", "hi there"]).shape        # doctest: +SKIP
    (2, 384)
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from . import models
from .paths import default_threads


class TextEncoder(Protocol):
    dim: int

    def encode(self, texts: list[str], *, batch_size: int = 32) -> np.ndarray: ...


class Embedder:
    """all-MiniLM-L6-v2 (or another sentence-transformers folder), normalized float32 vectors."""

    _shared: dict[str, "Embedder"] = {}
    _lock = threading.Lock()

    def __init__(self, model: str | Path = "all-minilm-l6-v2", *, threads: int | None = None) -> None:
        # Refuse any hub lookup: the weights are on disk, and nothing may open a connection.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads or default_threads())
        self.path = models.ensure(model)
        transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bar in the CLI's output
        self.model = SentenceTransformer(str(self.path), device="cpu", local_files_only=True)
        # sentence-transformers renamed this method; use whichever this version has.
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self.name = str(model)

    @classmethod
    def shared(cls, model: str | Path = "all-minilm-l6-v2") -> "Embedder":
        """The process-wide embedder for ``model`` (loaded once)."""
        with cls._lock:
            if str(model) not in cls._shared:
                cls._shared[str(model)] = cls(model)
            return cls._shared[str(model)]

    def encode(self, texts: list[str], *, batch_size: int = 32) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                                    normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


class LlamaEmbedder:
    """Embeddings from a GGUF model through llama.cpp (mean-pooled, normalized)."""

    def __init__(self, model: str | Path = "gemma3-270m", *, threads: int | None = None) -> None:
        import llama_cpp

        self.llm = llama_cpp.Llama(model_path=str(models.ensure(model)), embedding=True, n_ctx=512,
                                   n_threads=threads or default_threads(), verbose=False)
        self.dim = int(self.llm.n_embd())
        self.name = f"llama:{model}"

    def encode(self, texts: list[str], *, batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        rows = []
        for text in texts:
            vec = np.asarray(self.llm.embed(text, normalize=False), dtype=np.float32)
            if vec.ndim == 2:  # per-token embeddings: mean-pool
                vec = vec.mean(axis=0)
            rows.append(vec / (np.linalg.norm(vec) or 1.0))
        return np.vstack(rows)

"""Sentence embeddings on the CPU, offline, without torch.

The default is the bundled all-MiniLM-L6-v2 (384 dimensions) run by ONNX Runtime,
with the word pieces cut by the ``tokenizers`` library: loading it takes a fraction of
a second and a query embeds in milliseconds. The ONNX file is exported once from the
installed weights (``localpers models --assemble``, or on first use; see
:func:`localpers.models.ensure_onnx`), and its vectors agree with sentence-transformers'
to about 1e-6, so indexes built with either stay valid.

Anything with ``dim`` and ``encode(texts) -> float32 array of unit rows`` can stand in:
:class:`LlamaEmbedder` uses a GGUF model's own embeddings through llama.cpp, and
:class:`SentenceTransformerEmbedder` is the torch reference the tests compare against.

Example::

    >>> from localpers.embed import Embedder
    >>> emb = Embedder.shared()                       # doctest: +SKIP
    >>> emb.encode(["hello", "hi there"]).shape        # doctest: +SKIP
    (2, 384)
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from . import models
from .errors import LocalpersError
from .llm import amx_off_if_unusable
from .paths import DEFAULT_MODEL
from .threads import available, configured

MAX_TOKENS = 256  # what sentence-transformers reads of a text with this model (sentence_bert_config.json)
TOKENS_PER_BATCH = 8192  # long texts go in smaller batches: the attention cost grows with length squared


class TextEncoder(Protocol):
    dim: int

    def encode(self, texts: list[str], *, batch_size: int = 32) -> np.ndarray: ...


class Embedder:
    """all-MiniLM-L6-v2 (or another mean-pooled sentence-transformers folder) on ONNX Runtime.

    ``encode`` returns unit-length float32 rows. Texts are tokenized together, sorted
    by length and batched so that short texts are never padded to a long one's length.
    """

    _shared: dict[str, "Embedder"] = {}
    _lock = threading.Lock()

    def __init__(self, model: str | Path = "all-minilm-l6-v2", *, threads: int | None = None) -> None:
        if "onnxruntime" not in sys.modules and "usearch.index" in sys.modules:
            # usearch's static libstdc++ makes ONNX Runtime crash the process when it loads second.
            raise LocalpersError("usearch was imported before localpers could load ONNX Runtime; import "
                                 "localpers.embed (or onnxruntime) before usearch in this program")
        import onnxruntime  # ~0.2 s; only processes that embed pay for it
        from tokenizers import Tokenizer

        self.path = models.ensure(model)
        onnx_path = models.ensure_onnx(model)
        self.tokenizer = Tokenizer.from_file(str(self.path / "tokenizer.json"))
        self.tokenizer.enable_truncation(_max_tokens(self.path))
        self.tokenizer.no_padding()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or available(configured())
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # warnings about unused initializers are noise to a user
        self.session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.dim = int(self.session.get_outputs()[0].shape[-1])
        self.name = str(model)
        self._run_lock = threading.Lock()

    @classmethod
    def shared(cls, model: str | Path = "all-minilm-l6-v2") -> "Embedder":
        """The process-wide embedder for ``model`` (loaded once)."""
        with cls._lock:
            if str(model) not in cls._shared:
                cls._shared[str(model)] = cls(model)
            return cls._shared[str(model)]

    def encode(self, texts: list[str], *, batch_size: int = 32,
               progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Unit-length float32 vectors, one row per text; ``progress(done, total)`` after each batch."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        pieces = [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=True)]
        order = sorted(range(len(texts)), key=lambda i: len(pieces[i]))
        done = 0
        while done < len(order):
            longest = len(pieces[order[min(done + batch_size, len(order)) - 1]])
            rows = order[done:done + max(1, min(batch_size, TOKENS_PER_BATCH // max(longest, 1)))]
            width = max(len(pieces[i]) for i in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                ids[r, :len(pieces[i])] = pieces[i]
                mask[r, :len(pieces[i])] = 1
            with self._run_lock:  # one session, many threads (the TUI's workers): run one batch at a time
                out[rows] = self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
            done += len(rows)
            if progress:
                progress(done, len(texts))
        return out


def _max_tokens(folder: Path) -> int:
    try:
        return int(json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"])
    except (OSError, KeyError, ValueError):
        return MAX_TOKENS


class SentenceTransformerEmbedder:
    """The same model through sentence-transformers and torch: the reference the ONNX path is checked against.

    Loading torch takes seconds; the product uses :class:`Embedder`.
    """

    def __init__(self, model: str | Path = "all-minilm-l6-v2", *, threads: int | None = None) -> None:
        # Refuse any hub lookup: the weights are on disk, and nothing may open a connection.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch  # deferred: seconds to import
        import transformers
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads or available(configured()))
        self.path = models.ensure(model)
        transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bar in the CLI's output
        self.model = SentenceTransformer(str(self.path), device="cpu", local_files_only=True)
        # sentence-transformers renamed this method; use whichever this version has.
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self.name = str(model)

    def encode(self, texts: list[str], *, batch_size: int = 32) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                                    normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


class LlamaEmbedder:
    """Embeddings from a GGUF model through llama.cpp (mean-pooled, normalized)."""

    def __init__(self, model: str | Path = DEFAULT_MODEL, *, threads: int | None = None) -> None:
        import llama_cpp  # deferred: ~0.5 s to import

        with amx_off_if_unusable(llama_cpp.llama_cpp):  # this VM kind lists AMX but traps on it
            self.llm = llama_cpp.Llama(model_path=str(models.ensure(model)), embedding=True, n_ctx=512,
                                       n_threads=threads or available(configured()), verbose=False)
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

"""A usearch vector index whose bytes only ever rest encrypted in the vault.

Keys are integers (usearch's requirement); :class:`VectorIndex` keeps the map
between them and string ids (item ids, catalog ids) next to the vectors.

Example::

    >>> import numpy as np
    >>> index = VectorIndex(dim=3)
    >>> index.add(["a", "b"], np.eye(3, dtype=np.float32)[:2])
    >>> [hit[0] for hit in index.search(np.array([1, 0, 0], dtype=np.float32), k=1)]
    ['a']
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys

import numpy as np

from . import models
from .errors import LocalpersError


def _settle_llama_locale() -> None:
    """Load one BPE vocabulary in llama.cpp before usearch is imported (vocab only, ~0.2 s).

    usearch's wheel links its own static libstdc++. Imported first, it leaves llama.cpp
    unable to load any BPE tokenizer (SmolLM2's: "error loading model vocabulary:
    std::bad_cast") for the rest of the process; once llama.cpp has loaded one, it works.
    """
    try:
        # deferred: llama.cpp takes about a second to import, paid only when usearch will follow
        import llama_cpp
        from llama_cpp._logger import set_verbose

        set_verbose(False)
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        model = llama_cpp.llama_model_load_from_file(str(models.ensure("smollm2-135m-instruct")).encode(), params)
        if model:
            llama_cpp.llama_model_free(model)
    except Exception:  # no llama.cpp or no SmolLM2: nothing to protect
        pass


_llama_may_follow = True


def llama_will_not_load() -> None:
    """Promise that this process never loads a GGUF model, so usearch loads without the guard above.

    Commands that only search (``localpers search``, ``recommend``) call it to save
    the second that importing llama.cpp costs; the library default stays safe.
    """
    global _llama_may_follow
    _llama_may_follow = False


def _usearch_index() -> type:
    """usearch's Index class, imported on first use (after the llama.cpp guard, unless waived)."""
    if "usearch.index" not in sys.modules:
        # The same static libstdc++ makes ONNX Runtime (the embedder) segfault when usearch
        # comes first; imported before it, both work.
        import onnxruntime  # noqa: F401

        if _llama_may_follow:
            _settle_llama_locale()
    # deferred: a native library, loaded after llama.cpp has settled (see _settle_llama_locale)
    from usearch.index import Index

    return Index


class VectorIndex:
    """Cosine-similarity search over string-keyed vectors, with add, remove and bytes round-trip.

    ``dtype`` is how vectors are stored in the index: ``"f32"``, or ``"f16"`` for half the
    memory and faster search at a recall cost too small to measure (see bench/history.py).
    """

    def __init__(self, dim: int, *, connectivity: int = 16, expansion_add: int = 128, expansion_search: int = 64,
                 dtype: str = "f32") -> None:
        self.dim = dim
        self._opts = dict(connectivity=connectivity, expansion_add=expansion_add, expansion_search=expansion_search,
                          dtype=dtype)
        self.index = _usearch_index()(ndim=dim, metric="cos", **self._opts)
        self._key_of: dict[str, int] = {}
        self._id_of: dict[int, str] = {}
        self._next = 1

    def __len__(self) -> int:
        return len(self._key_of)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._key_of

    def ids(self) -> list[str]:
        return list(self._key_of)

    def add(self, ids: list[str], vectors: np.ndarray) -> None:
        """Add (or replace) vectors for ``ids``."""
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(ids), -1)
        if vectors.shape[1] != self.dim:
            raise LocalpersError(f"vectors have {vectors.shape[1]} dimensions; this index holds {self.dim}")
        self.remove([i for i in ids if i in self._key_of])
        keys = np.arange(self._next, self._next + len(ids), dtype=np.uint64)
        self._next += len(ids)
        for item_id, key in zip(ids, keys):
            self._key_of[item_id] = int(key)
            self._id_of[int(key)] = item_id
        if len(ids):
            self.index.add(keys, vectors)

    def remove(self, ids: list[str]) -> None:
        for item_id in ids:
            key = self._key_of.pop(item_id, None)
            if key is not None:
                del self._id_of[key]
                self.index.remove(key)

    def search(self, vector: np.ndarray, k: int = 10, *, exact: bool = False) -> list[tuple[str, float]]:
        """The ``k`` nearest ids with cosine similarity (1 = same direction)."""
        if not self._key_of or k <= 0:
            return []
        matches = self.index.search(np.asarray(vector, dtype=np.float32).reshape(-1), min(k, len(self)), exact=exact)
        return [(self._id_of[int(key)], 1.0 - float(dist))
                for key, dist in zip(matches.keys, matches.distances) if int(key) in self._id_of]

    def vectors(self, ids: list[str]) -> np.ndarray:
        """The stored vectors of ``ids`` (rows in the same order)."""
        if not ids:
            return np.zeros((0, self.dim), dtype=np.float32)
        keys = np.array([self._key_of[i] for i in ids], dtype=np.uint64)
        return np.asarray(self.index.get(keys), dtype=np.float32).reshape(len(ids), self.dim)

    @classmethod
    def prebuilt(cls, data: bytes, ids: list[str], vectors: np.ndarray) -> "VectorIndex":
        """Adopt a usearch index built elsewhere over ``vectors`` (key ``k + 1`` for ``ids[k]``, cosine).

        A catalog publisher ships one with its vectors (:func:`localpers.catalog.save_shipped_vectors`),
        so a large import builds no graph here. Raises LocalpersError when the index does not
        hold exactly these keys with these vectors.
        """
        Index = _usearch_index()
        try:
            meta = Index.metadata(data)
            if not meta or meta["dimensions"] != vectors.shape[1] or meta["count_present"] != len(ids) \
                    or meta["count_deleted"] or "cos" not in str(meta["kind_metric"]).lower():
                raise ValueError(f"it is not a cosine index of {len(ids)} {vectors.shape[1]}-dimensional vectors")
            dtype = str(meta["kind_scalar"]).rsplit(".", 1)[-1].lower()
            self = cls(vectors.shape[1], dtype=dtype, expansion_add=64)
            self.index = Index.restore(data, view=False)
            keys = np.sort(np.asarray(self.index.keys, dtype=np.uint64))
            if not np.array_equal(keys, np.arange(1, len(ids) + 1, dtype=np.uint64)):
                raise ValueError("its keys are not 1 to n, one per id")
            sample = np.unique(np.linspace(0, len(ids) - 1, min(len(ids), 64)).astype(np.int64))
            stored = np.asarray(self.index.get(sample.astype(np.uint64) + 1), dtype=np.float32)
            want = vectors[sample] / np.maximum(np.linalg.norm(vectors[sample], axis=1, keepdims=True), 1e-12)
            got = stored / np.maximum(np.linalg.norm(stored, axis=1, keepdims=True), 1e-12)
            if not np.all((got * want).sum(axis=1) > 0.99):
                raise ValueError("its vectors are not the shipped ones")
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise LocalpersError(f"the shipped vector index cannot be used: {exc}") from exc
        self._key_of = {item_id: k + 1 for k, item_id in enumerate(ids)}
        self._id_of = {k: item_id for item_id, k in self._key_of.items()}
        self._next = len(ids) + 1
        return self

    # ------------------------------------------------------------------ persistence

    def to_bytes(self) -> bytes:
        """Index and id map in one byte string (the caller encrypts it)."""
        body = bytes(self.index.save())
        header = json.dumps({"dim": self.dim, "next": self._next, "opts": self._opts, "ids": self._key_of,
                             "sha256": hashlib.sha256(body).hexdigest()}).encode()
        return struct.pack("<I", len(header)) + header + body

    @classmethod
    def from_bytes(cls, data: bytes, *, view: bool = False) -> "VectorIndex":
        """Rebuild from :meth:`to_bytes`; raises LocalpersError when the bytes are damaged.

        ``view``: search ``data`` in place (e.g. a memory-mapped file) instead of copying it;
        such an index is read-only.
        """
        try:
            (n,) = struct.unpack("<I", data[:4])
            header = json.loads(data[4:4 + n])
            body = memoryview(data)[4 + n:] if view else data[4 + n:]
            # usearch trusts its input; a damaged body must never reach it.
            if "sha256" in header and hashlib.sha256(body).hexdigest() != header["sha256"]:
                raise ValueError("checksum mismatch")
            self = cls(header["dim"], **header["opts"])
            self.index = _usearch_index().restore(body, view=view)
            self._buffer = data if view else None  # a view reads these bytes for as long as it lives
            if self.index is None:
                raise ValueError("usearch could not restore the index")
            # The saved file keeps the graph and dtype, not the search settings.
            self.index.expansion_search = self._opts["expansion_search"]
            self.index.expansion_add = self._opts["expansion_add"]
            self._key_of = {k: int(v) for k, v in header["ids"].items()}
            self._id_of = {v: k for k, v in self._key_of.items()}
            self._next = header["next"]
        except (ValueError, KeyError, struct.error, json.JSONDecodeError, TypeError, RuntimeError) as exc:
            raise LocalpersError(f"the vector index is damaged ({exc}); it will be rebuilt from the vault") from exc
        if len(self.index) != len(self._key_of):
            raise LocalpersError("the vector index does not match its id map; it will be rebuilt from the vault")
        return self

"""Recommendations from a catalog, computed on this machine from the user's sealed interactions.

How a list is made, in four steps:

1. **What the user did.** Their interactions with the catalog (likes, ratings, reads,
   dislikes...) are read from the vault and turned into one weight per item: positive
   for interest, negative for rejection, halved every ``recency_half_life`` newer items.
2. **Scores for every item**, from four signals, each standardized over the catalog
   (z-scores) so the blend weights compare:

   - *collaborative*: the item-to-item model shipped with the catalog (e.g. EASE weights
     fitted elsewhere on many people's aggregate data), applied to the user's weights;
   - *content*: similarity of item embeddings to the user's items (sharpened cosine, so
     one close match counts more than many vague ones);
   - *interests*: similarity to the user's stated interests / profile text (cold start);
   - *popularity*: how many people the model's data says interacted with each item.
3. **A list**: already-seen items and unwanted kinds/tags are filtered out; MMR trades a
   little relevance for variety; a share of the slots goes to novel items (few or no
   ratings in the model) chosen by the same blend, so new items get a chance.
4. **A reason** for every item, grounded in the user's own item that contributed most
   ("Because you liked Metropolis"), optionally phrased by the local LLM.

Profile facts, minimally: when the catalog's items have years, :meth:`Recommender.recommend`
asks :func:`localpers.disclosure.choose_profile_facts` which of the user's profile facts
(a derived ``classic_share``, age, occupation...) the ``recommendation-era`` decision
needs, uses only those, and nudges the list towards classics or recent titles once the
decision is settled (``RecommenderConfig.era``). The list carries the choice
(``recs.disclosure``: what was used, what was withheld), and the disclosure ledger gets
one entry per distinct choice per day.

Example::

    >>> from localpers.catalog import Catalog
    >>> from localpers.recommend import Recommender, record_feedback
    >>> catalog = Catalog.demo()                                      # doctest: +SKIP
    >>> record_feedback(vault, catalog, "nosferatu-1922", "like")     # doctest: +SKIP
    >>> recs = Recommender(catalog).recommend(vault, n=5)            # doctest: +SKIP
    >>> for rec in recs:                                              # doctest: +SKIP
    ...     print(rec.item.title, "-", rec.reason)
    Dracula - Because you liked Nosferatu
    >>> print(recs.disclosure.summary())                              # doctest: +SKIP
    Used 1 of 3 profile facts for recommendation (recommendation-era: classic, 100.0% sure): classic_share. ...

Nothing here opens a connection: the catalog and its model are files on disk, the
interactions are decrypted in memory only.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse

from .catalog import (LARGE_CATALOG, Catalog, CatalogItems, Item, fit_ease, fit_item_knn,  # noqa: F401  (fit_* re-exported)
                      year_of)
from .candidates import CandidateRanker
from .disclosure import choose_profile_facts, ledger_entries, record
from .disclosure import profile_facts as stored_facts
from .embed import Embedder
# Feedback lives below this module (the profile reads it too); its names stay importable from here.
from .feedback import (EXPLICIT, SIGNALS, Event, SignalWeights, Taste, normalize_signal,  # noqa: F401
                       read_events, record_feedback)
from .profile import interest_facts, interest_text, set_fact
from .vault import coarse_time

if TYPE_CHECKING:
    from .vault import Vault

if TYPE_CHECKING:  # pragma: no cover
    from .disclosure import FactSelection

SIMILARITY_CACHE_ITEMS = 4000  # up to this catalog size the full similarity matrix is kept in memory
# On a large catalog the content signal reads a user's this many heaviest items (recency decay makes
# the rest weigh little), so a 2,000-item history costs what a 500-item one does.
CONTENT_ITEMS = 500
PARTS = ("collaborative", "content", "interests", "popularity", "era")
# Items released this many years or more before the newest one in the catalog count as classics
# (the definition of the ``classic_share`` profile fact the recommendation-era decision reads).
CLASSIC_YEARS = 20
MIN_DATED_LIKES = 3  # fewer well-rated items with a year say too little to compute classic_share
RECIPIENT = "local recommender"  # who gets the profile facts, as the disclosure ledger names it


@dataclass
class RecommenderConfig(SignalWeights):
    """The weights of the recommender, with why each default is what it is.

    What each signal says (like, dislike, stars...) comes from :class:`~localpers.feedback.SignalWeights`.
    Blend weights multiply z-scored signals, so they compare directly. Collaborative
    evidence from many people is the strongest predictor where it exists, so it leads
    (1.0). Content similarity is the only signal for items the model has never seen and
    the main one for catalogs without a model; on MovieLens (whose item texts are just
    title, genres and year) it adds nothing on top of EASE, so next to a model it gets a
    modest 0.2. Interests (stated, or the profile text) carry cold start (0.5).
    Popularity is already inside the collaborative weights; 0.05 breaks ties.

    ``bench/recommend.py`` tunes the blend, star weights and recency on a validation
    split and prints the values it used; they differ from these product defaults in one
    deliberate way: there a 1-star rating still means "watched it", so every star is
    positive, while here a low rating pushes similar items down, as a user expects.
    """

    collaborative: float = 1.0
    content: float = 0.2
    interests: float = 0.5
    popularity: float = 0.05
    # Nudge for the settled recommendation-era decision: items that fit the era (classic or recent)
    # gain this much, dated items that do not lose it, undated ones are left alone. Small on purpose:
    # about a fifth of a standard deviation of one signal, so it reorders near-ties, not the list.
    era: float = 0.2
    # An item's weight halves for every this many newer items the user touched (0 = no decay);
    # on MovieLens validation 80-160 did best: tastes drift, but slowly.
    recency_half_life: float = 100.0
    # Content similarity is clip(cos, 0)^sharpness: higher favours close matches over vague ones.
    content_sharpness: float = 3.0
    # MMR: 0 = pure relevance; 0.15 swaps in a different-looking item now and then.
    diversity: float = 0.15
    # Share of the list reserved for novel items (fewer than `novel_below` ratings in the model),
    # ranked by the blend plus `explore_content` x content similarity: items few people rated have
    # little collaborative evidence, so what they are about gets extra say (the bench tunes it).
    exploration: float = 0.1
    novel_below: int = 5
    explore_content: float = 0.5
    pool: int = 100  # how many top items MMR chooses from
    # Above this many items a request scores candidates (localpers.candidates), not the whole catalog.
    large_catalog: int = LARGE_CATALOG


@dataclass
class Recommendation:
    """One recommended item, why it is here, and the parts of its score."""

    item: Item
    score: float
    reason: str
    because: str | None = None  # id of the user's own item the reason cites
    parts: dict[str, float] = field(default_factory=dict)  # weight x z-score of each signal; they sum to score
    novel: bool = False  # placed in an exploration slot: few or no people have rated it yet

    def to_dict(self) -> dict:
        return {"id": self.item.id, "title": self.item.title, "kind": self.item.kind, "score": round(self.score, 4),
                "reason": self.reason, "because": self.because, "novel": self.novel,
                "parts": {k: round(v, 4) for k, v in self.parts.items()}}


class Recommendations(list):
    """A recommendation list (a plain list of :class:`Recommendation`) plus the profile facts behind it.

    ``disclosure`` is the :class:`localpers.disclosure.FactSelection` of the request:
    which profile facts were used (``.used``) and which withheld (``.withheld``), or
    None when the catalog gives the profile nothing to decide (no years on its items).
    """

    def __init__(self, recs: Iterable[Recommendation] = (), disclosure: "FactSelection | None" = None) -> None:
        super().__init__(recs)
        self.disclosure = disclosure


@dataclass
class Scores:
    """Scores of every catalog item for a batch of users (rows) and what they are made of."""

    total: np.ndarray  # (users, items); -inf where an item was already seen
    explore: np.ndarray  # the ranking of novel items for exploration slots (same shape)
    parts: dict[str, np.ndarray]  # each signal, z-scored, before weighting ("era": +1 fits, -1 does not, 0 undated)
    weights: sparse.csr_matrix  # the users' item weights (after signals and recency)
    scale: dict[str, np.ndarray]  # per user standard deviation of each raw part (for reasons)


class Recommender:
    """Recommend catalog items to a user; see the module docstring for how."""

    _one_shot = False

    def __init__(self, catalog: Catalog, config: RecommenderConfig | None = None, *, embedder: Any = None) -> None:
        self.catalog = catalog
        self.config = config or RecommenderConfig()
        self._embedder = embedder
        self._version: str | None = None
        self._load()

    # ------------------------------------------------------------------ catalog arrays

    @classmethod
    def over(cls, catalog: Catalog, config: RecommenderConfig, items: Sequence[Item], vectors: np.ndarray,
             model: sparse.csr_matrix | None, counts: np.ndarray, *, embedder: Any = None,
             years: np.ndarray | None = None) -> "Recommender":
        """A Recommender over some of ``catalog``'s items with the arrays given (the candidates of a request)."""
        self = cls.__new__(cls)
        self.catalog, self.config, self._embedder, self.large = catalog, config, embedder, None
        self._one_shot = True  # used for one request: caching the similarity matrix would not pay
        self._set_arrays(items, vectors, model, counts, years=years)
        self._version = catalog.version
        return self

    def _load(self) -> None:
        """(Re)build the arrays the scorer needs when the catalog changed."""
        if self._version == self.catalog.version:
            return
        if len(self.catalog) > self.config.large_catalog:
            self.large = CandidateRanker(self)  # nothing proportional to the catalog is loaded
            self._set_arrays([], np.zeros((0, 384), dtype=np.float32), None, np.zeros(0, dtype=np.int64))
            self._version = self.catalog.version
            return
        self.large = None
        arrays = ScanArrays.load(self.catalog)
        self._set_arrays(CatalogItems(self.catalog, arrays.ids), arrays.vectors, arrays.weights, arrays.counts,
                         years=arrays.years)
        self._version = arrays.version

    def _set_arrays(self, items: Sequence[Item], vectors: np.ndarray, weights: sparse.csr_matrix | None,
                    counts: np.ndarray, *, years: np.ndarray | None = None) -> None:
        self.items: Sequence[Item] = items
        self.ids = items.ids if isinstance(items, CatalogItems) else [item.id for item in items]
        self.position = {item_id: k for k, item_id in enumerate(self.ids)}
        self.vectors = vectors
        n = len(self.items)
        self.counts = np.asarray(counts, dtype=np.int64)
        if weights is not None and n:
            # Dense products are faster while the model is dense and the catalog small (EASE on 2k items).
            dense = weights.nnz > 0.05 * n * n and n <= 20_000
            self.model: np.ndarray | sparse.csr_matrix | None = weights.toarray() if dense else weights
        else:
            self.model = None
        self.has_counts = bool(self.counts.any())
        self._similarity: tuple[float, np.ndarray] | None = None
        self.popularity = np.log1p(self.counts).astype(np.float32)
        # +1 for classics, -1 for recent items, 0 for items without a year.
        if years is None:
            years = item_years(self.items)
        self.classic = np.zeros(n, dtype=np.float32)
        if n and np.isfinite(years).any():
            dated = np.isfinite(years)
            old = dated & (years <= np.nanmax(years) - CLASSIC_YEARS)
            self.classic[dated] = -1.0
            self.classic[old] = 1.0
        self.has_eras = bool((self.classic > 0).any() and (self.classic < 0).any())

    def refresh(self) -> None:
        """Pick up catalog changes (new items, a new item model)."""
        self._load()

    # ------------------------------------------------------------------ histories

    def taste(self, vault: Vault, *, interests: str | None = None) -> Taste:
        """The user's interactions with this catalog (oldest first) and their interest text."""
        self._load()
        events = read_events(vault, self.catalog.name)
        if not self.large:  # a large catalog's candidates drop unknown items themselves
            events = [e for e in events if e.item in self.position]
        text = interest_text(vault) if interests is None else interests
        history = Taste(events, text)
        if text.strip():
            history.interest_vector = self._interest_vector(text, vault)
        return history

    def _interest_vector(self, text: str, vault: Vault = None) -> np.ndarray:
        # Embedding a text costs tens of milliseconds; the result is personal, so it is cached sealed.
        key = vault.keyed_hash(f"{self.catalog.embedding_model()}|{text}", "interest-vector") if vault else None
        if key is not None:
            row = vault.cache.get(key, columns=["value"])
            if row is not None:
                return np.frombuffer(row["value"], dtype=np.float32).copy()
        vector = self.embedder.encode([text])[0]
        if key is not None:
            if vault.cache.count("kind = 'interest-vector'") >= 50:  # old texts: let the cache start over
                vault.cache.delete_where("kind = 'interest-vector'")
            vault.cache.insert({"key": key, "kind": "interest-vector", "value": vector.astype(np.float32).tobytes()},
                               replace=True)
        return vector

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            self._embedder = Embedder.shared(self.catalog.embedding_model())
        return self._embedder

    def item_weights(self, histories: Sequence[Taste]) -> sparse.csr_matrix:
        """One row per user: how much each catalog item says about them (signal x recency).

        The latest explicit signal on an item wins (a dislike after a like is a dislike);
        reads and clicks only count where there is no explicit one.
        """
        cfg = self.config
        rows, cols, vals = [], [], []
        for u, history in enumerate(histories):
            latest: dict[str, tuple[int, float, bool]] = {}  # item -> (order, weight, explicit)
            for order, event in enumerate(history.events):
                k = self.position.get(event.item)
                if k is None or event.signal not in SIGNALS:
                    continue
                explicit = event.signal in EXPLICIT
                weight = cfg.signal_weight(event)
                before = latest.get(event.item)
                if before is not None and before[2] and not explicit:
                    weight, explicit = before[1], True  # a click after a like leaves the like
                elif before is not None and not explicit:
                    weight = max(weight, before[1])
                latest[event.item] = (order, weight, explicit)
            ranked = sorted(latest.items(), key=lambda kv: kv[1][0], reverse=True)  # newest first
            for age, (item, (_, weight, _)) in enumerate(ranked):
                if cfg.recency_half_life > 0:
                    weight *= 0.5 ** (age / cfg.recency_half_life)
                rows.append(u)
                cols.append(self.position[item])
                vals.append(weight)
        return sparse.csr_matrix((np.array(vals, dtype=np.float32), (rows, cols)),
                                 shape=(len(histories), len(self.items)))

    # ------------------------------------------------------------------ scoring

    def score(self, histories: Sequence[Taste]) -> Scores:
        """Scores of every item for each history; seen items get -inf.

        One code path for one user (the CLI) and for thousands (the benchmark).
        """
        self._load()
        cfg = self.config
        n_users, n = len(histories), len(self.items)
        weights = self.item_weights(histories)
        if n == 0:
            empty = np.zeros((n_users, 0), dtype=np.float32)
            return Scores(empty, empty, {}, weights, {})
        raw: dict[str, np.ndarray] = {}
        if self.model is not None and cfg.collaborative:
            product = weights @ self.model
            raw["collaborative"] = np.asarray(product.toarray() if sparse.issparse(product) else product,
                                              dtype=np.float32)
        if (cfg.content or (cfg.exploration and cfg.explore_content)) and weights.nnz:
            raw["content"] = self._content(weights)
        if cfg.interests and any(h.interest_vector is not None for h in histories):
            vec = np.zeros((n_users, self.vectors.shape[1]), dtype=np.float32)
            for u, h in enumerate(histories):
                if h.interest_vector is not None:
                    vec[u] = h.interest_vector
            raw["interests"] = vec @ self.vectors.T
        if cfg.popularity and self.has_counts:
            raw["popularity"] = np.broadcast_to(self.popularity, (n_users, n))
        total = np.zeros((n_users, n), dtype=np.float32)
        parts, scale = {}, {}
        for name, values in raw.items():
            z, sd = _standardize(values)
            parts[name], scale[name] = z, sd
            total += getattr(cfg, name) * z
        if cfg.era and self.has_eras and any(h.era for h in histories):
            sign = {"classic": 1.0, "recent": -1.0}
            fit = np.stack([sign.get(h.era or "", 0.0) * self.classic for h in histories]).astype(np.float32)
            parts["era"], scale["era"] = fit, np.ones(n_users, dtype=np.float32)
            total += cfg.era * fit
        explore = total + cfg.explore_content * parts["content"] if "content" in parts else total.copy()
        seen = weights.tocoo()
        total[seen.row, seen.col] = -np.inf
        for u, history in enumerate(histories):  # seen items outside the weights (unknown signals)
            idx = [self.position[i] for i in history.seen() if i in self.position]
            total[u, idx] = -np.inf
        explore[~np.isfinite(total)] = -np.inf
        return Scores(total, explore, parts, weights, scale)

    def _content(self, weights: sparse.csr_matrix) -> np.ndarray:
        sharpness = self.config.content_sharpness
        if self._one_shot:
            weights = _heaviest(weights, CONTENT_ITEMS)
        if len(self.items) <= SIMILARITY_CACHE_ITEMS and not self._one_shot:
            # Small catalogs: all item-to-item similarities once (16 MB for 2,000 items), then one product per call.
            if self._similarity is None or self._similarity[0] != sharpness:
                self._similarity = (sharpness, self._sharpened(np.arange(len(self.items))))
            return np.asarray(weights @ self._similarity[1], dtype=np.float32)
        # Large catalogs: only the rows of items some user touched, (touched x catalog).
        touched = np.unique(weights.indices)
        return np.asarray(weights[:, touched] @ self._sharpened(touched), dtype=np.float32)

    def _sharpened(self, rows: np.ndarray) -> np.ndarray:
        """clip(cos, 0) ** sharpness between ``rows`` and every item, an item's own similarity zeroed."""
        sims = self.vectors[rows] @ self.vectors.T
        np.clip(sims, 0.0, None, out=sims)
        if self.config.content_sharpness != 1.0:
            sims **= self.config.content_sharpness
        sims[np.arange(len(rows)), rows] = 0.0
        return sims

    # ------------------------------------------------------------------ lists

    def allowed(self, *, kinds: Iterable[str] | None = None, tags: Iterable[str] | None = None,
                exclude: Iterable[str] = ()) -> np.ndarray:
        """A mask of the items a list may contain."""
        mask = np.ones(len(self.items), dtype=bool)
        if kinds:
            wanted = {k.lower() for k in kinds}
            mask &= np.array([item.kind in wanted for item in self.items], dtype=bool)
        if tags:
            wanted = {t.lower() for t in tags}
            mask &= np.array([any(t.lower() in wanted for t in item.tags) for item in self.items], dtype=bool)
        for item_id in exclude:
            if item_id in self.position:
                mask[self.position[item_id]] = False
        return mask

    def select(self, scores: np.ndarray, n: int, mask: np.ndarray | None = None,
               explore: np.ndarray | None = None) -> list[tuple[int, bool]]:
        """Pick ``n`` items from one user's scores: MMR for variety, some slots for novel items.

        ``explore`` ranks the novel items (default: ``scores``). Returns ``(item index,
        chosen as exploration)`` pairs in list order.
        """
        cfg = self.config
        scores = scores if mask is None else np.where(mask, scores, -np.inf)
        explore = scores if explore is None else np.where(np.isfinite(scores), explore, -np.inf)
        available = int(np.isfinite(scores).sum())
        n = min(n, available)
        if n <= 0:
            return []
        pool_size = min(available, max(cfg.pool, 3 * n))
        pool = np.argpartition(-scores, pool_size - 1)[:pool_size]
        pool = pool[np.argsort(-scores[pool], kind="stable")]
        explore_slots = _exploration_slots(n, cfg.exploration) if self.has_counts else set()
        novel_pool: list[int] = []
        if explore_slots:
            candidates = np.flatnonzero((self.counts < cfg.novel_below) & np.isfinite(explore))
            novel_pool = list(candidates[np.argsort(-explore[candidates], kind="stable")][:len(explore_slots) + n])
        if cfg.diversity <= 0 and not novel_pool:
            return [(int(k), False) for k in pool[:n]]
        rel = scores[pool]
        rel = (rel - rel.min()) / (rel.max() - rel.min() or 1.0)
        vectors = self.vectors[pool]
        max_sim = np.full(len(pool), -1.0, dtype=np.float32)
        taken = np.zeros(len(pool), dtype=bool)
        slot_of = {int(k): s for s, k in enumerate(pool)}
        chosen: list[tuple[int, bool]] = []
        picked: set[int] = set()
        for slot in range(1, n + 1):
            novel = next((k for k in novel_pool if k not in picked), None) if slot in explore_slots else None
            if novel is not None:
                k, exploring = int(novel), True
            else:
                mmr = (1 - cfg.diversity) * rel - cfg.diversity * np.maximum(max_sim, 0.0)
                mmr[taken] = -np.inf
                s = int(np.argmax(mmr))
                if not np.isfinite(mmr[s]):
                    break
                k, exploring = int(pool[s]), False
            chosen.append((k, exploring))
            picked.add(k)
            if k in slot_of:
                taken[slot_of[k]] = True
            max_sim = np.maximum(max_sim, vectors @ self.vectors[k])
        return chosen

    def rank(self, histories: Sequence[Taste], n: int = 10, *, mask: np.ndarray | None = None) -> list[list[int]]:
        """Item indices of each user's list (the benchmark's entry point)."""
        scores = self.score(histories)
        return [[k for k, _ in self.select(scores.total[u], n, mask, scores.explore[u])] for u in range(len(histories))]

    def recommend_for(self, history: Taste, n: int = 10, *, kinds: Iterable[str] | None = None,
                      tags: Iterable[str] | None = None, exclude: Iterable[str] = ()) -> list[Recommendation]:
        """A list for one history, each item with its reason."""
        self._load()
        if self.large:
            return self.large.subset(history).recommend_for(history, n, kinds=kinds, tags=tags, exclude=exclude)
        if not self.items or n <= 0:
            return []
        scores = self.score([history])
        picks = self.select(scores.total[0], n, self.allowed(kinds=kinds, tags=tags, exclude=exclude), scores.explore[0])
        row = scores.weights.getrow(0)
        return [self._explain(scores, history, row, k, exploring) for k, exploring in picks]

    def recommend(self, vault: Vault, n: int = 10, *, kinds: Iterable[str] | None = None,
                  tags: Iterable[str] | None = None, interests: str | None = None, engine: Any = None,
                  use_profile: bool = True) -> Recommendations:
        """Recommend ``n`` items to the owner of ``vault``.

        ``interests`` replaces the stored interests for this call (cold start from a short
        text). ``engine``: a local LLM (:class:`localpers.llm.Engine`) to phrase the reasons.
        ``use_profile``: let the minimally chosen profile facts nudge the list (see
        :meth:`profile_facts`); the returned list's ``disclosure`` says which were used
        and which withheld.
        """
        history = self.taste(vault, interests=interests)
        # The stored interests and profile text feed the interests signal: reported as used, always.
        read = interest_facts(vault) if interests is None and self.config.interests else []
        disclosure = self.profile_facts(vault, history, public=read) if use_profile else None
        recs = Recommendations(self.recommend_for(history, n, kinds=kinds, tags=tags), disclosure)
        if engine is not None:
            phrase_reasons(recs, self.catalog, engine)
        return recs

    def classic_share(self, history: Taste) -> float | None:
        """Share of the user's well-rated dated items that are classics (the ``classic_share`` fact).

        Well-rated: liked, or 4 stars and up (the latest explicit signal on an item counts).
        Classics: released :data:`CLASSIC_YEARS` or more years before the newest item in the
        catalog. None when fewer than :data:`MIN_DATED_LIKES` such items have a year.
        """
        self._load()
        latest: dict[str, tuple[bool, float]] = {}  # item -> (explicit, weight)
        for event in history.events:
            explicit = event.signal in EXPLICIT
            if explicit or not latest.get(event.item, (False, 0.0))[0]:
                latest[event.item] = (explicit, self.config.signal_weight(event))
        fits = [self.classic[self.position[i]] for i, (_, w) in latest.items() if w > 0.5 and i in self.position]
        dated = [f for f in fits if f != 0]
        return round(sum(f > 0 for f in dated) / len(dated), 3) if len(dated) >= MIN_DATED_LIKES else None

    def profile_facts(self, vault: Vault, history: Taste, *, public: Iterable[str] = (),
                      record: bool = True) -> "FactSelection | None":
        """Choose the profile facts for this request and settle ``history.era`` from them.

        Keeps the derived ``classic_share`` fact in the vault up to date, then lets
        :func:`localpers.disclosure.choose_profile_facts` pick the fewest facts that fix
        the ``recommendation-era`` decision (recent or classic). When it is settled,
        ``history.era`` is set and the scores get the ``era`` nudge. ``public``: facts the
        request uses anyway (the interest text), reported as used. With ``record``, a
        choice that used facts goes to the disclosure ledger, once per distinct choice
        per day (a list is recomputed after every like; repeating the entry adds nothing).
        Returns None when the catalog's items have no years (nothing to decide).
        """
        self._load()
        if not self.has_eras:
            return None
        set_fact(vault, "classic_share", self.classic_share(history))
        # Only stored facts: the derived writing facts (formality) say nothing about eras.
        chosen = choose_profile_facts(vault, "recommendation", decision="recommendation-era", recipient=RECIPIENT,
                                      public=public, facts=stored_facts(vault, derive=False), record=False)
        history.era = chosen.decision if chosen.guaranteed else None
        if record and chosen.used:
            chosen.ledger_id = _record_once_a_day(vault, chosen)
        return chosen

    # ------------------------------------------------------------------ reasons

    def _explain(self, scores: Scores, history: Taste, row: sparse.csr_matrix, k: int,
                 exploring: bool) -> Recommendation:
        cfg = self.config
        item = self.items[k]
        parts = {name: getattr(cfg, name) * float(values[0, k]) for name, values in scores.parts.items()
                 if getattr(cfg, name)}
        mine, w = row.indices, row.data
        # Each of the user's items' share of this item's score, in the same units as the blend.
        share = np.zeros(len(mine), dtype=np.float32)
        if len(mine) and "collaborative" in scores.parts:
            column = self.model[mine, k]
            column = column.toarray().ravel() if sparse.issparse(column) else np.asarray(column).ravel()
            share += cfg.collaborative * w * column / scores.scale["collaborative"][0]
        if len(mine) and "content" in scores.parts:
            sims = np.clip(self.vectors[mine] @ self.vectors[k], 0.0, None) ** cfg.content_sharpness
            share += cfg.content * w * sims / scores.scale["content"][0]
        because, reason = None, ""
        if len(mine) and share.max() > 0:
            top = int(mine[int(np.argmax(share))])
            because = self.ids[top]
            reason = f"Because you {_verb(history, because, cfg)} {self.items[top].title}"
        elif len(mine) and exploring:
            positive = mine[w > 0]
            if len(positive):
                top = int(positive[int(np.argmax(self.vectors[positive] @ self.vectors[k]))])
                because = self.ids[top]
                reason = f"Because you {_verb(history, because, cfg)} {self.items[top].title}"
        if not reason and parts.get("interests", 0.0) > 0:
            reason = f"Matches your interests: {_closest_interest(history.interests, self, k)}"
        if not reason:
            reason = "Popular with other people" if self.has_counts and self.counts[k] >= cfg.novel_below else \
                "A varied pick to start with: rate a few items and the list adapts"
        if exploring:
            reason += " (something new: few people have rated it yet)"
        return Recommendation(item, float(scores.total[0, k]), reason, because, parts, exploring)


def item_years(items: Iterable[Item]) -> np.ndarray:
    """:func:`item_year` of each item as floats, NaN where an item has none."""
    return np.array([np.nan if (y := item_year(item)) is None else y for item in items], dtype=np.float64)


@dataclass
class ScanArrays:
    """What a full-scan Recommender needs of a catalog, cached as memory-mapped ``.npy`` files.

    Stored in ``<catalog folder>/scan/<catalog version>/``: item ids, unit vectors (float32,
    catalog order), item years, the item model aligned to catalog order (CSR arrays) and
    popularity counts. All public catalog data. Made once after each catalog change (import,
    embedding, model install), so a later process maps them in milliseconds instead of
    parsing every item, restoring the usearch index and re-aligning the model.
    """

    version: str
    ids: list[str]
    vectors: np.ndarray
    years: np.ndarray
    weights: sparse.csr_matrix | None
    counts: np.ndarray

    @classmethod
    def load(cls, catalog: Catalog) -> "ScanArrays":
        version = catalog.refresh_version()
        root = catalog.folder / "scan"
        folder = root / version
        if not (folder / "ids.npy").exists():
            root.mkdir(exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
            cls._write(catalog, tmp)
            try:
                os.rename(tmp, folder)  # atomic: readers see all the files or none
            except OSError:  # another process wrote the same version first
                shutil.rmtree(tmp, ignore_errors=True)
            for old in root.iterdir():  # earlier versions (open maps of them stay valid)
                if old.name != version and not old.name.startswith(".tmp-"):
                    shutil.rmtree(old, ignore_errors=True)

        def load(name: str) -> np.ndarray:
            return np.load(folder / f"{name}.npy", mmap_mode="r")

        weights = None
        if (folder / "indptr.npy").exists():
            n = len(load("counts"))
            weights = sparse.csr_matrix((load("data"), load("indices"), load("indptr")), shape=(n, n), copy=False)
        return cls(version, load("ids").tolist(), load("vectors"), np.asarray(load("years")), weights,
                   np.asarray(load("counts")))

    @staticmethod
    def _write(catalog: Catalog, folder: Path) -> None:
        items = list(catalog.items())
        ids = [item.id for item in items]
        vectors = catalog.matrix() if items else np.zeros((0, 384), dtype=np.float32)
        model = catalog.item_model
        counts = np.zeros(len(items), dtype=np.int64)
        arrays = {"ids": np.array(ids, dtype=str), "vectors": vectors, "years": item_years(items)}
        if model is not None and items:
            weights, counts = model.aligned(ids)
            arrays.update(data=weights.data.astype(np.float32), indices=weights.indices, indptr=weights.indptr)
        arrays["counts"] = counts
        for name, array in arrays.items():
            np.save(folder / f"{name}.npy", array)


def item_year(item: Item) -> int | None:
    """The year an item came out (its ``year`` or ``release_year`` attribute), or None.

    Example::

        >>> item_year(Item("m1", "Metropolis", "film", "", (), {"year": "1927"}))
        1927
    """
    for key in ("year", "release_year"):
        year = year_of(item.attrs.get(key))
        if year is not None:
            return year
    return None


def _record_once_a_day(vault: Vault, chosen: "FactSelection") -> int:
    """The ledger entry for this choice: today's identical one if there is one, else a new one."""
    revealed = json.loads(json.dumps(chosen.used, default=str))
    for entry in ledger_entries(vault, since=coarse_time()):
        if (entry.purpose == chosen.purpose and entry.recipient == chosen.recipient and entry.revealed == revealed
                and entry.withheld == chosen.withheld and entry.decision.get("label") == chosen.decision):
            return entry.id
    return record(vault, chosen.disclosure, purpose=chosen.purpose, recipient=chosen.recipient,
                  decision_name=chosen.decision_name, revealed=chosen.used, withheld=chosen.withheld)


def _heaviest(weights: sparse.csr_matrix, k: int) -> sparse.csr_matrix:
    """Each row's ``k`` largest-magnitude entries (rows with fewer are kept whole)."""
    if not len(weights.indptr) or np.diff(weights.indptr).max(initial=0) <= k:
        return weights
    rows = []
    for u in range(weights.shape[0]):
        row = weights.getrow(u).tocoo()
        if row.nnz > k:
            keep = np.argpartition(-np.abs(row.data), k)[:k]
            row = sparse.coo_matrix((row.data[keep], (row.row[keep], row.col[keep])), shape=row.shape)
        rows.append(row)
    return sparse.vstack(rows).tocsr()


def _standardize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = values.mean(axis=1, keepdims=True)
    sd = values.std(axis=1, keepdims=True)
    safe = np.where(sd > 1e-12, sd, 1.0)
    z = np.where(sd > 1e-12, (values - mean) / safe, 0.0).astype(np.float32)
    return z, safe.ravel()


def _exploration_slots(n: int, share: float) -> set[int]:
    """1-based positions for novel items: one every 1/share slots (share 0.1, n=10: slot 10)."""
    if share <= 0:
        return set()
    return {s for s in range(1, n + 1) if int(s * share + 1e-9) > int((s - 1) * share + 1e-9)}


def _verb(history: Taste, item_id: str, cfg: RecommenderConfig) -> str:
    last = next((e for e in reversed(history.events) if e.item == item_id and e.signal in EXPLICIT), None)
    if last is None:
        last = next((e for e in reversed(history.events) if e.item == item_id), None)
    if last is None:
        return "chose"
    if last.signal == "like" or (last.signal == "rating" and cfg.signal_weight(last) >= cfg.stars[3]):
        return "liked"
    return {"read": "read", "click": "looked at", "rating": "rated", "interaction": "chose"}.get(last.signal, "chose")


def _closest_interest(text: str, rec: Recommender, k: int) -> str:
    phrases = [p.strip() for p in text.replace("\n", ";").split(";") if p.strip()]
    phrases = [p for chunk in phrases for p in chunk.split(",") if p.strip()] or [text.strip()]
    if len(phrases) == 1:
        return _clip(phrases[0].strip())
    sims = rec.embedder.encode([p.strip() for p in phrases]) @ rec.vectors[k]
    return _clip(phrases[int(np.argmax(sims))].strip())


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


# A few-shot pattern works with base models (the default writer) and instruct models alike.
_REASON_SHOTS = """Liked: Moby-Dick (sea story, adventure, obsession)
Suggested: Treasure Island (adventure, pirates, sea story)
Why: Since you liked Moby-Dick, here is another voyage at sea, this time with pirates and buried gold.

Liked: Emma (romance, comedy of manners)
Suggested: Pride and Prejudice (romance, comedy of manners, regency)
Why: Since you liked Emma, you will enjoy more of Austen's sharp courtship comedy.

"""


def phrase_reasons(recs: list[Recommendation], catalog: Catalog, engine: Any, *, max_tokens: int = 30) -> None:
    """Rephrase each reason with the local LLM, keeping it grounded in the user's own item.

    The sentence is forced to start with "Since you liked <the user's item>," and the
    model only completes it; a completion that is empty, runs on, or drifts into another
    note is dropped and the template reason stays. The engine is local: nothing leaves
    the machine.
    """
    for rec in recs:
        anchor = catalog.get(rec.because) if rec.because else None
        if anchor is None:
            continue
        head = f"Since you liked {anchor.title},"
        prompt = (f"{_REASON_SHOTS}Liked: {anchor.title} ({', '.join(anchor.tags[:3])})\n"
                  f"Suggested: {rec.item.title} ({', '.join(rec.item.tags[:3])})\nWhy: {head}")
        tail = engine.complete(prompt, max_tokens=max_tokens, temperature=0.0, stop=["\n"]).strip()
        if 3 <= len(tail) <= 160 and not any(word in tail for word in ("Liked:", "Suggested:", "Why:")):
            rec.reason = f"{head} {tail}" if tail[-1] in ".!?" else f"{head} {tail}."


def tuned(config: RecommenderConfig, **changes: Any) -> RecommenderConfig:
    """A copy of ``config`` with some fields changed (for tuning loops)."""
    return replace(config, **changes)

"""The textual user profile: a short, editable summary of the user's tastes.

It is built on this machine from the vault (what the user liked and disliked in
catalogs, what they said they are interested in, what they write about), stored
sealed in the vault, and used twice: the recommender reads it as interest text, and
the writer can put it in its prompts.

Storage: rows of ``vault.features`` (both columns sealed):

- ``name = "profile_summary"``, ``value = {"text": str, "edited": bool, "source": "template"|"llm"|"user"}``;
- ``name = "interests"``, ``value = [str, ...]`` (what the user said they like);
- other profile facts, one row each: ``name`` = the fact (``"age"``, ``"occupation"``),
  ``value`` = a number or a text; see :func:`set_fact`. The recommender keeps a derived
  ``classic_share`` here. Which facts a prompt or request gets is decided by
  :func:`localpers.disclosure.choose_profile_facts`, never by pasting them all.

A profile the user edited is never overwritten by :func:`update_profile` unless forced.

Example::

    >>> from localpers.profile import build_profile, set_profile, get_profile
    >>> print(build_profile(vault))                            # doctest: +SKIP
    Enjoys: gothic, horror, silent film (from 6 liked items).
    Recently liked: Nosferatu, Dracula, Frankenstein.
    >>> set_profile(vault, "Gothic novels and silent films; no romance.")   # doctest: +SKIP
    >>> get_profile(vault)                                     # doctest: +SKIP
    'Gothic novels and silent films; no romance.'
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING, Any

from .errors import LocalpersError
from .feedback import SignalWeights, read_events
from .vault import coarse_time

if TYPE_CHECKING:
    from .vault import Vault

PROFILE = "profile_summary"
INTERESTS = "interests"
MAX_PROFILE_CHARS = 2000
_NOT_KEEN = "Not keen on:"
_WORD = re.compile(r"[a-zA-Z][a-zA-Z'-]{3,}")
# Words every message has; they say nothing about what the user cares about.
_MAIL_WORDS = frozenset("""thanks thank hello dear best regards cheers morning afternoon evening week today
tomorrow yesterday monday tuesday wednesday thursday friday saturday sunday just like know think want need
going good great sure maybe also really could would should please let's will can't don't i'm i've i'll
that's there's it's we're you're they're sent from re fwd message email mail attached attachment
time bring place thing things make take come look back still next soon later lots bit""".split())


# ---------------------------------------------------------------------- stored values


def _feature(vault: Vault, name: str) -> dict | None:
    for row in vault.features.rows(columns=["name"]):
        if row["name"] == name:
            return vault.features.get(row["id"])
    return None


def _put_feature(vault: Vault, name: str, value: Any) -> None:
    row = _feature(vault, name)
    if row is None:
        vault.features.insert({"name": name, "value": value, "updated": coarse_time()})
    else:
        vault.features.update(row["id"], {"value": value, "updated": coarse_time()})


def get_fact(vault: Vault, name: str) -> Any:
    """One stored profile fact's value (None when there is none)."""
    row = _feature(vault, name)
    return row["value"] if row else None


def set_fact(vault: Vault, name: str, value: Any) -> bool:
    """Store one profile fact (``value`` None removes it); returns whether anything changed.

    An unchanged value is not written again, so callers may set derived facts on every use.

    Example::

        >>> set_fact(vault, "age", 38)                      # doctest: +SKIP
        True
        >>> set_fact(vault, "age", 38)                      # doctest: +SKIP
        False
    """
    row = _feature(vault, name)
    if value is None:
        return bool(row) and vault.features.delete(row["id"])
    if row is not None and row["value"] == value:
        return False
    _put_feature(vault, name, value)
    return True


def get_profile(vault: Vault) -> str:
    """The stored profile text ("" when there is none yet). This is what the writer reads."""
    row = _feature(vault, PROFILE)
    value = row["value"] if row else None
    return value.get("text", "") if isinstance(value, dict) else ""


def profile_info(vault: Vault) -> dict:
    """The stored profile with how it was made: ``{"text", "edited", "source"}``."""
    row = _feature(vault, PROFILE)
    value = row["value"] if row and isinstance(row["value"], dict) else {}
    return {"text": value.get("text", ""), "edited": bool(value.get("edited")), "source": value.get("source", "")}


def set_profile(vault: Vault, text: str) -> None:
    """Store the user's own version of their profile (kept until they change it)."""
    text = text.strip()
    if len(text) > MAX_PROFILE_CHARS:
        raise LocalpersError(f"the profile is {len(text)} characters; keep it under {MAX_PROFILE_CHARS}")
    _put_feature(vault, PROFILE, {"text": text, "edited": True, "source": "user"})


def get_interests(vault: Vault) -> list[str]:
    row = _feature(vault, INTERESTS)
    return [str(v) for v in row["value"]] if row and isinstance(row["value"], list) else []


def set_interests(vault: Vault, interests: list[str] | str) -> list[str]:
    """Store stated interests (a list, or one comma/semicolon-separated string)."""
    if isinstance(interests, str):
        interests = re.split(r"[;,\n]", interests)
    clean = list(dict.fromkeys(i.strip() for i in interests if i and i.strip()))
    _put_feature(vault, INTERESTS, clean)
    return clean


def interest_text(vault: Vault) -> str:
    """What the recommender reads as the user's interests: stated interests, then the profile text.

    The generated "Not keen on:" line is left out: an embedding cannot read negation, so
    "not keen on romance" would pull romance *towards* the user. Dislikes reach the
    recommender as interactions instead.
    """
    parts = get_interests(vault)
    profile = "\n".join(line for line in get_profile(vault).splitlines() if not line.startswith(_NOT_KEEN))
    return "; ".join([*parts, profile.strip()] if profile.strip() else parts)


def interest_facts(vault: Vault) -> list[str]:
    """The names of the stored facts :func:`interest_text` reads (those that are not empty)."""
    names = [INTERESTS] if get_interests(vault) else []
    return names + ([PROFILE] if get_profile(vault).strip() else [])


# ---------------------------------------------------------------------- building


def build_profile(vault: Vault, *, catalog: Any = None, engine: Any = None, max_titles: int = 5) -> str:
    """Summarize the user's tastes from their vault in a few lines (nothing is stored).

    Deterministic from the data; with ``engine`` (a local :class:`localpers.llm.Engine`,
    ideally the instruct model) the lines are rephrased as prose, and the template is
    kept whenever the rephrasing drops the user's top tastes.
    """
    cfg = SignalWeights()
    events = read_events(vault)
    info: dict[str, dict] = {}
    for row in vault.interactions.rows(columns=["item", "metadata"]):
        meta = row.get("metadata")
        if isinstance(meta, dict) and row.get("item") is not None:
            info[str(row["item"])] = meta
    latest: dict[str, float] = {}
    for event in events:  # the latest signal on an item is what the user thinks of it now
        latest[event.item] = cfg.signal_weight(event)
    liked = [i for i, w in latest.items() if w > 0.5]
    disliked = [i for i, w in latest.items() if w < 0]

    def describe(item_id: str) -> tuple[str, list[str]]:
        meta = info.get(item_id, {})
        title, tags = meta.get("title"), list(meta.get("tags") or [])
        if catalog is not None and (title is None or not tags):
            item = catalog.get(item_id)
            if item is not None:
                title, tags = title or item.title, tags or list(item.tags)
        return title or item_id, tags

    lines = []
    if liked:
        tags = Counter(t.lower() for i in liked for t in describe(i)[1])
        top = [t for t, _ in tags.most_common(6)]
        lines.append(f"Enjoys: {', '.join(top)} (from {len(liked)} liked items)." if top else
                     f"Has liked {len(liked)} items.")
        recent = [describe(i)[0] for i in reversed(liked)][:max_titles]
        lines.append(f"Recently liked: {', '.join(recent)}.")
    if disliked:
        liked_tags = {t.lower() for i in liked for t in describe(i)[1]}
        tags = Counter(t.lower() for i in disliked for t in describe(i)[1] if t.lower() not in liked_tags)
        avoid = [t for t, _ in tags.most_common(4)] or [describe(i)[0] for i in disliked[-3:]]
        lines.append(f"{_NOT_KEEN} {', '.join(avoid)}.")
    interests = get_interests(vault)
    if interests:
        lines.append(f"Interested in: {', '.join(interests)}.")
    writing = _writing_summary(vault)
    if writing:
        lines.append(writing)
    text = "\n".join(lines)
    if engine is not None and text:
        text = _polish(text, engine, must_keep=[*(describe(i)[0] for i in liked[-2:]), *interests[:2]])
    return text


def update_profile(vault: Vault, *, catalog: Any = None, engine: Any = None, force: bool = False) -> str:
    """Rebuild and store the profile, unless the user edited it (``force`` rebuilds anyway)."""
    current = profile_info(vault)
    if current["edited"] and not force:
        return current["text"]
    text = build_profile(vault, catalog=catalog, engine=engine)
    _put_feature(vault, PROFILE, {"text": text, "edited": False, "source": "llm" if engine else "template"})
    return text


def _writing_summary(vault: Vault, limit: int = 300) -> str:
    """Which kinds of texts the user keeps and the words that recur across them."""
    kinds = {r["kind"]: r["n"] for r in vault.db.query(
        "select kind, count(*) n from items group by kind order by n desc")}
    if not kinds:
        return ""
    # deferred: scikit-learn takes seconds to import; only the interest summary needs its stop words
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    docs: Counter = Counter()
    lowercase: set[str] = set()
    n_docs = 0
    for row in vault.items.rows(order_by="created desc, id", limit=limit, columns=["content"]):
        content = row.get("content")
        words = _WORD.findall(content if isinstance(content, str) else str(content or ""))
        docs.update(dict.fromkeys(w.lower() for w in words).keys())  # in text order: ties break the same each run
        lowercase.update(w for w in words if w.islower())
        n_docs += 1
    # Words only ever capitalized are names (people, the user's own signature), and words in
    # most texts are greetings and sign-offs: neither says what the user writes about.
    common = [w for w, c in docs.most_common(300)
              if 2 <= c <= max(2, n_docs // 3) and w in lowercase and w not in ENGLISH_STOP_WORDS
              and w not in _MAIL_WORDS][:8]
    kinds_text = ", ".join(f"{kind or 'texts'} ({n})" for kind, n in list(kinds.items())[:4])
    return f"Keeps {kinds_text}" + (f", often about: {', '.join(common)}." if common else ".")


_PROFILE_SHOTS = """Notes:
Enjoys: sea story, adventure, pirates (from 5 liked items).
Recently liked: Treasure Island, Moby-Dick, Robinson Crusoe.
Profile: You love adventure at sea, from the pirates of Treasure Island to Moby-Dick and Robinson Crusoe.

Notes:
Enjoys: detective, mystery (from 3 liked items).
Recently liked: The Moonstone, The Hound of the Baskervilles.
Interested in: chess.
Profile: You enjoy a good detective mystery such as The Moonstone or The Hound of the Baskervilles, and you are curious about chess.

"""


def _polish(text: str, engine: Any, *, must_keep: list[str]) -> str:
    # Few-shot completion: works with the base writer model as well as an instruct model.
    # Small models invent freely, so the prose is kept only if it still names the user's top items.
    prompt = f"{_PROFILE_SHOTS}Notes:\n{text}\nProfile: You"
    polished = "You" + engine.complete(prompt, max_tokens=120, temperature=0.0, stop=["\n"]).rstrip()
    keeps = all(k.lower() in polished.lower() for k in must_keep if k)
    return polished if len(polished) > 10 and keeps and len(polished) <= MAX_PROFILE_CHARS else text

"""Data playback: instruction checks, the extractive fallback, the real SmolLM2 model, the sealed cache."""

from __future__ import annotations

import threading

import pytest

from localpers.writing.playback import (
    Instruction,
    PlaybackConfig,
    cache_key,
    cached_instruction,
    fallback_instruction,
    key_phrases,
    longest_shared_run,
    make_instruction,
    playback,
    validate,
)
from localpers.vault import Vault

TEXTS = [
    "Hi Jonas,\n\nCould you send me the slides from Tuesday's workshop? I want to reuse the chart on page 4 "
    "for the board update.\n\nCheers,\nMara",
    "Dear Ms. Okafor,\n\nThank you for the invitation to speak in Lisbon. Sadly I am travelling that week, but "
    "I would be glad to join remotely if that helps.\n\nKind regards,\nMara",
    "Hi team,\n\nThe release moves to Friday because the payment tests failed again. Please keep Thursday "
    "afternoon free for a last check.\n\nCheers,\nMara",
]


@pytest.fixture
def vault(home):
    v = Vault.create("mara", "pw", kdf_seconds=0)
    yield v
    v.close()


@pytest.fixture(scope="module")
def smollm():
    from localpers.llm import Engine

    return Engine.shared("smollm2-135m-instruct")


# ---------------------------------------------------------------------- checks without a model


def test_validate_accepts_a_good_instruction():
    good = "Write an email to Jonas asking for the slides from the workshop."
    assert validate(good, TEXTS[0]) is None


@pytest.mark.parametrize("bad, why", [
    ("Hi Jonas,", "too short"),
    ("Write an email to Jonas.\nThen another.", "more than one line"),
    ("Write one. Write two. Write three. Write four.", "sentences"),
    ("Write an email to Jonas asking for the slides", "unfinished"),
    ("Jonas needs to send the slides from Tuesday.", "instruction verb"),
    ("Write: could you send me the slides from Tuesday's workshop? I want to reuse the chart.", "in a row"),
    ("Write an email to Petra asking for the slides.", "names what the text does not"),
    ('Write an email saying "Could you send me the slides".', "quotes"),
    ("Write an email. Subject: slides.", "prompt label"),
])
def test_validate_rejects_with_a_reason(bad, why):
    reason = validate(bad, TEXTS[0])
    assert reason is not None and why in reason


def test_longest_shared_run_counts_consecutive_words():
    assert longest_shared_run("a b c d".split(), "x a b c y".split()) == 3
    assert longest_shared_run("a b".split(), "c d".split()) == 0


def test_fallback_is_deterministic_valid_and_uses_recipient_and_subject():
    with_subject = fallback_instruction(TEXTS[0], subject="Re: Workshop slides")
    assert with_subject == "Write a short reply to Jonas about 'Workshop slides'."
    without = fallback_instruction(TEXTS[2])
    assert without == fallback_instruction(TEXTS[2])
    assert without.startswith("Write a short email")
    for text in TEXTS:
        assert validate(fallback_instruction(text), text) is None
    assert key_phrases("budget budget review review review deadline") == ["review", "budget", "deadline"]


# ---------------------------------------------------------------------- the real model


@pytest.mark.model
def test_model_instructions_pass_validation(smollm):
    made = [make_instruction(t, smollm) for t in TEXTS]
    assert all(isinstance(m, Instruction) for m in made)
    for instruction, text in zip(made, TEXTS):
        assert validate(instruction.text, text) is None
        assert instruction.source in ("model", "fallback")
    # The small model manages at least one of these plain emails on its own.
    assert any(m.source == "model" for m in made)


@pytest.mark.model
def test_a_model_that_cannot_comply_falls_back(smollm):
    # One token is never a valid instruction: every attempt fails, the fallback answers.
    config = PlaybackConfig(max_tokens=1, attempts=2)
    made = make_instruction(TEXTS[1], smollm, subject="Invitation to Lisbon", config=config)
    assert made.source == "fallback" and made.attempts == 2
    assert made.text == "Write a short email to Ms. Okafor about 'Invitation to Lisbon'."


@pytest.mark.model
def test_playback_caches_sealed_instructions(vault, smollm):
    seen = []
    first = playback(vault, TEXTS[:2], smollm, progress=lambda d, t, m: seen.append((d, t)))
    assert seen[-1] == (2, 2)
    assert vault.cache.count("kind = ?", ["instruction"]) == 2
    # Cached: no engine is needed the second time, and the answer is the same.
    again = playback(vault, TEXTS[:2], engine=None)
    assert [a.text for a in again] == [f.text for f in first]
    assert cached_instruction(vault, TEXTS[0]).text == first[0].text
    # The cache key reveals nothing; the value is sealed.
    raw = vault.db.execute("select key, value from cache").fetchall()
    assert all(TEXTS[0][:20] not in str(k) for k, _ in raw)
    assert all(first[0].text.encode() not in v for _, v in raw)
    assert cache_key(vault, TEXTS[0]).startswith("instruction:")


@pytest.mark.model
def test_playback_stops_when_cancelled(vault, smollm):
    cancel = threading.Event()
    out = playback(vault, TEXTS, smollm, progress=lambda d, t, m: cancel.set(), cancel=cancel)
    assert out[0] is not None and out[1:] == [None, None]
    assert vault.cache.count("kind = ?", ["instruction"]) == 1


def test_playback_rejects_empty_items(vault):
    from localpers.errors import LocalpersError

    with pytest.raises(LocalpersError, match="empty"):
        playback(vault, [{"content": "  "}], engine=None)

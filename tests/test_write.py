"""Writing in the user's style: retrieval, style summary, the four modes, saving, cold start, the CLI.

These run without an adapter (the cold start); writing with a trained adapter is covered by
tests/test_train.py's end-to-end test.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from localpers.cli import main
from localpers.errors import LocalpersError
from localpers.history import History
from localpers.llm import Engine
from localpers.vault import Vault
from localpers.writing.context import (adapter_readiness, has_fact, key_facts, readiness_message, retrieve,
                                      style_summary)
from localpers.writing.writer import COLD_START_MODEL, Writer
from support import MARA_TEXTS as TEXTS



@pytest.fixture(scope="module")
def engine():
    return Engine.shared("gemma3-270m")


@pytest.fixture
def vault(home):
    v = Vault.create("mara", "pw", kdf_seconds=0)
    History(v).add_texts(TEXTS, kind="email")
    yield v
    v.close()


def test_style_summary_reads_greeting_sign_off_and_length():
    line = style_summary(TEXTS)
    assert line.startswith('Opens with "Hi <name>,"') and 'signs off "Cheers, Mara"' in line
    assert "words" in line and style_summary([]) == ""
    assert "Opens with" not in style_summary(["plain note one about stuff", "another plain note here"])


def test_readiness_counts_what_an_adapter_still_needs(vault):
    assert adapter_readiness(vault) == (5, 45)
    assert readiness_message(vault).startswith("45 more texts needed for a personal adapter")
    assert adapter_readiness(vault, min_texts=5) == (5, 0)


def test_retrieve_never_returns_the_excluded_text(vault):
    history = History(vault)
    hits = retrieve(history, "release moved to Friday, payment tests", 3)
    assert hits and "release moves to Friday" in hits[0].text
    kept = retrieve(history, "release moved to Friday, payment tests", 3, exclude_texts=[TEXTS[2]])
    assert all("release moves" not in h.text for h in kept) and len(kept) == 3
    by_id = retrieve(history, "release moved to Friday", 4, exclude_ids={hits[0].item_id})
    assert hits[0].item_id not in {h.item_id for h in by_id}


def test_key_facts_are_names_numbers_days_and_addresses_not_sentence_openers():
    text = ("Hi Tom,\n\nCan we move the review with Priya Shah to Thu 3:30pm in Oslo? Budget is 2,500.\n"
            "Sure. March 4 works, see https://x.org/a or mail ann@x.org.\n\nBest,\nMara")
    assert key_facts(text) == ["Tom", "Priya", "Shah", "Thu", "3:30pm", "Oslo", "2,500", "March", "4",
                               "https://x.org/a", "ann@x.org"]
    assert key_facts("Thank the team for the launch.") == []  # an opening capital is not a name
    assert has_fact("see you at 3:30 PM on thursday", "3:30pm") and not has_fact("Oslofjord", "Oslo")


@pytest.mark.model
def test_a_fresh_vault_gets_a_draft_that_carries_the_instructions_name_and_day(home, engine):
    """No adapter, no history: the cold-start writer (instruction-tuned, chat template) writes."""
    fresh = Vault.create("new", "pw", kdf_seconds=0)
    try:
        writer = Writer(fresh, engine=engine)
        assert writer.adapter is None and writer.chat_engine is Engine.shared(COLD_START_MODEL)
        draft = writer.compose("Thank Priya for the launch and propose drinks on Friday", max_tokens=120,
                               min_tokens=40)
        text = draft.result()
        assert len(text.split()) >= 20 and draft.adapter is None and not draft.examples
        assert "<|im_start|>assistant" in draft.prompt  # the model's own chat template
        assert has_fact(text, "Priya") and has_fact(text, "Friday"), text
    finally:
        fresh.close()


@pytest.mark.model
def test_without_cold_start_the_writer_keeps_the_plain_prompt(vault, engine):
    writer = Writer(vault, engine=engine, cold_start=False)
    assert writer.chat_engine is None
    draft = writer.compose("Tell Sam the room is booked.", max_tokens=8)
    assert draft.prompt.endswith("Email:\n") and "<|im_start|>" not in draft.prompt


@pytest.mark.model
def test_cold_start_compose_personalizes_through_examples_and_style(vault, engine):
    writer = Writer(vault, engine=engine)
    assert writer.adapter is None and "45 more texts needed" in writer.notice
    draft = writer.compose("Tell Sam the meeting room is booked for Tuesday.", max_tokens=30,
                           facts=["Works in Oslo"], available_facts=["Works in Oslo", "Age 41"])
    pieces = list(draft)
    assert pieces and draft.finished and draft.text == "".join(pieces).rstrip()
    assert draft.examples and any("meeting room" in e.text for e in draft.examples)
    assert "Examples of my writing" in draft.prompt and "About my writing: Opens with" in draft.prompt
    assert "About me: Works in Oslo" in draft.prompt and "Age 41" not in draft.prompt
    assert draft.facts_used == ["Works in Oslo"] and draft.facts_withheld == ["Age 41"]
    assert all("Instruction:" not in p for p in pieces)  # stops before another prompt block


@pytest.mark.model
def test_the_prompt_gets_only_the_facts_minimal_disclosure_picks(vault, engine):
    from localpers.disclosure import ledger_entries
    from localpers.profile import set_fact

    set_fact(vault, "age", 52)
    set_fact(vault, "occupation", "lawyer")
    set_fact(vault, "home_city", "Oslo")
    writer = Writer(vault, engine=engine, use_examples=False)
    draft = writer.compose("Thank Sam for the budget.", max_tokens=5)
    # Mara's mails all open "Hi" and close "Cheers": her derived formality alone settles a casual tone,
    # so the age and occupation (which lean formal) stay in the vault, as does a fact no decision uses.
    assert draft.facts_used == ["formality"]
    assert set(draft.facts_withheld) == {"age", "occupation", "home_city"}
    assert "About me: formality: 0; Write in a casual tone." in draft.prompt
    assert not any(secret in draft.prompt for secret in ("52", "lawyer", "Oslo"))
    assert "Withheld: " in draft.disclosure.summary() and draft.disclosure.confidence >= 0.99
    (entry,) = ledger_entries(vault)
    assert entry.purpose == "writing" and entry.recipient == "local writer model"
    assert set(entry.revealed) == {"formality"} and {"age", "occupation"} <= set(entry.withheld)

    quiet = Writer(vault, engine=engine, use_examples=False, use_facts=False).compose("Thank Sam.", max_tokens=5)
    assert "About me" not in quiet.prompt and quiet.facts_used == [] and quiet.disclosure is None
    assert len(ledger_entries(vault)) == 1  # nothing told, nothing logged


@pytest.mark.model
def test_modes_put_the_context_where_it_belongs(vault, engine):
    writer = Writer(vault, engine=engine, use_examples=False)
    reply = writer.reply("Hi Mara, can we meet on Friday?", "Say yes, after 3pm.", max_tokens=10)
    assert "Message I am replying to:\nHi Mara, can we meet on Friday?" in reply.prompt and not reply.examples
    rewrite = writer.rewrite("hey jonas send slides pls", max_tokens=10)
    assert "My draft:\nhey jonas send slides pls" in rewrite.prompt
    assert rewrite.instruction == "Rewrite my draft in my own words and style."
    cont = writer.continue_("Hi Lena,\n\nCongratulations on", max_tokens=10)
    assert cont.prompt.endswith("Email:\nHi Lena,\n\nCongratulations on")
    text = cont.result()
    assert cont.full_text == "Hi Lena,\n\nCongratulations on" + text
    with pytest.raises(LocalpersError, match="say what to write"):
        writer.compose("  ")
    with pytest.raises(LocalpersError, match="needs the text"):
        writer.reply("", "Say yes")
    with pytest.raises(LocalpersError, match="unknown writing mode"):
        writer.write("poem", "x")


@pytest.mark.model
def test_save_keeps_draft_and_final_edit_and_grows_the_history(vault, engine):
    writer = Writer(vault, engine=engine)
    draft = writer.compose("Ask Petra to review the budget.", max_tokens=20)
    final = "Hi Petra,\n\nCould you look over the budget before Friday? Thanks a lot.\n\nCheers,\nMara"
    row = writer.save(draft, final)
    saved = vault.drafts.get(row)
    assert saved["final"] == final and saved["draft"] == draft.text and saved["mode"] == "compose"
    assert saved["examples"] == [e.item_id for e in draft.examples]
    assert adapter_readiness(vault)[0] == 6  # the final edit is future training data
    assert any("look over the budget" in h.content for h in History(vault).search("budget review Petra", k=3))
    vault.db.execute("pragma wal_checkpoint(TRUNCATE)")
    assert b"look over the budget" not in vault.path.read_bytes()


@pytest.mark.model
def test_cli_write_streams_a_draft_and_reports_cold_start(home, engine, monkeypatch):
    vault = Vault.create("mara", "pw", kdf_seconds=0)
    History(vault).add_texts(TEXTS, kind="email")
    vault.close()
    monkeypatch.setenv("LOCALPERS_PASSPHRASE", "pw")
    runner = CliRunner()
    out = runner.invoke(main, ["write", "Thank Lena for the grant news", "-u", "mara", "--max-tokens", "20",
                               "--show-examples"])
    assert out.exit_code == 0, out.output
    assert "45 more texts needed" in out.stderr and "[example" in out.stderr and out.stdout.strip()
    bad = runner.invoke(main, ["write", "--mode", "reply", "-u", "mara"])
    assert bad.exit_code == 1 and "--input" in bad.stderr
    status = runner.invoke(main, ["train", "--status", "-u", "mara"])
    assert status.exit_code == 0 and "45 more needed" in status.stdout and "adapter: none" in status.stdout
    refused = runner.invoke(main, ["train", "-u", "mara"])
    assert refused.exit_code == 1 and "needs 45 more" in refused.stderr


@pytest.mark.model
def test_closing_a_draft_frees_the_engine_for_other_threads(vault, engine):
    import threading

    writer = Writer(vault, engine=engine, use_examples=False)
    draft = writer.compose("Thank Lena for the grant news.", max_tokens=60)
    engine = writer.chat_engine or engine  # no adapter: the cold-start writer's engine writes
    first = next(iter(draft))
    got = []
    waiter = threading.Thread(target=lambda: got.append(engine.lock.acquire(timeout=0.5)))
    waiter.start()
    waiter.join()
    assert got == [False]  # mid-stream, the engine is busy
    draft.close()
    assert draft.finished and draft.text == first.rstrip()
    waiter = threading.Thread(target=lambda: (got.append(engine.lock.acquire(timeout=5)), engine.lock.release()))
    waiter.start()
    waiter.join()
    assert got[-1] is True


@pytest.mark.parametrize("pieces, expected", [
    (["---", "\n", "Hi", " Sam,"], "Hi Sam,"),  # a separator copied from the prompt's examples is dropped
    (["\n", "-", "-", "-\n\nDear", " Ann"], "Dear Ann"),
    (["-", " milk\n- eggs"], "- milk\n- eggs"),  # a list keeps its dashes
    (["-5", " degrees"], "-5 degrees"),
    (["---"], ""),
])
def test_a_draft_does_not_open_with_a_copied_separator(pieces, expected):
    from localpers.writing.writer import Draft

    draft = Draft("compose", "x", "", "prompt", [], "", [], [], None, _pieces=iter(pieces))
    assert "".join(draft) == expected and draft.text == expected


def test_a_continuation_keeps_its_opening_as_it_comes():
    from localpers.writing.writer import Draft

    draft = Draft("continue", "x", "Shopping:\n", "prompt", [], "", [], [], None, _pieces=iter(["- ", "milk"]))
    assert "".join(draft) == "- milk"

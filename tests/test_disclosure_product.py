"""Minimal disclosure in the product: the ledger in a real vault, profile facts for prompts, and the CLI."""

from __future__ import annotations

import json
import stat

import pytest
from click.testing import CliRunner

from localpers.commands.privacy import privacy
from localpers.disclosure import (
    DECISIONS,
    ProfileDecision,
    ProfileFact,
    choose_profile_facts,
    export_ledger,
    formality_score,
    ledger_entries,
    minimal_disclosure,
    profile_facts,
    record,
)
from localpers.errors import LocalpersError
from localpers.vault import Vault

PASSPHRASE = "a test passphrase"


@pytest.fixture
def vault(home):
    v = Vault.create("ada", PASSPHRASE, kdf_seconds=0)
    v.features.insert_all([
        {"name": "age", "value": 52, "updated": 1},
        {"name": "occupation", "value": "Lawyer", "updated": 1},
        {"name": "gender", "value": "F", "updated": 1},
        {"name": "formality", "value": 0.9, "updated": 1},
        {"name": "signature", "value": "Ada Lovelace", "updated": 1},
    ])
    yield v
    v.close()


def test_profile_facts_latest_value_wins(vault):
    vault.features.insert({"name": "formality", "value": 0.2, "updated": 2})
    facts = profile_facts(vault)
    assert facts["formality"] == 0.2
    assert facts["occupation"] == "Lawyer"


def test_writing_uses_only_the_facts_that_fix_the_tone(vault):
    chosen = choose_profile_facts(vault, "writing", recipient="local writer model", public=["signature"])
    assert chosen.decision == "formal" and chosen.guaranteed
    assert chosen.used == {"signature": "Ada Lovelace", "formality": 0.9}
    assert set(chosen.withheld) == {"age", "occupation", "gender"}
    assert chosen.reasons["gender"] == "not used by this decision"
    assert chosen.reasons["age"].startswith("not needed")
    assert chosen.instruction == "Write in a formal tone."
    assert chosen.prompt_lines() == ["signature: Ada Lovelace", "formality: 0.9"]
    assert "Withheld: age, occupation, gender" in chosen.summary()
    entry = ledger_entries(vault)[0]
    assert entry.id == chosen.ledger_id
    assert entry.purpose == "writing" and entry.recipient == "local writer model"
    assert entry.revealed == {"signature": "Ada Lovelace", "formality": 0.9}
    assert entry.decision["label"] == "formal" and entry.decision["name"] == "writing-tone"
    assert [s["feature"] for s in entry.steps] == ["formality"]


def test_borderline_tone_needs_more_facts_and_preview_records_nothing(vault):
    vault.features.insert({"name": "formality", "value": 0.55, "updated": 2})
    chosen = choose_profile_facts(vault, "writing", record=False)
    assert chosen.ledger_id is None and ledger_entries(vault) == []
    assert "formality" in chosen.used and "occupation" in chosen.used
    assert "gender" in chosen.withheld
    assert chosen.decision == "formal"


def test_when_no_fact_can_settle_the_decision_none_is_shared(vault):
    # recommendation-era relies mostly on classic_share, which this profile lacks
    chosen = choose_profile_facts(vault, "recommendation", recipient="recommender")
    assert not chosen.guaranteed
    assert chosen.used == {} and chosen.instruction == ""
    assert "leave the decision open" in chosen.reasons["age"]
    assert ledger_entries(vault)[0].revealed == {}
    shared = choose_profile_facts(vault, "recommendation", recipient="recommender", share_if_unsure=True)
    assert "age" in shared.used


def test_bad_fact_values_are_skipped_with_a_reason(vault):
    chosen = choose_profile_facts(vault, "writing", facts={"formality": "very", "occupation": "astronaut"},
                                  record=False)
    assert "formality" not in chosen.used
    assert "not a number" in chosen.reasons["formality"]
    assert DECISIONS["writing-tone"].facts[2].coerce("Astronaut") == ("other", None)  # unknown job: "other"
    with pytest.raises(LocalpersError, match="no built-in decision"):
        choose_profile_facts(vault, "dancing")


def test_custom_decision(vault):
    rule = ProfileDecision("senior-discount", "offers", "Offer the senior discount?", ("no", "yes"),
                           (ProfileFact("age", "age in years", weight=1.0, mean=40, sd=15),), bias=-25.0)
    chosen = choose_profile_facts(vault, "offers", decision=rule, recipient="shop", record=False)
    assert chosen.decision == "no" and chosen.used == {"age": 52}


def test_ledger_round_trip_export_and_sealing(vault, tmp_path):
    chosen = choose_profile_facts(vault, "writing", recipient="local writer model")
    rule = DECISIONS["writing-tone"]
    d = minimal_disclosure(rule.model(), rule.prior(), {"formality": 0.1, "age": None, "occupation": None})
    second = record(vault, d, purpose="writing", recipient="remote service", decision_name="writing-tone")
    entries = ledger_entries(vault)
    assert [e.id for e in entries] == [second, chosen.ledger_id]
    assert entries[0].revealed == {"formality": 0.1} and entries[0].decision["label"] == "casual"
    with pytest.raises(LocalpersError, match="purpose and a recipient"):
        record(vault, d, purpose="", recipient="x")

    out = tmp_path / "ledger.jsonl"
    assert export_ledger(vault, out) == 2
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == [chosen.ledger_id, second]  # oldest first
    assert lines[1]["recipient"] == "remote service"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    with pytest.raises(LocalpersError, match="already exists"):
        export_ledger(vault, out)
    assert export_ledger(vault, out, overwrite=True) == 2

    # in the vault itself the ledger is sealed: no recipient, fact or value in the clear
    vault.close()
    raw = b"".join(p.read_bytes() for p in vault.path.parent.iterdir() if p.is_file())
    for secret in (b"remote service", b"formality", b"Lawyer", b"writing-tone"):
        assert secret not in raw
    reopened = Vault.open("ada", PASSPHRASE)
    assert len(ledger_entries(reopened)) == 2
    reopened.close()


def test_formality_score():
    assert formality_score([]) is None
    assert formality_score(["Dear Sir,\nThe report is attached.\nKind regards,\nAda"]) == 1.0
    assert formality_score(["hey, lunch today? cheers"]) == 0.0
    assert formality_score(["The meeting moved to 3pm."]) == 0.5


# ---------------------------------------------------------------------- CLI


@pytest.fixture
def cli_user(home, monkeypatch):
    v = Vault.create("bob", PASSPHRASE, kdf_seconds=0)
    v.features.insert_all([{"name": "formality", "value": 0.95, "updated": 1},
                           {"name": "age", "value": 30, "updated": 1}])
    v.close()
    monkeypatch.setenv("LOCALPERS_PASSPHRASE", PASSPHRASE)
    return "bob"


def test_cli_decide_record_ledger_export(cli_user, tmp_path):
    runner = CliRunner()
    result = runner.invoke(privacy, ["decide", "writing-tone", "--user", cli_user, "--record",
                                     "--recipient", "local writer model"])
    assert result.exit_code == 0, result.output
    assert "Decision: formal" in result.output
    assert "Revealed (1): formality" in result.output
    assert "Recorded as ledger entry #1" in result.output

    result = runner.invoke(privacy, ["ledger", "--user", cli_user, "--steps"])
    assert result.exit_code == 0, result.output
    # Sentences with rounded numbers, not raw Python values.
    assert "The local writer model was told 1 of 2 profile facts, for writing." in result.output
    assert "Shared: formality: 0.95." in result.output
    assert "Kept back: age." in result.output
    assert "{" not in result.output and "999999" not in result.output

    out = tmp_path / "export.jsonl"
    result = runner.invoke(privacy, ["ledger", "--user", cli_user, "--export", str(out)])
    assert result.exit_code == 0 and "plaintext" in result.output
    assert json.loads(out.read_text().splitlines()[0])["purpose"] == "writing"

    result = runner.invoke(privacy, ["decide", "writing-tone", "--user", cli_user, "--json"])
    assert json.loads(result.output)["decision"] == "formal"


def test_cli_breast_cancer_demo_and_errors(home):
    from localpers.cli import main

    runner = CliRunner()
    result = runner.invoke(main, ["privacy", "decide", "breast-cancer-demo", "--row", "3"])
    assert result.exit_code == 0, result.output
    assert "Decision: benign" in result.output and "With all 30 features the model says: benign" in result.output
    result = runner.invoke(main, ["privacy", "decide", "breast-cancer-demo", "--cost", "worst perimeter=never"])
    assert result.exit_code == 0, result.output
    assert "1. worst perimeter" not in result.output
    result = runner.invoke(main, ["privacy", "decide", "no-such-decision"])
    assert result.exit_code == 1 and "unknown decision" in result.output
    result = runner.invoke(main, ["privacy", "decide", "breast-cancer-demo", "--cost", "oops"])
    assert result.exit_code == 1 and "NAME=NUMBER" in result.output
    result = runner.invoke(main, ["privacy", "decisions"])
    assert "writing-tone" in result.output and "recommendation-era" in result.output


def test_formality_is_derived_from_the_users_own_texts(home):
    v = Vault.create("cy", PASSPHRASE, kdf_seconds=0)
    texts = [f"Dear team,\nUpdate {n} attached.\nKind regards,\nCy" for n in range(6)]
    v.items.insert_all([{"kind": "email", "created": 1, "content": text} for text in texts])
    assert profile_facts(v)["formality"] == 1.0
    assert "formality" not in profile_facts(v, derive=False)
    chosen = choose_profile_facts(v, "writing", record=False)
    assert chosen.decision == "formal" and chosen.used == {"formality": 1.0}
    assert chosen.prompt_lines(with_decision=True) == ["formality: 1", "writing-tone: formal"]
    v.close()

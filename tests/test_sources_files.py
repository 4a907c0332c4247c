"""Notes, JSONL and CSV importers on files generated here (and the shared Panza / MovieLens data when present)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from localpers.errors import LocalpersError
from localpers.sources import Interaction, Record, Rejected, Skipped, open_source, parse_time, read_lines

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
PANZA = SHARED / "panza-emails" / "david.jsonl"
ML100K = SHARED / "ml-100k" / "ml-100k.inter"


def scan(path, position=None, **kwargs):
    return list(open_source(path, **kwargs).scan(position))


# ---------------------------------------------------------------------- notes


def test_notes_folder(tmp_path):
    root = tmp_path / "notes"
    (root / "2023" / "jan").mkdir(parents=True)
    (root / ".obsidian").mkdir()
    (root / "ideas.txt").write_text("Plant alders along the path.\n\n\n\nAsk Priya about benches.\n")
    (root / "2023" / "jan" / "trip.md").write_text("---\ntitle: Lyon trip\ndate: 2023-01-14\ntags: travel\n---\n"
                                                   "# Day one\nTook the early train.\n")
    (root / "2023" / "heading.md").write_text("# Garden budget\nAbout 300 pounds for seedlings.\n")
    (root / "latin1.txt").write_bytes("Caf\xe9 cr\xe8me, s'il vous pla\xeet.".encode("cp1252"))
    (root / "empty.md").write_text("  \n\n")
    (root / "binary.txt").write_bytes(b"\x00\x01\x02PNG")
    (root / ".obsidian" / "workspace.md").write_text("hidden, not a note")
    (root / "image.png").write_bytes(b"not a note either")
    os.utime(root / "ideas.txt", (1_650_000_000, 1_650_000_000))

    out = scan(root)
    assert [o.ref for o in out] == ["2023/heading.md", "2023/jan/trip.md", "binary.txt", "empty.md", "ideas.txt",
                                    "latin1.txt"]
    by_ref = {o.ref: o for o in out}
    assert by_ref["ideas.txt"].content == "Plant alders along the path.\n\nAsk Priya about benches."
    assert by_ref["ideas.txt"].created == 1_650_000_000 and by_ref["ideas.txt"].kind == "note"
    trip = by_ref["2023/jan/trip.md"]
    assert trip.content == "# Day one\nTook the early train."
    assert trip.metadata["title"] == "Lyon trip" and trip.metadata["front_matter"]["tags"] == "travel"
    assert trip.created == parse_time("2023-01-14")
    assert by_ref["2023/heading.md"].metadata["title"] == "Garden budget"
    assert by_ref["latin1.txt"].content == "Café crème, s'il vous plaît."
    assert by_ref["empty.md"].reason == "empty note"
    assert by_ref["binary.txt"].reason == "binary file, not text"
    # Resume after the second file: exactly the rest.
    assert [o.ref for o in scan(root, out[1].position)] == [o.ref for o in out[2:]]
    # A single file works too, with a kind override.
    (single,) = scan(root / "ideas.txt", kind="journal")
    assert single.kind == "journal"


# ---------------------------------------------------------------------- JSONL


def test_jsonl_records_and_every_bad_line_reported(tmp_path):
    lines = [
        json.dumps({"email": "Dear Tom,\r\nSee you at ten.\r\n\r\nBest,\r\nAda", "subject": "Meeting"}),
        "",
        json.dumps({"text": "A note in a text field.", "date": "2021-05-01T10:00:00Z", "kind": "note"}),
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"subject": "no text field"}),
        json.dumps({"email": 42}),
        json.dumps({"email": "   "}),
        json.dumps({"content": "Third field name, time in ms.", "timestamp": 1_600_000_000_000}),
    ]
    path = tmp_path / "data.jsonl"
    path.write_bytes(("\n".join(lines)).encode() + b"\n" + b'{"email": "caf\xe9"}\n')
    out = scan(path)
    assert len(out) == len(lines) - 1 + 1  # every non-blank line has an outcome
    recs = [o for o in out if isinstance(o, Record)]
    assert recs[0].content == "Dear Tom,\nSee you at ten.\n\nBest,\nAda" and recs[0].kind == "email"
    assert recs[0].metadata == {"subject": "Meeting"}
    assert recs[1].kind == "note" and recs[1].created == parse_time("2021-05-01T10:00:00+00:00")
    assert recs[2].kind == "text" and recs[2].created == 1_600_000_000
    reasons = {o.ref: o.reason for o in out if isinstance(o, Rejected)}
    assert reasons == {
        "data.jsonl:4": "invalid JSON (Expecting property name enclosed in double quotes at column 2)",
        "data.jsonl:5": "not a JSON object (a list)",
        "data.jsonl:6": "no text field (looked for email, text, content, body, message, note; use --text-field)",
        "data.jsonl:7": "'email' is not text",
        "data.jsonl:8": "empty 'email'",
        "data.jsonl:10": "not UTF-8 (byte 14)",
    }
    # A named text field; resume after line 3.
    out = scan(path, text_field="text")
    assert [o.content for o in out if isinstance(o, Record)] == ["A note in a text field."]
    whole = scan(path)
    assert [o.ref for o in scan(path, whole[1].position)] == [o.ref for o in whole[2:]]


def test_runaway_line_is_skipped_without_holding_it(tmp_path):
    path = tmp_path / "big.jsonl"
    with open(path, "wb") as f:
        f.write(b'{"text": "before"}\n')
        f.write(b'{"text": "' + b"x" * (3 * 1024 * 1024) + b'"}\n')
        f.write(b'{"text": "after"}\n')
    with open(path, "rb") as f:
        lines = list(read_lines(f, 0, max_len=1024 * 1024))
    assert [line for _, _, line in lines][::2] == [b'{"text": "before"}\n', b'{"text": "after"}\n']
    assert lines[1][2] is None and lines[2][0] == lines[1][1]  # offsets stay exact


@pytest.mark.skipif(not PANZA.exists(), reason="shared Panza emails not present")
def test_panza_jsonl():
    out = scan(PANZA)
    n_lines = sum(1 for line in PANZA.read_bytes().splitlines() if line.strip())
    assert len(out) == n_lines
    recs = [o for o in out if isinstance(o, Record)]
    assert len(recs) == n_lines and all(r.kind == "email" and r.metadata.get("subject") is not None for r in recs)
    assert all("\r" not in r.content for r in recs)


# ---------------------------------------------------------------------- CSV


def test_ratings_csv(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("user_id,movie_id,rating,timestamp,comment\n"
                    "7,50,5,881250949,\"loved it, twice\"\n"
                    "7,172,4,2021-03-04,\"multi\nline comment\"\n"
                    "8,50,1,881250949,someone else\n"
                    "7,,3,881250949,no item\n"
                    "7,181,great,881250949,not a number\n"
                    "7,181,4,yesterday-ish,bad time\n"
                    "7,100,nan,881250949,nan\n"
                    "7,1,2\n"
                    "\n"
                    "7,258,3,881250949,last\n")
    with pytest.raises(LocalpersError, match="--user-id"):
        scan(path)
    out = scan(path, user_id="7")
    inter = [o for o in out if isinstance(o, Interaction)]
    assert [(i.item, i.signal, i.value) for i in inter] == [("50", "rating", 5.0), ("172", "rating", 4.0),
                                                           ("258", "rating", 3.0)]
    assert inter[0].time == 881250949 and inter[0].metadata == {"comment": "loved it, twice"}
    assert inter[1].metadata == {"comment": "multi\nline comment"} and inter[1].time == parse_time("2021-03-04")
    assert [o.reason for o in out if isinstance(o, Skipped)] == ["another user's row"]
    assert [o.reason for o in out if isinstance(o, Rejected)] == [
        "empty 'movie_id'", "'rating' is not a number", "unreadable 'timestamp'", "'rating' is not a finite number",
        "expected 5 columns, found 3"]
    assert [o.ref for o in scan(path, out[2].position, user_id="7")] == [o.ref for o in out[3:]]


def test_csv_with_named_columns_and_signals(tmp_path):
    path = tmp_path / "events.tsv"
    path.write_text("asin\tevent\twhen\n"
                    "B001\tlike\t2022-01-01\n"
                    "B002\tWatched the trailer twice!\t2022-01-02\n"
                    "B003\t\t2022-01-03\n")
    out = scan(path, columns={"item": "asin", "signal": "event", "time": "when"})
    assert [(o.item, o.signal) for o in out[:2]] == [("B001", "like"), ("B002", "interaction")]
    assert out[1].metadata == {"signal": "Watched the trailer twice!"}  # free text stays sealed, not in the clear
    assert out[2].reason == "empty 'event'"
    with pytest.raises(LocalpersError, match="no column 'nope'"):
        scan(path, columns={"item": "nope"})
    bad = tmp_path / "nothing.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(LocalpersError, match="item column"):
        scan(bad)


@pytest.mark.skipif(not ML100K.exists(), reason="shared MovieLens 100K not present")
def test_recbole_inter_file():
    out = scan(ML100K, user_id="196")
    inter = [o for o in out if isinstance(o, Interaction)]
    assert len(inter) == 39 and all(i.signal == "rating" and 1 <= i.value <= 5 for i in inter)
    assert sum(isinstance(o, Skipped) for o in out) == 100_000 - 39
    assert not any(isinstance(o, Rejected) for o in out)


def test_unknown_format_is_a_clear_error(tmp_path):
    path = tmp_path / "mystery.bin"
    path.write_bytes(b"\x89PNG....")
    with pytest.raises(LocalpersError, match="--format"):
        open_source(path)
    with pytest.raises(LocalpersError, match="does not exist"):
        open_source(tmp_path / "missing.mbox")

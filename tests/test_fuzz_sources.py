"""Fuzzing every importer's parser with hypothesis: mutated mbox files, Maildir messages, notes, JSONL and CSV.

About 5,000 generated inputs in all (each holding several records). For every one:
no exception, no hang (a deadline per input), one outcome per record with a reason
for each rejection, and the positions cover the whole file, so nothing is lost
silently and a resume from any position gives exactly the rest.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localpers.sources import Interaction, Record, Rejected, Skipped
from localpers.sources.interactions import CsvSource
from localpers.sources.jsonl import JsonlSource
from localpers.sources.mail import MaildirSource, MboxSource, SenderRule
from localpers.sources.notes import NotesSource
from localpers.sources.synthetic import synthetic_mailbox, write_mbox

ADA = "ada@example.com"
FUZZ = settings(max_examples=1000, deadline=2000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SEEDS = [m.as_bytes() for m in synthetic_mailbox(6, seed=11)] + [
    b"From: ada@example.com\nSubject: =?utf-8?q?Caf=C3=A9?=\nContent-Type: text/html; charset=utf-8\n\n"
    b"<p>Hello <b>there</b> my friend</p><blockquote>old</blockquote>\n",
    b"From: ada@example.com\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain; "
    b"charset=koi8-r\nContent-Transfer-Encoding: base64\n\n8NLJ18XU\n--b\nContent-Type: application/pdf\n"
    b"Content-Disposition: attachment; filename=\"a.pdf\"\nContent-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n--b--\n",
    b"From: ada@example.com\nSubject: Fwd: x\n\n---------- Forwarded message ---------\nFrom: bob\n\nhi\n",
]
TOKENS = [b"\nFrom x@y Mon Jan  3 10:00:00 2022\n", b"\n\n", b"\r\n", b"\x00", b"\xff\xfe", b">", b">From ",
          b"Content-Type: multipart/mixed; boundary=\"b\"\n", b"\n--b\n", b"--b--", b"=?utf-8?b?", b"=?x?q?=ZZ?=",
          b"charset=\"", b"Content-Transfer-Encoding: base64\n", b"Content-Transfer-Encoding: quoted-printable\n",
          b"On Mon, Bob wrote:\n", b"\n-- \n", b"Best regards,\nAda\n", b"From: ", b"<html><p>", b"</", b"\"", b",",
          b"{", b"}", b"[", b"\\u00", b"\t", b"\xe9", "π≈漢字".encode()]


@st.composite
def mutated(draw, data: bytes, max_ops: int = 8) -> bytes:
    """``data`` with a few random edits: flipped bytes, inserted junk or tokens, cut or doubled spans."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(0, max_ops))):
        op = draw(st.sampled_from(["flip", "insert", "token", "delete", "double", "truncate"]))
        pos = draw(st.integers(0, len(buf)))
        if op == "flip" and pos < len(buf):
            buf[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            buf[pos:pos] = draw(st.binary(max_size=32))
        elif op == "token":
            buf[pos:pos] = draw(st.sampled_from(TOKENS))
        elif op == "delete":
            del buf[pos:pos + draw(st.integers(1, 300))]
        elif op == "double":
            buf[pos:pos] = buf[max(0, pos - 80):pos]
        elif op == "truncate" and draw(st.booleans()):
            del buf[pos:]
    return bytes(buf)


def check_outcomes(outcomes: list, size: int, unit_end: bool = True) -> None:
    """Every outcome well formed, positions increasing, and (for byte sources) the last one at the end of the file."""
    last = -1
    for o in outcomes:
        assert isinstance(o, (Record, Rejected, Skipped, Interaction))
        if isinstance(o, (Rejected, Skipped)):
            assert isinstance(o.reason, str) and o.reason
        if isinstance(o, Record):
            assert o.content.strip() and o.kind
            json.dumps(o.metadata)  # storable as JSON
        assert o.done > last
        last = o.done
    if unit_end and outcomes:
        assert last == size


# ---------------------------------------------------------------------- mbox


@FUZZ
@given(st.lists(st.sampled_from(range(len(SEEDS))), min_size=1, max_size=6), st.data())
def test_fuzz_mbox(picks, data):
    with tempfile.TemporaryDirectory() as folder:
        path = write_mbox(Path(folder) / "sent.mbox", [SEEDS[i] for i in picks])
        clean = list(MboxSource(path, sent_from=[ADA]).scan(None))
        assert len(clean) == len(picks)  # unmutated: exactly one outcome per message
        path.write_bytes(data.draw(mutated(path.read_bytes())))
        source = MboxSource(path, sent_from=[ADA])
        outcomes = list(source.scan(None))
        check_outcomes(outcomes, path.stat().st_size)
        if outcomes:  # resuming from any position gives exactly the rest
            i = data.draw(st.integers(0, len(outcomes) - 1))
            assert source.can_resume(outcomes[i].position)
            assert [o.ref for o in source.scan(outcomes[i].position)] == [o.ref for o in outcomes[i + 1:]]


# ---------------------------------------------------------------------- one Maildir / .eml message


@settings(FUZZ, max_examples=1200)
@given(st.sampled_from(SEEDS), st.data())
def test_fuzz_mail_message(seed, data):
    raw = data.draw(mutated(seed))
    source = MaildirSource(Path("."), sent_from=[ADA])
    outcome = source.outcome(raw, SenderRule(addresses=frozenset([ADA])), "cur/x", {"last": "cur/x"}, 1)
    check_outcomes([outcome], 1)
    everything = source.outcome(raw, SenderRule(everything=True), "cur/x", {"last": "cur/x"}, 1)
    assert not isinstance(everything, Skipped)  # in a sent folder a message is kept or rejected, never skipped


# ---------------------------------------------------------------------- notes


@settings(FUZZ, max_examples=1200)
@given(st.one_of(st.binary(max_size=2000), st.text(max_size=2000).map(lambda t: t.encode("utf-8", "surrogatepass")),
                 st.sampled_from([b"---\ntitle: x\n---\n# Head\nbody", b"---\n---", b"\xef\xbb\xbf# t\n"]).flatmap(mutated)))
def test_fuzz_note(raw):
    outcome = NotesSource(Path("."), kind=None).parse(raw, "note.md", {"last": "note.md"}, 1, mtime=0.0)
    check_outcomes([outcome], 1)


# ---------------------------------------------------------------------- JSONL

json_values = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=30),
                           lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
                           max_leaves=8)
json_objects = st.fixed_dictionaries({}, optional={"email": st.text(max_size=200), "text": json_values,
                                                   "subject": json_values, "kind": st.text(max_size=10),
                                                   "date": json_values})


@settings(FUZZ, max_examples=800)
@given(st.lists(json_objects.map(lambda o: json.dumps(o).encode()), min_size=1, max_size=8), st.data())
def test_fuzz_jsonl(lines, data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.jsonl"
        path.write_bytes(data.draw(mutated(b"\n".join(lines) + b"\n")))
        outcomes = list(JsonlSource(path).scan(None))
        check_outcomes(outcomes, path.stat().st_size, unit_end=False)
        # Exactly one outcome per non-blank line: no record vanishes without a reason.
        assert len(outcomes) == sum(1 for line in path.read_bytes().split(b"\n") if line.strip())


# ---------------------------------------------------------------------- CSV

cells = st.text(alphabet=st.characters(blacklist_characters='"\n\r', blacklist_categories=("Cs",)), max_size=12)
numbers = st.one_of(st.integers(-5, 10).map(str), st.floats().map(str), cells)


@settings(FUZZ, max_examples=800)
@given(st.lists(st.tuples(st.sampled_from(["7", "8", ""]), cells, numbers, numbers), min_size=1, max_size=10), st.data())
def test_fuzz_csv(rows, data):
    body = "".join(",".join(row) + "\n" for row in rows).encode()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "r.csv"
        path.write_bytes(b"user_id,item_id,rating,timestamp\n" + body)
        clean = list(CsvSource(path, user_id="7").scan(None))
        # No quotes in the cells: one outcome per non-blank row.
        assert len(clean) == sum(1 for line in body.decode().split("\n") if line.strip())
        path.write_bytes(b"user_id,item_id,rating,timestamp\n" + data.draw(mutated(body)))
        source = CsvSource(path, user_id="7")
        outcomes = list(source.scan(None))
        check_outcomes(outcomes, path.stat().st_size, unit_end=False)
        if outcomes:
            i = data.draw(st.integers(0, len(outcomes) - 1))
            assert [o.ref for o in source.scan(outcomes[i].position)] == [o.ref for o in outcomes[i + 1:]]

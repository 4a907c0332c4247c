"""Mail importers on real mbox files and Maildir folders generated here.

Covers: whose mail is kept, plain vs HTML bodies, quotes and signatures, forwarded and
near-empty messages, mixed and broken charsets, malformed messages, a huge attachment,
a truncated file, and resuming from every position.
"""

from __future__ import annotations

import tracemalloc
from email.message import EmailMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest

from localpers.errors import LocalpersError
from localpers.sources import Record, Rejected, Skipped, open_source
from localpers.sources.mail import MboxSource, parse_mail, split_reply
from localpers.sources.synthetic import synthetic_mailbox, write_maildir, write_mbox

ADA = "ada@example.com"


def mail(body: str, *, sender: str = f"Ada <{ADA}>", to: str = "bob@example.org", subject: str = "Plans",
         **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = "Mon, 03 Jan 2022 10:00:00 +0000"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg


def scan(path, **kwargs):
    return list(open_source(path, **kwargs).scan(None))


def records(outcomes):
    return [o for o in outcomes if isinstance(o, Record)]


# ---------------------------------------------------------------------- whose mail


def test_sent_from_keeps_only_the_users_mail(tmp_path):
    box = write_mbox(tmp_path / "archive.mbox", synthetic_mailbox(60, seed=1, others_share=0.5))
    out = scan(box, sent_from=[ADA.upper()])  # addresses compare case-insensitively
    kept, skipped = records(out), [o for o in out if isinstance(o, Skipped)]
    assert len(out) == 60
    assert kept and skipped and len(kept) + len(skipped) == 60
    assert all(r.metadata["from"] == ADA for r in kept)
    assert {s.reason for s in skipped} == {"not sent by you"}


def test_address_is_inferred_when_it_is_in_most_messages(tmp_path):
    box = write_mbox(tmp_path / "archive.mbox", synthetic_mailbox(40, seed=2, others_share=0.4))
    source = open_source(box)
    out = list(source.scan(None))
    assert all(r.metadata["from"] == ADA for r in records(out))
    assert any(isinstance(o, Skipped) for o in out)
    assert any(ADA in note for note in source.notes)


def test_ambiguous_mailbox_asks_for_from(tmp_path):
    box = write_mbox(tmp_path / "archive.mbox", [mail("One two three four.", sender="x@a.example", to="y@b.example"),
                                                 mail("Five six seven eight.", sender="y@b.example", to="x@a.example")])
    with pytest.raises(LocalpersError, match="--from"):
        scan(box)


def test_sent_folder_keeps_everything_and_gmail_labels_are_used(tmp_path):
    box = write_mbox(tmp_path / "Sent Items.mbox", [mail("Short but real text here.", sender="")])
    assert len(records(scan(box))) == 1
    # A folder named "presentations" is not a sent folder.
    other = write_mbox(tmp_path / "presentations.mbox",
                       [mail("One two three four.", sender="x@a.example", to="y@b.example"),
                        mail("Five six seven eight.", sender="y@b.example", to="x@a.example")])
    with pytest.raises(LocalpersError):
        scan(other)
    takeout = write_mbox(tmp_path / "All mail.mbox", [
        mail("I wrote this one myself, honestly.", X_Gmail_Labels="Sent,Opened"),
        mail("Someone else wrote this one to me.", sender="bob@example.org", to=ADA, X_Gmail_Labels="Inbox")])
    out = scan(takeout)
    assert [r.content for r in records(out)] == ["I wrote this one myself, honestly."]


# ---------------------------------------------------------------------- bodies


def test_plain_text_preferred_and_html_only_converted(tmp_path):
    alt = MIMEMultipart("alternative")
    alt["From"], alt["To"], alt["Subject"] = ADA, "bob@example.org", "Both"
    alt.attach(MIMEText("The plain version of the text.", "plain"))
    alt.attach(MIMEText("<p>The <b>HTML</b> version of the text.</p>", "html"))
    html_only = mail("x")
    html_only.set_content("<html><head><style>p { color: red }</style><script>alert(1)</script></head>"
                          "<body><p>Hello Bob,</p><p>The <a href='https://x.example'>report</a> is ready &amp; "
                          "signed.</p><blockquote>old quoted stuff</blockquote></body></html>", subtype="html")
    box = write_mbox(tmp_path / "sent.mbox", [alt, html_only])
    first, second = records(scan(box))
    assert first.content == "The plain version of the text." and first.metadata["html"] is False
    assert second.metadata["html"] is True
    assert "Hello Bob," in second.content and "report is ready & signed." in second.content
    for junk in ("<", "color", "alert", "https://", "old quoted stuff"):
        assert junk not in second.content
    assert "old quoted stuff" in second.metadata["quoted"]


def test_quotes_signature_and_thread_metadata_are_separated():
    text = ("Sounds good, see you at the cafe at noon.\n\nBest regards,\nAda\nAda Lovelace | Analyst\n"
            "+44 20 7946 0000\n\nOn Mon, 3 Jan 2022 at 10:00, Bob Stone <bob@example.org>\nwrote:\n"
            "> Lunch tomorrow?\n> Bob")
    own, quoted, signature = split_reply(text)
    assert own == "Sounds good, see you at the cafe at noon.\n\nBest regards,\nAda"
    assert quoted.startswith("On Mon, 3 Jan 2022") and "> Lunch tomorrow?" in quoted
    assert signature == "Ada Lovelace | Analyst\n+44 20 7946 0000"

    own, quoted, signature = split_reply("Yes.\n> Are you coming?\nI will bring cake.\n-- \nAda\nhttps://ada.example")
    assert own == "Yes.\nI will bring cake." and quoted == "> Are you coming?" and signature == "Ada\nhttps://ada.example"

    own, quoted, _ = split_reply("Approved, go ahead.\n\nFrom: Bob Stone\nSent: Monday\nTo: Ada\nSubject: PO\n\nPlease approve")
    assert own == "Approved, go ahead." and quoted.startswith("From: Bob Stone")

    own, _, signature = split_reply("See you at eight, I'll book the table.\n\nSent from my iPhone")
    assert own == "See you at eight, I'll book the table." and signature == "Sent from my iPhone"


def test_thread_context_is_kept(tmp_path):
    msg = mail("Agreed, let's go with the alders.\n\nOn Mon, Bob wrote:\n> Alders or birches?",
               subject="Re: Re: Planting plan", Message_ID="<a1@x>", In_Reply_To="<b1@x>", References="<b0@x> <b1@x>",
               Cc="priya@studio.example")
    (record,) = records(scan(write_mbox(tmp_path / "sent.mbox", [msg])))
    meta = record.metadata
    assert meta["thread"] == "Planting plan" and meta["subject"] == "Re: Re: Planting plan"
    assert meta["in_reply_to"] == "<b1@x>" and meta["references"] == ["<b0@x>", "<b1@x>"]
    assert meta["cc"] == ["priya@studio.example"] and meta["message_id"] == "<a1@x>"
    assert meta["quoted"].endswith("> Alders or birches?")
    assert record.created == 1641204000.0


def test_forwarded_near_empty_and_automatic_messages_are_rejected_with_reasons(tmp_path):
    msgs = [
        mail("Have a look at this.", subject="Fwd: report"),
        mail("FYI below.\n\n---------- Forwarded message ---------\nFrom: Bob\nHello there", subject="report"),
        mail("Thanks!\n\nOn Mon, Bob wrote:\n> Here is the file you asked for, with all the numbers."),
        mail("I am out of office until Monday.", Auto_Submitted="auto-replied"),
        mail("This one is a real message with words."),
    ]
    out = scan(write_mbox(tmp_path / "sent.mbox", msgs))
    reasons = [o.reason for o in out if isinstance(o, Rejected)]
    assert reasons == ["forwarded message", "forwarded message", "near-empty (1 word of your own)", "automatic reply"]
    assert [r.content for r in records(out)] == ["This one is a real message with words."]


# ---------------------------------------------------------------------- encodings and malformed input


def test_mixed_charsets_and_broken_encodings(tmp_path):
    raw = [
        # Latin-1 body, RFC 2047 subject in UTF-8.
        b"From: ada@example.com\nSubject: =?utf-8?q?Caf=C3=A9_plans?=\nContent-Type: text/plain; charset=iso-8859-1\n"
        b"Content-Transfer-Encoding: 8bit\n\nOn se voit au caf\xe9 demain matin ?\n",
        # KOI8-R body, base64.
        b"From: ada@example.com\nSubject: privet\nContent-Type: text/plain; charset=koi8-r\n"
        b"Content-Transfer-Encoding: base64\n\n" + __import__("base64").encodebytes("Привет, как дела у тебя?".encode("koi8-r")),
        # Shift_JIS declared correctly.
        b"From: ada@example.com\nSubject: nihongo\nContent-Type: text/plain; charset=shift_jis\n\n"
        + "明日の会議は十時からです。 資料 を 送ります".encode("shift_jis") + b"\n",
        # Declared UTF-8 but really Windows-1252; raw 8-bit bytes in the subject; an unknown charset elsewhere.
        b"From: ada@example.com\nSubject: Gr\xfc\xdfe aus K\xf6ln\nContent-Type: text/plain; charset=utf-8\n\n"
        b"Das Gr\xfc\xdfen war sch\xf6n, bis bald.\n",
        b"From: ada@example.com\nSubject: odd\nContent-Type: text/plain; charset=x-no-such-charset\n\n"
        b"plain ascii words in an unknown charset\n",
    ]
    out = scan(write_mbox(tmp_path / "sent.mbox", raw))
    got = [r.content for r in records(out)]
    assert got[0] == "On se voit au café demain matin ?"
    assert got[1] == "Привет, как дела у тебя?"
    assert got[2].startswith("明日の会議は十時からです。")
    assert got[3] == "Das Grüßen war schön, bis bald."
    assert got[4] == "plain ascii words in an unknown charset"
    subjects = [r.metadata["subject"] for r in records(out)]
    assert subjects[0] == "Café plans" and subjects[3] == "Grüße aus Köln"


MALFORMED = [
    b"",  # nothing at all
    b"\x00\xff\xfe garbage \x80\x81 with no headers or body",
    b"From: ada@example.com\nSubject: no body at all\n",
    b"From ada@example.com\nNot-a-header line without colon\nSubject: x\n\nbody words are here\n",
    b"From: ada@example.com\nDate: the thirty-second of Smarch\nSubject: bad date\n\nThe date header is nonsense here.\n",
    b"From: ada@example.com\nSubject: broken mime\nContent-Type: multipart/mixed; boundary=\"XX\"\n\n--XX\n"
    b"Content-Type: text/plain\n\nText inside an unterminated multipart.\n--XX\nContent-Type: application/pdf\n"
    b"Content-Transfer-Encoding: base64\n\n!!!not base64!!!\n",
    b"From: =?bogus?x?zzz?= <ada@example.com>\nTo: <<<>>>, ,,@@\nSubject: =?utf-8?b?####?=\n"
    b"Content-Type: text/plain; charset=\"utf-8\nContent-Transfer-Encoding: quoted-printable\n\nBroken =ZZ quoted =\nprintable words\n",
    b"From: ada@example.com\nContent-Type: multipart/alternative\n\nno boundary parameter, still some words\n",
]


def test_malformed_messages_never_stop_the_import(tmp_path):
    good = mail("A normal message after all the broken ones.")
    box = write_mbox(tmp_path / "sent.mbox", [*MALFORMED, good])
    out = scan(box)
    assert len(out) == len(MALFORMED) + 1  # one outcome per message, none lost
    assert all(o.reason for o in out if isinstance(o, Rejected))
    assert records(out)[-1].content == "A normal message after all the broken ones."
    texts = [r.content for r in records(out)]
    assert "Text inside an unterminated multipart." in texts
    assert "The date header is nonsense here." in texts
    for data in MALFORMED:
        parse_mail(data)  # and the parser alone never raises


def test_huge_attachment_is_streamed_not_held(tmp_path):
    msg = mail("The scans are attached, all forty pages.")
    msg.add_attachment(bytes(range(256)) * (96 * 1024), maintype="application", subtype="octet-stream",
                       filename="scans.bin")  # 24 MiB, 32 MiB as base64
    box = write_mbox(tmp_path / "sent.mbox", [msg, mail("And one more message after it.")])
    assert box.stat().st_size > 32 * 1024 * 1024
    tracemalloc.start()
    try:
        out = scan(box)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    first, second = records(out)
    assert first.content == "The scans are attached, all forty pages."
    assert first.metadata["attachments"] == [{"name": "scans.bin", "type": "application/octet-stream"}]
    assert first.metadata["dropped_lines"] > 0
    assert second.content == "And one more message after it."
    assert peak < 24 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB while reading a 32 MiB message"


@pytest.mark.parametrize("cut", [0.3, 0.5, 0.8, 0.97])
def test_truncated_mbox(tmp_path, cut):
    msgs = synthetic_mailbox(10, seed=3)
    box = write_mbox(tmp_path / "sent.mbox", msgs)
    whole = scan(box)
    data = box.read_bytes()
    box.write_bytes(data[:int(len(data) * cut)])
    out = scan(box)
    assert 1 <= len(out) <= 10
    # Every message before the cut is read exactly as from the whole file.
    for a, b in zip(whole[:len(out) - 1], out[:-1]):
        assert type(a) is type(b) and getattr(a, "content", None) == getattr(b, "content", None)
    assert isinstance(out[-1], (Record, Rejected))


def test_mboxrd_from_escaping_and_bytes_before_first_message(tmp_path):
    box = write_mbox(tmp_path / "sent.mbox", [mail("Line one.\nFrom here on, we go weekly.\n>From the archive.")])
    (record,) = records(scan(box))
    assert record.content == "Line one.\nFrom here on, we go weekly."
    assert record.metadata["quoted"] == ">From the archive."  # unescaped once, then a quote like any ">" line
    junk = tmp_path / "junk.mbox"
    junk.write_bytes(b"stray bytes before any From line\n\n" + box.read_bytes())
    out = scan(junk, format="mbox", sent_from=[ADA])
    assert len(out) == 2 and isinstance(out[0], Rejected) and isinstance(out[1], Record)


def test_mbox_resumes_from_every_position(tmp_path):
    box = write_mbox(tmp_path / "sent.mbox", synthetic_mailbox(12, seed=4))
    source = MboxSource(box, sent_from=[ADA])
    whole = list(source.scan(None))
    for i, outcome in enumerate(whole):
        assert source.can_resume(outcome.position)
        rest = list(source.scan(outcome.position))
        assert [o.ref for o in rest] == [o.ref for o in whole[i + 1:]]
    assert not source.can_resume({"offset": 7, "n": 1})  # not a message boundary


# ---------------------------------------------------------------------- Maildir


def test_maildir_with_subfolders(tmp_path):
    root = tmp_path / "Mail"
    write_maildir(root, synthetic_mailbox(8, seed=5, others_share=1.0))  # the inbox: other people's mail
    write_maildir(root, synthetic_mailbox(5, seed=6), folder=".Sent")
    write_maildir(root, synthetic_mailbox(3, seed=7), folder=".Trash")
    (root / "new" / "1700000000.broken:2,").write_bytes(MALFORMED[1])
    source = open_source(root, sent_from=[ADA])
    assert source.format == "maildir" and source.total() == 14  # Trash left out
    out = list(source.scan(None))
    assert len(out) == 14
    assert len(records(out)) == 5 and all(r.ref.startswith(".Sent/cur/") for r in records(out))
    # Without --from, the Sent folder counts as the user's and the inbox is inferred.
    out = list(open_source(root).scan(None))
    assert len(records(out)) == 5
    # Resume from the middle: exactly the rest.
    middle = out[6].position
    assert [o.ref for o in open_source(root, sent_from=[ADA]).scan(middle)] == [o.ref for o in out[7:]]


def test_eml_file(tmp_path):
    (tmp_path / "Sent").mkdir()
    path = tmp_path / "Sent" / "note.eml"
    path.write_bytes(mail("A single message saved from the mail client.").as_bytes())
    (record,) = scan(path)
    assert record.content == "A single message saved from the mail client." and record.kind == "email"

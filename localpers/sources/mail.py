"""Mail importers: mbox files, Maildir folders and single ``.eml`` files.

Only the messages the user *sent* are kept, and of each only what the user wrote:

1. **Whose mail.** With ``sent_from`` (the user's addresses) a message is kept when its
   ``From`` address is one of them. Without it: a folder named like a sent folder
   ("Sent", "Sent Items", "Gesendet", ...) counts as all the user's; a Gmail Takeout
   mbox keeps what is labelled "Sent"; otherwise the address found in the From/To/Cc
   of at least half of the first 500 messages (and more often than any other) is taken
   as the user's, and the import says so. When none of this decides, the import stops
   with an error asking for ``--from``.
2. **The body.** The first ``text/plain`` part that is not an attachment; else the first
   ``text/html`` part converted to text (html2text). Attached messages are not read.
   Charsets are honoured, with UTF-8 then Windows-1252 as fallbacks, so bad encodings
   degrade to a few odd characters instead of a lost message.
3. **What the user wrote.** :func:`split_reply` moves quoted text ("On ... wrote:" and
   everything after, Outlook "From:/Sent:" blocks, lines starting with ``>``) and the
   signature (after a ``-- `` line, "Sent from my phone", or a contact block after a
   sign-off such as "Best regards,\\nAda") into the metadata; the sign-off and name stay.
4. **Dropped**, each with its reason: forwarded messages, automatic replies, messages
   with fewer than ``min_words`` words of the user's own, unreadable ones.

Thread context (subject, Message-ID, In-Reply-To, References, recipients, the quoted
text) is kept in the item's metadata.

The mbox reader is a line-by-line scanner rather than :mod:`mailbox`: it holds one
message at a time, drops the base64 lines of attachments past a few megabytes, survives
a truncated last message, and knows the byte offset of every message, which is the
position an interrupted import resumes from.
"""

from __future__ import annotations

import email
import email.message
import email.utils
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email.header import Header, decode_header
from pathlib import Path
from typing import Any

import html2text

from ..errors import LocalpersError
from . import (MAX_TEXT_CHARS, FileListSource, Outcome, Record, Rejected, Skipped, Source, clean_text, decode_text,
               file_identity, parse_time, read_lines)

# Past this many bytes in one message, the base64 lines of non-text parts (attachments) are dropped...
LEAN_AFTER_BYTES = 256 * 1024
# ...and past this, nothing more of the message is kept.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
MAX_LINE_BYTES = 1024 * 1024
MAX_HTML_CHARS = 2_000_000
MAX_QUOTED_CHARS = 20_000
INFER_SAMPLE = 500

SENT_FOLDER = re.compile(r"(?<![a-z])(sent|envoy[ée]s?|gesendet|enviados?|inviat[ei]|verzonden|skickat|wys[lł]ane)(?![a-z])",
                         re.IGNORECASE)
SKIP_FOLDER = re.compile(r"^\.?(trash|junk|spam|deleted|bin|corbeille|papierkorb|drafts?)\b", re.IGNORECASE)

_FROM_LINE = re.compile(rb"From \S+.*\d{1,2}:\d\d")
_BASE64_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\r\n"

_REPLY_HEADERS = [re.compile(p, re.IGNORECASE) for p in (
    r"^\s*on\b.{0,300}\bwrote\s*:\s*$",
    r"^\s*le\b.{0,300}\ba [ée]crit\s*:\s*$",
    r"^\s*am\b.{0,300}\bschrieb\b.{0,200}:\s*$",
    r"^\s*el\b.{0,300}\bescribi[óo]\s*:\s*$",
    r"^\s*il\b.{0,300}\bha scritto\s*:\s*$",
    r"^\s*op\b.{0,300}\bschreef\b.{0,200}:\s*$",
    r"^\s*-{2,}\s*original message\s*-{2,}\s*$",
    r"^\s*-{2,}\s*(urspr[üu]ngliche nachricht|message d'origine)\s*-{2,}\s*$",
)]
_OUTLOOK_FROM = re.compile(r"^\s*\*?(from|von|de)\s*:\*?\s", re.IGNORECASE)
_OUTLOOK_NEXT = re.compile(r"^\s*\*?(sent|date|to|subject|gesendet|datum|an|betreff|envoy[ée]|[àa]|objet)\s*:", re.IGNORECASE)
_FORWARD_MARK = re.compile(r"^\s*(-{2,}\s*forwarded message\s*-{2,}|begin forwarded message\s*:|"
                           r"-{2,}\s*weitergeleitete nachricht\s*-{2,}|-{2,}\s*message transf[ée]r[ée]\s*-{2,})",
                           re.IGNORECASE)
_FORWARD_SUBJECT = re.compile(r"^\s*\[?\s*(fwd?|fw|wg|tr|rv|enc)\s*:", re.IGNORECASE)
_SIGNOFF = re.compile(
    r"^\s*(best|best regards|best wishes|kind regards|warm regards|warmest regards|regards|many thanks|thanks|"
    r"thank you|thanks again|thx|cheers|sincerely|yours|yours sincerely|yours truly|all the best|take care|love|"
    r"talk soon|speak soon|cordialement|bien [àa] vous|amiti[ée]s|viele gr[üu](ß|ss)e|liebe gr[üu](ß|ss)e|"
    r"mit freundlichen gr[üu](ß|ss)en|beste gr[üu](ß|ss)e|gru(ß|ss)|saludos|un saludo|abrazos|cordiali saluti|saluti|"
    r"groeten|met vriendelijke groet)\s*[,.!]*\s*$", re.IGNORECASE)
_MOBILE_SIGNATURE = re.compile(r"^\s*(sent from my\b|sent from (mail|outlook|yahoo)\b|get outlook for\b|"
                               r"envoy[ée] de mon\b|von meinem\b.{0,40}gesendet)", re.IGNORECASE)
_WORD = re.compile(r"\w+")


# ---------------------------------------------------------------------- parsing one message


@dataclass
class Mail:
    """The parts of one message the importer uses."""

    sender: str = ""  # lower-case address
    sender_name: str = ""
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    subject: str = ""
    date: float | None = None
    message_id: str = ""
    in_reply_to: str = ""
    references: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    automatic: bool = False
    body: str = ""
    from_html: bool = False
    attachments: list[dict] = field(default_factory=list)
    defects: int = 0


def _unsurrogate(text: Any) -> str:
    """A header value as text. Undeclared 8-bit bytes come from the parser as surrogates or as a
    Header of charset "unknown-8bit"; they are decoded as UTF-8, else Windows-1252."""
    if isinstance(text, Header):
        return "".join(decode_text(chunk, None) if isinstance(chunk, bytes) else chunk
                       for chunk, _ in decode_header(text))
    text = str(text)
    if not any("\udc80" <= ch <= "\udcff" for ch in text):
        return text
    return decode_text(text.encode("utf-8", "surrogateescape"))


def _header(msg: email.message.Message, name: str) -> str:
    """A header decoded to one line of text ("" when absent or hopeless)."""
    try:
        raw = msg.get(name)
    except Exception:  # noqa: BLE001 -- a broken header must not sink the message
        return ""
    if raw is None:
        return ""
    raw = _unsurrogate(raw)
    try:
        text = "".join(decode_text(chunk, charset) if isinstance(chunk, bytes) else chunk
                       for chunk, charset in decode_header(raw))
    except Exception:  # noqa: BLE001
        text = raw
    return " ".join(text.split())[:2000]


def _addresses(msg: email.message.Message, *names: str) -> list[tuple[str, str]]:
    """(display name, lower-case address) pairs from address headers; junk entries are dropped."""
    values = []
    for name in names:
        try:
            values.extend(_unsurrogate(v) for v in (msg.get_all(name) or []))
        except Exception:  # noqa: BLE001
            continue
    try:
        pairs = email.utils.getaddresses([v[:5000] for v in values])
    except Exception:  # noqa: BLE001
        return []
    out = []
    for display, addr in pairs:
        addr = addr.strip().strip("<>").lower()
        if "@" in addr and " " not in addr:
            try:
                display = "".join(decode_text(c, cs) if isinstance(c, bytes) else c for c, cs in decode_header(display))
            except Exception:  # noqa: BLE001
                pass
            out.append((" ".join(display.split())[:200], addr[:320]))
    return out


def _leaves(part: email.message.Message, depth: int = 0) -> Iterator[email.message.Message]:
    """The non-multipart parts, not descending into attached messages."""
    if depth > 30:
        return
    try:
        maintype = part.get_content_maintype()
        payload = part.get_payload()
    except Exception:  # noqa: BLE001
        return
    if isinstance(payload, list) and maintype != "message":
        for sub in payload:
            if isinstance(sub, email.message.Message):
                yield from _leaves(sub, depth + 1)
        return
    yield part


def _part_text(part: email.message.Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001
        payload = None
    if payload is None:
        raw = part.get_payload()
        payload = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""
    try:
        charset = part.get_content_charset()
    except Exception:  # noqa: BLE001
        charset = None
    return decode_text(payload, charset)


def html_to_text(html: str) -> str:
    """Readable text from an HTML body: no images, links reduced to their words, no line wrapping."""
    converter = html2text.HTML2Text()
    converter.body_width = 0
    converter.ignore_images = True
    converter.ignore_links = True
    converter.ignore_emphasis = True
    converter.ignore_tables = True
    try:
        return converter.handle(html[:MAX_HTML_CHARS])
    except Exception:  # noqa: BLE001 -- html2text on broken markup: fall back to stripping tags
        return re.sub(r"<[^>]{0,2000}>", " ", html[:MAX_HTML_CHARS])


def parse_mail(data: bytes) -> Mail:
    """Parse one RFC 5322 message (bytes) into a :class:`Mail`; tolerant of broken input.

    Example::

        >>> m = parse_mail(b"From: Ada <ada@example.com>\\nSubject: Hi\\n\\nSee you at noon.\\n")
        >>> m.sender, m.subject, m.body
        ('ada@example.com', 'Hi', 'See you at noon.')
    """
    msg = email.message_from_bytes(data)  # the compat32 policy: lenient, never raises on bad headers
    mail = Mail(defects=len(getattr(msg, "defects", []) or []))
    senders = _addresses(msg, "From")
    if senders:
        mail.sender_name, mail.sender = senders[0]
    mail.to = [a for _, a in _addresses(msg, "To")][:200]
    mail.cc = [a for _, a in _addresses(msg, "Cc")][:200]
    mail.subject = _header(msg, "Subject")
    mail.message_id = _header(msg, "Message-ID")[:500]
    mail.in_reply_to = _header(msg, "In-Reply-To")[:500]
    mail.references = _header(msg, "References").split()[-50:]
    mail.labels = [x.strip().lower() for x in _header(msg, "X-Gmail-Labels").split(",") if x.strip()]
    auto = _header(msg, "Auto-Submitted").lower()
    mail.automatic = bool(auto and auto != "no") or _header(msg, "X-Autoreply").lower() == "yes"
    date = _header(msg, "Date")
    if date:
        try:
            mail.date = parse_time(email.utils.parsedate_to_datetime(date))
        except (TypeError, ValueError, IndexError, OverflowError):
            mail.date = None
    plain = html = None
    for part in _leaves(msg):
        try:
            ctype = part.get_content_type()
            disposition = part.get_content_disposition()
            filename = part.get_filename()
        except Exception:  # noqa: BLE001
            mail.defects += 1
            continue
        if ctype.startswith("message/") or disposition == "attachment" or (filename and not ctype.startswith("text/")):
            mail.attachments.append({"name": _unsurrogate(str(filename or ""))[:200], "type": ctype})
            continue
        if ctype.startswith("multipart/"):  # a multipart without a usable boundary: read it as text
            ctype = "text/plain"
        if ctype == "text/plain" and plain is None:
            text = _part_text(part)
            plain = text if text.strip() else None
        elif ctype == "text/html" and html is None:
            text = _part_text(part)
            html = text if text.strip() else None
    if plain is not None:
        mail.body = clean_text(plain)
    elif html is not None:
        mail.body = clean_text(html_to_text(html))
        mail.from_html = True
    return mail


# ---------------------------------------------------------------------- separating what the user wrote


def _is_reply_header(lines: list[str], i: int) -> bool:
    line = lines[i]
    if len(line) > 400:
        return False
    if any(p.match(line) for p in _REPLY_HEADERS):
        return True
    # "On Mon, 3 Jan 2022 at 10:00, Bob <bob@example.com>\nwrote:" -- mail clients wrap it.
    if i + 1 < len(lines) and len(lines[i + 1]) < 200 and re.match(r"^\s*(on|le|am|el|il|op)\b", line, re.IGNORECASE):
        if any(p.match(f"{line} {lines[i + 1]}") for p in _REPLY_HEADERS):
            return True
    if _OUTLOOK_FROM.match(line):
        return sum(bool(_OUTLOOK_NEXT.match(x)) for x in lines[i + 1:i + 5]) >= 2
    return False


def _split_signature(lines: list[str]) -> tuple[list[str], list[str]]:
    # 1. The "-- " delimiter (RFC 3676), when what follows is short enough to be a signature.
    for i, line in enumerate(lines):
        if line.rstrip() == "--" and len(lines) - i <= 16:
            return lines[:i], lines[i + 1:]
    signature: list[str] = []
    # 2. "Sent from my iPhone" and friends at the very end.
    for i in range(max(0, len(lines) - 4), len(lines)):
        if _MOBILE_SIGNATURE.match(lines[i]):
            lines, signature = lines[:i], lines[i:]
            break
    # 3. A contact block after the sign-off and name ("Best regards,\nAda\nAda Lovelace | Analyst\n+44 ...").
    filled = [i for i, line in enumerate(lines) if line.strip()]
    for i in reversed(filled[-12:]):
        if _SIGNOFF.match(lines[i]):
            after = [j for j in filled if j > i]
            block = after[1:]
            if block and len(block) <= 8 and all(len(lines[j]) <= 80 for j in block):
                return lines[:after[0] + 1], lines[after[0] + 1:] + signature
            break
    return lines, signature


def split_reply(text: str) -> tuple[str, str, str]:
    """Split a message body into (what the user wrote, quoted text, signature).

    Example::

        >>> own, quoted, sig = split_reply("Sounds good, see you then.\\n\\nOn Mon, Bob wrote:\\n> Lunch?")
        >>> own, quoted
        ('Sounds good, see you then.', 'On Mon, Bob wrote:\\n> Lunch?')
    """
    lines = text.split("\n")
    cut = next((i for i in range(len(lines)) if _is_reply_header(lines, i)), len(lines))
    own: list[str] = []
    quoted: list[str] = []
    for line in lines[:cut]:
        (quoted if line.lstrip().startswith(">") else own).append(line)
    quoted.extend(lines[cut:])
    own, signature = _split_signature(own)
    return clean_text("\n".join(own)), clean_text("\n".join(quoted)), clean_text("\n".join(signature))


def count_words(text: str) -> int:
    return len(_WORD.findall(text))


# ---------------------------------------------------------------------- whose mail


@dataclass
class SenderRule:
    """Decides whether the user sent a message."""

    addresses: frozenset[str] = frozenset()
    everything: bool = False  # a sent folder: every message is the user's
    gmail_sent: bool = False  # Gmail Takeout: the "Sent" label marks the user's messages

    def mine(self, mail: Mail) -> bool:
        if self.everything:
            return True
        if self.addresses:
            return mail.sender in self.addresses
        return self.gmail_sent and "sent" in mail.labels


def infer_rule(name: str, headers: Iterable[Mail]) -> tuple[SenderRule, str]:
    """Guess whose messages these are from a sample of headers (see the module docstring)."""
    counts: Counter[str] = Counter()
    labelled = seen = 0
    for mail in headers:
        seen += 1
        counts.update({mail.sender, *mail.to, *mail.cc} - {""})
        labelled += "sent" in mail.labels
    if labelled:
        return SenderRule(gmail_sent=True), f"{name}: keeping the messages labelled 'Sent' (Gmail)"
    if not seen:
        return SenderRule(everything=True), ""
    top = counts.most_common(2)
    if top and top[0][1] >= 0.5 * seen and (len(top) == 1 or top[0][1] > top[1][1]):
        addr = top[0][0]
        return SenderRule(addresses=frozenset([addr])), (
            f"{name}: keeping messages sent from {addr} (found in {top[0][1]} of {seen} messages; "
            "pass --from to choose other addresses)")
    raise LocalpersError(f"cannot tell which messages in {name} you sent: pass your address(es) with --from "
                         "(sent_from=[...] in Python), or import your Sent folder")


# ---------------------------------------------------------------------- from message to outcome


class MailSource(Source):
    """What mbox, Maildir and .eml have in common: the sender rule and the message-to-outcome step."""

    def __init__(self, path: Path, *, sent_from: list[str] | None = None, kind: str | None = None,
                 min_words: int = 3) -> None:
        super().__init__(path)
        self.sent_from = frozenset(a.strip().lower() for a in (sent_from or []) if a.strip())
        self.kind = kind or "email"
        self.min_words = min_words
        self._rules: dict[str, SenderRule] = {}

    def _sample_headers(self, folder: str) -> Iterator[Mail]:
        raise LocalpersError("no sample")

    def rule(self, folder: str, folder_name: str) -> SenderRule:
        """The sender rule for one folder ("" for an mbox), decided once per scan."""
        if folder not in self._rules:
            if self.sent_from:
                rule = SenderRule(addresses=self.sent_from)
            elif SENT_FOLDER.search(folder_name):
                rule = SenderRule(everything=True)
                self.notes.append(f"{folder_name}: a sent folder, keeping every message")
            else:
                rule, note = infer_rule(folder_name, self._sample_headers(folder))
                if note:
                    self.notes.append(note)
            self._rules[folder] = rule
        return self._rules[folder]

    def outcome(self, data: bytes, rule: SenderRule, ref: str, position: Any, done: int,
                extra: dict | None = None) -> Outcome:
        try:
            mail = parse_mail(data)
        except Exception as exc:  # noqa: BLE001 -- the stdlib parser has corner cases; one message must not stop the rest
            return Rejected(ref, f"unreadable message ({type(exc).__name__})", position, done)
        if not rule.mine(mail):
            if rule.addresses and not mail.sender:
                return Rejected(ref, "no readable From address", position, done)
            return Skipped(ref, "not sent by you", position, done)
        if mail.automatic:
            return Rejected(ref, "automatic reply", position, done)
        if _FORWARD_SUBJECT.match(mail.subject):
            return Rejected(ref, "forwarded message", position, done)
        if not mail.body:
            what = "only attachments" if mail.attachments else "no text"
            return Rejected(ref, f"empty message ({what})", position, done)
        own, quoted, signature = split_reply(mail.body)
        if any(_FORWARD_MARK.match(line) for line in own.split("\n")):
            return Rejected(ref, "forwarded message", position, done)
        words = count_words(own)
        if words < self.min_words:
            return Rejected(ref, f"near-empty ({words} word{'s' if words != 1 else ''} of your own)", position, done)
        metadata: dict[str, Any] = {
            "subject": mail.subject,
            "from": mail.sender,
            "to": mail.to,
            "cc": mail.cc,
            "message_id": mail.message_id,
            "in_reply_to": mail.in_reply_to,
            "references": mail.references,
            "thread": re.sub(r"^\s*((re|aw|sv|antw|r)\s*:\s*)+", "", mail.subject, flags=re.IGNORECASE),
            "quoted": quoted[:MAX_QUOTED_CHARS],
            "signature": signature[:2000],
            "html": mail.from_html,
            "attachments": mail.attachments[:50],
            **(extra or {}),
        }
        if len(own) > MAX_TEXT_CHARS:
            own, metadata["truncated"] = own[:MAX_TEXT_CHARS], True
        return Record(own, self.kind, ref, position, done, created=mail.date, metadata=metadata)


class _MessageBuffer:
    """Collects one message's lines, dropping attachment bulk past LEAN_AFTER_BYTES.

    It follows the ``Content-Type`` lines of the MIME parts going by, so the lines of text
    parts are always kept and only base64 lines of other parts are dropped.
    """

    def __init__(self, headers_only: bool = False) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.dropped = 0
        self.headers_only = headers_only
        self.in_body = False
        self.text_part = True

    def add(self, line: bytes | None) -> None:
        if line is None:  # a runaway line (over MAX_LINE_BYTES): never held
            self.dropped += 1
            return
        if self.headers_only and self.in_body:
            return
        if line in (b"\n", b"\r\n"):
            self.in_body = True
        if line.startswith(b">") and line.lstrip(b">").startswith(b"From "):
            line = line[1:]  # mboxrd: ">From " in a body was escaped by the writer
        if line[:13].lower() == b"content-type:":
            self.text_part = b"text/" in line[13:200].lower()
        if self.size > LEAN_AFTER_BYTES and (self.size > MAX_MESSAGE_BYTES or
                                             not self.text_part and not line.translate(None, _BASE64_CHARS)):
            self.dropped += 1
            return
        self.parts.append(line)
        self.size += len(line)

    def data(self) -> bytes:
        return b"".join(self.parts)


def _raw_file(path: Path, headers_only: bool = False) -> tuple[bytes, int]:
    buf = _MessageBuffer(headers_only)
    with open(path, "rb") as f:
        for _, _, line in read_lines(f, 0, MAX_LINE_BYTES):
            buf.add(line)
            if headers_only and buf.in_body:
                break
    return buf.data(), buf.dropped


# ---------------------------------------------------------------------- mbox


class MboxSource(MailSource):
    """One mbox file, read message by message. Position: ``{"offset": byte, "n": messages done}``."""

    format = "mbox"
    unit = "bytes"

    def identity(self) -> dict:
        return file_identity(self.path)

    def can_resume(self, position: Any) -> bool:
        """True when ``position`` still points at a message boundary of this file."""
        try:
            offset = int(position["offset"])
            size = self.path.stat().st_size
            if offset == size:
                return True
            with open(self.path, "rb") as f:
                f.seek(offset)
                return 0 < offset < size and _FROM_LINE.match(f.readline(MAX_LINE_BYTES)) is not None
        except (KeyError, TypeError, ValueError, OSError):
            return False

    def _messages(self, start: int = 0, headers_only: bool = False) -> Iterator[tuple[int, int, _MessageBuffer]]:
        """(start offset, end offset, buffer) for each message from ``start``."""
        with open(self.path, "rb") as f:
            buf: _MessageBuffer | None = None
            begin_msg = start
            prev_blank = True
            for begin, end, line in read_lines(f, start, MAX_LINE_BYTES):
                if line is not None and prev_blank and line.startswith(b"From ") and _FROM_LINE.match(line):
                    if buf is not None:
                        yield begin_msg, begin, buf
                    buf, begin_msg, prev_blank = _MessageBuffer(headers_only), begin, False
                    continue
                if buf is None:  # bytes before the first "From " line: treat them as a message too
                    buf, begin_msg = _MessageBuffer(headers_only), begin
                buf.add(line)
                prev_blank = line in (b"\n", b"\r\n")
            if buf is not None:
                yield begin_msg, f.tell(), buf

    def _sample_headers(self, folder: str) -> Iterator[Mail]:
        for i, (_, _, buf) in enumerate(self._messages(0, headers_only=True)):
            if i >= INFER_SAMPLE:
                return
            try:
                yield parse_mail(buf.data())
            except Exception:  # noqa: BLE001
                continue

    def scan(self, position: Any = None) -> Iterator[Outcome]:
        rule = self.rule("", self.path.stem)
        start = int(position["offset"]) if position else 0
        n = int(position["n"]) if position else 0
        for _, end, buf in self._messages(start):
            n += 1
            extra = {"folder": self.path.stem}
            if buf.dropped:
                extra["dropped_lines"] = buf.dropped
            yield self.outcome(buf.data(), rule, f"{self.path.name}#{n}", {"offset": end, "n": n}, end, extra)


# ---------------------------------------------------------------------- Maildir and .eml


def is_maildir(path: Path) -> bool:
    """A Maildir (has cur/ or new/), or a folder whose subfolders are Maildirs."""
    def one(p: Path) -> bool:
        return (p / "cur").is_dir() or (p / "new").is_dir()

    if not path.is_dir():
        return False
    return one(path) or any(one(p) for p in path.iterdir() if p.is_dir())


class MaildirSource(MailSource, FileListSource):
    """A Maildir folder with its subfolders (Maildir++ ``.Sent`` or plain ``Sent/``); trash and junk are left out.

    Position: as :class:`FileListSource` (one message a file, in sorted order).
    """

    format = "maildir"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._listing: list[str] | None = None

    def folders(self) -> list[str]:
        """Relative folder paths ("" is the root) holding messages."""
        out = []
        if (self.path / "cur").is_dir() or (self.path / "new").is_dir():
            out.append("")
        for child in sorted(self.path.iterdir()):
            if child.is_dir() and child.name not in ("cur", "new", "tmp") and not SKIP_FOLDER.match(child.name):
                if (child / "cur").is_dir() or (child / "new").is_dir():
                    out.append(child.name)
        return out

    def files(self) -> list[str]:
        """Relative paths of every message file, sorted."""
        if self._listing is None:
            names = []
            for folder in self.folders():
                for sub in ("cur", "new"):
                    d = self.path / folder / sub
                    if d.is_dir():
                        names.extend(str(Path(folder, sub, p.name)) for p in d.iterdir()
                                     if p.is_file() and not p.name.startswith("."))
            self._listing = sorted(names)
        return self._listing

    def _folder_of(self, rel: str) -> str:
        parts = Path(rel).parts
        return parts[0] if len(parts) > 2 else ""

    def _folder_name(self, folder: str) -> str:
        return folder.lstrip(".") or self.path.name

    def _sample_headers(self, folder: str) -> Iterator[Mail]:
        sample = [rel for rel in self.files() if self._folder_of(rel) == folder][:INFER_SAMPLE]
        for rel in sample:
            try:
                yield parse_mail(_raw_file(self.path / rel, headers_only=True)[0])
            except Exception:  # noqa: BLE001
                continue

    def scan(self, position: Any = None) -> Iterator[Outcome]:
        for n, rel, pos in self.remaining(position):
            folder = self._folder_of(rel)
            try:
                rule = self.rule(folder, self._folder_name(folder))
                data, dropped = _raw_file(self.path / rel)
            except OSError as exc:
                yield Rejected(rel, f"cannot read file ({exc.strerror or exc})", pos, n)
                continue
            extra: dict[str, Any] = {"folder": self._folder_name(folder)}
            if dropped:
                extra["dropped_lines"] = dropped
            yield self.outcome(data, rule, rel, pos, n, extra)


class EmlSource(MaildirSource):
    """One ``.eml`` file (the parent folder's name decides whether it counts as sent)."""

    format = "eml"

    def files(self) -> list[str]:
        return [self.path.name]

    def scan(self, position: Any = None) -> Iterator[Outcome]:
        if position:
            return
        pos = {"last": self.path.name, "n": 1}
        rule = self.rule("", self.path.parent.name)
        data, dropped = _raw_file(self.path)
        yield self.outcome(data, rule, self.path.name, pos, 1, {"folder": self.path.parent.name})

    def _sample_headers(self, folder: str) -> Iterator[Mail]:
        yield parse_mail(_raw_file(self.path, headers_only=True)[0])

    def folders(self) -> list[str]:
        return [""]

    def _folder_of(self, rel: str) -> str:
        return ""

    def _folder_name(self, folder: str) -> str:
        return self.path.parent.name

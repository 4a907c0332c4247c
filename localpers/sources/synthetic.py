"""Deterministic synthetic mailboxes, for the tests and ``bench/history.py``.

Real people's mail cannot ship with the project, so the importers are exercised on
generated mail: a seeded generator writes varied messages (a dozen topics, reply
quotes, signatures, HTML-only bodies, other people's mail) and the helpers write them
as an mbox file or a Maildir folder the way mail clients do.

Example::

    >>> import random
    >>> msg = synthetic_email(random.Random(0), 0)
    >>> msg["From"]
    'Ada Lovelace <ada@example.com>'
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Iterable
from email.message import EmailMessage
from pathlib import Path

USER = ("Ada Lovelace", "ada@example.com")
CONTACTS = [("Bob Stone", "bob@example.org"), ("Priya Natarajan", "priya@studio.example"),
            ("Sam Quill", "sam@quill.example"), ("Tom Becker", "tom@uni.example"),
            ("Mei Lin", "mei@lab.example"), ("Jonas Berg", "jonas@berg.example")]
TOPICS: dict[str, list[str]] = {
    "garden": ["birches", "alders", "planting plan", "bench", "shade", "compost", "seedlings", "the riverside path"],
    "budget": ["quarterly budget", "invoice", "spreadsheet", "forecast", "the grant", "expenses", "purchase order"],
    "travel": ["flight", "hotel booking", "train to Lyon", "the conference", "visa letter", "checked bag", "itinerary"],
    "hiring": ["the candidate", "interview panel", "reference letter", "job posting", "the offer", "onboarding"],
    "research": ["the experiment", "GPU cluster", "draft paper", "reviewer comments", "the dataset", "ablation study"],
    "teaching": ["the lecture", "exam questions", "office hours", "the syllabus", "grading", "teaching assistant"],
    "family": ["Sunday lunch", "the kids", "birthday party", "grandma's visit", "the holidays", "school pickup"],
    "house": ["the plumber", "kitchen tiles", "the landlord", "rent", "the leaking roof", "moving boxes"],
    "music": ["rehearsal", "the concert", "violin strings", "the choir", "sheet music", "the new piano"],
    "health": ["the dentist", "physiotherapy", "running club", "the appointment", "yoga class", "a sore knee"],
    "books": ["the book club", "the novel", "library loan", "poetry reading", "the manuscript", "the bookshop"],
    "software": ["the release", "a bug report", "code review", "the database migration", "unit tests", "the API"],
}
OPENERS = ["Hi {name},", "Dear {name},", "Hello {name},", "{name},", "Hey {name},"]
SENTENCES = [
    "I had another look at {a} and I think we should move {b} to next week.",
    "Could you send me the latest version of {a} before Thursday?",
    "Thanks for sorting out {a}; {b} still needs a decision from us.",
    "I'm not sure {a} works for me, but I am happy to talk about {b}.",
    "Quick update: {a} is done, and {b} should follow by Friday.",
    "Would it help if I called you about {a} tomorrow morning?",
    "Let's keep {a} simple and leave {b} for later.",
    "I spoke to the others about {a}; everyone is fine with {b}.",
    "Sorry for the delay on {a} -- it has been a busy week with {b}.",
    "Can we meet to go over {a} and {b}? Tuesday afternoon would suit me.",
]
SIGNOFFS = ["Best,", "Best regards,", "Cheers,", "Thanks,", "Kind regards,", "All the best,"]


def synthetic_email(rng: random.Random, i: int, *, sender: tuple[str, str] = USER, html_share: float = 0.1,
                    reply_share: float = 0.4, signature_share: float = 0.3) -> EmailMessage:
    """One plausible message from ``sender``; ``i`` makes its Message-ID and date unique."""
    topic = rng.choice(list(TOPICS))
    words = TOPICS[topic]
    name, addr = rng.choice(CONTACTS)
    lines = [rng.choice(OPENERS).format(name=name.split()[0]), ""]
    for _ in range(rng.randint(2, 5)):
        a, b = rng.sample(words, 2)
        lines.append(rng.choice(SENTENCES).format(a=a, b=b))
    lines += ["", rng.choice(SIGNOFFS), sender[0].split()[0]]
    if rng.random() < signature_share:
        lines += [f"{sender[0]} | Landscape Analyst", "+44 20 7946 0000"]
    subject = f"{rng.choice(['', 'Re: ', 'Re: '])}{rng.choice(words).capitalize()} ({topic})"
    if rng.random() < reply_share:
        lines += ["", f"On Mon, 3 Jan 2022 at 10:{i % 60:02d}, {name} <{addr}> wrote:",
                  f"> What do you think about {rng.choice(words)}?", "> Thanks!"]
    msg = EmailMessage()
    msg["From"] = f"{sender[0]} <{sender[1]}>"
    msg["To"] = f"{name} <{addr}>"
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate(1_600_000_000 + i * 3600 * 7, usegmt=True)
    msg["Message-ID"] = f"<synthetic-{i}@example.com>"
    body = "\n".join(lines) + "\n"
    if rng.random() < html_share:
        html = "".join(f"<p>{line}</p>" for line in lines if line and not line.startswith(">"))
        msg.set_content(f"<html><head><style>p {{margin: 0}}</style></head><body>{html}</body></html>", subtype="html")
    else:
        msg.set_content(body)
    return msg


def synthetic_mailbox(n: int, *, seed: int = 0, others_share: float = 0.0) -> list[EmailMessage]:
    """``n`` messages; a share of them sent by other people (to the user) when ``others_share`` > 0."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        sender = rng.choice(CONTACTS) if rng.random() < others_share else USER
        msg = synthetic_email(rng, i, sender=sender)
        if sender != USER:
            del msg["To"]
            msg["To"] = f"{USER[0]} <{USER[1]}>"
        out.append(msg)
    return out


def message_bytes(msg: EmailMessage | bytes) -> bytes:
    return msg if isinstance(msg, bytes) else msg.as_bytes()


def write_mbox(path: Path, messages: Iterable[EmailMessage | bytes]) -> Path:
    """Write messages (EmailMessage or raw bytes) as an mboxrd file: ``From `` lines, ``>From`` escaping."""
    with open(path, "wb") as f:
        for n, msg in enumerate(messages):
            data = message_bytes(msg).replace(b"\r\n", b"\n")
            f.write(f"From MAILER-DAEMON Mon Jan  3 10:{n % 60:02d}:00 2022\n".encode())
            for line in data.split(b"\n"):
                if line.lstrip(b">").startswith(b"From "):
                    line = b">" + line
                f.write(line + b"\n")
            f.write(b"\n")
    return path


def write_maildir(root: Path, messages: Iterable[EmailMessage | bytes], folder: str = "") -> Path:
    """Write messages into a Maildir (``folder`` "" is the root, ".Sent" a Maildir++ subfolder)."""
    base = root / folder if folder else root
    for sub in ("cur", "new", "tmp"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    for n, msg in enumerate(messages):
        (base / "cur" / f"{1_600_000_000 + n}.M{n}P1.host:2,S").write_bytes(message_bytes(msg))
    return root

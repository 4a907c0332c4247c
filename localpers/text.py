"""Short text for people: one terminal line, a clipped title, a byte size, a duration.

The CLI and the app both format with these, so a size or a time reads the same everywhere.

Example::

    >>> clip("A  long\\ntitle that goes on", 12)
    'A long titl…'
    >>> first_line("\\n  Dear Tom,\\nsee you", 40)
    'Dear Tom,'
    >>> human_bytes(3_400_000), human_bytes(3_400_000, iec=True), human_bytes(812)
    ('3.2 MB', '3.2 MiB', '812 B')
    >>> human_duration(5400), clock_duration(185)
    ('1 h 30 min', '3m05s')
"""

from __future__ import annotations

ELLIPSIS = "…"


def one_line(message: str) -> str:
    """A message safe to print as one terminal line: newlines folded, control bytes escaped.

    >>> one_line("bad\\x00data\\x1b[2J\\nin two lines")
    'bad\\\\x00data\\\\x1b[2J in two lines'
    """
    folded = " ".join(message.split("\n"))
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in folded)


def clip(text: str | None, limit: int) -> str:
    """``text`` with its whitespace folded to single spaces, cut to ``limit`` characters (ending in '…')."""
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def first_line(text: str | None, width: int = 60) -> str:
    """The first non-empty line of ``text``, cut to ``width`` characters."""
    for line in (text or "").splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= width else line[: width - 1] + ELLIPSIS
    return ""


def human_bytes(n: int | float, *, coarse: bool = False, iec: bool = False) -> str:
    """'512 B', '14.2 KB', '3.1 MB' (``iec``: 'KiB', 'MiB'). ``coarse`` gives MB with one decimal from 100 KB up."""
    names = ("B", "KiB", "MiB", "GiB") if iec else ("B", "KB", "MB", "GB")
    if coarse and n >= 100 * 1024:
        return f"{n / 1024 / 1024:.1f} {names[2]}"
    for unit in names:
        if n < 1024 or unit == names[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} {names[-1]}"


def human_duration(seconds: float | None) -> str:
    """'45 s', '3 min', '1 h 20 min'."""
    if seconds is None or seconds != seconds:  # NaN
        return "unknown"
    seconds = max(0, int(round(seconds)))
    if seconds < 90:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def clock_duration(s: float | None) -> str:
    """A compact duration for progress lines: '45s', '3m05s', '1h02m' ('?' when unknown)."""
    if s is None:
        return "?"
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")

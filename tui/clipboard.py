"""Copying text to the clipboard: the system's clipboard tool when there is one, else the terminal.

The terminal way (the OSC 52 escape sequence) needs a terminal that accepts it, and
the app cannot tell whether it did; a clipboard tool can say it worked. The text goes
to the tool through a pipe, never through a file.

Example::

    >>> copy_with_tool("hello", tools=[])   # no tool: the caller falls back to the terminal
"""

from __future__ import annotations

import os
import shutil
import subprocess

# (command, the display it needs: an environment variable, or "" for none)
TOOLS: list[tuple[list[str], str]] = [
    (["wl-copy"], "WAYLAND_DISPLAY"),
    (["xclip", "-selection", "clipboard"], "DISPLAY"),
    (["xsel", "--clipboard", "--input"], "DISPLAY"),
    (["pbcopy"], ""),
    (["clip.exe"], ""),
]


def copy_with_tool(text: str, tools: list[tuple[list[str], str]] | None = None) -> str | None:
    """Copy ``text`` with the first clipboard tool that is installed and usable; its name, or None."""
    for argv, display in TOOLS if tools is None else tools:
        if shutil.which(argv[0]) is None or (display and not os.environ.get(display)):
            continue
        try:
            subprocess.run(argv, input=text.encode("utf-8"), timeout=3, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            continue
        return argv[0]
    return None

"""Text from a study (names, messages, paths) made safe to show: a crafted store must not
drive the user's terminal (escape sequences) or inject Rich markup."""

from __future__ import annotations

import re
import unicodedata

from rich.markup import escape

_TERMINAL_SEQUENCE = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_])")


def printable(text: object) -> str:
    """``text`` without terminal escape sequences and control characters; line breaks and
    tabs become spaces."""
    text = _TERMINAL_SEQUENCE.sub("", str(text)).replace("\n", " ").replace("\t", " ")
    return "".join(char for char in text if unicodedata.category(char) != "Cc")


def terminal_text(text: object) -> str:
    """Text safe to hand to Rich: :func:`printable`, with its markup escaped."""
    return escape(printable(text))

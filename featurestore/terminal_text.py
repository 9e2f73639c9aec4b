"""Text for a terminal: control characters from data escaped, so a string stored in a store (a file name, a caption,
a label) or an input file cannot move the cursor, clear the screen, retitle the window or reorder what is shown.

Escaped: every C0 and C1 control character and DEL (ESC starts ANSI/VT100 sequences, CSI 0x9b is their 8-bit form,
CR and BS overwrite what was printed) and the Unicode bidirectional overrides and isolates (U+202A-U+202E,
U+2066-U+2069, U+200E/F: they reorder what the reader sees). Line feed and tab stay where our own output has them;
`escape_control(text, keep="")` escapes those too (a table cell).
"""
from __future__ import annotations

import contextlib
import logging
import re
import sys
from typing import Iterator, TextIO

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def escape_control(text: str, keep: str = "\n\t") -> str:
    """`text` with every control character but those in `keep` written as `\\x1b` / `\\u202e`."""
    def escaped(match: re.Match) -> str:
        char = match.group()
        if char in keep:
            return char
        return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"

    return _CONTROL.sub(escaped, text)


class TerminalSafeStream:
    """A text stream whose writes are escaped (escape_control) before they reach `inner`."""

    def __init__(self, inner: TextIO):
        self._inner = inner

    def write(self, text: str) -> int:
        self._inner.write(escape_control(text))
        return len(text)

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


@contextlib.contextmanager
def terminal_safe_output() -> Iterator[None]:
    """stdout and stderr escaped for the duration of the block (a command's whole output)."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = TerminalSafeStream(sys.stdout), TerminalSafeStream(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


class TerminalSafeFormatter(logging.Formatter):
    """A logging formatter whose lines carry no control characters from the data they quote."""

    def format(self, record: logging.LogRecord) -> str:
        return escape_control(super().format(record))

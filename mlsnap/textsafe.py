"""Recorded text shown on a terminal: control characters escaped, never sent raw.

Messages, names, params, tags and paths come from whoever made the snapshot. Printed raw, an
escape sequence in a message can set the window title, clear the screen or hide lines; a
carriage return can overwrite what came before; bidirectional overrides can show text in an
order other than its own. ``escape`` shows each as a visible ``\\x1b``-style escape. JSON output
needs none of this: ``json.dumps`` escapes control characters itself.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, and the Unicode bidirectional embeddings, overrides and isolates.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _show(match: re.Match[str]) -> str:
    char = match.group(0)
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str, keep: str = "") -> str:
    """``text`` with every control character shown as an escape (those in ``keep`` left as
    they are, e.g. ``"\\n"`` for a multi-line document)."""
    if keep:
        return _UNSAFE.sub(lambda m: m.group(0) if m.group(0) in keep else _show(m), text)
    return _UNSAFE.sub(_show, text)


def escape_lines(text: str) -> str:
    """A multi-line document (YAML, a table): line breaks kept, every other control escaped."""
    return escape(text, keep="\n")

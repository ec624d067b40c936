"""A snapshot diff as text (``mlsnap diff``): one section per kind of change, ``+`` added,
``-`` removed, ``~`` changed; recorded text escaped for the terminal.
"""

from __future__ import annotations

from typing import Any

from mlsnap.compare import MAX_FILE_ENTRIES, MAX_FILE_LINES, Change, FileChanges, Side, SnapshotDiff
from mlsnap.fsutil import human_size


def _value(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else ("null" if v is None else str(v))


def _side(s: Side) -> str:
    label = s.commit[:7] + (f" ({', '.join(s.tags)})" if s.tags else "")
    return label if s.rev in (s.commit[:7], s.commit, *s.tags) else f"{s.rev} = {label}"


def render(d: SnapshotDiff) -> str:
    """The diff as text: one section per kind of change, ``+`` added, ``-`` removed, ``~`` changed."""
    lines = [f"{d.name}: {_side(d.a)} -> {_side(d.b)}"]
    if d.params:
        lines.append("params:")
        lines += [f"  {_mark(c)} {c.key}: " + (_value(c.new) if c.old is None else _value(c.old)
                  if c.new is None else f"{_value(c.old)} -> {_value(c.new)}") for c in d.params]
    if d.metrics:
        lines.append("metrics:")
        for m in d.metrics:
            text = f"  {m.key}: {_value(m.old)} -> {_value(m.new)}" if m.changed \
                else f"  {m.key}: {_value(m.new)} (unchanged)"
            if m.changed and m.delta is not None:
                text += f" ({m.delta:+.6g}" + (f", {m.relative:+.2%})" if m.relative is not None
                                                else ")")
            lines.append(text)
    if d.outputs or d.data_hash:
        lines.append("artifacts and data:")
        for o in d.outputs:
            was = f"{o.old.md5[:8]} ({human_size(o.old.size)})" if o.old else ""
            now = f"{o.new.md5[:8]} ({human_size(o.new.size)})" if o.new else ""
            body = f"{was} -> {now}" if o.old and o.new else (was or now)
            lines.append(f"  {_mark_status(o.status)} {o.path} [{o.kind}]: {body}")
            if o.files is not None:
                lines += _file_lines(o.files)
        if d.data_hash:
            lines.append(f"  ~ data hash: {_value(d.data_hash.old)} -> {_value(d.data_hash.new)}")
    if d.packages or d.platform:
        lines.append("environment:")
        for c in d.platform + d.packages:
            lines.append(f"  {_mark(c)} {c.key} " + (_value(c.new) if c.old is None else
                         _value(c.old) if c.new is None else f"{c.old} -> {c.new}"))
    if d.code:
        code = d.code
        count = "unknown" if code.count is None else str(code.count)
        lines.append(f"code: {code.old[:7]}..{code.new[:7]}: {count} commit(s)"
                     + (f" ({code.error})" if code.error else ""))
        lines += [f"  {line}" for line in code.lines]
        if code.count is not None and code.count > len(code.lines):
            lines.append(f"  ... and {code.count - len(code.lines)} more")
    if d.same:
        lines.append("no differences")
    return "\n".join(lines)


def _printable(text: str) -> str:
    """A name from a ``.dir`` listing (anyone's) never puts control characters on a terminal."""
    return text if text.isprintable() else repr(text)[1:-1]


def _file_lines(files: FileChanges) -> list[str]:
    if files.error:
        return [f"      ({files.error})"]
    marked = files.marked()
    lines = [f"      {mark} {_printable(path)}" for mark, path in marked[:MAX_FILE_LINES]]
    if len(marked) > MAX_FILE_LINES:
        lines.append(f"      ... and {len(marked) - MAX_FILE_LINES} more file(s) "
                     f"({len(files.added)} added, {len(files.removed)} removed, "
                     f"{len(files.changed)} changed; --json lists up to {MAX_FILE_ENTRIES})")
    return lines


def _mark(c: Change) -> str:
    return "+" if c.old is None else "-" if c.new is None else "~"


def _mark_status(status: str) -> str:
    return {"added": "+", "removed": "-"}.get(status, "~")

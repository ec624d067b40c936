"""The manifest's optional ``run:`` record: the command ``mlsnap run`` ran to make a snapshot.

``run: {cmd: [...], cwd: ., exit_code: 0, started: ..., duration_s: ..., output_tail: ...}``.
Manifests without it (taken with ``commit``) stay valid, and older mlsnap versions ignore it.
Like every manifest field it arrives with clones, so reading it checks every value: ``repro``
runs ``cmd`` in ``cwd``, which must be a plain relative path inside the worktree.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlsnap import pathsafety
from mlsnap.params import as_float

MAX_ARGS = 4096
MAX_TAIL = 8192  # characters of output kept (``output_tail``)


@dataclass(frozen=True)
class Run:
    cmd: tuple[str, ...]
    cwd: str  # repo-relative POSIX path; "." is the repository root
    exit_code: int
    started: str  # UTC, ISO 8601
    duration_s: float
    output_tail: str | None = None  # the last lines CMD printed (stdout and stderr), redacted

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"cmd": list(self.cmd), "cwd": self.cwd,
                               "exit_code": self.exit_code, "started": self.started,
                               "duration_s": self.duration_s}
        if self.output_tail is not None:
            doc["output_tail"] = self.output_tail
        return doc


def from_doc(doc: Any, fail: Callable[[str, str], Exception]) -> Run | None:
    """A validated ``Run`` from the manifest's ``run:`` value (None when absent);
    ``fail(where, reason)`` builds the error to raise."""
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise fail("run", f"expected a mapping, got {type(doc).__name__}")
    for key in ("cmd", "cwd", "exit_code", "started", "duration_s"):
        if key not in doc:
            raise fail("run", f"missing key {key!r}")
    cmd = doc["cmd"]
    if not isinstance(cmd, list) or not cmd or len(cmd) > MAX_ARGS:
        raise fail("run.cmd", f"expected a non-empty list of at most {MAX_ARGS} arguments")
    for i, arg in enumerate(cmd):
        if not isinstance(arg, str) or "\x00" in arg:
            raise fail(f"run.cmd[{i}]", "expected a string without NUL characters")
    cwd = doc["cwd"]
    if not isinstance(cwd, str):
        raise fail("run.cwd", f"expected a string, got {type(cwd).__name__}")
    if cwd != ".":
        reason = pathsafety.problem_in_repo(cwd)
        if reason is not None:
            raise fail("run.cwd", reason)
    code = doc["exit_code"]
    if isinstance(code, bool) or not isinstance(code, int):
        raise fail("run.exit_code", "expected an integer")
    started = doc["started"]
    if not isinstance(started, str):
        raise fail("run.started", "expected a string (UTC time)")
    duration = doc["duration_s"]
    seconds = as_float(duration)
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        raise fail("run.duration_s", "expected a number of seconds, not negative")
    tail = doc.get("output_tail")
    if tail is not None and (not isinstance(tail, str) or len(tail) > 4 * MAX_TAIL):
        raise fail("run.output_tail", "expected a string of the last lines printed")
    return Run(tuple(cmd), cwd, code, started, seconds, tail)

"""What ``mlsnap repro`` proves: the certificate, and the comparisons it is made of.

Artifacts are compared byte for byte (MD5, DVC's own hash: a file, or every file of a folder
against the recorded listing); metrics one by one, numbers within ``atol + rtol * |recorded|``
(as ``math.isclose`` and NumPy do), anything else for equality.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlsnap.fsutil import md5_file
from mlsnap.manifest import Output
from mlsnap.params import as_float

REPRODUCED = "reproduced"
WITHIN = "within-tolerance"
DIFFERS = "differs"
FAILED = "failed"
EXIT_CODES = {REPRODUCED: 0, WITHIN: 0, DIFFERS: 3, FAILED: 1}


@dataclass(frozen=True)
class ArtifactCheck:
    path: str
    recorded: str  # DVC hash in the manifest
    reproduced: str | None  # of the re-run's file (folders: None, see ``files``)
    result: str  # identical | differs | missing
    files: tuple[str, ...] = ()  # a folder's files that differ: "+new", "-gone", "~changed"

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"path": self.path, "recorded": self.recorded,
                               "reproduced": self.reproduced, "result": self.result}
        if self.files:
            doc["files"] = list(self.files)
        return doc


@dataclass(frozen=True)
class MetricCheck:
    key: str  # dotted
    recorded: Any
    reproduced: Any  # None when the re-run did not measure it
    result: str  # equal | within-tolerance | differs | not-measured

    def to_dict(self) -> dict[str, Any]:
        from mlsnap.jsonout import jsonable

        return {"key": self.key, "recorded": jsonable(self.recorded),
                "reproduced": jsonable(self.reproduced), "result": self.result}


@dataclass(frozen=True)
class Certificate:
    """The result of one ``repro``: ``verdict`` and the evidence for it."""

    verdict: str
    rev: str
    name: str
    commit: str  # the snapshot's commit (REV resolved)
    code_commit: str
    command: tuple[str, ...] | None
    exit_code: int | None  # of the re-run; None when nothing ran
    artifacts: tuple[ArtifactCheck, ...] = ()
    metrics: tuple[MetricCheck, ...] = ()
    environment: dict[str, Any] | None = None  # drift of the re-run (``Drift.to_dict``)
    drift_table: str = ""
    env_mode: str = "current"
    rebuilt: dict[str, Any] | None = None  # --env rebuild: installer, installed, failed, seconds
    rtol: float = 0.0
    atol: float = 0.0
    duration_s: float = 0.0  # all of repro: worktree, restore, command, compare
    command_s: float | None = None  # the command alone
    reason: str | None = None  # why ``failed``
    worktree: str | None = None  # kept with --keep

    @property
    def exit_code_for_verdict(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "rev": self.rev,
            "name": self.name,
            "commit": self.commit,
            "code_commit": self.code_commit,
            "command": list(self.command) if self.command is not None else None,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "artifacts": [a.to_dict() for a in self.artifacts],
            "metrics": [m.to_dict() for m in self.metrics],
            "tolerance": {"rtol": self.rtol, "atol": self.atol},
            "environment": {"mode": self.env_mode, "drift": self.environment,
                            **({"rebuilt": self.rebuilt} if self.rebuilt is not None else {})},
            "duration_s": self.duration_s,
            "command_s": self.command_s,
            "worktree": self.worktree,
        }


def folder_files(folder: Path) -> dict[str, str]:
    """relpath -> md5 of every file under ``folder`` (symbolic links not followed)."""
    found: dict[str, str] = {}
    for top, dirs, files in os.walk(folder):
        dirs.sort()
        for fname in files:
            full = Path(top) / fname
            if full.is_file() and not full.is_symlink():
                found[full.relative_to(folder).as_posix()] = md5_file(full)
    return found


def check_artifact(out: Output, produced: Path,
                   listing: Sequence[Mapping[str, Any]] | None) -> ArtifactCheck:
    """``produced`` (the re-run's file or folder) against the recorded ``out``; a folder
    needs the recorded ``listing`` (its entries' relpath and md5)."""
    if out.is_dir:
        if not produced.is_dir() or produced.is_symlink():
            return ArtifactCheck(out.path, out.md5, None, "missing")
        want = {str(e["relpath"]): str(e["md5"]) for e in listing or ()}
        have = folder_files(produced)
        files = tuple([f"+{p}" for p in sorted(set(have) - set(want))]
                      + [f"-{p}" for p in sorted(set(want) - set(have))]
                      + [f"~{p}" for p in sorted(set(want) & set(have)) if want[p] != have[p]])
        return ArtifactCheck(out.path, out.md5, None, "differs" if files else "identical", files)
    if not produced.is_file() or produced.is_symlink():
        return ArtifactCheck(out.path, out.md5, None, "missing")
    actual = md5_file(produced)
    return ArtifactCheck(out.path, out.md5, actual,
                         "identical" if actual == out.md5 else "differs")


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_metrics(recorded: Mapping[str, Any], measured: Mapping[str, Any] | None,
                  rtol: float, atol: float) -> tuple[MetricCheck, ...]:
    """Each recorded metric against the re-run's (``measured``, None: nothing was read)."""
    now = flatten(measured) if measured is not None else {}
    checks = []
    for key, old in flatten(recorded).items():
        if key not in now:
            checks.append(MetricCheck(key, old, None, "not-measured"))
            continue
        new = now[key]
        a, b = as_float(old), as_float(new)  # None too for an integer no float holds
        if a is not None and b is not None:
            if a == b or (math.isnan(a) and math.isnan(b)):
                result = "equal"
            elif math.isfinite(a) and math.isfinite(b) and abs(a - b) <= atol + rtol * abs(a):
                result = "within-tolerance"
            else:
                result = "differs"
        else:
            result = "equal" if old == new else "differs"
        checks.append(MetricCheck(key, old, new, result))
    return tuple(checks)


def verdict(artifacts: Sequence[ArtifactCheck], metrics: Sequence[MetricCheck]) -> str:
    """``reproduced`` when every artifact is byte-identical; ``within-tolerance`` when some
    differ but there are metrics and every one was re-measured within tolerance; else
    ``differs``."""
    if artifacts and all(a.result == "identical" for a in artifacts):
        return REPRODUCED
    if metrics and all(m.result in ("equal", "within-tolerance") for m in metrics):
        return WITHIN
    return DIFFERS

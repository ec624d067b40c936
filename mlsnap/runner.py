"""The run flow: check, hash the inputs, run CMD, check again, then take the snapshot through
the commit flow (``mlsnap.snapshot.commit``) with the command recorded as ``run:``.

Everything a snapshot would refuse is refused *before* CMD starts (dirty code, an existing
tag, a missing input), so hours of training never end in an error that was known at second
one. Nothing is written while CMD runs and no lock is held; the snapshot is journaled like
every commit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mlsnap import config as configmod
from mlsnap import (
    environment,
    gitrepo,
    journal,
    redaction,
    runproc,
    snapshot,
    sources,
    store,
    workspace,
)
from mlsnap.errors import BadInput, CodeChanged, CommandFailed, DirtyWorktree, InputChanged
from mlsnap.manifest import check_version
from mlsnap.runrecord import Run
from mlsnap.snapshot import CommitResult


@dataclass(frozen=True)
class RunResult:
    run: Run  # what the manifest records as ``run:``
    snapshot: CommitResult


@dataclass(frozen=True)
class _Before:
    """What must still hold when CMD ends."""

    head: str
    code: str  # md5 of the uncommitted diff of the code
    inputs: dict[str, str]  # path -> DVC hash
    files: dict[str, str | None]  # params file -> md5 of its bytes (None: absent)


def _file_md5(path: Path) -> str | None:
    try:
        return hashlib.md5(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _code_state(root: Path, exclude: Sequence[str]) -> str:
    return hashlib.md5(gitrepo.diff_head(root, exclude=exclude)).hexdigest()


def run(
    cmd: Sequence[str],
    *,
    outputs: Sequence[str] = (),
    data: Sequence[str] = (),
    param_values: Sequence[str] = (),
    param_files: Sequence[str] | None = None,
    metric_values: Sequence[str] = (),
    metric_files: Sequence[str] | None = None,
    name: str | None = None,
    message: str = "",
    tag: str | None = None,
    allow_dirty: bool = False,
    push: bool = True,
    jobs: int | None = None,
    cwd: Path | None = None,
    extra_params: dict[str, Any] | None = None,
    extra_metrics: dict[str, Any] | None = None,
    stdout: IO[Any] | None = None,
    stderr: IO[Any] | None = None,
) -> RunResult:
    """Run ``cmd`` in the repository root and snapshot ``outputs``; see ``mlsnap run --help``.

    ``stdout``/``stderr`` receive CMD's output as it arrives (default: this process's own).
    """
    if not cmd:
        raise BadInput("mlsnap run", "no command given: `mlsnap run -o model.pkl -- python "
                       "train.py`")
    cwd = cwd or Path.cwd()
    root = workspace.find_root(cwd)
    workspace.require_ready(root)
    gitrepo.require_identity(root)
    journal.recover(root)  # an interrupted command before this one is put right first
    cfg = configmod.load(root)
    snap_name = workspace.check_name(name or cfg.default_name)
    if tag:
        version = check_version(tag, f"--tag {tag!r}")
        if gitrepo.tag_exists(root, f"{snap_name}@v{version}"):
            raise BadInput(f"--tag {tag}", f"tag {snap_name}@v{version} already exists; "
                           "choose a new version")
    prev = snapshot.previous_manifest(root, snap_name)
    chosen = sources.plan(root, cwd, cfg, snap_name, prev, outputs, data, param_files,
                          metric_files)
    if not chosen.artifacts:
        raise BadInput("mlsnap run", "no artifact to snapshot: name what the command writes "
                       "with -o PATH (`mlsnap run -o model.pkl -- python train.py`)")
    for path in chosen.inputs:
        if not (root / path).exists():
            raise BadInput(f"--data {path}", "no such file or directory; the command reads "
                           "its inputs, so they must exist before it starts")
    read = sources.files_read([*chosen.param_files, *chosen.metric_files], root)
    recorded = chosen.artifacts + chosen.inputs
    secrets = redaction.env_secrets()
    judged = sources.judge_files(root, read, secrets, recorded)
    dirty = snapshot.uncommitted_code(root, cfg, snap_name, recorded, judged.commit)
    if dirty and not allow_dirty:
        raise DirtyWorktree(dirty)

    exclude = [*snapshot.owned_files(root, snap_name, recorded), *read, *recorded]
    param_read = sources.files_read(chosen.param_files, root)
    with store.open_repo(root) as repo:  # DVC's state DB: the commit will not hash them again
        inputs = {p: store.workspace_hash(repo, p) or "" for p in chosen.inputs}
    before = _Before(gitrepo.head(root), _code_state(root, exclude), inputs,
                     {f: _file_md5(root / f) for f in param_read})
    python = runproc.python_of(cmd, root)
    recorded_env = environment.capture(python)

    finished = _execute(cmd, root, stdout, stderr)
    command = runproc.shown(cmd)
    if finished.returncode != 0:
        raise CommandFailed(command, runproc.how_it_ended(finished.returncode))
    _check_unchanged(root, before, exclude)
    missing = [p for p in chosen.artifacts if not (root / p).exists()]
    if missing:
        raise CommandFailed(command, f"exited with code 0 but did not write {', '.join(missing)}"
                            " (-o)")

    record = Run(cmd=tuple(redaction.redact_text(arg, secrets) for arg in cmd), cwd=".",
                 exit_code=0, started=finished.started, duration_s=finished.duration_s,
                 output_tail=redaction.redact_text(finished.tail, secrets) or None)
    env = recorded_env
    if finished.imported is not None:
        env = dataclasses.replace(env, imported=list(finished.imported))
    result = snapshot.commit(
        outputs, data=data, param_values=param_values, param_files=param_files,
        metric_values=metric_values, metric_files=metric_files, name=name, message=message,
        tag=tag, allow_dirty=allow_dirty, push=push, env=env, jobs=jobs, cwd=cwd,
        extra_params=extra_params, extra_metrics=extra_metrics, run=record,
        expect_inputs=before.inputs)
    return RunResult(record, result)


def _execute(cmd: Sequence[str], root: Path, stdout: IO[Any] | None,
             stderr: IO[Any] | None) -> runproc.Finished:
    try:
        return runproc.execute(cmd, root, stdout=sys.stdout if stdout is None else stdout,
                               stderr=sys.stderr if stderr is None else stderr)
    except FileNotFoundError:
        raise CommandFailed(runproc.shown(cmd), "could not start: no such program (is it on "
                            "PATH, or the path right from the repository root?)") from None
    except PermissionError:
        raise CommandFailed(runproc.shown(cmd), "could not start: permission denied "
                            "(not executable)") from None


def _check_unchanged(root: Path, before: _Before, exclude: Sequence[str]) -> None:
    head = gitrepo.head(root)
    if head != before.head:
        raise CodeChanged(f"HEAD moved from {before.head[:7]} to {head[:7]}")
    if _code_state(root, exclude) != before.code:
        raise CodeChanged("tracked code was edited")
    for path, md5 in before.files.items():
        now = _file_md5(root / path)
        if now != md5:
            raise InputChanged(path, md5 or "(absent)", now or "(deleted)")
    if before.inputs:
        with store.open_repo(root) as repo:
            for path, md5 in before.inputs.items():
                now = store.workspace_hash(repo, path) or "(deleted)"
                if now != md5:
                    raise InputChanged(path, md5, now)

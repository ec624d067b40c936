"""The repro flow: re-run a snapshot's recorded command where nothing of the user's can be
touched, then compare what it made with what the snapshot records.

1. The snapshot at REV, its ``run:`` record, and the bytes of its inputs (and patch) in the
   cache, downloaded and hashed when missing.
2. A temporary ``git worktree`` (hooks off) at the code commit, plus the files the snapshot's
   own commit added (the params files it read), plus its patch when the code was dirty.
3. The inputs copied in, each file verified against its hash; the recorded artifacts and
   metrics files removed, so that only the re-run can make them.
4. The command, in the recorded folder, its output streamed.
5. Every artifact hashed and compared; every recorded metric re-read from the snapshot's
   metrics files and compared; the environment of the re-run against the recorded one.
6. The worktree removed (unless ``keep``), on success, failure and Ctrl-C alike.

HEAD, the branch, the index and the work tree of the repository are never written.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from mlsnap import (
    collected,
    environment,
    gitrepo,
    history,
    pathsafety,
    reprocheck,
    runproc,
    textsafe,
    workspace,
)
from mlsnap.errors import BadInput, MissingObjects, MlsnapError
from mlsnap.fsutil import remove_path
from mlsnap.manifest import MANIFEST_DIR, Manifest, manifest_path
from mlsnap.reprocheck import FAILED, Certificate

ENV_MODES = ("current", "rebuild")


def repro(rev: str | None = None, *, name: str | None = None, rtol: float = 0.0,
          atol: float = 0.0, env: str = "current", keep: bool = False,
          remote: str | None = None, cwd: Path | None = None, stdout: IO[Any] | None = None,
          stderr: IO[Any] | None = None) -> Certificate:
    """Re-run the recorded command of the snapshot at ``rev`` (default HEAD) and compare; see
    ``mlsnap repro --help``. The command's output goes to ``stdout``/``stderr``."""
    import sys

    clock = time.monotonic()
    if rtol < 0 or atol < 0 or not all(map(_finite, (rtol, atol))):
        raise BadInput("--rtol/--atol", "tolerances are finite numbers, not negative")
    if env not in ENV_MODES:
        raise BadInput(f"--env {env}", f"choose one of {', '.join(ENV_MODES)}")
    root = workspace.find_root(cwd)
    label = rev or "HEAD"
    snap = history.at(root, label, name)
    m = snap.manifest

    def make(verdict: str, **kw: Any) -> Certificate:
        return Certificate(verdict, rev=label, name=snap.name, commit=snap.commit,
                           code_commit=m.code.commit, env_mode=env, rtol=rtol, atol=atol,
                           duration_s=_since(clock), **kw)

    if m.run is None:
        return make(FAILED, command=None, exit_code=None, reason=(
            f"no recorded command: {manifest_path(snap.name)} at {snap.commit[:7]} was taken "
            "with `mlsnap commit`; take snapshots with `mlsnap run -o PATH -- CMD` to make "
            "them reproducible"))
    if not gitrepo.has_commit(root, m.code.commit):
        raise BadInput(f"{snap.commit[:7]}:{manifest_path(snap.name)}",
                       f"code.commit {m.code.commit[:12]} is not in this repository (a shallow "
                       "clone? `git fetch --unshallow`)")
    own = gitrepo.last_change(root, snap.commit, manifest_path(snap.name)) or snap.commit
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr

    from concurrent.futures import ThreadPoolExecutor

    from mlsnap import store

    # An interpreter named bare (`python`) is the user's own, found on PATH: it is described
    # while DVC loads and the worktree is made (~0.2 s off the wall time). One named by a path
    # may be a file of the clone: it is resolved in the worktree and runs only once the
    # command has been shown (_rerun).
    bare = "/" not in m.run.cmd[0]
    with ThreadPoolExecutor(1) as pool:
        probe = pool.submit(environment.capture, runproc.python_of(list(m.run.cmd), root)) \
            if env == "current" and bare else None
        with store.open_repo(root) as repo, _worktree(root, m.code.commit, keep) as wt:
            return _rerun(root, repo, wt, snap, own, env, probe, make, rtol, atol, keep,
                          remote, out, err)


def _rerun(root: Path, repo: Any, wt: Path, snap: history.Snapshot, own: str, env: str,
           probe: Any, make: Callable[..., Certificate], rtol: float, atol: float,
           keep: bool, remote: str | None, out: IO[Any], err: IO[Any]) -> Certificate:
    """Steps 3 to 5 (see the module's docstring), in the worktree ``wt``; ``probe`` is the
    description of the current environment on its way, when it could start early."""
    from mlsnap import reprobuild, store

    m = snap.manifest
    assert m.run is not None
    _fetch(root, repo, snap, m, remote)
    _prepare(root, repo, wt, own, m)
    cmd = _command(m.run.cmd, root, wt)
    where = wt if m.run.cwd == "." else pathsafety.target(
        wt, m.run.cwd, f"{manifest_path(snap.name)}: run.cwd")
    if not where.is_dir():
        return make(FAILED, command=m.run.cmd, exit_code=None, reason=(
            f"run.cwd {m.run.cwd!r} is not a folder at {m.code.commit[:7]} (with the files of "
            f"{own[:7]})"), worktree=str(wt) if keep else None)
    # The recorded command came with the repository: it is shown before any of it runs.
    shown = runproc.shown(cmd, runproc.SHOWN_CHARS)
    folder = "" if m.run.cwd == "." else f", in {m.run.cwd}"
    print(textsafe.escape(f"running `{shown}` in a temporary worktree of "
                          f"{m.code.commit[:7]}{folder}"), file=out, flush=True)
    python = runproc.python_of(cmd, where)
    child_env: dict[str, str] | None = None
    rebuilt = None
    if env == "rebuild":
        rebuilt = reprobuild.rebuild(m.environment, wt.parent / "env")
        cmd, child_env = reprobuild.command_in(cmd, python, rebuilt)
        current = environment.capture(rebuilt.python)
    else:
        current = probe.result() if probe is not None \
            else environment.capture(python, cwd=where)
    drift = environment.drift(m.environment, current)
    extra: dict[str, Any] = {"rebuilt": rebuilt.to_dict()} if rebuilt is not None else {}
    try:
        finished = runproc.execute(cmd, where, stdout=out, stderr=err, env=child_env,
                                   track_imports=False)
    except OSError as exc:  # not found, not executable, arguments too long for the system
        return make(FAILED, command=m.run.cmd, exit_code=None, reason=(
            f"`{shown}` could not start ({exc.strerror or exc})"),
            environment=drift.to_dict(), drift_table=drift.table(),
            worktree=str(wt) if keep else None, **extra)
    common: dict[str, Any] = {
        "command": m.run.cmd, "exit_code": finished.returncode,
        "environment": drift.to_dict(), "drift_table": drift.table(),
        "command_s": finished.duration_s, "worktree": str(wt) if keep else None, **extra}
    if finished.returncode != 0:
        return make(FAILED, reason=(
            f"`{shown}` {runproc.how_it_ended(finished.returncode)}"),
            **common)
    artifacts = tuple(
        reprocheck.check_artifact(
            o, pathsafety.target(wt, o.path, o.path),
            store.folder_listing(repo, o.path, o.md5, remote=remote) if o.is_dir else None)
        for o in m.artifacts)
    measured = _metrics(wt, snap.name)
    metrics = reprocheck.check_metrics(m.metrics, measured, rtol, atol)
    verdict = reprocheck.verdict(artifacts, metrics)
    return make(verdict, artifacts=artifacts, metrics=metrics, **common)


def _finite(x: float) -> bool:
    import math

    return math.isfinite(x)


def _since(clock: float) -> float:
    return round(time.monotonic() - clock, 3)


@contextlib.contextmanager
def _worktree(root: Path, commit: str, keep: bool) -> Iterator[Path]:
    """A temporary worktree of ``commit``; removed afterwards unless ``keep`` (a second
    Ctrl-C during the removal does not stop it). It is marked before its folder exists, so
    that a kill -9 at any moment leaves it to the next mlsnap command to remove
    (``gitrepo.remove_stale_worktrees``); everything else repro writes lives in its folder."""
    folder, mark = gitrepo.mark_temporary(root, Path(tempfile.gettempdir()))
    wt = folder / (root.name or "repo")
    try:
        folder.mkdir(mode=0o700)
        gitrepo.worktree_add(root, wt, commit)
        yield wt
    finally:
        for _ in range(3):
            try:
                if not keep:
                    gitrepo.remove_temporary(root, folder)
                gitrepo.unmark(mark)
                break
            except KeyboardInterrupt:
                continue


def _fetch(root: Path, repo: Any, snap: history.Snapshot, m: Manifest,
           remote: str | None) -> None:
    """Bring every input (and the patch) into the cache, hashed as it arrives."""
    from mlsnap import store

    wanted = list(m.inputs)
    patch = m.code.patch
    try:
        store.fetch_folders(repo, [(o.path, o.md5) for o in wanted if o.is_dir], remote=remote)
        store.download(repo, [(o.path, o.md5) for o in wanted if not o.is_dir]
                       + ([(patch.path, patch.md5)] if patch else []), remote=remote)
    except MissingObjects as exc:
        raise collected.explain_missing(root, repo, [(snap.name, snap.blob, snap.commit)],
                                        exc.paths, exc.remote) from None


def _prepare(root: Path, repo: Any, wt: Path, own: str, m: Manifest) -> None:
    """The worktree as the command found it when it ran (see the module's steps 2 and 3)."""
    from mlsnap import store

    if own != m.code.commit:
        gitrepo.checkout_files(wt, own, gitrepo.changed_by(root, own))
    patch = m.code.patch
    if patch is not None:
        with tempfile.TemporaryDirectory(prefix="patch-", dir=wt.parent) as tmp:  # marked
            file = Path(tmp) / "code.patch"
            store.export(repo, patch.path, patch.md5, file)
            if file.stat().st_size:
                try:
                    gitrepo.apply_patch(wt, file)
                except MlsnapError as exc:
                    raise BadInput(patch.path, f"the recorded patch does not apply to "
                                   f"{m.code.commit[:7]}: {exc}") from None
    for o in m.inputs:
        dest = pathsafety.target(wt, o.path, o.path)
        remove_path(dest)
        store.export(repo, o.path, o.md5, dest)
    for o in m.artifacts:
        remove_path(pathsafety.target(wt, o.path, o.path))
    for spec in _metric_files(wt, m.name):
        remove_path(pathsafety.target(wt, spec, spec))


def _command(cmd: tuple[str, ...], root: Path, wt: Path) -> list[str]:
    """The recorded command; a relative interpreter path that lives in the repository but is
    not part of the code (``.venv/bin/python``, untracked) is the current environment's:
    taken from the repository."""
    first = cmd[0]
    if "/" in first and not os.path.isabs(first) and pathsafety.problem_in_repo(first) is None \
            and not (wt / first).exists() and (root / first).exists():
        return [str(root / first), *cmd[1:]]
    return list(cmd)


def _metric_files(wt: Path, name: str) -> list[str]:
    """The metrics files the snapshot read (``.mlsnap/config.yaml`` of its commit)."""
    from mlsnap import config as configmod
    from mlsnap.sources import files_read

    if not (wt / MANIFEST_DIR / "config.yaml").is_file():
        return []
    cfg = configmod.load(wt)
    return files_read(cfg.sources.get(name, {}).get("metrics", []), wt)


def _metrics(wt: Path, name: str) -> dict[str, Any] | None:
    """The metrics the re-run wrote, read from the snapshot's metrics files (None without)."""
    from mlsnap import config as configmod
    from mlsnap import params

    if not (wt / MANIFEST_DIR / "config.yaml").is_file():
        return None
    specs = configmod.load(wt).sources.get(name, {}).get("metrics", [])
    if not specs:
        return None
    present = [s for s in specs if (wt / params.split_spec(s, wt)[0]).is_file()]
    return params.collect(present, (), "--metrics", wt) if present else {}

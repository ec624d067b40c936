"""The checks behind ``mlsnap hook ID``: one function per hook id, each returning findings.

The same checks serve two callers: the pre-commit framework (``.pre-commit-hooks.yaml``, which
passes file names and ``PRE_COMMIT_*`` variables) and the plain scripts of ``mlsnap.hookscripts``
(which pass Git's own arguments and stdin). Staged content is read from the index being
committed, never from a checkout, so a partly staged file is judged by what would actually enter
the commit. The push check (``hookpush``) is the only one that opens DVC, and only when the pushed
commits hold snapshots.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mlsnap import gitrepo
from mlsnap.errors import BadInput, ManifestInvalid
from mlsnap.fsutil import human_size
from mlsnap.gitrepo import Staged
from mlsnap.manifest import MANIFEST_DIR, Manifest, is_valid_name, loads
from mlsnap.safeyaml import safe_load

HOOK_IDS = ("mlsnap-no-large-files", "mlsnap-check-manifest", "mlsnap-status", "mlsnap-push",
            "mlsnap-pull")
MODEL_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".joblib", ".h5", ".keras", ".onnx",
                  ".safetensors", ".bin", ".npz", ".parquet")
DEFAULT_MAX_KB = 5 * 1024
_MANIFEST_FILE = re.compile(rf"^{re.escape(MANIFEST_DIR)}/([^/]+)\.yaml$")


@dataclass(frozen=True)
class Finding:
    """One problem a hook found: where, and what to do about it."""

    where: str
    problem: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


# --------------------------------------------------------------------------- staged content


def index_file() -> Path | None:
    """The index being committed when a hook runs (Git exports it for ``commit -a``, ``commit F``).

    The plain hook scripts strip ``GIT_INDEX_FILE`` (it confuses nested Git calls) and pass it on
    as ``MLSNAP_GIT_INDEX_FILE``; the pre-commit framework leaves ``GIT_INDEX_FILE`` in place.
    Hooks run at the top of the work tree, so a relative path is taken from there.
    """
    raw = os.environ.get("MLSNAP_GIT_INDEX_FILE") or os.environ.get("GIT_INDEX_FILE")
    return Path(os.path.abspath(raw)) if raw else None


def _staged_manifests(staged: Staged) -> list[str]:
    return [p for p in staged.files_under(MANIFEST_DIR) if manifest_name(p) is not None]


def manifest_name(path: str) -> str | None:
    """Snapshot name of a manifest path (``.mlsnap/<name>.yaml``), None for anything else."""
    match = _MANIFEST_FILE.match(path)
    if match is None or not is_valid_name(match.group(1)):
        return None
    return match.group(1)


def repo_paths(root: Path, files: Iterable[str], cwd: Path | None = None) -> list[str]:
    """File arguments (relative to ``cwd``) as repository-relative POSIX paths."""
    base = cwd or Path.cwd()
    out = []
    for name in files:
        rel = os.path.relpath(os.path.normpath(base / name), root)
        if rel == ".." or rel.startswith(f"..{os.sep}"):
            raise BadInput(name, f"is outside the repository {root}")
        out.append(PurePosixPath(Path(rel)).as_posix())
    return out


# --------------------------------------------------------------------------- mlsnap-no-large-files


def large_files(root: Path, files: Sequence[str] | None = None, *,
                max_kb: int = DEFAULT_MAX_KB, index: Path | None = None) -> list[Finding]:
    """Staged files that would put model or data bytes into Git (model suffix or too big)."""
    staged = Staged(root, index)
    paths = staged.changed() if files is None else list(files)
    sizes = staged.sizes(paths)
    paths = [p for p in paths if p in sizes]
    skip = staged.lfs(paths)
    limit = max_kb * 1024
    findings = []
    for path in paths:
        if path in skip:
            continue
        suffix = PurePosixPath(path).suffix.lower()
        size = sizes[path]
        if suffix in MODEL_SUFFIXES:
            why = f"a model/data file ({suffix}, {human_size(size)})"
        elif size > limit:
            why = f"{human_size(size)}, over the {human_size(limit)} limit"
        else:
            continue
        findings.append(Finding(path, f"{why}; keep its bytes out of Git: "
                                      f"`git rm --cached -q {shlex.quote(path)}` then "
                                      f"`mlsnap commit {shlex.quote(path)}`"))
    return findings


# --------------------------------------------------------------------------- mlsnap-check-manifest


@dataclass(frozen=True)
class Pointer:
    """What one ``.dvc`` file records about its output."""

    file: str
    path: str
    md5: str | None
    size: int | None


def read_pointers(staged: Staged, dvc_file: str) -> list[Pointer] | Finding:
    """The outputs a ``.dvc`` file records, as staged (an unstaged one would not be committed)."""
    data = staged.read(dvc_file, worktree=False)
    if data is None:
        return []
    try:
        doc = safe_load(data, dvc_file)
        outs = doc["outs"]
        folder = PurePosixPath(dvc_file).parent
        pointers = []
        for out in outs:
            md5 = out.get("md5")
            size = out.get("size")
            pointers.append(Pointer(dvc_file, (folder / str(out["path"])).as_posix(),
                                    str(md5) if md5 is not None else None,
                                    size if isinstance(size, int) else None))
        return pointers
    except ManifestInvalid as exc:
        return Finding(dvc_file, f"not a valid DVC file: {exc.reason}")
    except (KeyError, TypeError, AttributeError):
        return Finding(dvc_file, "not a DVC pointer file (no outs list with path and md5)")


def _disagree(manifest: str, path: str, md5: str, size: int | None,
              ptr: Pointer) -> Finding | None:
    if ptr.md5 == md5 and (size is None or ptr.size is None or ptr.size == size):
        return None
    return Finding(manifest, f"records {path} as md5 {md5}"
                             + (f", size {size}" if size is not None else "")
                             + f" but {ptr.file} has md5 {ptr.md5}"
                             + (f", size {ptr.size}" if ptr.size is not None else "")
                             + "; one of them was edited by hand: snapshot again with "
                               f"`mlsnap commit {path}` or restore both from Git")


def expected_outputs(m: Manifest) -> list[tuple[str, str, int | None]]:
    pairs: list[tuple[str, str, int | None]] = [(o.path, o.md5, o.size) for o in m.outputs]
    if m.code.patch is not None:
        pairs.append((m.code.patch.path, m.code.patch.md5, None))
    return pairs


def _check_one_manifest(staged: Staged, path: str) -> tuple[Manifest | None, list[Finding]]:
    data = staged.read(path)
    if data is None:
        return None, []
    try:
        m = loads(data, path)
    except ManifestInvalid as exc:
        return None, [Finding(path, f"invalid manifest: {exc.reason}")]
    findings = []
    if m.name != manifest_name(path):
        findings.append(Finding(path, f"name {m.name!r} does not match the file name"))
    for out_path, md5, size in expected_outputs(m):
        pointers = read_pointers(staged, f"{out_path}.dvc")
        if isinstance(pointers, Finding):
            findings.append(pointers)
            continue
        match = [p for p in pointers if p.path == out_path]
        if not match:
            if (staged.root / f"{out_path}.dvc").is_file():
                findings.append(Finding(path, f"records {out_path}, but {out_path}.dvc is not "
                                              f"staged: `git add {shlex.quote(out_path)}.dvc`"))
            elif not os.path.lexists(staged.root / out_path):
                findings.append(Finding(path, f"records {out_path}, which is neither tracked by "
                                              f"DVC ({out_path}.dvc is missing) nor present; "
                                              f"stage {out_path}.dvc or snapshot again"))
            continue
        bad = _disagree(path, out_path, md5, size, match[0])
        if bad:
            findings.append(bad)
    return m, findings


def check_manifests(root: Path, files: Sequence[str] | None = None, *,
                    index: Path | None = None) -> list[Finding]:
    """Staged manifests are valid and agree with their ``.dvc`` files, and staged ``.dvc``
    files agree with the manifests (in the index) that name their outputs."""
    staged = Staged(root, index)
    paths = staged.changed() if files is None else list(files)
    manifests = [p for p in paths if manifest_name(p) is not None]
    dvc_files = [p for p in paths if p.endswith(".dvc") and not p.startswith(".dvc/")]
    findings: list[Finding] = []
    for path in manifests:
        findings += _check_one_manifest(staged, path)[1]
    if dvc_files:
        findings += _check_pointer_files(staged, dvc_files, skip=set(manifests))
    return list(dict.fromkeys(findings))


def _check_pointer_files(staged: Staged, dvc_files: Sequence[str],
                         skip: set[str]) -> list[Finding]:
    named: dict[str, list[tuple[str, str, int | None]]] = {}
    for mpath in _staged_manifests(staged):
        if mpath in skip:
            continue  # checked against its pointers already
        data = staged.read(mpath)
        try:
            m = loads(data or b"", mpath)
        except ManifestInvalid:
            continue  # reported when that manifest itself is staged
        for out_path, md5, size in expected_outputs(m):
            named.setdefault(out_path, []).append((mpath, md5, size))
    findings: list[Finding] = []
    for dvc_file in dvc_files:
        pointers = read_pointers(staged, dvc_file)
        if isinstance(pointers, Finding):
            findings.append(pointers)
            continue
        for ptr in pointers:
            for mpath, md5, size in named.get(ptr.path, []):
                bad = _disagree(mpath, ptr.path, md5, size, ptr)
                if bad:
                    findings.append(bad)
    return findings


# --------------------------------------------------------------------------- mlsnap-status


def _has_snapshots(root: Path) -> bool:
    from mlsnap import workspace

    return ((root / ".dvc").is_dir() and (root / MANIFEST_DIR / "config.yaml").is_file()
            and bool(workspace.manifest_names(root)))


def modified_artifacts(root: Path) -> list[Finding]:
    """Tracked paths whose workspace bytes changed after their snapshot."""
    if not _has_snapshots(root):
        return []
    from mlsnap import restore

    report = restore.status(check_remote=False, cwd=root)
    return [Finding(p, "changed after its snapshot, so the snapshot no longer describes it: "
                       f"record it with `mlsnap commit {shlex.quote(p)}` or restore it with "
                       "`mlsnap pull --force`") for p in report.modified]


# --------------------------------------------------------------------------- mlsnap-pull


def skip_pull_reason(root: Path, prev: str | None, new: str | None,
                     flag: str | None) -> str | None:
    """Why the post-checkout hook should not pull now, or None to pull."""
    if flag is not None and flag != "1":
        return "a file checkout, not a branch checkout"
    git_dir = gitrepo.git_dir(root)
    if (git_dir / "rebase-merge").is_dir() or (git_dir / "rebase-apply").is_dir() \
            or "rebase" in os.environ.get("GIT_REFLOG_ACTION", ""):
        return "a rebase is in progress"
    if prev and new and prev == new:
        return "HEAD did not move"
    if not _has_snapshots(root):
        return "no snapshots at this revision"
    return None

__all__ = ["DEFAULT_MAX_KB", "HOOK_IDS", "MODEL_SUFFIXES", "Finding", "check_manifests",
           "expected_outputs", "index_file", "large_files", "manifest_name", "modified_artifacts",
           "repo_paths", "skip_pull_reason"]

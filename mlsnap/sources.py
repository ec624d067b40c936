"""What a commit records: the paths and files given, the ones remembered, and the rules between.

The rules (``mlsnap commit --help`` and the README say the same):

- PATHS, ``--data``, ``--params`` and ``--metrics`` are each remembered on their own. When a
  kind is given, exactly what is given is recorded; when it is not, the previous snapshot of
  that name gives it (its artifacts, its inputs, the params/metrics files it read, the latter
  kept in ``.mlsnap/config.yaml``). ``--forget`` reuses nothing: only what is named counts.
- What is reused is printed, and so is every path of the previous snapshot that leaves it.
- Values given one by one (``-p``/``-m``, ``params=``/``metrics=`` in the Python API) win over
  the files, remembered or given, key by key.
- Files are named from the current folder; they are kept repo-relative.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlsnap import gitrepo, workspace
from mlsnap.config import CONFIG_PATH, Config
from mlsnap.errors import BadInput, MlsnapError
from mlsnap.manifest import Manifest


@dataclass(frozen=True)
class Plan:
    """What one ``commit`` records, and where each part came from."""

    artifacts: list[str]
    inputs: list[str]
    param_files: list[str]  # repo-relative ``FILE`` or ``FILE:KEY``
    metric_files: list[str]
    remembered: tuple[str, ...] = ()  # "model.pkl", "--data data/train.csv", "--params p.yaml"
    dropped: tuple[str, ...] = ()  # of the previous snapshot, leaving it: "m.pkl", "--data d"
    remembered_paths: frozenset[str] = frozenset()


def split_spec(spec: str, base: Path) -> tuple[str, str | None]:
    """``FILE[:KEY]`` -> (FILE, KEY); a file whose name holds ':' wins over a section."""
    if not (base / spec).exists() and ":" in spec:
        file, _, key = spec.rpartition(":")
        return file, key
    return spec, None


def _to_repo(root: Path, cwd: Path, spec: str, option: str) -> str:
    file, key = split_spec(spec, cwd)
    full = Path(os.path.normpath(cwd / file))
    try:
        full.relative_to(root)
    except ValueError:
        raise BadInput(f"{option} {spec}", f"is outside the repository {root}; copy it into "
                       "the repository so the snapshot can keep it") from None
    rel = workspace.to_repo_path(root, file, cwd)
    return rel if key is None else f"{rel}:{key}"


def plan(root: Path, cwd: Path, cfg: Config, name: str, prev: Manifest | None,
         paths: Sequence[str], data: Sequence[str], param_files: Sequence[str] | None,
         metric_files: Sequence[str] | None, forget: bool = False) -> Plan:
    """Apply the rules above; fail with one line when a remembered file is gone."""
    artifacts = [workspace.to_repo_path(root, p, cwd) for p in paths]
    inputs = [workspace.to_repo_path(root, p, cwd) for p in data]
    remembered: list[str] = []
    dropped: list[str] = []
    from_prev: set[str] = set()
    if prev is not None:
        if not paths and not forget:
            artifacts = [o.path for o in prev.artifacts]
            from_prev.update(artifacts)
            remembered += artifacts
        else:
            dropped += [o.path for o in prev.artifacts if o.path not in artifacts]
        if not data and not forget:
            inputs = [o.path for o in prev.inputs]
            from_prev.update(inputs)
            remembered += [f"--data {p}" for p in inputs]
        else:
            dropped += [f"--data {o.path}" for o in prev.inputs if o.path not in inputs]
    sources = {} if forget else cfg.sources.get(name, {})
    files: dict[str, list[str]] = {}
    for kind, given, option in (("params", param_files, "--params"),
                                ("metrics", metric_files, "--metrics")):
        if given is not None:
            files[kind] = [_to_repo(root, cwd, spec, option) for spec in given]
            continue
        files[kind] = [str(s) for s in sources.get(kind, [])]
        for spec in files[kind]:
            file, _ = split_spec(spec, root)
            if not (root / file).is_file():
                raise BadInput(file, f"no such file; {option} {spec} is remembered from the last "
                               f"snapshot of {name!r} ({CONFIG_PATH}); give {option} FILE, or "
                               "--forget to record only what this command names")
            remembered.append(f"{option} {spec}")
    return Plan(artifacts, inputs, files["params"], files["metrics"], tuple(remembered),
                tuple(dropped), frozenset(from_prev))


def other_owner(root: Path, name: str, artifacts: Sequence[str]) -> tuple[str, str] | None:
    """(path, snapshot) when one of ``artifacts`` is an artifact of another snapshot at the
    work tree: recording it under ``name`` too would leave that snapshot's manifest
    disagreeing with the shared ``.dvc`` file."""
    wanted = set(artifacts)
    for other in workspace.manifest_names(root):
        if other == name:
            continue
        try:
            manifest = workspace.load(root, other)
        except MlsnapError:  # an unreadable manifest owns nothing we can tell
            continue
        for o in manifest.artifacts:
            if o.path in wanted:
                return o.path, other
    return None


def files_read(specs: Sequence[str], root: Path) -> list[str]:
    """The files behind ``FILE[:KEY]`` specs, each once, in order."""
    return list(dict.fromkeys(split_spec(s, root)[0] for s in specs))


@dataclass(frozen=True)
class FileVerdicts:
    """Which params/metrics files enter the snapshot commit, and why the others do not."""

    commit: list[str]
    secret: list[str]  # hold a value the secret rules redact: never committed
    ignored: list[str]  # Git ignores them (DVC-tracked paths among them)


def judge_files(root: Path, files: Sequence[str], secrets: list[str],
                recorded: Sequence[str]) -> FileVerdicts:
    """Sort the files a snapshot read: committed with it, or left out (secret, ignored)."""
    from mlsnap import params, redaction

    files = [f for f in files if (root / f).is_file()]
    ignored = set(gitrepo.ignored(root, files))
    ignored.update(f for f in files if f in recorded or any(f.startswith(r + "/")
                                                            for r in recorded))
    commit: list[str] = []
    secret: list[str] = []
    for f in files:
        if f in ignored:
            continue
        text = (root / f).read_text(errors="replace")
        holds = redaction.redact_text(text, secrets) != text
        if not holds:
            try:
                doc: Any = params.load_file(f, root)
            except BadInput:
                doc = {}
            holds = redaction.redact(doc, secrets) != doc
        (secret if holds else commit).append(f)
    return FileVerdicts(commit, secret, sorted(ignored & set(files)))

"""The commit flow: Git + DVC + environment -> manifest -> one Git commit -> push.

Each step boundary is a fault point (``MLSNAP_FAULT_AT``) so crash safety can be tested for real.
Re-running ``mlsnap commit`` after a crash at any step completes the snapshot: every step is
idempotent and the manifest is only ever replaced whole.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlsnap import config as configmod
from mlsnap import environment, gitrepo, journal, params, redaction, sources, store, workspace
from mlsnap.environment import Environment
from mlsnap.errors import (
    BadInput,
    InputChanged,
    ManifestInvalid,
    PushFailed,
)
from mlsnap.fsutil import atomic_write, fault_point, remove_stale_temps
from mlsnap.manifest import (
    MANIFEST_DIR,
    Code,
    Manifest,
    Output,
    Patch,
    check_version,
    data_fingerprint,
    dump,
    loads,
    manifest_path,
)
from mlsnap.runrecord import Run


@dataclass(frozen=True)
class CommitResult:
    manifest: Manifest
    commit: str
    tag: str | None
    pushed: int | None  # objects sent; None with --no-push
    detached: bool
    moved_from_git: tuple[str, ...] = ()
    unchanged: bool = False  # nothing changed since the last snapshot: no commit was made
    told: Told | None = None  # what was reused, dropped, committed beside the manifest


@dataclass(frozen=True)
class Told:
    """What a commit decided that its user should hear about (see ``mlsnap.sources``)."""

    remembered: tuple[str, ...] = ()  # reused from the previous snapshot: "--data d"
    dropped: tuple[str, ...] = ()  # paths of the previous snapshot that left it
    committed: tuple[str, ...] = ()  # params/metrics files committed with the snapshot
    secret_files: tuple[str, ...] = ()  # files read but kept out of Git: they hold secrets
    other_names: tuple[str, ...] = ()  # other snapshots here, when --name was not given


def previous_manifest(root: Path, name: str) -> Manifest | None:
    """The last committed manifest of ``name`` (or the work tree's, after an interrupted commit)."""
    rel = manifest_path(name)
    blob = gitrepo.show(root, "HEAD", rel)
    if blob is not None:
        try:
            return loads(blob, f"HEAD:{rel}")
        except ManifestInvalid:
            pass  # a broken old manifest must not block a new snapshot that names its paths
    if (root / rel).is_file():
        try:
            return loads((root / rel).read_bytes(), rel)
        except ManifestInvalid:
            return None
    return None


def previous_manifest_at_head(root: Path, name: str) -> tuple[Manifest | None, bool]:
    """``previous_manifest`` and whether it is the one committed at HEAD."""
    rel = manifest_path(name)
    blob = gitrepo.show(root, "HEAD", rel)
    prev = previous_manifest(root, name)
    if blob is None or prev is None:
        return prev, False
    return prev, (root / rel).is_file() and (root / rel).read_bytes() == blob


def _owned_files(root: Path, name: str, paths: Sequence[str]) -> list[str]:
    owned = [manifest_path(name), *workspace.SETUP_FILES]
    for p in paths:
        owned.append(store.dvc_file(p))
        parent = Path(p).parent.as_posix()
        owned.append(".gitignore" if parent == "." else f"{parent}/.gitignore")
    return owned


def uncommitted_code(root: Path, cfg: configmod.Config, name: str, recorded: Sequence[str],
                     committed_files: Sequence[str]) -> list[str]:
    """Tracked files with uncommitted changes that count as code for snapshot ``name``: not
    mlsnap's own files, not the recorded paths, not the params/metrics files committed with
    it (``committed_files``) or read by any snapshot."""
    owned = _owned_files(root, name, recorded)
    # Params/metrics files other snapshots read are theirs to commit, not code to block on.
    remembered_files = set(sources.files_read(
        [s for kinds in cfg.sources.values() for v in kinds.values() for s in v], root))
    return sorted(p for p in gitrepo.modified_tracked(root)
                  if p not in owned and p not in recorded and not _under(p, recorded)
                  and p not in committed_files and p not in remembered_files)


def owned_files(root: Path, name: str, paths: Sequence[str]) -> list[str]:
    """The files a snapshot of ``name`` recording ``paths`` writes and commits itself."""
    return _owned_files(root, name, paths)


def commit(
    paths: Sequence[str] = (),
    *,
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
    python: str | None = None,
    env: Environment | None = None,
    jobs: int | None = None,
    cwd: Path | None = None,
    extra_params: dict[str, Any] | None = None,
    extra_metrics: dict[str, Any] | None = None,
    forget: bool = False,
    run: Run | None = None,
    expect_inputs: Mapping[str, str] | None = None,
    sign: bool = False,
) -> CommitResult:
    """Take one snapshot; see ``mlsnap commit --help``.

    ``env`` overrides environment capture (the Python API passes its own process);
    ``extra_params``/``extra_metrics`` are dicts merged under ``-p``/``-m`` values.
    ``run`` is recorded as the manifest's ``run:`` (``mlsnap run``), and ``expect_inputs``
    (path -> DVC hash taken before the command started) must match what DVC records now:
    an input changed while the command ran is refused before anything is recorded.
    """
    cwd = cwd or Path.cwd()
    root = workspace.find_root(cwd)
    head = gitrepo.head(root)
    workspace.require_ready(root)
    gitrepo.require_identity(root)
    if sign:
        from mlsnap import signing

        signing.require_signing(root)
    cfg = configmod.load(root)
    name_defaulted = name is None
    name = workspace.check_name(name or cfg.default_name)
    version = check_version(tag, f"--tag {tag!r}") if tag else None
    tag_ref = f"{name}@v{version}" if version else None
    # A tag already on the last snapshot of this name is the one a killed run of this very
    # command made (or its roll-forward): the rerun goes on, and makes no second commit.
    tag_made = bool(tag_ref) and tag_on_last_snapshot(root, tag_ref or "", name, tag, sign)

    intent = journal.Intent("commit", argv=journal.command_line("commit"), name=name,
                            tag=(tag_ref, f"{name} {version}: {message}".strip())
                            if tag_ref else None, sign=sign)
    with journal.operation(root, intent) as op:
        head = gitrepo.head(root)  # again: a commit that held the lock may have moved HEAD
        intent.head = head
        _check_index_unlocked(root)
        prev, prev_committed = previous_manifest_at_head(root, name)
        chosen = sources.plan(root, cwd, cfg, name, prev, paths, data, param_files,
                              metric_files, forget)
        artifacts, inputs = chosen.artifacts, chosen.inputs
        _check_paths(root, artifacts, inputs, chosen.remembered_paths, name)
        workspace.no_escaping_links(root, [p for p in artifacts + inputs if (root / p).is_dir()])
        owner = sources.other_owner(root, name, artifacts) if name_defaulted else None
        if owner:
            raise BadInput(owner[0], f"is an artifact of snapshot {owner[1]!r}; say which "
                           f"snapshot this is: --name {owner[1]} (or --name {name} to record "
                           "it as a new one)")
        pfiles, mfiles = chosen.param_files, chosen.metric_files
        secrets = redaction.env_secrets()
        files = sources.judge_files(root, sources.files_read([*pfiles, *mfiles], root), secrets,
                                    artifacts + inputs)

        owned = _owned_files(root, name, artifacts + inputs)
        recorded = artifacts + inputs
        dirty = uncommitted_code(root, cfg, name, recorded, files.commit)
        if dirty and not allow_dirty:
            from mlsnap.errors import DirtyWorktree

            raise DirtyWorktree(dirty)

        param_tree = _values(root, pfiles, param_values, "-p", extra_params, secrets)
        metric_tree = _values(root, mfiles, metric_values, "-m", extra_metrics, secrets)
        message = redaction.redact_text(message, secrets)
        recorded_env = env if env is not None else environment.capture(python)

        patch_rel = f"{MANIFEST_DIR}/patches/{name}.patch" if dirty else None
        to_stage = list(owned)
        if patch_rel:
            to_stage += [store.dvc_file(patch_rel), f"{MANIFEST_DIR}/patches/.gitignore"]
        # Files committed to Git before (`git add -A` caught the data) move to DVC: they leave
        # the index in this snapshot's commit; the files themselves stay untouched.
        # HEAD too: a commit killed after `git rm --cached` left them only in HEAD's tree.
        moved = sorted(set(gitrepo.tracked(root, recorded))
                       | set(gitrepo.tracked_at_head(root, recorded)))
        # The params/metrics files read go into the snapshot commit too, so that a checkout
        # brings back the files beside the model; mlsnap never writes them (not protected).
        newly_committed = gitrepo.changed_paths(root, files.commit)
        with store.open_repo(root) as repo:
            # The journal, before the first change: what may be rewritten (its old bytes are
            # kept), where partial copies may appear, and the commit that finishes it all.
            written = [*recorded, *to_stage, *([patch_rel] if patch_rel else [])]
            intent.staged = [*to_stage, *files.commit, *moved]
            intent.clean = sorted({str((root / p).parent) for p in written})
            intent.clean_deep = [str(root / p) for p in recorded if (root / p).is_dir()]
            intent.names = sorted({Path(p).name for p in written})
            intent.cache = store.cache_dir(repo)
            intent.remote = store.folder_remote_dir(repo) if push else None
            op.protect([*to_stage, *([patch_rel] if patch_rel else [])], index=True)

            remove_stale_temps(root / MANIFEST_DIR)
            if patch_rel:
                diff = gitrepo.diff_head(root, exclude=[*owned, *files.commit])
                atomic_write(root / patch_rel, redaction.redact_text(
                    diff.decode(errors="replace"), secrets).encode())
            if moved:
                gitrepo.run(root, ["rm", "-r", "--cached", "--quiet", "--ignore-unmatch", "--",
                                   *moved])
            fault_point("before-dvc-add")
            # Files unchanged since the last snapshot skip `dvc add`, which would copy
            # them from the cache again (a 1 GiB input costs a 1 GiB write per commit).
            tracked = store.unchanged_files(repo, prev.outputs if prev else (), recorded)
            tracked.update(store.add(repo, [p for p in recorded if p not in tracked]
                                     + ([patch_rel] if patch_rel else [])))
            fault_point("after-dvc-add")
            for path, before in (expect_inputs or {}).items():
                if path in tracked and tracked[path].md5 != before:
                    raise InputChanged(path, before, tracked[path].md5)
            from mlsnap import pickles  # never loads them: reads their opcodes

            scan = pickles.scan_snapshot(repo, root, [(p, tracked[p].md5) for p in recorded])
            branch = gitrepo.branch(root)
            manifest = Manifest(
                name=name,
                created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                message=message,
                code=Code(
                    commit=head, branch=branch, dirty=bool(dirty),
                    patch=Patch(patch_rel, tracked[patch_rel].md5) if patch_rel else None,
                ),
                data_hash=data_fingerprint([tracked[p] for p in inputs]),
                inputs=tuple(tracked[p] for p in inputs),
                artifacts=tuple(tracked[p] for p in artifacts),
                params=param_tree,
                metrics=metric_tree,
                environment=recorded_env,
                run=run,
                pickles=scan,
            )
            told = Told(chosen.remembered, chosen.dropped, tuple(newly_committed),
                        tuple(files.secret),
                        tuple(n for n in workspace.manifest_names(root) if n != name)
                        if name_defaulted else ())
            if prev is not None and prev_committed and not moved and not newly_committed \
                    and same_content(prev, manifest):
                # Nothing to record: no second snapshot of the same work (a rerun after a kill
                # past the Git commit lands here too); the tag and the push still happen.
                sha = gitrepo.last_commit_of(root, manifest_path(name)) or head
                if tag_ref and not tag_made:
                    gitrepo.create_tag(root, tag_ref, sha, f"{name} {version}: {message}".strip(),
                                       sign=sign)
                pushed = _push_snapshot(repo, prev, jobs, sha) if push else None
                return CommitResult(prev, sha, tag_ref, pushed, branch is None, (),
                                    unchanged=True, told=told)
            if tag_made:  # the tag names the previous snapshot, and this one differs
                raise BadInput(f"--tag {tag}", f"tag {tag_ref} already exists; choose a new "
                               "version")
            text = dump(manifest)
            redaction.scan(text, manifest_path(name), secrets)
            loads(text, manifest_path(name))  # what we write must read back
            atomic_write(root / manifest_path(name), text.encode(), fault_step="after-manifest-temp")
            fault_point("after-manifest")

            new_sources = {"params": pfiles, "metrics": mfiles}
            if cfg.sources.get(name, {}) != new_sources and (pfiles or mfiles or name in cfg.sources):
                cfg.sources[name] = new_sources
                configmod.save(root, cfg)

            subject = f"mlsnap: {name}: {message or 'snapshot'}".splitlines()[0]
            sha = _git_commit(root, subject, [*to_stage, *files.commit], moved, sign)
            if tag_ref:
                gitrepo.create_tag(root, tag_ref, sha, f"{name} {version}: {message}".strip(),
                                   sign=sign)

            pushed = _push_snapshot(repo, manifest, jobs, sha) if push else None
    return CommitResult(manifest, sha, tag_ref, pushed, branch is None, tuple(moved), told=told)


def tag_on_last_snapshot(root: Path, tag_ref: str, name: str, tag: str | None,
                          sign: bool) -> bool:
    """Whether ``tag_ref`` already names the last snapshot commit of ``name`` at HEAD (False
    when there is no such tag); ``BadInput`` when it names another commit, or when ``sign``
    asks for a signed tag and the one there is not."""
    if not gitrepo.tag_exists(root, tag_ref):
        return False
    last = gitrepo.last_commit_of(root, manifest_path(name))
    if last is None or gitrepo.resolve(root, f"refs/tags/{tag_ref}") != last:
        raise BadInput(f"--tag {tag}", f"tag {tag_ref} already exists; choose a new version")
    if sign and not gitrepo.tag_is_signed(root, tag_ref):
        raise BadInput(f"--tag {tag}", f"tag {tag_ref} is on this snapshot but not signed; "
                       f"remove it (`git tag -d {tag_ref}`) and run the command again to sign "
                       "it")
    return True


def _push_snapshot(repo: Any, manifest: Manifest, jobs: int | None, sha: str) -> int:
    fault_point("before-push")
    try:
        pushed = store.push(repo, manifest.tracked, jobs=jobs)
    except PushFailed as exc:
        raise PushFailed(exc.remote, exc.reason, committed=sha) from None
    fault_point("after-push")
    return pushed


def same_content(old: Manifest, new: Manifest) -> bool:
    """Whether ``new`` records exactly what ``old`` does: artifacts, inputs, params, metrics
    and the uncommitted patch (the creation time, message and environment aside)."""
    def outputs(m: Manifest) -> tuple[tuple[str, str], ...]:
        return tuple((o.path, o.md5) for o in m.artifacts) + tuple(
            ("data:" + o.path, o.md5) for o in m.inputs)

    def patch(m: Manifest) -> str | None:
        return m.code.patch.md5 if m.code.patch else None

    def command(m: Manifest) -> tuple[tuple[str, ...], str] | None:
        return (m.run.cmd, m.run.cwd) if m.run is not None else None

    return (outputs(old) == outputs(new) and old.params == new.params
            and old.metrics == new.metrics and patch(old) == patch(new)
            and command(old) == command(new))


def _values(root: Path, files: Sequence[str], assignments: Sequence[str], option: str,
            extra: dict[str, Any] | None, secrets: list[str]) -> dict[str, Any]:
    """Params or metrics: files first, then the values given one by one (``extra``, the API's
    dicts, then ``K=V``), which win key by key, as on the command line; secrets redacted."""
    api = params.to_plain(extra, "params=" if option == "-p" else "metrics=") if extra else {}
    given = params.merge(api, params.parse_assignments(assignments, option))
    tree = params.merge(params.collect(files, (), option, root), given)
    redacted: dict[str, Any] = redaction.redact(tree, secrets)
    return redacted


def _git_commit(root: Path, subject: str, files: Sequence[str], moved: Sequence[str],
                sign: bool = False) -> str:
    """The snapshot's one Git commit: ``files`` added, ``moved`` (now DVC's) removed."""
    to_stage = [f for f in dict.fromkeys(files) if (root / f).exists()]
    fault_point("before-git-commit")
    if moved or gitrepo.changed_since_head(root, to_stage):
        sha = gitrepo.commit_paths(root, subject, to_stage, remove=moved, sign=sign)
    else:  # HEAD already holds this exact snapshot (a rerun after a kill after commit)
        sha = gitrepo.head(root)
        gitrepo.sync_index(root, to_stage)  # the kill may have beaten the index update
    fault_point("after-git-commit")
    return sha


def _check_index_unlocked(root: Path) -> None:
    """Fail with Git's own message when another Git process holds the index.

    mlsnap commits through a private index, but then updates the real one; a lock held by
    someone else is theirs to remove, never ours.
    """
    if (gitrepo.git_dir(root) / "index.lock").exists():
        gitrepo.run(root, ["add", "--refresh", "--", "."])


def _check_paths(root: Path, artifacts: list[str], inputs: list[str],
                 remembered: frozenset[str] = frozenset(), name: str = "") -> None:
    if not artifacts and not inputs:
        raise BadInput("mlsnap commit", "nothing to snapshot: name the model files "
                       "(`mlsnap commit model.pkl --data data/`)")
    both = set(artifacts) & set(inputs)
    if both:
        raise BadInput(min(both), "given both as an artifact and as --data")
    everything = artifacts + inputs
    if len(set(everything)) != len(everything):
        raise BadInput(next(p for p in everything if everything.count(p) > 1), "given twice")
    for p in everything:
        full = root / p
        if not full.exists():
            if p in remembered:
                raise BadInput(p, f"no such file or directory; it is recorded by the previous "
                               f"snapshot of {name!r} and reused because no "
                               f"{'--data' if p in inputs else 'PATH'} was given: "
                               "`mlsnap pull` restores it, or name what to record (--forget "
                               "reuses nothing)")
            raise BadInput(p, "no such file or directory")
        nested = workspace.nested_repository(root, p)
        if nested is not None:
            where = "is" if nested == p else f"is inside {nested},"
            raise BadInput(p, f"{where} a Git submodule (or nested repository) with its own "
                           f"history; snapshot it there (`cd {nested} && mlsnap init`) or move "
                           "it into this repository")
        top = p.split("/")[0]
        if top in (".git", ".dvc", MANIFEST_DIR):
            raise BadInput(p, f"is inside {top}/, which mlsnap manages; track your own files")


def _under(path: str, folders: Sequence[str]) -> bool:
    return any(path.startswith(f"{f}/") for f in folders)


def push(name: str | None = None, *, jobs: int | None = None, remote: str | None = None,
         cwd: Path | None = None) -> int:
    """Send the bytes of the snapshots at HEAD (or ``name``) to the remote; return objects sent."""
    root = workspace.find_root(cwd)
    workspace.require_ready(root)
    manifests = workspace.load_all(root, name)
    tracked = list(dict.fromkeys(pair for m in manifests for pair in m.tracked))
    intent = journal.Intent("push", argv=journal.command_line("push"))
    with journal.operation(root, intent) as op, store.open_repo(root) as repo:
        workspace.check_pointers(root, manifests)
        intent.remote = store.folder_remote_dir(repo, remote)  # a killed upload's partial file
        op.save()
        return store.push(repo, tracked, jobs=jobs, remote=remote)


__all__ = [
    "CommitResult",
    "Output",
    "Told",
    "commit",
    "owned_files",
    "push",
    "uncommitted_code",
]

"""``mlsnap gc``: delete the bytes of snapshots no retention rule keeps, and nothing else.

Everything is decided before anything is deleted, from what Git, the cache and the remote say
at the start; a kill at any moment leaves only objects of collected snapshots gone. The rules:

* A snapshot is kept when a policy keeps it (``keep_last`` along each branch, ``keep_best``,
  ``keep_within_days``) or always: a tag names it, it is the newest of its name on a local or
  remote-tracking branch, a branch tip, HEAD, a worktree's HEAD or work tree, or a stash holds
  its manifest, its commit is on no remote-tracking branch (not pushed to Git), or its bytes
  are not all on the DVC remote (nothing unpushed is deleted).
* Only objects of snapshots that are not kept, and that no kept snapshot, protected manifest
  or ``.dvc`` file of the work tree names, are deleted; objects nothing names are left alone.
  A folder's listing and its files are one unit (files first, listing last).
* A cache object goes only when the remote holds it. A remote object goes only with
  ``--remote``, once the Git remotes' branches and tags are known to match this clone's, and
  never one written after this gc started (by the remote's own clock).
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlsnap import collected, config, gitrepo, journal, store
from mlsnap.config import ALL_NAMES, Best, Policy
from mlsnap.errors import BadInput, NotInitialized, StaleRefs
from mlsnap.fsutil import fault_point
from mlsnap.gcview import Snap, View, read_view
from mlsnap.manifest import Manifest, is_valid_name
from mlsnap.params import as_float

_HEX = re.compile(rb"[0-9a-f]{32}(?:\.dir)?")


@dataclass(frozen=True)
class Verdict:
    """One snapshot: kept (and why) or collected, and the space it takes."""

    commit: str
    name: str
    date: str  # committer date, UTC
    keep: bool
    reasons: tuple[str, ...]
    objects: int
    unique_bytes: int  # in objects no other snapshot names
    shared_bytes: int

    @property
    def short(self) -> str:
        return self.commit[:7]

    def to_dict(self) -> dict[str, Any]:
        return {"commit": self.commit, "short": self.short, "name": self.name,
                "date": self.date, "keep": self.keep, "reasons": list(self.reasons),
                "objects": self.objects, "unique_bytes": self.unique_bytes,
                "shared_bytes": self.shared_bytes}


@dataclass(frozen=True)
class Space:
    """What gc would reclaim (``objects``/``bytes``) and did delete in one store."""

    where: str
    objects: int = 0
    bytes: int = 0
    deleted: int = 0
    skipped_new: int = 0  # remote objects written after this gc started

    def to_dict(self) -> dict[str, Any]:
        return {"where": self.where, "objects": self.objects, "bytes": self.bytes,
                "deleted": self.deleted, "skipped_new": self.skipped_new}


@dataclass(frozen=True)
class GcResult:
    dry_run: bool
    policies: dict[str, Policy]
    snapshots: list[Verdict]
    local: Space
    remote: Space | None  # None without --remote
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run,
                "policies": {k: p.to_dict() for k, p in self.policies.items()},
                "snapshots": [v.to_dict() for v in self.snapshots],
                "kept": sum(v.keep for v in self.snapshots),
                "collected": sum(not v.keep for v in self.snapshots),
                "local": self.local.to_dict(),
                "remote": None if self.remote is None else self.remote.to_dict(),
                "notes": self.notes}


def parse_best(spec: str, k: int) -> Best:
    """``METRIC[:max|min]`` and K from the command line."""
    metric, _, mode = spec.partition(":")
    if not metric or mode not in ("", "max", "min") or k < 1:
        raise BadInput(f"--keep-best {spec} {k}", "expected METRIC[:max|min] K with K >= 1, "
                                                  "e.g. --keep-best accuracy:max 2")
    return Best(metric, mode or "max", k)


def gc(*, name: str | None = None, keep_last: int | None = None, keep_best: Best | None = None,
       keep_within_days: float | None = None, remote: bool = False, yes: bool = False,
       allow_stale_refs: bool = False, jobs: int | None = None,
       cwd: Path | None = None) -> GcResult:
    """Collect what no retention rule keeps; a dry run unless ``yes``. See ``mlsnap gc --help``.

    Policy arguments replace the ``retention:`` of ``.mlsnap/config.yaml`` for this run.
    """
    root = gitrepo.toplevel(cwd or Path.cwd())
    journal.recover(root)
    if not (root / ".dvc").is_dir():
        raise NotInitialized(str(root))
    if name is not None and not is_valid_name(name):
        raise BadInput(f"--name {name!r}", "use letters, digits, '.', '_' or '-' (not 'config')")
    if keep_last is not None and keep_last < 0:
        raise BadInput(f"--keep-last {keep_last}", "must be 0 or more")
    if keep_within_days is not None and not keep_within_days >= 0:
        raise BadInput(f"--keep-within {keep_within_days}", "must be a number of days >= 0")
    given = Policy(keep_last, keep_best, keep_within_days)
    policies = ({ALL_NAMES: given} if given != Policy()
                else config.retention(config.load(root)))
    if not yes:
        return _run(root, name, policies, remote, False, allow_stale_refs, jobs)
    intent = journal.Intent("gc", argv=journal.command_line("gc"))
    with journal.operation(root, intent):
        return _run(root, name, policies, remote, True, allow_stale_refs, jobs)


Key = tuple[str, str]  # (commit, name): one snapshot


def _key(s: Snap) -> Key:
    return (s.commit, s.name)


@dataclass
class _Plan:
    """What the stores hold and what goes, all decided before anything is deleted."""

    objects: dict[Key, set[str]]  # every snapshot's objects (a folder: listing and files)
    gone: list[Snap]  # the snapshots collected
    cached: dict[str, int]  # object -> size, in the cache
    on_remote: dict[str, store.RemoteObject]  # collectable objects the remote holds
    local: list[str]  # cache objects to delete (the remote holds each)
    remote: list[str]  # remote objects to delete
    fresh: set[str]  # remote objects of units written since gc started: they stay


def _run(root: Path, name: str | None, policies: dict[str, Policy], remote: bool, yes: bool,
         allow_stale: bool, jobs: int | None) -> GcResult:
    started = time.time()
    view = read_view(root)
    notes = _check_refs(root, view, allow_stale) if remote else []
    selected = [s for s in view.snaps if name is None or s.name == name]
    reasons = _reasons(view, selected, policies, started)
    if not policies:
        notes.append("no retention policy (flags or `retention:` in .mlsnap/config.yaml): "
                     "every snapshot is kept; this is the space they take")
    with store.open_repo(root) as repo:
        odb = store.gc_remote(repo)
        if odb is None:
            notes.append("no default remote: nothing is verified on a remote, so nothing is "
                         "deleted")
        elif remote:  # what other clones' gcs collected: log marks it here too
            collected.add(root, [r for note in store.gc_notes(repo) for r in collected.parse(note)])
        note = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:8]}.json"
        since = started
        if yes and remote and odb is not None:  # the start, by the remote's own clock
            stamp = store.put_gc_note(repo, None, note, collected.dump([]))
            since = stamp if stamp is not None else started
        units = _units(repo, odb, view, notes)
        plan = _plan(root, repo, odb, view, selected, reasons, units, remote, since, jobs)
        label = f"remote {store.remote_label(repo)!r}"
        local = Space("cache", len(plan.local), sum(plan.cached[o] for o in plan.local))
        rem = (Space(label, len(plan.remote), sum(plan.on_remote[o].size for o in plan.remote),
                     skipped_new=len(set(plan.on_remote) & plan.fresh)) if remote else None)
        if yes:
            local, rem = _delete(root, repo, odb, plan, local, rem, note, started, since, jobs)
    verdicts = _verdicts(view, selected, reasons, plan.objects, units,
                         _sizes(view, plan.cached, plan.on_remote))
    return GcResult(not yes, policies, verdicts, local, rem, notes)


def _check_refs(root: Path, view: View, allow_stale: bool) -> list[str]:
    """Refuse a remote gc that cannot see every branch and tag; the notes when allowed."""
    problems = _stale_refs(root, view)
    if problems and not allow_stale:
        fix = ("run `git fetch --all` and retry" if gitrepo.remote_names(root) else
               "add the Git remote the other clones push to (`git remote add origin URL`, "
               "`git fetch origin`)")
        raise StaleRefs(problems, fix)
    return [f"--allow-stale-refs: {p}" for p in problems]


def _reasons(view: View, selected: list[Snap], policies: dict[str, Policy],
             now: float) -> dict[Key, list[str]]:
    """Why each snapshot stays (empty: collected, unless the remote lacks its bytes)."""
    reasons = {_key(s): list(view.always.get(_key(s), [])) for s in selected}
    for s in selected:
        if view.manifests.get(s.blob) is None:
            reasons[_key(s)].append("unreadable manifest")
        elif (policies.get(s.name) or policies.get(ALL_NAMES)) is None:
            reasons[_key(s)].append("no retention policy")
    _apply_policies(view, selected, policies, reasons, now)
    return reasons


def _units(repo: Any, odb: Any, view: View, notes: list[str]) -> dict[str, list[str]]:
    """Every object id a manifest or the work tree names -> its unit (a folder's listing and
    files; a file alone)."""
    units: dict[str, list[str]] = {}
    for md5 in {m for blob in view.all_blobs() for m in _md5s(view, blob)} | view.loose_md5s:
        objects = store.unit_objects(repo, odb, md5)
        units[md5] = objects if objects is not None else [md5]
        if objects is None and md5.endswith(".dir"):
            notes.append(f"folder {md5}: its listing is in neither the cache nor the remote; "
                         "only clones that hold it can restore it")
    return units


def _plan(root: Path, repo: Any, odb: Any, view: View, selected: list[Snap],
          reasons: dict[Key, list[str]], units: dict[str, list[str]], remote: bool,
          since: float, jobs: int | None) -> _Plan:
    def objects_of(blobs: Iterable[str]) -> set[str]:
        return {o for b in blobs for m in _md5s(view, b) for o in units[m]}

    objects = {_key(s): objects_of([s.blob]) for s in view.snaps}
    open_ = [s for s in selected if not reasons[_key(s)]]
    asked = set().union(*(objects[_key(s)] for s in open_))
    present = store.remote_present(odb, sorted(asked), jobs) if odb is not None else set()
    records = {(r.commit, r.name) for r in collected.load(root)} if remote else set()
    for s in open_:  # nothing unpushed goes; a killed gc's own collection is finished
        if not objects[_key(s)] <= present and _key(s) not in records:
            reasons[_key(s)].append("not on the remote" if odb is not None else "no remote")
    gone = [s for s in selected if not reasons[_key(s)]]
    gone_keys = {_key(s) for s in gone}
    kept = objects_of(view.protected) | objects_of(
        s.blob for s in view.snaps if _key(s) not in gone_keys)
    kept |= {o for m in view.loose_md5s for o in units.get(m, [m])}
    candidates = set().union(*(objects[_key(s)] for s in gone)) - kept
    cached = store.cached_sizes(repo, sorted(set().union(*objects.values())))
    on_remote = (store.remote_objects(odb, sorted(candidates), jobs)
                 if remote and odb is not None else {})
    new = {o for o, r in on_remote.items() if r.mtime is None or r.mtime >= since}
    fresh = {o for s in gone if objects[_key(s)] & new for o in objects[_key(s)]}  # units whole
    return _Plan(objects, gone, cached, on_remote,
                 local=sorted(o for o in candidates if o in cached and o in present),
                 remote=sorted(o for o in on_remote if o not in fresh), fresh=fresh)


def _delete(root: Path, repo: Any, odb: Any, plan: _Plan, local: Space, rem: Space | None,
            note: str, started: float, since: float, jobs: int | None
            ) -> tuple[Space, Space | None]:
    if rem is not None and odb is not None:
        who, where = gitrepo.identity(root), store.remote_label(repo)
        done = [collected.Record(s.commit, s.name, s.blob, _utc(started), who, where)
                for s in plan.gone if not plan.objects[_key(s)] & plan.fresh]
        collected.add(root, done)  # said before done: a kill leaves it to the rerun
        if done:
            store.put_gc_note(repo, None, note, collected.dump(done))
        else:  # nothing collected: no record to leave on the remote
            store.drop_gc_note(repo, None, note)
    fault_point("gc-before-delete")
    local = Space(local.where, local.objects, local.bytes, store.delete_cached(repo, plan.local))
    fault_point("gc-after-cache-delete")
    if rem is not None and odb is not None:
        deleted, fresh = store.delete_remote(odb, plan.remote, older_than=since, jobs=jobs)
        rem = Space(rem.where, rem.objects, rem.bytes, deleted, rem.skipped_new + len(fresh))
    return local, rem


def _md5s(view: View, blob: str) -> list[str]:
    """The objects a manifest names: its outputs and patch; for an unreadable one, every
    hash-like word in it (it cannot be collected, and what it may name stays)."""
    manifest = view.manifests.get(blob)
    if manifest is not None:
        return [md5 for _, md5 in manifest.tracked]
    return sorted({m.decode() for m in _HEX.findall(view.raw.get(blob, b""))})


def _apply_policies(view: View, selected: list[Snap], policies: dict[str, Policy],
                    reasons: dict[tuple[str, str], list[str]], now: float) -> None:
    by_name: dict[str, list[Snap]] = {}
    for s in selected:
        by_name.setdefault(s.name, []).append(s)
    for snap_name, snaps in by_name.items():
        policy = policies.get(snap_name) or policies.get(ALL_NAMES)
        if policy is None:
            continue
        mine = {s.commit: s for s in snaps}
        if policy.keep_last:
            for ref, order in view.branches.items():
                for commit in [c for c in order if c in mine][:policy.keep_last]:
                    reasons[(commit, snap_name)].append(f"last {policy.keep_last} on {ref}")
        if policy.keep_best is not None:
            best = policy.keep_best
            scored = [(v, s) for s in snaps if (v := _metric(view.manifests.get(s.blob),
                                                             best.metric)) is not None]
            scored.sort(key=lambda vs: -vs[0] if best.mode == "max" else vs[0])
            for _, s in scored[:best.k]:
                reasons[(s.commit, snap_name)].append(f"best {best.metric} ({best.mode})")
        if policy.keep_within_days is not None:
            horizon = now - policy.keep_within_days * 86400
            for s in snaps:
                if s.stamp >= horizon:
                    reasons[(s.commit, snap_name)].append(
                        f"within {policy.keep_within_days:g} days")


def _metric(manifest: Manifest | None, key: str) -> float | None:
    value: Any = manifest.metrics if manifest is not None else None
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    number = as_float(value)
    return None if number is None or math.isnan(number) else number


def _sizes(view: View, cached: dict[str, int],
           on_remote: dict[str, store.RemoteObject]) -> dict[str, int]:
    sizes = {o: r.size for o, r in on_remote.items()}
    for manifest in view.manifests.values():  # a file's recorded size, where nothing is asked
        for out in manifest.outputs if manifest is not None else ():
            if not out.is_dir:
                sizes.setdefault(out.md5, out.size)
    return {**sizes, **cached}


def _verdicts(view: View, selected: list[Snap], reasons: dict[tuple[str, str], list[str]],
              snap_objects: dict[tuple[str, str], set[str]], units: dict[str, list[str]],
              sizes: dict[str, int]) -> list[Verdict]:
    users: dict[str, int] = {}  # how many distinct manifests name each object
    for blob in view.all_blobs():
        for o in {o for m in _md5s(view, blob) for o in units.get(m, [m])}:
            users[o] = users.get(o, 0) + 1
    verdicts = []
    for s in selected:
        objects = snap_objects[(s.commit, s.name)]
        unique = sum(sizes.get(o, 0) for o in objects if users.get(o, 0) <= 1)
        shared = sum(sizes.get(o, 0) for o in objects if users.get(o, 0) > 1)
        why = tuple(dict.fromkeys(reasons[(s.commit, s.name)]))
        verdicts.append(Verdict(s.commit, s.name, _utc(s.stamp), bool(why), why, len(objects),
                                unique, shared))
    return verdicts


def _stale_refs(root: Path, view: View) -> list[str]:
    """Why this clone may not see every branch and tag of its Git remotes (empty: it does)."""
    names = gitrepo.remote_names(root)
    if not names:
        return ["this repository has no Git remote, so branches other clones made are unknown"]
    problems = []
    for remote_name in names:
        heads = gitrepo.remote_heads(root, remote_name)
        if heads is None:
            problems.append(f"Git remote {remote_name!r} cannot be asked for its branches")
            continue
        for ref, sha in sorted(heads.items()):
            if ref.startswith("refs/heads/"):
                local = f"refs/remotes/{remote_name}/{ref[len('refs/heads/'):]}"
            elif ref.startswith("refs/tags/"):
                local = ref
            else:
                continue
            if view.refs.get(local) != sha:
                short = local.removeprefix("refs/remotes/").removeprefix("refs/")
                problems.append(f"{short} is not what Git remote {remote_name!r} has "
                                f"({sha[:7]})")
    return problems


def _utc(stamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


__all__ = ["GcResult", "Space", "Verdict", "gc", "parse_best"]

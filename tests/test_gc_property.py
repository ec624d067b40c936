"""`mlsnap gc` against random histories: it never loses a kept snapshot and collects the rest.

Each seed builds a real history (two names and a folder artifact, branches, merges, tags,
shared bytes, snapshots whose bytes were never pushed, commits never pushed to Git, a second
clone pushing its own branch to the same Git remote, sometimes a worktree), then runs gc with
a random policy. What must be kept is worked out here from plain `git` and the stores' files,
independently of mlsnap's code, and compared with gc's verdicts; then every kept snapshot is
fetched byte-exact by a fresh clone (or, if its bytes were never pushed, found intact in the
cache) and every object only unkept snapshots named is gone from the cache and the remote.
Runs on the folder remote and on a real S3 server (SeaweedFS).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import mlsnap
from mlsnap import store
from tests.gctools import cache_of, objects, oid_path, remote_of, show, take
from tests.helpers import git, make_project
from tests.servers import S3Server, Server, make_server

pytestmark = pytest.mark.slow
FOLDER_SEEDS = range(30)
S3_SEEDS = range(100, 104)
NAMES = {"model": "model.bin", "other": "other.bin", "ckpt": "ckpt"}
DAY = 86400


@dataclass
class Made:
    """A snapshot as the test made it: what its bytes must be."""

    commit: str
    name: str
    content: bytes | dict[str, bytes]
    acc: float | None
    owner: Path  # the clone that made it: its cache holds the bytes


class Remote:
    """The DVC remote as the test sees it: its objects, asked of its own storage."""

    def __init__(self, folder: Path | None = None, server: S3Server | None = None,
                 prefix: str = "") -> None:
        self.folder, self.server, self.prefix = folder, server, prefix

    def url(self) -> str:
        return str(self.folder) if self.server is None else self.server.url(self.prefix)

    def objects(self) -> set[str]:
        if self.server is None:
            assert self.folder is not None
            return objects(remote_of(self.folder))
        found: set[str] = set()
        client = self.server.client()
        for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=self.server.BUCKET, Prefix=f"{self.prefix}/files/md5/"):
            for item in page.get("Contents", []):
                parts = item["Key"].split("/")
                found.add(parts[-2] + parts[-1])
        return found


class History:
    """Two clones of one Git remote sharing one DVC remote, built step by step."""

    def __init__(self, tmp: Path, remote: Remote, rng: random.Random,
                 monkeypatch: pytest.MonkeyPatch) -> None:
        self.rng, self.mp, self.remote = rng, monkeypatch, remote
        self.origin = tmp / "origin.git"
        git(tmp, "init", "-q", "--bare", "-b", "main", str(self.origin))
        self.a = make_project(tmp / "a", init=False)
        mlsnap.init(remote.url(), repo=self.a, local_options=self._local())
        git(self.a, "remote", "add", "origin", str(self.origin))
        git(self.a, "push", "-q", "-u", "origin", "main")
        self.b = tmp / "b"
        git(tmp, "clone", "-q", str(self.origin), str(self.b))
        for key, value in self._local().items():
            store.set_remote_option(self.b, key, value, local=True)
        self.made: list[Made] = []
        self.contents: list[bytes] = []
        self.clock = time.time() - 60 * DAY
        self.branches = ["main"]
        self.tags: list[tuple[str, str]] = []  # (name, commit)
        self.worktree: Path | None = None

    def _local(self) -> dict[str, str]:
        return {} if self.remote.server is None else self.remote.server.local_options()

    def _bytes(self) -> bytes:
        if self.contents and self.rng.random() < 0.25:  # the same bytes again: shared objects
            return self.rng.choice(self.contents)
        data = self.rng.randbytes(self.rng.randint(100, 1500))
        self.contents.append(data)
        return data

    def snapshot(self, root: Path, push: bool = True, name: str | None = None) -> None:
        name = name or self.rng.choice(list(NAMES))
        path = root / NAMES[name]
        content: bytes | dict[str, bytes]
        if name == "ckpt":
            path.mkdir(exist_ok=True)
            for old in path.iterdir():
                old.unlink()
            content = {f"part{i}.bin": self._bytes() for i in range(self.rng.randint(1, 3))}
            for rel, data in content.items():
                (path / rel).write_bytes(data)
        else:
            content = self._bytes()
            path.write_bytes(content)
        acc = round(self.rng.random(), 3) if self.rng.random() < 0.8 else None
        self.clock += self.rng.randint(1, 4) * DAY
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock))
        self.mp.setenv("GIT_COMMITTER_DATE", stamp)
        self.mp.setenv("GIT_AUTHOR_DATE", stamp)
        self.made.append(Made(take(root, [NAMES[name]], name=name, acc=acc, push=push),
                              name, content, acc, root))

    def step(self) -> None:
        roll = self.rng.random()
        if roll < 0.45:
            self.snapshot(self.a, push=self.rng.random() < 0.85)
        elif roll < 0.55 and any(m.owner == self.a for m in self.made):
            new = f"b{len(self.branches)}"
            base = self.rng.choice([m.commit for m in self.made if m.owner == self.a])
            git(self.a, "checkout", "-q", "-b", new, base)
            self.branches.append(new)
        elif roll < 0.65 and len(self.branches) > 1:
            self._merge()
        elif roll < 0.72 and self._here():
            m = self.rng.choice(self._here())
            version = f"1.{len(self.tags)}.0"
            if not git(self.a, "tag", "--points-at", m.commit):
                mlsnap.tag(m.name, version, m.commit, repo=self.a)
                self.tags.append((m.name, m.commit))
        elif roll < 0.82:
            branch = self.rng.choice(self.branches)
            git(self.a, "push", "-q", "origin", branch, "--tags")
        elif roll < 0.92:
            self._clone_b_branch()
        elif self.worktree is None and self._here():
            m = self.rng.choice(self._here())
            self.worktree = self.a.parent / "wt"
            git(self.a, "worktree", "add", "-q", "--detach", str(self.worktree), m.commit)

    def _in_a(self, commit: str) -> bool:
        return subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=self.a,
                              capture_output=True, check=False).returncode == 0

    def _here(self) -> list[Made]:
        """Snapshots clone A has (B's arrive with a fetch)."""
        return [m for m in self.made if self._in_a(m.commit)]

    def _merge(self) -> None:
        ours = git(self.a, "rev-parse", "--abbrev-ref", "HEAD")
        other = self.rng.choice([b for b in self.branches if b != ours])
        proc = subprocess.run(["git", "merge", "-q", "--no-edit", other], cwd=self.a,
                              capture_output=True, check=False)
        if proc.returncode != 0:  # the same manifest changed on both sides: keep ours
            git(self.a, "merge", "--abort")
            git(self.a, "merge", "-q", "--no-edit", "-s", "ours", other)

    def _clone_b_branch(self) -> None:
        git(self.b, "fetch", "-q", "origin")
        branch = f"from-b-{len(self.made)}"
        git(self.b, "checkout", "-q", "-b", branch, "origin/main")
        self.snapshot(self.b)
        git(self.b, "push", "-q", "origin", branch)


def _rev_list(root: Path, *args: str) -> list[str]:
    return git(root, "rev-list", "--full-history", *args).split()


def _blobs(root: Path, specs: list[str]) -> dict[str, str | None]:
    """``REV:PATH`` -> blob id or None, through one plain ``git cat-file``."""
    out = subprocess.run(["git", "cat-file", "--batch-check=%(objectname) %(objecttype)"],
                         cwd=root, input="".join(f"{x}\n" for x in specs), text=True,
                         capture_output=True, check=True).stdout.splitlines()
    return {x: line.split()[0] if line.endswith(" blob") else None
            for x, line in zip(specs, out)}


def expected_kept(h: History, policy: dict[str, Any], before: set[str],
                  units: dict[str, set[str]], now: float) -> set[str]:
    """Snapshot commits gc must keep, from plain `git` and the remote's objects."""
    a = h.a
    seen = {m.commit: m for m in h.made if h._in_a(m.commit)}
    kept: set[str] = set()
    refs = [r for r in git(a, "for-each-ref", "--format=%(refname)", "refs/heads",
                           "refs/remotes").split() if not r.endswith("/HEAD")]
    tips = [*refs, "HEAD", *([git(h.worktree, "rev-parse", "HEAD")] if h.worktree else [])]
    own = _blobs(a, [f"{c}:.mlsnap/{m.name}.yaml" for c, m in seen.items()])
    at_tips = _blobs(a, [f"{t}:.mlsnap/{n}.yaml" for t in tips for n in NAMES])
    for spec, blob in at_tips.items():  # the manifests at HEAD, the worktree, every branch
        name = spec.rsplit("/", 1)[1].removesuffix(".yaml")
        kept |= {c for c, m in seen.items()
                 if blob and m.name == name and own[f"{c}:.mlsnap/{name}.yaml"] == blob}
    kept |= {c for _, c in h.tags}
    for ref in refs:
        for name in NAMES:
            order = _rev_list(a, ref, "--", f".mlsnap/{name}.yaml")
            mine = [c for c in order if c in seen and seen[c].name == name]
            kept |= set(mine[:max(1, policy.get("keep_last") or 0)])
    kept |= set(_rev_list(a, "--branches", "--tags", "HEAD", "--not", "--remotes")) & set(seen)
    kept |= {c for c in seen if not units[c] <= before}
    best = policy.get("keep_best")
    if best:
        mode = best[0].partition(":")[2]
        for name in NAMES:
            scored = sorted((m for m in seen.values() if m.name == name and m.acc is not None),
                            key=lambda m: -m.acc if mode == "max" else m.acc)  # type: ignore
            kept |= {m.commit for m in scored[:best[1]]}
    days = policy.get("keep_within_days")
    if days is not None:
        stamps = git(a, "log", "--no-walk=unsorted", "--format=%H %ct", *seen).splitlines()
        kept |= {c for c, t in (x.split() for x in stamps) if int(t) >= now - days * DAY}
    return kept


def _unit(h: History, m: Made) -> set[str]:
    """The objects of a snapshot: its artifact, and a folder's files (listing from the cache
    of the clone that made it)."""
    (out,) = show(h.a, m.commit, m.name).artifacts
    if not out.is_dir:
        return {out.md5}
    listing = json.loads(oid_path(cache_of(m.owner), out.md5).read_bytes())
    return {out.md5, *(e["md5"] for e in listing)}


def _md5_ok(path: Path, oid: str) -> bool:
    return path.is_file() and hashlib.md5(path.read_bytes()).hexdigest() == oid.removesuffix(".dir")


def run_history(seed: int, tmp: Path, remote: Remote, mp: pytest.MonkeyPatch,
                record: Any) -> None:
    rng = random.Random(seed)
    h = History(tmp, remote, rng, mp)
    for _ in range(3):  # an old, pushed start on main: what a policy can collect
        h.snapshot(h.a, name="model")
    git(h.a, "push", "-q", "origin", "main")
    for _ in range(rng.randint(8, 13)):
        h.step()
    h.snapshot(h.a, name="model")  # something newer than the start, somewhere
    for branch in h.branches:  # most work reaches the Git remote; some never does
        if rng.random() < 0.75:
            git(h.a, "push", "-q", "origin", branch, "--tags")
    mp.delenv("GIT_COMMITTER_DATE")
    mp.delenv("GIT_AUTHOR_DATE")
    git(h.a, "fetch", "-q", "origin")
    git(h.b, "fetch", "-q", "origin")  # B's cache keeps only what B made: fine
    policy: dict[str, Any] = {
        "keep_last": rng.choice([None, 0, 1, 2]),
        "keep_best": rng.choice([None, ("acc:max", 1), ("acc:min", 1)]),
        "keep_within_days": rng.choice([None, None, 20.0]),
    }
    if not any(v is not None for v in policy.values()):
        policy["keep_last"] = 1
    with_remote = rng.random() < 0.8
    mine = [m for m in h.made if h._in_a(m.commit)]
    units = {m.commit: _unit(h, m) for m in mine}
    before_remote, before_cache = remote.objects(), objects(cache_of(h.a))
    now = time.time()
    want = expected_kept(h, policy, before_remote, units, now)
    if len(want) == len(mine):  # that policy keeps everything here: a strict one instead
        policy = {"keep_last": 0, "keep_best": None, "keep_within_days": None}
        want = expected_kept(h, policy, before_remote, units, now)

    result = mlsnap.gc(repo=h.a, yes=True, remote=with_remote, **policy)
    got = {v.commit for v in result.snapshots if v.keep}
    assert got == want, (seed, policy, {v.short: v.reasons for v in result.snapshots},
                         sorted(c[:7] for c in want))

    assert len(want) < len(mine), (seed, "a history where gc has nothing to collect")
    record("snapshots", len(mine))
    record("kept", len(want))
    record("objects_deleted", result.local.deleted + (result.remote.deleted if result.remote
                                                       else 0))
    kept_objects = set().union(*(units[c] for c in want))
    gone = set().union(*(units[m.commit] for m in mine if m.commit not in want)) - kept_objects
    after_remote, after_cache = remote.objects(), objects(cache_of(h.a))
    assert not gone & after_cache, seed
    assert (before_cache & kept_objects) <= after_cache, seed
    assert (before_remote & kept_objects) <= after_remote, seed
    if with_remote:
        assert not gone & after_remote, seed
    else:
        assert after_remote == before_remote, seed

    fresh = tmp / "fresh"
    git(tmp, "clone", "-q", str(h.a), str(fresh))
    git(fresh, "fetch", "-q", str(h.a), "+refs/remotes/origin/*:refs/remotes/a/*")
    for key, value in h._local().items():
        store.set_remote_option(fresh, key, value, local=True)
    for m in (m for m in mine if m.commit in want):
        if units[m.commit] <= before_remote:  # pushed: a fresh clone gets it, byte-exact
            out = tmp / "got" / m.commit[:12]
            mlsnap.get(m.commit, name=m.name, out=out, repo=fresh)
            if isinstance(m.content, bytes):
                assert (out / NAMES[m.name]).read_bytes() == m.content, (seed, m.commit)
            else:
                assert {p.name: p.read_bytes() for p in (out / "ckpt").iterdir()} == m.content
        else:  # never pushed: every byte still in the cache of the clone that made it
            assert all(_md5_ok(oid_path(cache_of(m.owner), o), o) for o in units[m.commit]), \
                (seed, m.commit)


@pytest.mark.parametrize("seed", FOLDER_SEEDS)
def test_random_history_folder_remote(seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      record_property: Any) -> None:
    run_history(seed, tmp_path, Remote(folder=tmp_path / "remote"), monkeypatch,
                record_property)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = make_server("s3", tmp_path_factory.mktemp("s3-server"))
    with server:
        yield server


@pytest.mark.servers
@pytest.mark.parametrize("seed", S3_SEEDS)
def test_random_history_s3_remote(seed: int, tmp_path: Path, s3: Server,
                                  monkeypatch: pytest.MonkeyPatch, record_property: Any) -> None:
    assert isinstance(s3, S3Server)
    remote = Remote(server=s3, prefix=f"gc/{uuid.uuid4().hex[:10]}")
    run_history(seed, tmp_path, remote, monkeypatch, record_property)


def test_gc_racing_a_push_from_another_clone_loses_nothing(tmp_path: Path) -> None:
    """A collects old snapshots while B, in another process, keeps committing: some of B's
    models have the very bytes A collects. Whatever the interleaving, once B's next push has
    run, every snapshot of B and every snapshot A keeps is whole on the remote."""
    rng = random.Random(7)
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    a = make_project(tmp_path / "a", init=False)
    mlsnap.init(str(tmp_path / "remote"), repo=a)
    git(a, "remote", "add", "origin", str(origin))
    olds = [rng.randbytes(4000) for _ in range(12)]
    for data in olds:
        (a / "model.bin").write_bytes(data)
        take(a, ["model.bin"])
    for _ in range(12):  # collectable folder objects, so A's gc has work to do
        (a / "bulk").mkdir(exist_ok=True)
        (a / "bulk" / "x.bin").write_bytes(rng.randbytes(2000))
        take(a, ["bulk"], name="bulk")
    git(a, "push", "-q", "-u", "origin", "main")
    b = tmp_path / "b"
    git(tmp_path, "clone", "-q", str(origin), str(b))
    git(b, "checkout", "-q", "-b", "b-work")
    subprocess.run([sys.executable, "-m", "mlsnap", "hooks", "install"], cwd=b, check=True,
                   capture_output=True)
    script = tmp_path / "b_commits.py"
    script.write_text(
        "import sys, mlsnap\n"
        "from pathlib import Path\n"
        "root, datas = Path(sys.argv[1]), sys.argv[2:]\n"
        "for path in datas:\n"
        "    (root / 'model.bin').write_bytes(Path(path).read_bytes())\n"
        "    mlsnap.commit('model.bin', repo=root, message=Path(path).name)\n")
    payloads = []
    for i, data in enumerate([olds[0], olds[3], rng.randbytes(3000), olds[5]]):
        p = tmp_path / f"payload{i}"
        p.write_bytes(data)
        payloads.append(str(p))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    pusher = subprocess.Popen([sys.executable, str(script), str(b), *payloads], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    collector = subprocess.Popen([sys.executable, "-m", "mlsnap", "gc", "--keep-last", "1",
                                  "--remote", "--yes"], cwd=a, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert collector.wait(timeout=240) == 0, collector.stderr.read()  # type: ignore[union-attr]
    assert pusher.wait(timeout=240) == 0, pusher.stderr.read()  # type: ignore[union-attr]

    # B's next push: its pre-push hook sends what the remote lacks of the pushed snapshots
    # (B's cache still holds every byte B committed).
    git(b, "push", "-q", "origin", "b-work")
    fresh = tmp_path / "fresh"
    git(tmp_path, "clone", "-q", str(origin), str(fresh))
    order = git(fresh, "rev-list", "origin/b-work", "--", ".mlsnap/model.yaml").split()
    datas = [Path(p).read_bytes() for p in payloads]
    for commit, data in zip(order, reversed(datas)):
        out = tmp_path / "got" / commit[:12]
        mlsnap.get(commit, name="model", out=out, repo=fresh)
        assert (out / "model.bin").read_bytes() == data
    for name, path in (("model", "model.bin"), ("bulk", "bulk")):
        mlsnap.get("origin/main", name=name, out=tmp_path / "main" / name, repo=fresh)
        assert (tmp_path / "main" / name / path).exists()

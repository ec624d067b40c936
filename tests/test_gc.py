"""`mlsnap gc`: retention on real repositories, a real cache and a real folder remote.

Every test checks the stores themselves (the files in `.dvc/cache` and in the remote folder),
not only what gc prints, and every kept snapshot is pulled back in a fresh clone.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import mlsnap
from tests.gctools import (
    add_origin,
    cache_of,
    folder,
    md5,
    objects,
    oid_path,
    remote_of,
    snap,
    take,
    unit,
)
from tests.helpers import git
from tests.helpers import mlsnap as run


def _rows(out: str) -> dict[str, str]:
    """gc's table: short commit -> its line."""
    return {line.split()[1]: line for line in out.splitlines()
            if line.startswith(("keep ", "collect "))}


def _verdicts(project: Path, **policy: Any) -> dict[str, Any]:
    """gc's verdicts (a dry run, in this process) by commit."""
    return {v.commit: v for v in mlsnap.gc(repo=project, **policy).snapshots}


def _fresh_clone(origin: Path, where: Path) -> Path:
    git(where.parent, "clone", "-q", str(origin), str(where))
    return where


def test_dry_run_says_why_each_snapshot_is_kept_and_deletes_nothing(
        project: Path, remote_dir: Path, tmp_path: Path) -> None:
    add_origin(project, tmp_path / "origin.git")
    first = snap(project, b"v1" * 5000, acc=0.5, msg="one", tag="1.0.0")
    second = snap(project, b"v2" * 5000, acc=0.9, msg="two")
    third = snap(project, b"v3" * 5000, acc=0.6, msg="three")
    fourth = snap(project, b"v4" * 5000, acc=0.7, msg="four")
    git(project, "push", "-q", "origin", "main", "--tags")
    before = objects(cache_of(project)), objects(remote_of(remote_dir))

    out = run(project, "gc", "--keep-last", "1", "--keep-best", "acc", "1").stdout
    rows = _rows(out)
    assert rows[first[:7]].startswith("keep ") and "tag model@v1.0.0" in rows[first[:7]]
    assert rows[second[:7]].startswith("keep ") and "best acc (max)" in rows[second[:7]]
    assert rows[third[:7]].startswith("collect "), out
    assert all(why in rows[fourth[:7]] for why in
               ("HEAD", "newest on main", "newest on origin/main", "last 1 on main"))
    assert "cache: would free 1 object(s), 9.8 KiB" in out
    assert out.startswith("dry run: nothing deleted")
    assert (objects(cache_of(project)), objects(remote_of(remote_dir))) == before

    doc = json.loads(run(project, "gc", "--keep-last", "1", "--remote", "--json").stdout)
    assert doc["dry_run"] is True and doc["collected"] == 2 and doc["kept"] == 2
    assert doc["remote"]["objects"] == 2 and doc["remote"]["bytes"] == 20000
    assert (objects(cache_of(project)), objects(remote_of(remote_dir))) == before


def test_collected_snapshots_are_gone_kept_ones_pull_and_collected_ones_say_so(
        project: Path, remote_dir: Path, tmp_path: Path) -> None:
    origin = add_origin(project, tmp_path / "origin.git")
    datas = [os.urandom(3000) for _ in range(4)]
    commits = [snap(project, d, acc=i / 10, msg=f"m{i}") for i, d in enumerate(datas)]
    git(project, "push", "-q", "origin", "main")
    gone = unit(project, commits[0]) | unit(project, commits[1])

    out = run(project, "gc", "--keep-last", "2", "--remote", "--yes").stdout
    assert "snapshots: 2 kept, 2 collected" in out
    assert "cache: deleted 2 object(s)" in out and "remote 'storage': deleted 2 object(s)" in out
    assert not gone & (objects(cache_of(project)) | objects(remote_of(remote_dir)))
    assert "everything is already on the remote" in run(project, "push").stdout

    log = json.loads(run(project, "log", "--json").stdout)
    assert [e["collected"] for e in log] == [False, False, True, True]
    assert "[collected] m0" in run(project, "log").stdout

    clone = _fresh_clone(origin, tmp_path / "fresh")
    for commit, data in zip(commits[2:], datas[2:]):
        git(clone, "checkout", "-q", commit)
        mlsnap.pull(repo=clone)
        assert (clone / "model.bin").read_bytes() == data
    git(clone, "checkout", "-q", commits[0])
    out = run(clone, "pull", check=1)
    assert out.stderr.count("\n") == 1 and "collected by `mlsnap gc` on" in out.stderr, out.stderr
    assert "mlsnap push" not in out.stderr
    out = run(clone, "get", commits[1], "-o", str(tmp_path / "out"), check=1)
    assert f"snapshot {commits[1][:7]} (model) was collected" in out.stderr, out.stderr
    # The clone learnt it from the remote's record: its log marks them too.
    marks = {e.commit: e.collected for e in mlsnap.log(all_refs=True, repo=clone)}
    assert [marks[c] for c in commits] == [True, True, False, False]


def test_always_kept_worktree_stash_unpushed_bytes_and_commits(
        project: Path, remote_dir: Path, tmp_path: Path) -> None:
    add_origin(project, tmp_path / "origin.git")
    a = snap(project, b"a" * 100)
    b = snap(project, b"b" * 100)
    c = snap(project, b"c" * 100)
    d = snap(project, b"d" * 100, push=False)  # bytes never sent to the remote
    e = snap(project, b"e" * 100)
    git(project, "push", "-q", "origin", "main")
    f = snap(project, b"f" * 100)  # on no remote-tracking branch
    g = snap(project, b"g" * 100)
    git(project, "worktree", "add", "-q", "--detach", str(tmp_path / "wt"), a)
    git(project, "checkout", b, "--", ".mlsnap/model.yaml", "model.bin.dvc")
    git(project, "stash", "-q")
    why = {k: list(v.reasons) for k, v in _verdicts(project, keep_last=1).items()}
    assert set(why) == {a, b, c, d, e, f, g}  # the stash's own commits are not snapshots
    assert f"worktree HEAD {tmp_path / 'wt'}" in why[a]
    assert why[b] == ["stash"]
    assert why[c] == []
    assert why[d] == ["not on the remote"]
    assert set(why[e]) == {"newest on origin/main", "last 1 on origin/main"}
    assert why[f] == ["not pushed to Git"]
    assert "HEAD" in why[g] and "not pushed to Git" in why[g]

    before = objects(cache_of(project))
    mlsnap.gc(keep_last=1, yes=True, repo=project)
    assert before - objects(cache_of(project)) == unit(project, c)
    mlsnap.pull(repo=project)  # the workspace's snapshot is whole


def test_remote_gc_refuses_when_another_clone_pushed_a_branch_this_one_has_not_fetched(
        project: Path, remote_dir: Path, tmp_path: Path) -> None:
    origin = add_origin(project, tmp_path / "origin.git")
    old = snap(project, b"old" * 100)
    snap(project, b"new" * 100)
    git(project, "push", "-q", "origin", "main")
    other = _fresh_clone(origin, tmp_path / "other")
    git(other, "checkout", "-q", "-b", "exp", old)
    git(other, "commit", "-q", "--allow-empty", "-m", "work on top of the old model")
    git(other, "push", "-q", "origin", "exp")
    before = objects(remote_of(remote_dir)), objects(cache_of(project))

    out = run(project, "gc", "--keep-last", "1", "--remote", "--yes", check=1)
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "origin/exp is not what Git remote 'origin' has" in out.stderr, out.stderr
    assert "git fetch --all" in out.stderr and "--allow-stale-refs" in out.stderr
    assert (objects(remote_of(remote_dir)), objects(cache_of(project))) == before

    git(project, "fetch", "-q", "origin")
    verdicts = _verdicts(project, keep_last=1, remote=True)
    assert "newest on origin/exp" in verdicts[old].reasons

    git(project, "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    out = run(project, "gc", "--keep-last", "1", "--remote", check=1)
    assert "Git remote 'origin' cannot be asked for its branches" in out.stderr
    out = run(project, "gc", "--keep-last", "1", "--remote", "--allow-stale-refs")
    assert "note: --allow-stale-refs: Git remote 'origin' cannot be asked" in out.stdout


def test_retention_in_config_applies_per_name_survives_commits_and_is_checked(
        project: Path, tmp_path: Path) -> None:
    config = project / ".mlsnap" / "config.yaml"
    config.write_text(config.read_text() + "retention:\n  keep_last: 1\n"
                      "  other: {keep_best: {metric: acc, mode: min, k: 1}}\n")
    git(project, "commit", "-q", "-am", "retention")
    model = [snap(project, bytes([i]) * 50) for i in range(3)]
    other = [snap(project, bytes([i]) * 60, name="other", path="other.bin", acc=a)
             for i, a in enumerate((0.3, 0.1, 0.2))]
    verdicts = _verdicts(project)
    assert [verdicts[c].keep for c in model] == [False, False, True]
    assert [verdicts[c].keep for c in other] == [False, True, True]
    assert verdicts[other[1]].reasons == ("best acc (min)",)

    (project / "metrics.json").write_text('{"acc": 0.5}')  # remembered: config.yaml rewritten
    run(project, "commit", "other.bin", "--name", "other", "--metrics", "metrics.json")
    assert "keep_best: {metric: acc, mode: min, k: 1}" in config.read_text() or \
        "metric: acc" in config.read_text()
    assert "metrics.json" in config.read_text()
    assert mlsnap.gc(repo=project).policies["other"].keep_best is not None

    config.write_text(config.read_text().replace("keep_last: 1", "keep_last: -1"))
    out = run(project, "gc", check=1)
    assert out.stderr == ("Error: .mlsnap/config.yaml: retention.keep_last: must be a whole "
                          "number >= 0, not -1; fix it there (see docs/storage.md)\n")


def test_a_folder_is_one_unit_and_files_it_shares_stay(project: Path, remote_dir: Path,
                                                       tmp_path: Path) -> None:
    origin = add_origin(project, tmp_path / "origin.git")
    a, b, a2, b2 = (os.urandom(2000) for _ in range(4))
    states = [{"a.bin": a, "b.bin": b}, {"a.bin": a, "b.bin": b2}, {"a.bin": a2, "b.bin": b2}]
    commits = []
    for files in states:
        folder(project, "ckpt", files)
        commits.append(take(project, ["ckpt"]))
    git(project, "push", "-q", "origin", "main")
    first = unit(project, commits[0])
    run(project, "gc", "--keep-last", "2", "--remote", "--yes")
    left = objects(cache_of(project)) | objects(remote_of(remote_dir))
    listing = next(o for o in first if o.endswith(".dir"))
    assert listing not in left and md5(b) not in left
    assert md5(a) in objects(cache_of(project)) and md5(a) in objects(remote_of(remote_dir))

    clone = _fresh_clone(origin, tmp_path / "fresh")
    git(clone, "checkout", "-q", commits[1])
    mlsnap.pull(repo=clone)
    assert (clone / "ckpt" / "a.bin").read_bytes() == a
    assert (clone / "ckpt" / "b.bin").read_bytes() == b2


def test_remote_objects_written_after_gc_started_are_kept(project: Path, remote_dir: Path,
                                                          tmp_path: Path) -> None:
    add_origin(project, tmp_path / "origin.git")
    old = snap(project, b"old" * 300)
    snap(project, b"new" * 300)
    git(project, "push", "-q", "origin", "main")
    (oid,) = unit(project, old)
    later = time.time() + 3600  # as a push racing this gc would leave it
    os.utime(oid_path(remote_of(remote_dir), oid), (later, later))
    out = run(project, "gc", "--keep-last", "1", "--remote", "--yes").stdout
    assert "1 object(s) written since gc started are kept" in out, out
    assert oid_path(remote_of(remote_dir), oid).is_file()
    assert oid not in objects(cache_of(project))  # the cache copy went: the remote has it
    assert "[collected]" not in run(project, "log").stdout


def test_a_cache_object_goes_only_when_the_remote_has_it(project: Path, remote_dir: Path) -> None:
    old = snap(project, b"old" * 300)
    snap(project, b"new" * 300)
    (oid,) = unit(project, old)
    oid_path(remote_of(remote_dir), oid).unlink()
    out = run(project, "gc", "--keep-last", "1", "--yes").stdout
    assert "not on the remote" in _rows(out)[old[:7]]
    assert oid in objects(cache_of(project))


def test_a_killed_gc_is_finished_by_the_next_one(project: Path, remote_dir: Path,
                                                 tmp_path: Path) -> None:
    origin = add_origin(project, tmp_path / "origin.git")
    datas = [os.urandom(1000) for _ in range(4)]
    commits = [snap(project, d) for d in datas]
    git(project, "push", "-q", "origin", "main")
    gone = unit(project, commits[0]) | unit(project, commits[1])
    for step in ("gc-before-delete", "gc-after-cache-delete"):
        run(project, "gc", "--keep-last", "2", "--remote", "--yes", check=-9,
            env={"MLSNAP_FAULT_AT": step})
        assert not (objects(cache_of(project)) & unit(project, commits[2]) ^
                    unit(project, commits[2]))
    assert "[collected]" in run(project, "log").stdout
    run(project, "gc", "--keep-last", "2", "--remote", "--yes")
    assert not gone & (objects(cache_of(project)) | objects(remote_of(remote_dir)))
    assert git(project, "status", "--porcelain") == ""
    clone = _fresh_clone(origin, tmp_path / "fresh")
    git(clone, "checkout", "-q", commits[2])
    mlsnap.pull(repo=clone)
    assert (clone / "model.bin").read_bytes() == datas[2]


def test_bad_options_are_one_line(project: Path) -> None:
    for args, text in [(("--keep-best", "acc:median", "2"), "expected METRIC[:max|min] K"),
                       (("--keep-last", "-1"), "--keep-last -1: must be 0 or more"),
                       (("--keep-within", "nan"), "must be a number of days")]:
        out = run(project, "gc", *args, check=1)
        assert out.stderr.count("\n") == 1 and text in out.stderr, out.stderr


def test_bytes_a_plain_dvc_folder_in_the_work_tree_names_stay(project: Path, remote_dir: Path,
                                                               tmp_path: Path) -> None:
    """`dvc add` outside mlsnap: a folder whose file has the very bytes of a collected model."""
    import subprocess
    import sys

    add_origin(project, tmp_path / "origin.git")
    old = os.urandom(1500)
    snap(project, old)
    snap(project, os.urandom(1500))
    git(project, "push", "-q", "origin", "main")
    (project / "extra").mkdir()
    (project / "extra" / "same.bin").write_bytes(old)
    subprocess.run([sys.executable, "-m", "dvc", "add", "-q", "extra"], cwd=project, check=True)
    run(project, "gc", "--keep-last", "1", "--remote", "--yes")
    assert md5(old) in objects(cache_of(project))
    assert md5(old) in objects(remote_of(remote_dir))  # the collected model's copy stays too
    assert oid_path(cache_of(project), md5(old)).read_bytes() == old

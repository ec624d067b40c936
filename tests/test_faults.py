"""Faults injected for real: SIGKILL at every commit step and mid-pull, a full disk, an
unreachable remote, flipped and missing objects, concurrent commits, links into the cache.

Every kill is a real ``SIGKILL`` of a real ``mlsnap`` subprocess (``MLSNAP_FAULT_AT``); every
check afterwards reads the real repository, cache and remote.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mlsnap import api
from mlsnap.errors import InterruptedCommit
from mlsnap.manifest import loads
from tests.helpers import git, make_project, mlsnap, sha256, tree_digest

COMMIT_STEPS = [
    "before-dvc-add", "after-dvc-add", "after-manifest-temp", "after-manifest", "after-git-add",
    "before-git-commit", "before-index-sync", "after-git-commit", "before-push", "after-push",
]
PUSH_STEPS = {"before-push", "after-push"}
# After a kill at these steps the snapshot is not complete, so `status` must not say clean.
# A kill past the Git commit (before-index-sync, after-git-commit) leaves a snapshot that the
# next command finishes (index, tag); only its push may still be missing.
INCOMPLETE = set(COMMIT_STEPS) - {"before-index-sync", "after-git-commit", "after-push"}
VARIANTS = 6  # kinds of change (see _prepare); each step runs KILLS_PER_STEP of them, rotating
KILLS_PER_STEP = 5


# --------------------------------------------------------------------------- helpers


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def cache_object(root: Path, md5: str) -> Path:
    return root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def remote_object(remote: Path, md5: str) -> Path:
    return remote / "files" / "md5" / md5[:2] / md5[2:]


def files_under(root: Path, rel: str) -> dict[str, bytes]:
    """Content of every file of ``rel`` (a file or a folder), keyed by repo path."""
    full = root / rel
    if full.is_file():
        return {rel: full.read_bytes()}
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(full.rglob("*")) if p.is_file()}


def assert_recorded_in_cache(root: Path, rel: str, md5: str) -> None:
    """The cache holds exactly the workspace bytes of ``rel`` under the recorded hash."""
    if not md5.endswith(".dir"):
        obj = cache_object(root, md5)
        assert obj.read_bytes() == (root / rel).read_bytes(), rel
        assert md5_bytes(obj.read_bytes()) == md5
        return
    listing = json.loads(cache_object(root, md5).read_bytes())
    assert md5_bytes(cache_object(root, md5).read_bytes()) == md5[:-4]
    on_disk = files_under(root, rel)
    assert sorted(f"{rel}/{e['relpath']}" for e in listing) == sorted(on_disk)
    for entry in listing:
        data = on_disk[f"{rel}/{entry['relpath']}"]
        assert md5_bytes(data) == entry["md5"]
        assert cache_object(root, entry["md5"]).read_bytes() == data


def workspace_digest(root: Path) -> dict[str, str]:
    """Digest of the user's files (DVC's cache is internal: a quarantined object may land there)."""
    return {k: v for k, v in tree_digest(root).items() if not k.startswith(".dvc/cache/")}


def head_manifest(root: Path, name: str = "model"):  # type: ignore[no-untyped-def]
    return loads(git(root, "show", f"HEAD:.mlsnap/{name}.yaml"), "HEAD")


def run_killed(root: Path, step: str, args: list[str]) -> None:
    proc = mlsnap(root, *args, env={"MLSNAP_FAULT_AT": step}, check=None)
    assert proc.returncode == -signal.SIGKILL, (step, proc.returncode, proc.stderr)


# --------------------------------------------------------------------------- 1. kill commit


def _prepare(root: Path, step: str, k: int) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Change the workspace for kill ``k``; return what to commit and the bytes written."""
    tag = f"v{k}-{step}"
    spec: dict[str, Any] = {"paths": [], "params": {}, "metrics": {}, "message": "", "tag": None}
    if k == 0:  # one file changes, paths from the previous snapshot
        (root / "a.bin").write_bytes(f"a {tag}\n".encode())
    elif k == 1:  # a folder gains and changes files
        (root / "dir" / "sub" / "b.txt").write_text(f"b {tag}\n")
        (root / "dir" / f"c{k}.txt").write_text(f"c {tag}\n")
    elif k == 2:  # a file becomes empty, an empty one gets content
        (root / "a.bin").write_bytes(b"")
        (root / "empty.bin").write_bytes(f"now full {tag}\n".encode())
    elif k == 3:  # input data changes, params and metrics given
        with open(root / "data" / "train.csv", "a") as f:
            f.write(f"{k}\n")
        (root / "a.bin").write_bytes(f"a {tag}\n".encode())
        spec.update(params={"lr": 0.3}, metrics={"acc": 0.9}, message=f"kill {tag}")
    elif k == 4:  # a new path that Git tracked until now moves to DVC
        (root / "g.bin").write_bytes(f"g {tag}\n".encode())
        git(root, "add", "g.bin")
        git(root, "commit", "-q", "-m", "g.bin in git")
        (root / "a.bin").write_bytes(f"a {tag} again\n".encode())
        spec["paths"] = ["a.bin", "dir", "empty.bin", "g.bin"]
    else:  # a tagged snapshot
        (root / "a.bin").write_bytes(f"a {tag} tagged\n".encode())
        spec.update(tag="1.0.0", message="tagged")
    paths = ["a.bin", "dir", "empty.bin", "data/train.csv"]
    paths += ["g.bin"] if (root / "g.bin").exists() else []
    written = {}
    for rel in paths:
        written.update(files_under(root, rel))
    return spec, written


def _cli_args(spec: dict[str, Any]) -> list[str]:
    args = ["commit", *spec["paths"]]
    args += [a for k, v in spec["params"].items() for a in ("-p", f"{k}={v}")]
    args += [a for k, v in spec["metrics"].items() for a in ("-m", f"{k}={v}")]
    args += ["-M", spec["message"]] + (["--tag", spec["tag"]] if spec["tag"] else [])
    return args


def _check_after_kill(root: Path, step: str, written: dict[str, bytes], cli: bool) -> None:
    # No half-written manifest: whatever sits at the final path is whole and valid.
    final = root / ".mlsnap" / "model.yaml"
    loads(final.read_bytes(), "after kill")
    # No lost bytes: the workspace holds exactly what was written.
    for rel, data in written.items():
        assert (root / rel).read_bytes() == data, f"{rel} changed by a kill at {step}"
    remote = step in PUSH_STEPS
    if cli:  # the exact words a user reads
        proc = mlsnap(root, "status", *([] if remote else ["--no-remote"]), check=None)
        out = proc.stdout + proc.stderr
        assert "Traceback" not in out
        if step in INCOMPLETE:
            assert proc.returncode == 3, (step, out)
        if proc.returncode == 3:
            assert "run `mlsnap commit`" in out or "`mlsnap commit` to record" in out \
                or "run `mlsnap push`" in out, (step, out)
        else:
            assert proc.returncode == 0 and "clean" in out, (step, out)
        return
    try:  # the same check through the library, cheaper than a process per kill
        report = api.status(repo=root, check_remote=remote)
    except InterruptedCommit as exc:
        assert "run `mlsnap commit` again" in str(exc)
        assert step in INCOMPLETE
        return
    if step in INCOMPLETE:
        assert report.modified or report.not_on_remote, step
    else:
        assert report.clean, step


def _check_recovered(root: Path, step: str, written: dict[str, bytes], remote: Path) -> None:
    m = head_manifest(root)
    for out in m.outputs:
        assert_recorded_in_cache(root, out.path, out.md5)
        if step in PUSH_STEPS and not out.is_dir:
            assert remote_object(remote, out.md5).read_bytes() == (root / out.path).read_bytes()
    for rel, data in written.items():
        assert (root / rel).read_bytes() == data
    # Nothing left behind: no temp file, no stray index entry, no lock.
    assert git(root, "status", "--porcelain", "--untracked-files=all") == ""
    assert not (root / ".git" / "mlsnap.lock").exists()
    assert not (root / ".git" / "mlsnap-index").exists()


@pytest.mark.slow
@pytest.mark.parametrize("step", COMMIT_STEPS)
def test_sigkill_at_every_commit_step_loses_nothing(tmp_path: Path, step: str) -> None:
    remote = tmp_path / "remote"
    root = make_project(tmp_path / "proj", remote)
    (root / "a.bin").write_bytes(b"a initial\n")
    (root / "empty.bin").write_bytes(b"")
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "dir" / "sub" / "b.txt").write_text("b initial\n")
    push = step in PUSH_STEPS
    api.commit(["a.bin", "dir", "empty.bin"], data=["data/train.csv"], push=push, repo=root)
    first = COMMIT_STEPS.index(step)
    for k in [(first + i) % VARIANTS for i in range(KILLS_PER_STEP)]:
        before = git(root, "rev-parse", "HEAD")
        spec, written = _prepare(root, step, k)
        run_killed(root, step, [*_cli_args(spec), *([] if push else ["--no-push"])])
        _check_after_kill(root, step, written, cli=k == first % VARIANTS)
        if spec["tag"] and git(root, "tag", "-l", "model@v1.0.0"):
            spec["tag"] = None  # the killed command got as far as tagging
        # The next commit completes the snapshot (through the library: no process start-up).
        api.commit(spec["paths"], params=spec["params"], metrics=spec["metrics"],
                   message=spec["message"], tag=spec["tag"], push=push, repo=root)
        _check_recovered(root, step, written, remote)
        assert git(root, "rev-parse", "HEAD") != before
        if k == 4:
            assert git(root, "ls-files", "g.bin") == ""  # left Git for DVC, bytes kept
        if k == 5:
            assert git(root, "tag", "-l", "model@v1.0.0") == "model@v1.0.0"


# --------------------------------------------------------------------------- 2. kill pull


def _clone(src: Path, dest: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(src), str(dest)], check=True)
    return dest


@pytest.mark.parametrize("step", ["pull-before-checkout", "pull-after-checkout"])
def test_sigkill_mid_pull_then_rerun_completes(project: Path, tmp_path: Path, step: str) -> None:
    (project / "model.pkl").write_bytes(b"weights " * 1000)
    (project / "ckpt").mkdir()
    (project / "ckpt" / "e1.bin").write_bytes(b"epoch one")
    mlsnap(project, "commit", "model.pkl", "ckpt")
    clone = _clone(project, tmp_path / "clone")
    run_killed(clone, step, ["pull"])
    if step == "pull-before-checkout":
        assert not (clone / "model.pkl").exists() and not (clone / "ckpt").exists()
    else:  # a kill after checkout leaves whole files only
        assert (clone / "model.pkl").read_bytes() == (project / "model.pkl").read_bytes()
    mlsnap(clone, "pull")
    assert (clone / "model.pkl").read_bytes() == (project / "model.pkl").read_bytes()
    assert (clone / "ckpt" / "e1.bin").read_bytes() == b"epoch one"
    assert mlsnap(clone, "status").returncode == 0


def _dvc_temps(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]


@pytest.mark.slow
def test_sigkill_during_dvc_copy_leaves_no_partial_file(project: Path) -> None:
    big = project / "big.bin"
    with open(big, "wb") as f:  # sparse: cheap to make, a real copy to restore
        f.truncate(96 * 1024 * 1024)
        f.seek(0)
        f.write(b"head")
    expected = sha256(big)
    mlsnap(project, "commit", "big.bin", "--no-push")
    left_behind: list[Path] = []
    for _ in range(5):  # the copy window is short; try again if the copy won the race
        if big.exists():
            big.unlink()
        proc = subprocess.Popen([sys.executable, "-m", "mlsnap", "pull"], cwd=project,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None:
            if _dvc_temps(project):
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait()
        # Whatever the timing, the final path holds the whole file or nothing.
        assert not big.exists() or sha256(big) == expected
        left_behind = _dvc_temps(project)
        if left_behind:
            break
    if not left_behind:
        pytest.skip("the copy finished before it could be killed (5 tries)")
    assert proc.returncode == -signal.SIGKILL
    assert not big.exists(), "a partial file reached the final path"
    mlsnap(project, "pull")
    assert sha256(big) == expected
    assert _dvc_temps(project) == []


# --------------------------------------------------------------------------- 3. disk full


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a 6 MiB tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_during_commit_keeps_files_and_cache_clean(small_disk: Path,
                                                             tmp_path: Path) -> None:
    root = make_project(small_disk / "proj", tmp_path / "remote")
    model = root / "model.bin"
    model.write_bytes(os.urandom(3 * 1024 * 1024))  # fits once, not twice (workspace + cache)
    expected = sha256(model)
    head = git(root, "rev-parse", "HEAD")
    proc = mlsnap(root, "commit", "model.bin", "--no-push", check=1)
    assert proc.stderr.startswith("Error: ") and len(proc.stderr.strip().splitlines()) == 1
    assert "no space" in proc.stderr.lower()
    assert sha256(model) == expected  # DVC #10413: the original must survive
    assert git(root, "rev-parse", "HEAD") == head
    assert not (root / ".mlsnap" / "model.yaml").exists()
    for obj in (root / ".dvc" / "cache").rglob("*"):
        if obj.is_file():  # whatever the cache holds is whole and named by its hash
            assert md5_bytes(obj.read_bytes()) == obj.parent.name + obj.name, obj
    model.unlink()  # free space: the same command now succeeds
    model.write_bytes(b"smaller model")
    mlsnap(root, "commit", "model.bin", "--no-push")
    assert_recorded_in_cache(root, "model.bin", head_manifest(root).artifacts[0].md5)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def test_disk_full_during_pull_leaves_no_partial_file(small_disk: Path, tmp_path: Path) -> None:
    root = make_project(small_disk / "proj", tmp_path / "remote")
    (root / "model.bin").write_bytes(os.urandom(512 * 1024))
    (root / "ckpt").mkdir()
    (root / "ckpt" / "w.bin").write_bytes(os.urandom(64 * 1024))
    mlsnap(root, "commit", "model.bin", "ckpt", "--no-push")
    expected = (root / "model.bin").read_bytes()
    (root / "model.bin").unlink()
    shutil.rmtree(root / "ckpt")
    filler = _fill(small_disk)
    proc = mlsnap(root, "pull", check=1)
    line = proc.stderr.strip()
    assert line.startswith("Error: ") and "\n" not in line and "No space left" in line, line
    assert "mlsnap pull" in line
    assert not (root / "model.bin").exists()
    assert _dvc_temps(root) == []
    filler.unlink()
    mlsnap(root, "pull")
    assert (root / "model.bin").read_bytes() == expected
    assert (root / "ckpt" / "w.bin").stat().st_size == 64 * 1024


# --------------------------------------------------------------------------- 4. remote down


def _break(remote: Path) -> Path:
    """Make the folder remote unreachable (as an unmounted share): a file where the dir was."""
    away = remote.with_name(remote.name + ".away")
    remote.rename(away)
    remote.write_text("not a directory")
    return away


def _mend(remote: Path, away: Path) -> None:
    remote.unlink()
    away.rename(remote)


def test_push_to_unreachable_remote_keeps_commit_and_retry_is_idempotent(
        project: Path, remote_dir: Path) -> None:
    (project / "model.pkl").write_bytes(b"model bytes")
    mlsnap(project, "commit", "model.pkl", "--no-push")  # remote now exists and is in use
    (project / "model.pkl").write_bytes(b"model bytes v2")
    away = _break(remote_dir)
    proc = mlsnap(project, "commit", "model.pkl", check=1)
    assert "snapshot committed as" in proc.stderr and "mlsnap push" in proc.stderr
    m = head_manifest(project)  # the snapshot is kept locally
    assert m.artifacts[0].md5 == md5_bytes(b"model bytes v2")
    st = mlsnap(project, "status", check=3)
    assert "could not check the remote" in st.stdout
    assert mlsnap(project, "push", check=1).stderr.startswith("Error: ")
    _mend(remote_dir, away)
    st = mlsnap(project, "status", check=3)
    assert "not on remote: model.pkl (run `mlsnap push`)" in st.stdout
    assert "pushed 1 object(s)" in mlsnap(project, "push").stdout
    assert "already on the remote" in mlsnap(project, "push").stdout
    assert remote_object(remote_dir, m.artifacts[0].md5).read_bytes() == b"model bytes v2"
    mlsnap(project, "status")


def test_pull_from_unreachable_remote_changes_nothing(project: Path, remote_dir: Path,
                                                      tmp_path: Path) -> None:
    (project / "model.pkl").write_bytes(b"model bytes")
    mlsnap(project, "commit", "model.pkl")
    clone = _clone(project, tmp_path / "clone")
    before = workspace_digest(clone)
    away = _break(remote_dir)
    proc = mlsnap(clone, "pull", check=1)
    assert proc.stderr.startswith("Error: ") and "storage" in proc.stderr
    assert workspace_digest(clone) == before
    _mend(remote_dir, away)
    mlsnap(clone, "pull")
    assert (clone / "model.pkl").read_bytes() == b"model bytes"


# --------------------------------------------------------------------------- 5/6. bad objects


def _flip(path: Path) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_flipped_byte_in_cache_is_caught_and_never_restored(project: Path) -> None:
    (project / "model.pkl").write_bytes(b"precious weights " * 100)
    mlsnap(project, "commit", "model.pkl")
    md5 = head_manifest(project).artifacts[0].md5
    (project / "model.pkl").unlink()
    _flip(cache_object(project, md5))
    proc = mlsnap(project, "pull", check=3)
    assert md5 in proc.stderr and md5_bytes(b"x") not in proc.stderr
    actual = proc.stderr.split("content hash is ")[1].split(",")[0]
    assert len(actual) == 32 and actual != md5
    assert not (project / "model.pkl").exists()
    # The corrupt object was moved aside: the next pull fetches a good copy from the remote.
    mlsnap(project, "pull")
    assert (project / "model.pkl").read_bytes() == b"precious weights " * 100


def test_flipped_byte_on_remote_is_caught_and_never_restored(project: Path, remote_dir: Path,
                                                             tmp_path: Path) -> None:
    (project / "ckpt").mkdir()
    (project / "ckpt" / "w.bin").write_bytes(b"remote weights " * 100)
    mlsnap(project, "commit", "ckpt")
    entry_md5 = md5_bytes(b"remote weights " * 100)
    _flip(remote_object(remote_dir, entry_md5))
    clone = _clone(project, tmp_path / "clone")
    before = workspace_digest(clone)
    proc = mlsnap(clone, "pull", check=3)
    assert "ckpt/w.bin" in proc.stderr and entry_md5 in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert workspace_digest(clone) == before


def test_missing_remote_object_lists_paths(project: Path, remote_dir: Path,
                                           tmp_path: Path) -> None:
    (project / "a.pkl").write_bytes(b"a")
    (project / "b.pkl").write_bytes(b"b")
    mlsnap(project, "commit", "a.pkl", "b.pkl")
    remote_object(remote_dir, md5_bytes(b"b")).unlink()
    clone = _clone(project, tmp_path / "clone")
    proc = mlsnap(clone, "pull", check=None)
    assert proc.returncode != 0 and "b.pkl" in proc.stderr and "a.pkl" not in proc.stderr
    assert "mlsnap push" in proc.stderr
    assert not (clone / "b.pkl").exists()


# --------------------------------------------------------------------------- 7. concurrency


def test_two_commits_started_together_take_turns(project: Path) -> None:
    for n in ("one", "two"):
        (project / f"{n}.bin").write_bytes(n.encode())
    start = git(project, "rev-parse", "HEAD")
    procs = [subprocess.Popen([sys.executable, "-m", "mlsnap", "commit", f"{n}.bin", "--name", n,
                               "--no-push"], cwd=project, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for n in ("one", "two")]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    assert [r[2] for r in results] == [0, 0], results
    commits = git(project, "rev-list", f"{start}..HEAD").split()
    assert len(commits) == 2  # one after the other, linear, nothing lost
    for sha in commits:
        files = git(project, "show", "--name-only", "--format=", sha).split()
        assert len([f for f in files if f.startswith(".mlsnap/")]) == 1
    for n in ("one", "two"):
        m = head_manifest(project, n)
        assert m.artifacts[0].md5 == md5_bytes(n.encode())
    assert git(project, "status", "--porcelain") == ""


def test_lock_held_by_live_process_names_it_and_dead_one_is_recovered(project: Path) -> None:
    (project / "m.bin").write_bytes(b"m")
    lock = project / ".git" / "mlsnap.lock"
    # A live holder: a process that holds the kernel lock on the file, as mlsnap does.
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, socket, sys, time\n"
        f"fd = os.open({str(lock)!r}, os.O_CREAT | os.O_RDWR)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, f'{os.getpid()} {socket.gethostname()}'.encode())\n"
        "print('locked', flush=True)\n"
        "time.sleep(120)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        proc = mlsnap(project, "commit", "m.bin", "--no-push", env={"MLSNAP_LOCK_TIMEOUT": "0.5"},
                      check=1)
        assert f"pid {holder.pid}" in proc.stderr and "mlsnap.lock" in proc.stderr
        assert not (project / ".mlsnap" / "model.yaml").exists()
    finally:
        holder.kill()
        holder.wait()
    assert lock.read_text().split()[0] == str(holder.pid)  # a dead holder's file stays behind
    mlsnap(project, "commit", "m.bin", "--no-push")  # its holder is dead: the lock is taken over
    assert not lock.exists()
    assert head_manifest(project).artifacts[0].md5 == md5_bytes(b"m")


# --------------------------------------------------------------------------- 8. copies


def test_restored_files_are_copies_so_editing_them_spares_the_cache(project: Path) -> None:
    assert 'type = "reflink,copy"' in (project / ".dvc" / "config").read_text()  # by init
    (project / "model.pkl").write_bytes(b"original model")
    (project / "ckpt").mkdir()
    (project / "ckpt" / "w.bin").write_bytes(b"original ckpt")
    mlsnap(project, "commit", "model.pkl", "ckpt", "--no-push")
    shutil.rmtree(project / "ckpt")
    (project / "model.pkl").unlink()
    mlsnap(project, "pull")
    for rel, data in (("model.pkl", b"original model"), ("ckpt/w.bin", b"original ckpt")):
        path = project / rel
        obj = cache_object(project, md5_bytes(data))
        st = os.lstat(path)
        assert not path.is_symlink() and st.st_nlink == 1
        assert st.st_ino != os.stat(obj).st_ino
        with open(path, "r+b") as f:  # an in-place edit, as a training script might do
            f.write(b"EDITED")
        assert obj.read_bytes() == data
    assert mlsnap(project, "status", "--no-remote", check=3).stdout.count("modified:") == 2
    mlsnap(project, "pull", "--force")
    assert (project / "model.pkl").read_bytes() == b"original model"


def test_commit_keeps_the_file_it_tracks_independent_of_the_cache(project: Path) -> None:
    model = project / "model.pkl"
    model.write_bytes(b"trained")
    mlsnap(project, "commit", "model.pkl", "--no-push")
    assert os.stat(model).st_nlink == 1 and not model.is_symlink()
    assert os.stat(model).st_ino != os.stat(cache_object(project, md5_bytes(b"trained"))).st_ino
    assert model.read_bytes() == b"trained"


def test_empty_or_garbage_lock_file_left_by_a_kill_is_taken_over(project: Path) -> None:
    """A kill just after the lock file was created leaves it empty (or half-written): the
    lock is the kernel's, so the next command takes it at once instead of timing out."""
    lock = project / ".git" / "mlsnap.lock"
    for content in (b"", b"12", b"\x00\xff garbage"):
        (project / "m.bin").write_bytes(b"m" + content)
        lock.write_bytes(content)
        mlsnap(project, "commit", "m.bin", "--no-push", env={"MLSNAP_LOCK_TIMEOUT": "0.5"})
        assert not lock.exists()
        assert head_manifest(project).artifacts[0].md5 == md5_bytes(b"m" + content)


def test_a_reader_closing_the_pipe_ends_quietly(project: Path) -> None:
    """`mlsnap log | head -1` (and pull, show) stop as Git does: no message, no traceback."""
    for i in range(40):  # enough rows that the pipe fills and the reader's close is noticed
        (project / "m.bin").write_bytes(f"m{i}".encode())
        api.commit(["m.bin"], message=f"run {i} " + "x" * 200, push=False, repo=project)
    for args in (["log"], ["log", "--json"], ["show"], ["pull"]):
        # What `mlsnap ARGS | head -c 1` does: read one byte, then close the reading end.
        proc = subprocess.Popen([sys.executable, "-m", "mlsnap", *args], cwd=project,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.read(1)
        proc.stdout.close()
        err = proc.stderr.read().decode()
        code = proc.wait(timeout=120)
        assert code in (0, 141), (args, code, err)
        assert err == "", (args, err)


def test_sigterm_rolls_back_at_once_and_says_so_in_one_line(project: Path) -> None:
    (project / "model.bin").write_bytes(os.urandom(64 * 1024 * 1024))
    expected = sha256(project / "model.bin")
    before = git(project, "status", "--porcelain", "--untracked-files=all")
    proc = subprocess.Popen([sys.executable, "-m", "mlsnap", "commit", "model.bin", "--no-push"],
                            cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "MLSNAP_DEBUG": ""})
    deadline = 100
    journal = project / ".git" / "mlsnap" / "journal" / "journal.json"
    while not journal.exists() and deadline and proc.poll() is None:  # it has begun to write
        deadline -= 1
        subprocess.run(["sleep", "0.05"], check=True)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the commit finished before the signal")
    assert proc.returncode == 143, err
    assert err.startswith("interrupted: `mlsnap commit model.bin --no-push` stopped"), err
    assert "nothing lost" in err and len(err.strip().splitlines()) == 1, err
    # Rolled back by the interrupted process itself: nothing left for the next command.
    assert not journal.exists()
    assert sha256(project / "model.bin") == expected
    assert git(project, "status", "--porcelain", "--untracked-files=all") == before


def test_git_locks_of_a_killed_process_group_are_removed_but_a_users_own_stay(
        project: Path) -> None:
    """Killing mlsnap's whole process group takes its Git child along before Git removes its
    lock files; the next command removes those (made after the killed command started) and
    leaves alone an older lock, which is some other Git process's business."""
    (project / "model.bin").write_bytes(b"new model")
    run_killed(project, "after-manifest", ["commit", "model.bin", "--no-push"])
    index_lock = project / ".git" / "index.lock"
    ref_lock = project / ".git" / "refs" / "heads" / "main.lock"
    index_lock.write_bytes(b"")  # what `git commit` / `git update-ref` held when killed
    ref_lock.write_bytes(b"")
    mlsnap(project, "commit", "model.bin", "--no-push")
    assert not index_lock.exists() and not ref_lock.exists()
    assert head_manifest(project).artifacts[0].md5 == md5_bytes(b"new model")

    (project / "model.bin").write_bytes(b"newer model")
    run_killed(project, "after-manifest", ["commit", "model.bin", "--no-push"])
    index_lock.write_bytes(b"")
    hour_ago = time.time() - 3600
    os.utime(index_lock, (hour_ago, hour_ago))
    proc = mlsnap(project, "commit", "model.bin", "--no-push", check=None)
    assert proc.returncode != 0 and "index.lock" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert index_lock.exists()
    index_lock.unlink()
    mlsnap(project, "commit", "model.bin", "--no-push")
    assert head_manifest(project).artifacts[0].md5 == md5_bytes(b"newer model")


def test_a_finished_command_leaves_the_log_cache_in_place(project: Path) -> None:
    """The journal has a folder of its own: dropping it keeps `log`'s parse cache."""
    (project / "m.bin").write_bytes(b"one")
    mlsnap(project, "commit", "m.bin", "--no-push")
    mlsnap(project, "log")
    cache = project / ".git" / "mlsnap" / "history.json"
    assert cache.is_file()
    (project / "m.bin").write_bytes(b"two")
    mlsnap(project, "commit", "m.bin", "--no-push")
    assert cache.is_file()
    assert not (project / ".git" / "mlsnap" / "journal").exists()

"""The random-time interruption driver: run a real ``mlsnap`` process, signal it at a moment
drawn uniformly over the measured duration of the same command, then check the crash-safety
contract (DESIGN.md "Crash safety", docs/reliability.md "Crash safety: the invariants") from the
outside.

Nothing here knows how mlsnap works inside: every check reads the real work tree, Git, DVC's
cache and the remote, and compares them with what the user had before the command started.

Signals, as a user or the system sends them:

- ``SIGKILL`` to the whole process group (the OOM killer, a closed terminal, a power cut):
  nothing the command started survives it;
- ``SIGINT`` to the main process (Ctrl-C as ``kill -INT PID``);
- ``SIGTERM`` to the main process (``kill PID``, a scheduler stopping a job).

Knobs (environment variables):

- ``MLSNAP_INTERRUPT_SEED`` (default 20240611): the seed of every draw; printed with each case.
- ``MLSNAP_INTERRUPT_COUNT``: a factor on the number of interruptions of each scenario
  (``0.1`` for a quick local run, ``2`` for a long one); at least one case each.
- ``MLSNAP_INTERRUPT_ONLY=<label>:<i>``: run only case ``i`` of scenario ``label`` (the draws of
  every case are made anyway, so case ``i`` gets the same signal and delay fraction).
- ``MLSNAP_INTERRUPT_DELAY=<seconds>``: with ``MLSNAP_INTERRUPT_ONLY``, signal after exactly
  that delay instead of the drawn fraction of this run's measurement (timing on a shared machine
  varies: this replays the delay a failure printed).
- ``MLSNAP_INTERRUPT_REPEAT=<n>``: with ``MLSNAP_INTERRUPT_ONLY``, run that case ``n`` times
  (a fresh copy each time): most failures depend on timing to the millisecond.
- ``MLSNAP_INTERRUPT_KEEP=1``: keep the folders of failing cases (their paths are printed).
- ``MLSNAP_INTERRUPT_REPORT=<file>``: also write the per-command counts there as JSON.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

DEFAULT_SEED = 20240611
SIGNALS = (signal.SIGKILL, signal.SIGINT, signal.SIGTERM)
INTERRUPTED_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
WAIT_AFTER_SIGNAL = 60.0  # an interrupted command may roll back, but not for ever
MEASURE_RUNS = 3
GROUP_DRAIN = 15.0  # what it started (git, DVC workers) must be gone before the tree is read
COMMAND_TIMEOUT = 300.0
GIT_TIMEOUT = 60.0
SURVIVOR_WAIT = 30.0  # what a stopped command started gets this long to end

# DVC writes "<dir>/.<22 url-safe chars>.tmp" and "<name>.<22 chars>.tmp"; mlsnap's own
# temporary names start with ".mlsnap-tmp-". Anything else ending in ".tmp" is litter too.
TMP_PREFIX = ".mlsnap-tmp-"
DVC_TMP = re.compile(r"^(.*)\.[A-Za-z0-9_-]{22}\.tmp$")
OBJECT = re.compile(r"^files/md5/([0-9a-f]{2})/([0-9a-f]{30})(\.dir)?$")
HERE = "tests/test_interrupts.py"
GIT_LOCKS = ("index.lock", "HEAD.lock", "config.lock", "packed-refs.lock", "mlsnap-index",
             "mlsnap-index.lock")


# --------------------------------------------------------------------------- knobs


def seed() -> int:
    return int(os.environ.get("MLSNAP_INTERRUPT_SEED") or DEFAULT_SEED)


def scaled(n: int) -> int:
    """``n`` interruptions times ``MLSNAP_INTERRUPT_COUNT`` (a factor), at least 1."""
    factor = float(os.environ.get("MLSNAP_INTERRUPT_COUNT") or 1)
    return max(1, round(n * factor))


def only() -> tuple[str, int] | None:
    wanted = os.environ.get("MLSNAP_INTERRUPT_ONLY", "").strip()
    if not wanted:
        return None
    label, sep, index = wanted.rpartition(":")
    if not sep or not index.isdigit():
        raise ValueError(f"MLSNAP_INTERRUPT_ONLY={wanted!r}: expected <label>:<index>")
    return label, int(index)


def repeats() -> int:
    """With MLSNAP_INTERRUPT_ONLY: how many times to run that case (timing-dependent bugs)."""
    value = os.environ.get("MLSNAP_INTERRUPT_REPEAT", "").strip()
    return max(1, int(value)) if value and only() is not None else 1


def fixed_delay() -> float | None:
    value = os.environ.get("MLSNAP_INTERRUPT_DELAY", "").strip()
    return float(value) if value and only() is not None else None


def keep_failures() -> bool:
    return os.environ.get("MLSNAP_INTERRUPT_KEEP") == "1"


def mlsnap_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlsnap", *args]


def command_env(case: Path | None = None) -> dict[str, str]:
    """The environment of every process the harness starts: the test's own (HOME, Git
    identity: see conftest), no fault injection, no debug tracebacks; DVC's site cache (its
    remote indexes, hash state) inside the case folder, so every case starts from nothing and
    leaves nothing behind in /var/tmp."""
    env = dict(os.environ)
    for name in ("MLSNAP_FAULT_AT", "MLSNAP_DEBUG", "MLSNAP_INTERRUPT_ONLY"):
        env.pop(name, None)
    env["DVC_NO_ANALYTICS"] = "1"
    env["DVC_NO_UPDATER"] = "1"
    if case is not None:
        env["DVC_SITE_CACHE_DIR"] = str(case / "dvc-site-cache")
    return env


# --------------------------------------------------------------------------- running


@dataclass
class Run:
    argv: list[str]
    sig: signal.Signals | None = None
    delay: float | None = None
    returncode: int = 0
    stdout: str = ""
    stderr: str = ""
    elapsed: float = 0.0
    signalled: bool = False  # the signal was sent while the process was still running
    hung: bool = False  # it did not end within the bounded wait and was killed
    stragglers: int = 0  # processes of its group still alive GROUP_DRAIN s after it ended
    caught: set[int] | None = None  # signals it had handlers for when the signal was sent
    startup: bool = False  # the signal ended the interpreter before Python's handler existed
    sent_at: float = 0.0  # time.time() when the signal was sent

    @property
    def before_python_handler(self) -> bool:
        """The signal reached the interpreter before Python had installed its SIGINT handler,
        i.e. before any Python code could run (docs/reliability.md: Python's own)."""
        return self.caught is not None and signal.SIGINT not in self.caught

    @property
    def interrupted(self) -> bool:
        """The signal reached a running command and the command did not finish (exit 0)."""
        return self.signalled and self.returncode != 0

    def tail(self, limit: int = 400) -> str:
        """stderr on one line, its start and end when long."""
        text = " | ".join(ln for ln in self.stderr.strip().splitlines() if ln.strip())
        if not text:
            return "(empty stderr)"
        if len(text) > limit:
            text = f"{text[:limit // 2]} ... {text[-limit // 2:]}"
        return repr(text)


def caught_signals(pid: int) -> set[int] | None:
    """The signals ``pid`` has a handler for right now (``SigCgt`` in /proc), None if unknown.

    Read just before a signal is sent: it tells a SIGINT that reached the interpreter before
    Python installed its own handler (start-up, documented as Python's own) from one that
    reached mlsnap."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                mask = int(line.split()[1], 16)
                return {n + 1 for n in range(64) if mask >> n & 1}
    except (OSError, ValueError):
        return None
    return None


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry))
    return members


def _drain_group(pgid: int) -> int:
    """Wait (bounded) for every process of the command's group to end; SIGKILL the rest.

    The group is the harness's own (``start_new_session``): only processes it started are
    signalled. Returns how many had to be killed."""
    deadline = time.monotonic() + GROUP_DRAIN
    while _group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)
    left = _group_members(pgid)
    if left:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return 0
        deadline = time.monotonic() + 10
        while _group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.02)
    return len(left)


def run(argv: list[str], cwd: Path, env: dict[str, str], *, sig: signal.Signals | None = None,
        delay: float | None = None, timeout: float = COMMAND_TIMEOUT) -> Run:
    """Run ``argv`` in its own process group; with ``sig``, send it ``delay`` s after the start
    (SIGKILL to the group, SIGINT/SIGTERM to the main process). Every wait is bounded."""
    result = Run(argv, sig, delay)
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        start = time.monotonic()
        proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out_f,
                                stderr=err_f, env=env, start_new_session=True)
        try:
            limit = timeout
            if sig is not None:
                assert delay is not None
                try:
                    proc.wait(timeout=max(0.0, delay))
                except subprocess.TimeoutExpired:
                    result.caught = caught_signals(proc.pid)
                    result.sent_at = time.time()
                    if sig == signal.SIGKILL:
                        os.killpg(proc.pid, signal.SIGKILL)
                    else:
                        os.kill(proc.pid, sig)
                    result.signalled = True
                    limit = WAIT_AFTER_SIGNAL
                else:
                    limit = 0.0
            if proc.returncode is None:
                try:
                    proc.wait(timeout=limit)
                except subprocess.TimeoutExpired:
                    result.hung = True
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=30)
            result.elapsed = time.monotonic() - start
        finally:
            if proc.returncode is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
            result.stragglers = _drain_group(proc.pid)
        result.returncode = proc.returncode
        out_f.seek(0)
        err_f.seek(0)
        result.stdout = out_f.read().decode(errors="replace")
        result.stderr = err_f.read().decode(errors="replace")
    return result


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has ended: only its exit status is left)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] not in ("Z", "X")


def _works_in(pid: int, folder: Path) -> bool:
    try:
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return False
    return cwd == folder or folder in cwd.parents


def survivors(folder: Path, pids: list[int], wait: float = SURVIVOR_WAIT) -> list[str]:
    """What an ended command left running: each of ``pids`` (processes it started, which
    noted their own pid) and any process whose working folder is inside ``folder`` (the
    case's copy), once ``wait`` s have passed; those found are SIGKILLed, so that the next
    case starts alone. Another process of this machine never works inside a case's folder."""
    def alive() -> list[int]:
        found = {p for p in pids if _alive(p)}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid() and _alive(int(entry)) \
                    and _works_in(int(entry), folder):
                found.add(int(entry))
        return sorted(found)

    deadline = time.monotonic() + wait
    left = alive()
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = alive()
    problems = []
    for pid in left:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            cmdline = b"?"
        problems.append(f"[survivor] pid {pid} ({cmdline.decode(errors='replace').strip()[:120]}"
                        f") still ran {wait:.0f}s after the command ended; killed")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return problems


# --------------------------------------------------------------------------- reading state


_HASHES: dict[tuple[int, int, int, int, int], tuple[str, str]] = {}


def _hashes(path: Path) -> tuple[str, str]:
    """(sha256, md5) of a file's bytes, read once while the file is unchanged: the key holds
    its inode and ctime, which every write, rename or chmod moves (no process can set ctime)."""
    st = os.stat(path)
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    found = _HASHES.get(key)
    if found is None:
        sha, md5 = hashlib.sha256(), hashlib.md5()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                sha.update(chunk)
                md5.update(chunk)
        if len(_HASHES) > 200_000:
            _HASHES.clear()
        found = _HASHES[key] = (sha.hexdigest(), md5.hexdigest())
        if os.stat(path).st_ctime_ns != st.st_ctime_ns:  # changed while read: never cache it
            del _HASHES[key]
    return found


def sha256_file(path: Path) -> str:
    return _hashes(path)[0]


def md5_file(path: Path) -> str:
    return _hashes(path)[1]


def git(cwd: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False,
                          timeout=GIT_TIMEOUT, env=command_env())
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed in {cwd}: {proc.stderr.strip()}")
    return proc.stdout


def porcelain(root: Path) -> str:
    return git(root, "status", "--porcelain", "--untracked-files=all")


def is_temp_name(name: str) -> bool:
    return name.startswith(TMP_PREFIX) or name.endswith(".tmp") or bool(DVC_TMP.match(name))


def digest(base: Path, paths: list[str]) -> dict[str, str]:
    """sha256 of every file at or under each of ``paths`` (files or folders, relative to
    ``base``); temporary names are left out (:func:`litter` reports them)."""
    out: dict[str, str] = {}
    for rel in paths:
        full = base / rel
        if full.is_symlink():
            out[rel] = f"symlink:{os.readlink(full)}"
        elif full.is_file():
            out[rel] = sha256_file(full)
        elif full.is_dir():
            for dirpath, dirs, files in os.walk(full):
                dirs.sort()
                for name in sorted(files):
                    if is_temp_name(name):
                        continue
                    p = Path(dirpath) / name
                    key = p.relative_to(base).as_posix()
                    out[key] = f"symlink:{os.readlink(p)}" if p.is_symlink() else sha256_file(p)
    return out


def litter(root: Path, *, git_dir: bool = True) -> list[str]:
    """Temporary files anywhere in the work tree (DVC's cache and tmp are checked apart) and
    what a dead writer leaves in ``.git``: Git's lock files, mlsnap's private index."""
    found = []
    for dirpath, dirs, files in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        if rel_dir == ".":
            dirs[:] = [d for d in dirs if d != ".git"]
        elif rel_dir == ".dvc":
            dirs[:] = [d for d in dirs if d not in ("cache", "tmp")]
        for name in files + dirs:
            if is_temp_name(name):
                found.append(name if rel_dir == "." else f"{rel_dir}/{name}")
    gitdir = root / ".git"
    if git_dir and gitdir.is_dir():
        found += [f".git/{lock}" for lock in GIT_LOCKS if (gitdir / lock).exists()]
        found += [p.relative_to(root).as_posix() for p in (gitdir / "refs").rglob("*.lock")]
        hooks = gitdir / "hooks"
        if hooks.is_dir():
            found += [f".git/hooks/{p.name}" for p in hooks.iterdir() if is_temp_name(p.name)]
    return sorted(found)


def store_files(base: Path) -> dict[str, int]:
    """Every file under an object store (cache or folder remote): relative path -> inode."""
    if not base.is_dir():
        return {}
    found = {}
    for d, _, files in os.walk(base):
        for f in files:
            p = Path(d) / f
            found[p.relative_to(base).as_posix()] = os.lstat(p).st_ino
    return found


def store_problems(base: Path, where: str, known: dict[str, int] | None = None,
                   allowed_top: tuple[str, ...] = ()) -> list[str]:
    """Every file of a DVC object store is an object whose bytes hash to its name.

    ``known`` (path -> inode) names the template's objects, hard-linked into the case and
    checked once per scenario (:func:`template_store_problems`): they are not hashed again
    unless something put another file at their path."""
    problems = []
    for rel, ino in sorted(store_files(base).items()):
        if rel.split("/")[0] in allowed_top:
            continue
        m = OBJECT.match(rel)
        if not m:
            problems.append(f"[litter] {where}: stray file {rel}")
            continue
        if known is not None and known.get(rel) == ino:
            continue
        actual = md5_file(base / rel)
        if actual != m[1] + m[2]:
            problems.append(f"[corrupt] {where}: {rel} holds bytes hashing to {actual}")
    return problems


def object_path(store: Path, md5: str) -> Path:
    return store / "files" / "md5" / md5[:2] / md5[2:]


def manifest_at(root: Path, name: str, rev: str | None = None) -> dict[str, Any] | None:
    """The manifest of ``name`` in the work tree (``rev`` None) or at ``rev``; None if absent."""
    if rev is None:
        path = root / ".mlsnap" / f"{name}.yaml"
        if not path.is_file():
            return None
        text = path.read_text()
    else:
        text = git(root, "show", f"{rev}:.mlsnap/{name}.yaml", check=False)
        if not text:
            return None
    data = yaml.safe_load(text)
    return data if isinstance(data, dict) else {"unreadable": text[:200]}


def entries(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return list(manifest.get("artifacts") or []) + list(
        (manifest.get("data") or {}).get("inputs") or [])


def dir_listing(cache: Path, md5: str) -> list[dict[str, Any]] | None:
    obj = object_path(cache, md5)
    if not obj.is_file():
        return None
    return list(json.loads(obj.read_bytes()))


def manifest_problems(root: Path, name: str) -> list[str]:
    """The manifest (work tree and HEAD, which must agree) describes the workspace bytes:
    md5, size and number of files of every artifact and input."""
    work, head = manifest_at(root, name), manifest_at(root, name, "HEAD")
    if work is None or head is None:
        return [(f"[manifest] .mlsnap/{name}.yaml missing (work tree: {work is not None}, HEAD: "
                f"{head is not None})")]
    problems = []
    if work != head:
        problems.append(f"[manifest] .mlsnap/{name}.yaml in the work tree differs from HEAD's")
    cache = root / ".dvc" / "cache"
    for e in entries(head):
        path, md5 = e["path"], e["md5"]
        full = root / path
        if md5.endswith(".dir"):
            listing = dir_listing(cache, md5)
            if listing is None:
                problems.append(f"[manifest] {path}: listing {md5} is not in the cache")
                continue
            on_disk = {}
            size = 0
            if full.is_dir():
                for dirpath, _, files in os.walk(full):
                    for fname in files:
                        if is_temp_name(fname):
                            continue
                        p = Path(dirpath) / fname
                        on_disk[p.relative_to(full).as_posix()] = md5_file(p)
                        size += p.stat().st_size
            recorded = {str(x["relpath"]): str(x["md5"]) for x in listing}
            if on_disk != recorded:
                missing = sorted(set(recorded) - set(on_disk))
                extra = sorted(set(on_disk) - set(recorded))
                changed = sorted(k for k in set(recorded) & set(on_disk)
                                 if recorded[k] != on_disk[k])
                problems.append(f"[manifest] {path} ({md5}) is not the workspace: "
                                f"{len(missing)} missing {missing[:3]}, {len(extra)} extra "
                                f"{extra[:3]}, {len(changed)} different {changed[:3]}")
            elif (e.get("nfiles"), e.get("size")) != (len(on_disk), size):
                problems.append(f"[manifest] {path}: nfiles/size {e.get('nfiles')}/"
                                f"{e.get('size')}, workspace {len(on_disk)}/{size}")
        elif not full.is_file():
            problems.append(f"[manifest] {path} is recorded but absent from the workspace")
        else:
            actual = md5_file(full)
            if actual != md5 or e.get("size") != full.stat().st_size:
                problems.append(f"[manifest] {path} recorded as {md5} ({e.get('size')} B), "
                                f"the workspace holds {actual} ({full.stat().st_size} B)")
    return problems


def referenced_objects(root: Path, name: str) -> list[str]:
    """Every object the snapshot at HEAD needs: files, ``.dir`` listings and their entries."""
    manifest = manifest_at(root, name, "HEAD") or {}
    needed = []
    for e in entries(manifest):
        needed.append(str(e["md5"]))
        if str(e["md5"]).endswith(".dir"):
            listing = dir_listing(root / ".dvc" / "cache", str(e["md5"])) or []
            needed += [str(x["md5"]) for x in listing]
    return sorted(set(needed))


def folder_remote_problems(root: Path, remote: Path, name: str) -> list[str]:
    missing = [m for m in referenced_objects(root, name) if not object_path(remote, m).is_file()]
    if not missing:
        return []
    return [(f"[remote] {len(missing)} object(s) of snapshot {name} missing on the folder "
            f"remote: {missing[:3]}")]


def snapshot_commits(root: Path, start: str) -> int:
    subjects = git(root, "log", "--format=%s", f"{start}..HEAD").splitlines()
    return sum(1 for s in subjects if s.startswith("mlsnap: "))


def set_local_remote(proj: Path, url: str, options: dict[str, str] | None = None,
                     remote_name: str = "storage") -> None:
    """Point a copy at its own remote in DVC's untracked ``.dvc/config.local`` (Git never sees
    it): the tracked ``.dvc/config`` still names the template's."""
    from configobj import ConfigObj

    path = proj / ".dvc" / "config.local"
    conf = ConfigObj(str(path)) if path.exists() else ConfigObj()
    conf.filename = str(path)
    section = conf.setdefault(f'remote "{remote_name}"', {})
    section["url"] = url
    section.update(options or {})
    conf.write()


def copy_tree(src: Path, dest: Path, linked: tuple[str, ...] = ()) -> None:
    """Copy ``src`` to ``dest``; the folders ``linked`` (relative) are hard-linked file by file
    instead: DVC's object stores, whose files are never written in place (new objects come in
    by rename), and which hold most of a template's files. That each template object still
    hashes to its name is checked at the end of the scenario."""
    skip = {(src / rel).resolve() for rel in linked}

    def ignore(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if (Path(folder) / n).resolve() in skip]

    shutil.copytree(src, dest, symlinks=True, ignore=ignore)
    for rel in linked:
        top = src / rel
        if not top.is_dir():
            continue
        for folder, _, files in os.walk(top):
            target = dest / rel / Path(folder).relative_to(top)
            target.mkdir(parents=True, exist_ok=True)
            shutil.copystat(folder, target)
            for name in files:
                os.link(Path(folder) / name, target / name, follow_symlinks=False)


class Reaper:
    """Deletes finished case folders in one background thread while the next case runs
    (unlinking thousands of files takes a while); ``close`` waits, bounded."""

    def __init__(self) -> None:
        self._paths: list[Path] = []
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._thread.start()

    def remove(self, path: Path) -> None:
        with self._cv:
            self._paths.append(path)
            self._cv.notify()

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._paths and not self._closed:
                    self._cv.wait()
                if not self._paths:
                    return
                path = self._paths.pop(0)
            shutil.rmtree(path, ignore_errors=True)

    def close(self, timeout: float = 120.0) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout)


# --------------------------------------------------------------------------- the contract


PYTHON_INIT_FAILED = "Fatal Python error: init_"  # init_import_site, init_sys_streams, ...
STDLIB = sysconfig.get_paths()["stdlib"]


def _frames(text: str) -> list[str]:
    return re.findall(r'File "([^"]+)", line \d+', text)


def python_start_up(r: Run, early: bool) -> bool:
    """Whether a SIGINT/SIGTERM ended the interpreter during its own start-up, before any code
    of mlsnap (or of the user's script) ran: no SIGINT handler yet (SigCgt), a SIGTERM that
    found no SIGTERM handler (mlsnap's entry module installs one as its first act, so the
    interpreter was still in ``site`` or the console-script wrapper), or Python's
    initialisation failing (its "Fatal Python error: init_..."), or a KeyboardInterrupt whose
    traceback holds only Python's own frames (runpy, importlib, the standard library)."""
    if r.sig is None or r.sig == signal.SIGKILL or not early:
        return False
    if r.returncode == -r.sig and r.before_python_handler:
        return True
    if (r.sig == signal.SIGTERM and r.returncode == -r.sig and r.caught is not None
            and signal.SIGTERM not in r.caught):
        return True
    if r.returncode == 1 and r.stderr.startswith(PYTHON_INIT_FAILED):
        return True
    frames = _frames(r.stderr)
    return (r.returncode == -r.sig and bool(frames)
            and r.stderr.rstrip().endswith("KeyboardInterrupt")
            and all(f.startswith(("<frozen ", STDLIB)) for f in frames))


def exit_problems(r: Run, *, script: bool, duration: float = 0.0) -> list[str]:
    """(7): what the interrupted process itself shows.

    A signal that reached the interpreter during its own start-up, before any code of mlsnap
    (or of the user's script) ran, is Python's (docs/reliability.md) and sets ``r.startup``
    (see :func:`python_start_up`). ``script`` is the user's own training script: its
    exit status after a signal is its own (130 from its handler, or death by the signal), a
    traceback is not."""
    problems: list[str] = []
    if r.hung:
        problems.append(f"[hung] still running {WAIT_AFTER_SIGNAL:.0f}s after "
                        f"{r.sig and r.sig.name}; killed")
    if r.stragglers:
        problems.append(f"[stragglers] {r.stragglers} process(es) of the command still ran "
                        f"{GROUP_DRAIN:.0f}s after it ended; killed")
    if not r.signalled or r.sig is None:
        if r.returncode != 0:
            problems.append(f"[exit] exit {r.returncode} before any signal: {r.tail()}")
        return problems
    if python_start_up(r, early=r.delay is not None and r.delay < duration / 2):
        r.startup = True
        return problems
    if "Traceback" in r.stdout + r.stderr:
        problems.append(f"[traceback] after {r.sig.name} (exit {r.returncode}): {r.tail(600)}")
    if r.returncode == 0:
        return problems  # it had finished when the signal came
    if r.sig == signal.SIGKILL:
        if r.returncode != -signal.SIGKILL:
            problems.append(f"[exit] exit {r.returncode} after SIGKILL: {r.tail()}")
        return problems
    code = INTERRUPTED_EXIT[r.sig]
    if script:
        if r.returncode not in (code, -r.sig):
            problems.append(f"[exit] script exit {r.returncode} after {r.sig.name}, expected "
                            f"{code} or {-r.sig}: {r.tail()}")
        return problems
    if r.returncode == -r.sig and r.before_python_handler:
        problems.append(f"[exit-late] killed by {r.sig.name} (exit {r.returncode}) with no "
                        f"handler installed: the interpreter was shutting down; {r.tail()}")
        return problems
    if r.returncode == -r.sig and r.caught is not None and r.sig not in r.caught:
        problems.append(f"[exit-early] killed by {r.sig.name} (exit {r.returncode}) before "
                        f"mlsnap installed its handler; {r.tail()}")
        return problems
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    if r.returncode != code:
        problems.append(f"[exit] exit {r.returncode} after {r.sig.name}, expected {code} (or 0 "
                        f"when it had finished): {r.tail()}")
    elif len(lines) != 1 or not lines[0].startswith("interrupted: "):
        problems.append(f"[stderr] after {r.sig.name} (exit {r.returncode}) stderr is not the "
                        f"one `interrupted:` line: {r.tail()}")
    return problems


def whole_files_problems(now: dict[str, str], versions: list[dict[str, str]], when: str,
                         absent_ok: bool) -> list[str]:
    """Every file holds one of the known whole versions (never a partial or foreign file);
    with ``absent_ok`` a file of a version may be missing."""
    problems = []
    for path, sha in sorted(now.items()):
        known = {v[path] for v in versions if path in v}
        if not known:
            problems.append(f"[bytes] {when}: unexpected file {path}")
        elif sha not in known:
            problems.append(f"[partial] {when}: {path} holds bytes of no known version")
    if not absent_ok:
        expected = set().union(*(set(v) for v in versions)) if versions else set()
        gone = sorted(expected - set(now))
        if gone:
            problems.append(f"[lost] {when}: {len(gone)} file(s) absent: {gone[:3]}")
    return problems


def exact_problems(now: dict[str, str], expected: dict[str, str], when: str) -> list[str]:
    if now == expected:
        return []
    missing = sorted(set(expected) - set(now))
    extra = sorted(set(now) - set(expected))
    wrong = sorted(p for p in set(now) & set(expected) if now[p] != expected[p])
    return [(f"[lost] {when}: not the expected bytes: {len(missing)} missing {missing[:3]}, "
            f"{len(extra)} extra {extra[:3]}, {len(wrong)} different {wrong[:3]}")]


Check = Callable[["Case"], list[str]]


@dataclass
class Scenario:
    """One writing command, run on fresh copies of a template folder.

    ``template`` holds the repository (``proj``) and whatever else the command uses (its folder
    remote, a clone, a ``-o`` folder); paths in ``paths``/``before``/``after`` are relative to
    the template (so ``proj/model.bin``, ``out/model.bin``).
    """

    label: str
    template: Path
    argv: list[str]
    paths: list[str]  # files/folders whose bytes are checked
    before: dict[str, str]  # their sha256 before the command (what the user wrote)
    after: dict[str, str]  # their sha256 once the command has completed
    # what the workspace holds right after the next mlsnap command: "before" (the user's newest
    # bytes, exactly), "whole" (per file a known whole version, or absent: pull, get)
    settled: str = "before"
    versions: list[dict[str, str]] = field(default_factory=list)  # other known whole versions
    name: str | None = "model"  # the snapshot whose manifest is checked (None: no manifest)
    commits: int = 1  # snapshot commits (subject "mlsnap: ...") the piece of work makes
    cwd: str = "proj"
    recover_argv: list[str] = field(default_factory=lambda: mlsnap_argv("status", "--no-remote"))
    recover_codes: tuple[int, ...] = (0, 3)
    remote: str | None = "remote"  # the folder remote's folder in the template (None: none)
    remote_writes: bool = True  # False: the command must not change the remote (pull, get)
    pushes: bool = False  # after the rerun the remote holds every object of HEAD's snapshot
    script: bool = False  # argv is the user's script, not the mlsnap CLI
    localize: Callable[[Path], None] | None = None  # per-copy fix-up (remote URL)
    after_interrupt: Check | None = None  # extra checks right after the interruption
    after_recover: Check | None = None  # extra checks after the next mlsnap command
    final: Check | None = None  # extra checks after the rerun
    case_env: Callable[[Path], dict[str, str]] | None = None  # more variables, per copy
    remote_check: Check | None = None  # replaces the folder remote's completeness check

    def __post_init__(self) -> None:
        self.cache = f"{self.cwd}/.dvc/cache"
        self.linked = (self.cache, *([self.remote] if self.remote else []))
        self.cache_known = store_files(self.template / self.cache)
        self.remote_known = store_files(self.template / self.remote) if self.remote else {}

    def template_problems(self) -> list[str]:
        """The template's objects (hard-linked into every case) still hash to their names: no
        case wrote into one in place."""
        problems = store_problems(self.template / self.cache, "template cache",
                                  allowed_top=("runs",))
        if self.remote:
            problems += store_problems(self.template / self.remote, "template remote")
        return [p.replace("]", "] an object written in place through a hard link:", 1)
                for p in problems]


@dataclass
class Case:
    scenario: Scenario
    index: int
    folder: Path
    sig: signal.Signals | None
    fraction: float
    delay: float
    duration: float
    porcelain_before: str = ""
    head_before: str = ""
    run: Run | None = None
    rerun: Run | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def proj(self) -> Path:
        return self.folder / self.scenario.cwd

    @property
    def remote_dir(self) -> Path | None:
        return self.folder / self.scenario.remote if self.scenario.remote else None

    @property
    def env(self) -> dict[str, str]:
        env = command_env(self.folder)
        if self.scenario.case_env is not None:
            env.update(self.scenario.case_env(self.folder))
        return env

    def tag(self) -> str:
        sig = self.sig.name if self.sig else "none"
        return (f"{self.scenario.label}:{self.index} {sig} delay={self.delay:.3f}s "
                f"({self.fraction:.3f} of {self.duration:.2f}s) seed={seed()}")


def prepare(s: Scenario, folder: Path) -> None:
    copy_tree(s.template, folder, s.linked)
    proj = folder / s.cwd
    if s.remote and (proj / ".dvc").is_dir():
        set_local_remote(proj, str(folder / s.remote))
    if s.localize is not None:
        s.localize(folder)


def check_case(c: Case) -> list[str]:
    """After one (interrupted) run: the process, the next command, the rerun; the problems."""
    s, r = c.scenario, c.run
    assert r is not None
    problems = exit_problems(r, script=s.script, duration=c.duration)
    # Right after the interruption: whole files only, nothing half-written at a final path.
    known = [s.before, s.after, *s.versions]
    problems += whole_files_problems(digest(c.folder, s.paths), known, "after the interruption",
                                     absent_ok=True)
    if s.after_interrupt is not None:
        problems += s.after_interrupt(c)
    if r.returncode == 0:
        # It finished before the signal took effect: that is the end state, checked as such
        # (a rerun of a completed command proves nothing about interruptions).
        return problems + final_problems(c)
    # (1), (2), (3): the next mlsnap command finishes the story before anything else.
    st = run(s.recover_argv, c.proj, c.env)
    if st.returncode not in s.recover_codes or "Traceback" in st.stdout + st.stderr \
            or "unexpected" in st.stderr:
        problems.append(f"[next command] `{' '.join(s.recover_argv[2:])}` exit {st.returncode}: "
                        f"{st.tail()}")
    now = digest(c.folder, s.paths)
    if s.settled == "before":
        problems += exact_problems(now, s.before, "after the next command")
    else:
        problems += whole_files_problems(now, known, "after the next command", absent_ok=True)
    after = porcelain(c.proj)
    if after != c.porcelain_before:
        problems.append(f"[git status] after the next command {after!r}, before the command "
                        f"{c.porcelain_before!r}")
    problems += [f"[litter] after the next command: {p}" for p in litter(c.proj)]
    if s.after_recover is not None:
        problems += s.after_recover(c)
    journals = sorted(p.relative_to(c.proj).as_posix()
                      for p in (c.proj / ".git" / "mlsnap").rglob("journal.json"))
    if journals:  # the journal's place is mlsnap's business: any journal.json left there
        problems.append(f"[journal] {journals[0]} still there after the next command")
    # (4): the same command again completes ...
    again = run(s.argv, c.proj, c.env)
    c.rerun = again
    if again.returncode != 0 or "Traceback" in again.stdout + again.stderr or again.hung:
        problems.append(f"[rerun] exit {again.returncode}: {again.tail()}")
        # what may explain it: a partial object at a final path of the cache or remote
        problems += store_problems(c.proj / ".dvc" / "cache", ".dvc/cache", s.cache_known,
                                   allowed_top=("runs",))
        if c.remote_dir is not None:
            problems += store_problems(c.remote_dir, "folder remote", s.remote_known)
        return problems
    # ... and leaves the promised end state.
    return problems + final_problems(c)


def final_problems(c: Case) -> list[str]:
    """The end state after a completed command (the measured run, or a rerun)."""
    s = c.scenario
    problems = exact_problems(digest(c.folder, s.paths), s.after, "after the rerun")
    problems += [f"[litter] after the rerun: {p}" for p in litter(c.proj)]
    problems += store_problems(c.proj / ".dvc" / "cache", ".dvc/cache", s.cache_known,
                               allowed_top=("runs",))
    remote = c.remote_dir
    if remote is not None:
        problems += store_problems(remote, "folder remote", s.remote_known)
        if not s.remote_writes:
            now = store_files(remote)
            if now != s.remote_known:
                added = sorted(set(now) - set(s.remote_known))
                problems.append(f"[remote] `{s.argv[3] if len(s.argv) > 3 else s.argv}` changed "
                                f"the remote: {len(added)} new file(s) {added[:3]}")
        if s.pushes and s.remote_check is None and s.name is not None:
            problems += folder_remote_problems(c.proj, remote, s.name)
    if s.remote_check is not None:
        problems += s.remote_check(c)
    if s.name is not None:
        problems += manifest_problems(c.proj, s.name)
    made = snapshot_commits(c.proj, c.head_before)
    if made != s.commits:
        problems.append(f"[commits] {made} snapshot commit(s) since the start, expected "
                        f"{s.commits}")
    after = porcelain(c.proj)
    if after != c.porcelain_before:
        problems.append(f"[git status] after the rerun {after!r}, before the command "
                        f"{c.porcelain_before!r}")
    if s.final is not None:
        problems += s.final(c)
    return problems


# --------------------------------------------------------------------------- tallies


@dataclass
class Failure:
    case: str  # Case.tag()
    label: str
    index: int
    problems: list[str]
    kept: Path | None

    rerun: str = ""

    def line(self) -> str:
        kept = f" [kept: {self.kept}]" if self.kept else ""
        rerun = f"\n    rerun: {self.rerun}" if self.rerun else ""
        return f"{self.case}{kept}\n    " + "\n    ".join(self.problems) + rerun


@dataclass
class Tally:
    label: str
    command: str
    cases: int = 0
    interrupted: int = 0
    finished_first: int = 0
    startup: int = 0  # signals that ended the interpreter before Python's own handler existed
    by_signal: dict[str, int] = field(default_factory=dict)
    measured: float = 0.0
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"seed": seed(), "label": self.label, "command": self.command, "cases": self.cases,
                "interrupted": self.interrupted, "finished_first": self.finished_first,
                "during_interpreter_startup": self.startup,
                "by_signal": dict(sorted(self.by_signal.items())),
                "measured_s": round(self.measured, 3), "seconds": round(self.seconds, 1),
                "failed_cases": len(self.failures)}


TALLIES: dict[str, Tally] = {}


def rerun_command(label: str, index: int, test_id: str, delay: float | None = None) -> str:
    fixed = f" [MLSNAP_INTERRUPT_DELAY={delay:.3f}]" if delay is not None else ""
    return (f"MLSNAP_INTERRUPT_SEED={seed()} MLSNAP_INTERRUPT_ONLY={label}:{index}{fixed} "
            f"python -m pytest -m interrupts {test_id}")


def exercise(s: Scenario, work: Path, n: int, test_id: str = HERE) -> Tally:
    """Measure one uninterrupted run, then ``n`` interruptions at uniform random delays."""
    began = time.monotonic()
    command = shlex.join([Path(a).name if i == 0 else a for i, a in enumerate(s.argv)])
    command = command.replace(f"{Path(sys.executable).name} -m mlsnap", "mlsnap")
    tally = TALLIES.setdefault(s.label, Tally(s.label, command))
    rng = random.Random(f"{seed()}:{s.label}")
    offset = rng.randrange(len(SIGNALS))  # signals rotate: every command gets all three
    draws = [(SIGNALS[(offset + i) % len(SIGNALS)], rng.random()) for i in range(n)]
    wanted = only()
    if wanted is not None and wanted[0] != s.label:
        return tally
    work.mkdir(parents=True, exist_ok=True)
    print(f"[{s.label}] seed={seed()} (MLSNAP_INTERRUPT_SEED), {n} interruption(s) of "
          f"`{command}`", flush=True)

    # Three uninterrupted runs (the first also warms the page cache and the bytecode); the
    # delays are drawn over the shortest: on a shared machine (or beside another xdist worker)
    # a run is slowed, never sped up, by the others. Each run must meet the end state itself:
    # that proves the checks.
    reaper = Reaper()
    times = []
    for k in range(MEASURE_RUNS):
        measure = Case(s, -1, work / f"measure-{k}", None, 0.0, 0.0, 0.0)
        prepare(s, measure.folder)
        measure.porcelain_before = porcelain(measure.proj)
        measure.head_before = git(measure.proj, "rev-parse", "HEAD").strip()
        measure.run = run(s.argv, measure.proj, measure.env)
        times.append(measure.run.elapsed)
        if measure.run.returncode != 0:
            raise AssertionError(f"[{s.label}] the uninterrupted run failed (seed {seed()}): "
                                 f"exit {measure.run.returncode}\n{measure.run.stderr[-3000:]}")
        found = final_problems(measure)
        if found:
            tally.failures.append(Failure(f"{s.label}:uninterrupted seed={seed()}", s.label, -1,
                                          found, measure.folder if keep_failures() else None))
        if not (found and keep_failures()):
            reaper.remove(measure.folder)
    duration = tally.measured = min(times)
    print(f"[{s.label}] uninterrupted: {', '.join(f'{t:.2f}s' for t in times)}; delays drawn "
          f"over [0, {duration:.2f}s]", flush=True)

    plan = list(enumerate(draws))
    if wanted is not None:
        plan = [(i, d) for i, d in plan if i == wanted[1]] * repeats()
    for i, (sig, fraction) in plan:
        _HASHES.clear()  # an inode of a deleted case may come back in this one
        delay = fixed_delay()
        if delay is not None:
            fraction = delay / duration if duration else 0.0
        else:
            delay = fraction * duration
        folder = work / f"case-{i:03d}"
        for k in range(1, 10_000):  # a repeated case gets a folder of its own
            if not folder.exists():
                break
            folder = work / f"case-{i:03d}-{k}"
        c = Case(s, i, folder, sig, fraction, delay, duration)
        prepare(s, c.folder)
        c.porcelain_before = porcelain(c.proj)
        c.head_before = git(c.proj, "rev-parse", "HEAD").strip()
        c.run = run(s.argv, c.proj, c.env, sig=sig, delay=c.delay)
        tally.cases += 1
        if c.run.interrupted:
            tally.interrupted += 1
            tally.by_signal[sig.name] = tally.by_signal.get(sig.name, 0) + 1
        else:
            tally.finished_first += 1
        try:
            problems = check_case(c)
        except Exception as exc:  # noqa: BLE001 - a broken state the checks could not read
            problems = [f"[harness] checking raised {type(exc).__name__}: {exc}"]
        if c.run.startup:
            tally.startup += 1
        state = "interrupted" if c.run.interrupted else "finished first"
        if c.run.startup:
            state += " during interpreter start-up"
        notes = f" [{'; '.join(c.notes)}]" if c.notes else ""
        print(f"  {c.tag()}: exit {c.run.returncode} ({state}), "
              f"{'OK' if not problems else f'{len(problems)} problem(s)'}{notes}", flush=True)
        kept = None
        if problems:
            for p in problems:
                print(f"    {p}", flush=True)
            if keep_failures():
                kept = c.folder
                for name, r in (("interrupted", c.run), ("rerun", c.rerun)):
                    if r is not None:
                        (kept / f"{name}.stdout").write_text(r.stdout)
                        (kept / f"{name}.stderr").write_text(r.stderr)
        if problems:
            tally.failures.append(Failure(c.tag(), s.label, i, problems, kept,
                                          rerun_command(s.label, i, test_id, c.delay)))
        if kept is None:
            reaper.remove(c.folder)
    reaper.close()
    found = s.template_problems()
    if found:
        tally.failures.append(Failure(f"{s.label}:template seed={seed()}", s.label, -2, found,
                                      None))
    tally.seconds += time.monotonic() - began
    print(tally_line(tally.to_json()).strip(), flush=True)
    append_report(tally)
    return tally


def by_signal(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


def tally_line(t: dict[str, Any], width: int = 18) -> str:
    return (f"  {t['label']:<{width}} {t['interrupted']:>4} interrupted "
            f"({by_signal(t['by_signal'])}), {t['during_interpreter_startup']} of them in the "
            f"interpreter's start-up; {t['finished_first']} finished first; "
            f"{t['failed_cases']} failing case(s); run {t['measured_s']:.2f}s; "
            f"{t['seconds']:.0f}s  `{t['command']}`")


def summary(tallies: list[dict[str, Any]] | None = None) -> str:
    """The table the docs quote: interruptions per command and signal, with the seed."""
    rows = tallies if tallies is not None else [t.to_json() for t in TALLIES.values() if t.cases]
    seeds = sorted({r.get("seed", seed()) for r in rows}) or [seed()]
    width = max((len(r["label"]) for r in rows), default=10)
    lines = [f"random-time interruptions per command (seed {', '.join(map(str, seeds))}):"]
    lines += [tally_line(r, width) for r in rows]
    signals: dict[str, int] = {}
    for r in rows:
        for k, v in r["by_signal"].items():
            signals[k] = signals.get(k, 0) + v
    total = sum(r["interrupted"] for r in rows)
    early = sum(r["during_interpreter_startup"] for r in rows)
    secs = sum(r["seconds"] for r in rows)
    failing = sum(r["failed_cases"] for r in rows)
    lines.append(f"  {'total':<{width}} {total:>4} interrupted ({by_signal(signals)}), {early} "
                 f"in the interpreter's start-up; {failing} failing case(s); {secs:.0f}s of "
                 "scenario time")
    return "\n".join(lines)


def append_report(t: Tally) -> None:
    """With MLSNAP_INTERRUPT_REPORT=<file>: one JSON line per scenario, appended (parallel
    workers share the file); ``python -m tests.interrupts <file>`` prints the table."""
    target = os.environ.get("MLSNAP_INTERRUPT_REPORT")
    if not target or not t.cases:
        return
    line = (json.dumps(t.to_json()) + "\n").encode()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_report(path: str) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in Path(path).read_text().splitlines() if ln.strip()]


def assert_contract(t: Tally, n: int, test_id: str) -> None:
    """Fail once, with every failing case of the scenario and how to rerun each."""
    problems = [f.line() for f in t.failures]
    # Delays uniform over the measured time nearly always land before the end; if most runs
    # finished first, the measurement (not the product) is wrong and the run proved little.
    if t.cases >= 6 and t.finished_first > t.cases // 2:
        problems.append(f"[harness] {t.finished_first} of {t.cases} runs finished before their "
                        f"signal: the measured {t.measured:.2f}s is too long")
    if not problems:
        return
    rerun = rerun_command(t.label, 0, test_id).replace(f"{t.label}:0", f"{t.label}:<i>")
    pytest.fail(
        f"[{t.label}] {len(t.failures)} of {t.cases} case(s) broke the crash-safety contract "
        f"(seed {seed()}); rerun one with: {rerun}\n{tally_line(t.to_json()).strip()}\n"
        + "\n".join(problems), pytrace=False)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.interrupts REPORT.jsonl  (MLSNAP_INTERRUPT_REPORT's file)")
    print(summary(read_report(sys.argv[1])))

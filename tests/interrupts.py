"""A random-time interruption harness: run a real ``mlsnap`` process, signal it at a random
moment of its measured run time, then check the crash-safety promise from the outside.

Nothing here knows how mlsnap works inside. Every check reads the real work tree, Git, DVC's
cache and the remote, and compares them with what the user had before the command started.

Reproducing a failure: every case prints ``seed``, the index, the signal and the delay (also as a
fraction of the measured run time). ``MLSNAP_INTERRUPT_SEED=<seed>`` replays the same draws;
``MLSNAP_INTERRUPT_ONLY=<label>:<index>`` runs only that interruption of that scenario;
``MLSNAP_INTERRUPT_COUNT=<n>`` caps the number of interruptions per scenario (quick local runs).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_SEED = 20240611
WAIT_AFTER_SIGNAL = 60.0  # a Ctrl-C'd command may clean up, but not for ever
GROUP_DRAIN = 20.0  # children (git, DVC workers) must be gone before the tree is read
NEXT_COMMAND_TIMEOUT = 180.0
RERUN_TIMEOUT = 300.0

# DVC writes `.<shortuuid 22 chars>.tmp` beside the final path; mlsnap uses `.mlsnap-tmp-*`.
DVC_TMP = re.compile(r"^\.[A-Za-z0-9_-]{22}\.tmp$")
OBJECT = re.compile(r"^files/md5/([0-9a-f]{2})/([0-9a-f]{30})(\.dir)?$")
SIGNAL_WEIGHTS = ((signal.SIGKILL, 0.45), (signal.SIGINT, 0.40), (signal.SIGTERM, 0.15))
INTERRUPTED_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


def seed() -> int:
    return int(os.environ.get("MLSNAP_INTERRUPT_SEED", DEFAULT_SEED))


def scenario_rng(label: str) -> random.Random:
    """One stream per scenario, so that replaying one scenario does not need the others."""
    return random.Random(f"{seed()}:{label}")


def count(default: int) -> int:
    cap = os.environ.get("MLSNAP_INTERRUPT_COUNT")
    return min(default, int(cap)) if cap else default


def only(label: str) -> int | None:
    wanted = os.environ.get("MLSNAP_INTERRUPT_ONLY", "")
    if ":" not in wanted:
        return None
    name, _, index = wanted.rpartition(":")
    return int(index) if name == label else -1


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DVC_NO_ANALYTICS", "1")
    env.setdefault("DVC_NO_UPDATER", "1")
    env.pop("MLSNAP_FAULT_AT", None)
    env.pop("MLSNAP_DEBUG", None)
    return env


def mlsnap_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlsnap", *args]


# --------------------------------------------------------------------------- running


@dataclass
class Run:
    argv: list[str]
    sig: signal.Signals | None
    delay: float | None
    pipe_closed: bool
    returncode: int = 0
    stdout: str = ""
    stderr: str = ""
    elapsed: float = 0.0
    signalled: bool = False  # the signal was sent while the process was still running
    hung: bool = False  # it did not end within the bounded wait and was killed

    def describe(self) -> str:
        how = "uninterrupted" if self.sig is None else self.sig.name
        if self.pipe_closed:
            how += " (stdout reader gone)"
        delay = "" if self.delay is None else f" after {self.delay:.3f}s"
        return f"{how}{delay}: exit {self.returncode} in {self.elapsed:.2f}s"


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


def _drain_group(pgid: int) -> None:
    """Wait (bounded) until every process the command started has ended; SIGKILL stragglers.

    The group is this harness's own (``start_new_session``), so only processes it started are
    signalled, by their group id."""
    deadline = time.monotonic() + GROUP_DRAIN
    while _group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if _group_members(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while _group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.02)


def run(argv: list[str], cwd: Path, *, sig: signal.Signals | None = None,
        delay: float | None = None, pipe_closed: bool = False,
        timeout: float = RERUN_TIMEOUT) -> Run:
    """Run ``argv``; with ``sig``, send it ``delay`` seconds after the start.

    SIGINT goes to the whole process group, as Ctrl-C in a terminal does; SIGKILL too (as the
    OOM killer or a power cut: nothing of the command survives); SIGTERM to the process only (as
    ``kill PID``). With ``pipe_closed`` stdout is a pipe whose reader goes away with the signal,
    as ``mlsnap ... | tee log`` loses ``tee`` to the same Ctrl-C.
    """
    result = Run(argv, sig, delay, pipe_closed)
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        read_end: int | None = None
        if pipe_closed:
            read_end, write_end = os.pipe()
            stdout: Any = write_end
        else:
            stdout = out_f
        start = time.monotonic()
        proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=stdout,
                                stderr=err_f, env=subprocess_env(), start_new_session=True)
        if pipe_closed:
            os.close(write_end)
        chunks: list[bytes] = []

        def pump(until: float) -> None:
            """Read the pipe (if any) until ``until`` or until the process ends."""
            while proc.poll() is None:
                left = until - time.monotonic()
                if left <= 0:
                    return
                if read_end is None:
                    try:
                        proc.wait(timeout=min(left, 0.05))
                    except subprocess.TimeoutExpired:
                        pass
                    continue
                ready, _, _ = select.select([read_end], [], [], min(left, 0.02))
                if ready:
                    data = os.read(read_end, 65536)
                    if data:
                        chunks.append(data)
                    else:
                        time.sleep(min(left, 0.005))

        try:
            if sig is not None and delay is not None:
                pump(start + delay)
                if proc.poll() is None:
                    if sig == signal.SIGTERM:
                        os.kill(proc.pid, sig)
                    else:
                        os.killpg(proc.pid, sig)
                    result.signalled = True
                    if read_end is not None:
                        os.close(read_end)
                        read_end = None
                limit = time.monotonic() + (WAIT_AFTER_SIGNAL if result.signalled else timeout)
            else:
                limit = start + timeout
            pump(limit)
            if proc.poll() is None:
                result.hung = True
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
            result.elapsed = time.monotonic() - start
            if read_end is not None:
                while select.select([read_end], [], [], 0.2)[0]:
                    data = os.read(read_end, 65536)
                    if not data:
                        break
                    chunks.append(data)
        finally:
            if read_end is not None:
                os.close(read_end)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
            _drain_group(proc.pid)
        result.returncode = proc.returncode
        out_f.seek(0)
        err_f.seek(0)
        result.stdout = (b"".join(chunks) + out_f.read()).decode(errors="replace")
        result.stderr = err_f.read().decode(errors="replace")
    return result


def pick_signal(rng: random.Random) -> signal.Signals:
    sigs, weights = zip(*SIGNAL_WEIGHTS)
    return rng.choices(sigs, weights)[0]


# --------------------------------------------------------------------------- reading state


def md5_file(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False,
                          timeout=60, env=subprocess_env())
    assert proc.returncode == 0, f"git {' '.join(args)} failed in {cwd}: {proc.stderr}"
    return proc.stdout


def porcelain(root: Path) -> str:
    return git(root, "status", "--porcelain", "--untracked-files=all")


def is_litter(name: str) -> bool:
    return name.startswith(".mlsnap-tmp-") or name.endswith(".tmp") or bool(DVC_TMP.match(name))


def digest(root: Path, paths: list[str]) -> dict[str, str]:
    """md5 of every file at or under each of ``paths`` (a file or a folder); litter is left out
    (it is reported by :func:`litter`)."""
    out: dict[str, str] = {}
    for rel in paths:
        full = root / rel
        if full.is_file() and not full.is_symlink():
            out[rel] = md5_file(full)
        elif full.is_dir():
            for dirpath, _, files in os.walk(full):
                for name in files:
                    p = Path(dirpath) / name
                    if not is_litter(name):
                        out[p.relative_to(root).as_posix()] = md5_file(p)
    return out


def litter(root: Path) -> list[str]:
    """Temporary files anywhere in the work tree (DVC's cache and state are checked apart), and
    what a dead writer leaves in ``.git``: lock files, mlsnap's temporary names."""
    found = []
    for dirpath, dirs, files in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        if rel_dir == ".":
            dirs[:] = [d for d in dirs if d != ".git"]
        elif rel_dir == ".dvc":
            dirs[:] = [d for d in dirs if d not in ("cache", "tmp")]
        for name in files + dirs:
            if is_litter(name):
                found.append(f"{rel_dir}/{name}" if rel_dir != "." else name)
    gitdir = root / ".git"
    for lock in ("index.lock", "HEAD.lock", "mlsnap.lock", "mlsnap-index"):
        if (gitdir / lock).exists():
            found.append(f".git/{lock}")
    for p in (gitdir / "refs").rglob("*.lock"):
        found.append(p.relative_to(root).as_posix())
    if (gitdir / "mlsnap").is_dir():
        for p in (gitdir / "mlsnap").rglob("*"):
            if is_litter(p.name):
                found.append(p.relative_to(root).as_posix())
    return found


def store_problems(base: Path, where: str, allowed_dirs: tuple[str, ...] = ()) -> list[str]:
    """Every file of a DVC object store (cache or folder remote) is an object named by its md5."""
    problems: list[str] = []
    if not base.exists():
        return problems
    for dirpath, _, files in os.walk(base):
        for name in files:
            p = Path(dirpath) / name
            rel = p.relative_to(base).as_posix()
            if rel.split("/")[0] in allowed_dirs:
                continue
            m = OBJECT.match(rel)
            if not m:
                problems.append(f"{where}: stray file {rel}")
                continue
            actual = md5_file(p)
            if actual != m[1] + m[2]:
                problems.append(f"{where}: {rel} holds bytes hashing to {actual}")
    return problems


def cache_problems(root: Path) -> list[str]:
    return store_problems(root / ".dvc" / "cache", ".dvc/cache", allowed_dirs=("runs",))


def object_path(base: Path, md5: str) -> Path:
    return base / "files" / "md5" / md5[:2] / md5[2:]


def head_manifest(root: Path, name: str) -> dict[str, Any]:
    text = git(root, "show", f"HEAD:.mlsnap/{name}.yaml")
    data = yaml.safe_load(text)
    assert isinstance(data, dict), f".mlsnap/{name}.yaml at HEAD is not a mapping"
    return data


def manifest_entries(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    entries = list(manifest.get("artifacts") or [])
    entries += list((manifest.get("data") or {}).get("inputs") or [])
    return entries


def dir_listing(root: Path, md5: str) -> dict[str, str] | None:
    obj = object_path(root / ".dvc" / "cache", md5)
    if not obj.is_file():
        return None
    return {e["relpath"]: e["md5"] for e in json.loads(obj.read_bytes())}


def manifest_problems(root: Path, name: str) -> list[str]:
    """The manifest at HEAD describes the workspace bytes exactly."""
    problems = []
    for entry in manifest_entries(head_manifest(root, name)):
        path, md5 = entry["path"], entry["md5"]
        if md5.endswith(".dir"):
            listing = dir_listing(root, md5)
            if listing is None:
                problems.append(f"manifest: {path} lists {md5}, which is not in the cache")
                continue
            on_disk = {k[len(path) + 1:]: v for k, v in digest(root, [path]).items()}
            if on_disk != listing:
                missing = sorted(set(listing) - set(on_disk))[:3]
                extra = sorted(set(on_disk) - set(listing))[:3]
                changed = sorted(k for k in set(listing) & set(on_disk)
                                 if listing[k] != on_disk[k])[:3]
                problems.append(f"manifest: {path} ({md5}) differs from the workspace: missing "
                                f"{missing}, extra {extra}, changed {changed}")
        elif not (root / path).is_file():
            problems.append(f"manifest: {path} is recorded but absent")
        elif md5_file(root / path) != md5:
            problems.append(f"manifest: {path} recorded as {md5}, workspace holds "
                            f"{md5_file(root / path)}")
    return problems


def referenced_objects(root: Path, name: str) -> list[str]:
    """Every object the snapshot at HEAD needs: files, .dir listings and their entries."""
    needed = []
    for entry in manifest_entries(head_manifest(root, name)):
        md5 = entry["md5"]
        needed.append(md5)
        if md5.endswith(".dir"):
            needed += list((dir_listing(root, md5) or {}).values())
    return sorted(set(needed))


def folder_remote_missing(root: Path, remote: Path, name: str) -> list[str]:
    return [f"remote: object {m} of snapshot {name} missing"
            for m in referenced_objects(root, name) if not object_path(remote, m).is_file()]


def snapshot_commits(root: Path, start: str, name: str) -> int:
    return int(git(root, "rev-list", "--count", f"{start}..HEAD", "--",
                   f".mlsnap/{name}.yaml").strip())


def set_remote_url(project: Path, url: str, remote_name: str = "storage") -> None:
    """Point the copy at its own remote in DVC's untracked local config (Git never sees it)."""
    from configobj import ConfigObj

    path = project / ".dvc" / "config.local"
    conf = ConfigObj(str(path)) if path.exists() else ConfigObj()
    conf.filename = str(path)
    conf.setdefault(f'remote "{remote_name}"', {})["url"] = url
    conf.write()


def copy_tree(src: Path, dest: Path) -> None:
    shutil.copytree(src, dest, symlinks=True)


# --------------------------------------------------------------------------- the contract


def exit_problems(r: Run, *, script: bool = False) -> list[str]:
    """What the process itself must show: the exit status and the one `interrupted:` line.

    ``script`` is a user's training script: its own ``except KeyboardInterrupt`` exits 130 and
    Python's default SIGTERM action ends it; only a traceback is mlsnap's fault there.
    """
    problems = []
    text = r.stdout + r.stderr
    if r.hung:
        problems.append(f"still running {WAIT_AFTER_SIGNAL:.0f}s after the signal; killed")
    if "Traceback" in text:
        tail = r.stderr.strip().splitlines()[-1:] or ["?"]
        problems.append(f"Traceback printed: {tail[0][:200]}")
    if not r.signalled:
        if r.returncode != 0:
            problems.append(f"exit {r.returncode} (no signal sent): {r.stderr.strip()[-300:]}")
        return problems
    if r.returncode == 0:
        return problems  # it finished as the signal arrived: counted apart
    assert r.sig is not None
    if r.sig == signal.SIGKILL:
        if r.returncode != -signal.SIGKILL:
            problems.append(f"exit {r.returncode} after SIGKILL")
        return problems
    code = INTERRUPTED_EXIT[r.sig]
    if script:
        accepted = {130} if r.sig == signal.SIGINT else {143, -signal.SIGTERM}
        if r.returncode not in accepted:
            problems.append(f"exit {r.returncode} after {r.sig.name}, expected one of "
                            f"{sorted(accepted)}: {r.stderr.strip()[-300:]}")
        return problems
    if r.returncode not in (code, -r.sig):
        problems.append(f"exit {r.returncode} after {r.sig.name}, expected {code}: "
                        f"{r.stderr.strip()[-300:]!r}")
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("interrupted:")]
    if len(lines) != 1:
        problems.append(f"{len(lines)} `interrupted:` line(s) on stderr after {r.sig.name} "
                        f"(exit {r.returncode}): "
                        f"{r.stderr.strip()[-300:]!r}")
    return problems


def files_problems(now: dict[str, str], allowed: list[dict[str, str]], when: str,
                   exact: dict[str, str] | None = None) -> list[str]:
    """Each file holds one of the allowed versions byte-exact (never a partial file); with
    ``exact``, the tracked paths hold exactly those files."""
    problems = []
    if exact is not None and now != exact:
        missing = sorted(set(exact) - set(now))
        extra = sorted(set(now) - set(exact))
        wrong = sorted(p for p in set(now) & set(exact) if now[p] != exact[p])
        problems.append(f"{when}: workspace is not the expected bytes: {len(missing)} missing "
                        f"{missing[:3]}, {len(extra)} extra {extra[:3]}, {len(wrong)} "
                        f"different {wrong[:3]}")
    if exact is not None:
        return problems
    for path, md5 in sorted(now.items()):
        versions = {v[path] for v in allowed if path in v}
        if not versions:
            problems.append(f"{when}: unexpected file {path}")
        elif md5 not in versions:
            problems.append(f"{when}: partial or foreign content at {path} ({md5})")
    return problems


@dataclass
class Scenario:
    """One command on a copy of a template.

    ``template`` holds ``proj`` (the repository) and usually ``remote`` (its folder remote);
    every interruption runs on a fresh copy of it.
    """

    label: str
    template: Path
    argv: list[str]
    name: str  # the snapshot name whose manifest is checked
    tracked: list[str]  # paths whose bytes are checked
    old: dict[str, str]  # their bytes before the command
    new: dict[str, str]  # their bytes once the command has completed
    commits: int  # snapshot commits the completed command makes
    settled: str  # what the workspace holds after the next command: "new", "old", "either"
    pushes: bool = False  # after the rerun the remote holds every object of HEAD's snapshot
    out: dict[str, str] | None = None  # the `-o` folder's files once the command completed
    script: bool = False
    localize: Callable[[Path, int], None] | None = None  # per-copy fix-up (remote URL)
    after_interrupt: Callable[[Path], list[str]] | None = None
    final: Callable[[Path], list[str]] | None = None  # extra checks after the rerun
    remote_check: Callable[[Path], list[str]] | None = None  # replaces the folder remote check

    def copy(self, dest: Path, index: int) -> Path:
        copy_tree(self.template, dest)
        set_remote_url(dest / "proj", str(dest / "remote"))
        if self.localize is not None:
            self.localize(dest, index)
        return dest


@dataclass
class Tally:
    interrupted: int = 0
    finished_first: int = 0
    by_signal: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


TALLIES: dict[str, Tally] = {}


def check_run(s: Scenario, copy: Path, r: Run, tag: str) -> list[str]:
    """After one (interrupted) run: the process, the next command, the rerun; the problems."""
    proj = copy / "proj"
    before, start = s_state(copy)
    problems = [f"exit: {p}" for p in exit_problems(r, script=s.script)]
    # Right after the interruption: whole files only (old or new), nothing half-written.
    problems += files_problems(digest(proj, s.tracked), [s.old, s.new], "after interrupt")
    if s.out is not None:
        problems += files_problems(digest(copy, ["out"]),
                                   [{f"out/{k}": v for k, v in s.out.items()}], "-o folder")
    if s.after_interrupt is not None:
        problems += s.after_interrupt(copy)
    # Any mlsnap command recovers first: `status` puts the user's newest bytes back.
    st = run(mlsnap_argv("status", "--no-remote"), proj, timeout=NEXT_COMMAND_TIMEOUT)
    if st.returncode not in (0, 3) or "Traceback" in st.stdout + st.stderr:
        problems.append(f"next command: `mlsnap status` exit {st.returncode}: "
                        f"{st.stderr.strip()[-300:]!r}")
    now = digest(proj, s.tracked)
    if s.settled == "new":
        problems += files_problems(now, [], "after `mlsnap status`", exact=s.new)
    elif s.settled == "old":
        problems += files_problems(now, [], "after `mlsnap status`", exact=s.old)
    else:
        problems += files_problems(now, [s.old, s.new], "after `mlsnap status`")
    after = porcelain(proj)
    if after != before:
        problems.append(f"git status after `mlsnap status` is {after!r}, was {before!r}")
    # The same command again completes, and leaves the promised end state.
    again = run(s.argv, proj, timeout=RERUN_TIMEOUT)
    if again.returncode != 0 or "Traceback" in again.stdout + again.stderr:
        problems.append(f"rerun: exit {again.returncode}: {again.stderr.strip()[-400:]!r}")
        return [f"{tag}: {p}" for p in problems]
    problems += final_problems(s, copy, before, start)
    return [f"{tag}: {p}" for p in problems]


def final_problems(s: Scenario, copy: Path, before: str, start: str) -> list[str]:
    proj = copy / "proj"
    problems = files_problems(digest(proj, s.tracked), [], "after rerun", exact=s.new)
    problems += [f"litter: {p}" for p in litter(proj)]
    problems += cache_problems(proj)
    remote = copy / "remote"
    if s.remote_check is not None:
        problems += s.remote_check(copy)
    elif remote.exists():
        problems += store_problems(remote, "remote")
        if s.pushes:
            problems += folder_remote_missing(proj, remote, s.name)
    if s.out is not None:
        problems += files_problems(digest(copy, ["out"]), [], "-o folder after rerun",
                                   exact={f"out/{k}": v for k, v in s.out.items()})
        problems += [f"litter in -o: {p}" for p in litter(copy / "out")
                     if not p.startswith(".git")]
    problems += manifest_problems(proj, s.name)
    made = snapshot_commits(proj, start, s.name)
    if made != s.commits:
        problems.append(f"{made} snapshot commit(s) of {s.name} since the start, expected "
                        f"{s.commits}")
    after = porcelain(proj)
    if after != before:
        problems.append(f"git status after the rerun is {after!r}, was {before!r}")
    if s.final is not None:
        problems += s.final(copy)
    return problems


def s_state(copy: Path) -> tuple[str, str]:
    """What the copy held before its command: saved by :func:`exercise` beside the copy."""
    saved = json.loads((copy.parent / f"{copy.name}.before.json").read_text())
    return saved["porcelain"], saved["head"]


def save_state(copy: Path) -> None:
    proj = copy / "proj"
    state = {"porcelain": porcelain(proj), "head": git(proj, "rev-parse", "HEAD").strip()}
    (copy.parent / f"{copy.name}.before.json").write_text(json.dumps(state))


def exercise(s: Scenario, work: Path, n: int) -> Tally:
    """Measure one uninterrupted run, then ``n`` interruptions at uniform random delays."""
    rng = scenario_rng(s.label)
    tally = TALLIES.setdefault(s.label, Tally())
    began = time.monotonic()
    print(f"[{s.label}] seed={seed()} (MLSNAP_INTERRUPT_SEED), {n} interruptions")
    copy = s.copy(work / "measure", -1)
    save_state(copy)
    measured = run(s.argv, copy / "proj", timeout=RERUN_TIMEOUT)
    print(f"[{s.label}] measured: {measured.describe()}")
    assert measured.returncode == 0, (
        f"[{s.label}] the uninterrupted run failed (seed {seed()}): {measured.stderr[-2000:]}")
    # The uninterrupted run meets the end state: proves the checks themselves are right.
    before, start = s_state(copy)
    tally.failures += [f"[{s.label}] uninterrupted run: {p}"
                       for p in final_problems(s, copy, before, start)]
    duration = measured.elapsed
    shutil.rmtree(copy)
    wanted = only(s.label)
    for i in range(n):
        sig = pick_signal(rng)
        fraction = rng.random()
        pipe_closed = sig == signal.SIGINT and rng.random() < 1 / 3
        if wanted is not None and i != wanted:
            continue
        delay = fraction * duration
        copy = s.copy(work / f"i{i}", i)
        save_state(copy)
        r = run(s.argv, copy / "proj", sig=sig, delay=delay, pipe_closed=pipe_closed)
        tag = (f"[{s.label} #{i} seed={seed()} {sig.name}"
               f"{'+pipe' if pipe_closed else ''} delay={delay:.3f}s "
               f"({fraction:.3f} of {duration:.2f}s)]")
        print(f"{tag} {r.describe()}")
        if r.signalled and r.returncode != 0:
            tally.interrupted += 1
            tally.by_signal[sig.name] = tally.by_signal.get(sig.name, 0) + 1
        else:
            tally.finished_first += 1
        found = check_run(s, copy, r, tag)
        for p in found:
            print(f"  FAIL {p}")
        tally.failures += found
        shutil.rmtree(copy, ignore_errors=True)
    tally.seconds += time.monotonic() - began
    print(f"[{s.label}] {tally.interrupted} interrupted, {tally.finished_first} finished before "
          f"the signal, {len(tally.failures)} problem(s), {tally.seconds:.0f}s")
    return tally


def summary() -> str:
    lines = [f"interruptions per command (seed {seed()}):"]
    for label, t in TALLIES.items():
        sigs = ", ".join(f"{k} {v}" for k, v in sorted(t.by_signal.items()))
        lines.append(f"  {label:<24} {t.interrupted:>4} interrupted ({sigs}); "
                     f"{t.finished_first} finished first; {len(t.failures)} problem(s); "
                     f"{t.seconds:.0f}s")
    total = sum(t.interrupted for t in TALLIES.values())
    lines.append(f"  {'total':<24} {total:>4} interrupted")
    return "\n".join(lines)


def assert_contract(label: str, tally: Tally, n: int) -> None:
    # Uniform delays over the measured time land before completion nearly always; if most
    # did not, the measurement (not the product) is wrong and the run proves nothing.
    assert tally.finished_first <= n // 2, (
        f"[{label}] {tally.finished_first} of {n} runs finished before their signal")
    assert not tally.failures, (f"[{label}] {len(tally.failures)} contract violation(s), seed "
                                f"{seed()}:\n" + "\n".join(tally.failures[:60]))

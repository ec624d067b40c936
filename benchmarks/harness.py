"""What every benchmark case needs: an isolated environment, timed commands, data, a table.

Commands run as real subprocesses (the ``mlsnap``, ``dvc`` and ``git`` command lines), each waited
with ``os.wait4`` so its own peak RSS is known too. mlsnap and its peer run alternately, in the
same run on the same machine: the ratio of medians is what a shared, noisy machine can measure.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

MiB = 1024 * 1024
GiB = 1024 * MiB
_BLOCK = 64 * MiB
_STAMP = 64
Command = Sequence[str]


def tool(name: str) -> list[str]:
    """The console script next to this interpreter (the venv's), else whatever is on PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return [str(local)]
    found = shutil.which(name)
    if found is None:
        if name == "mlsnap":
            return [sys.executable, "-m", "mlsnap"]
        raise SystemExit(f"Error: `{name}` is not installed; install it next to {sys.executable}")
    return [found]


def isolated_env(base: Path) -> dict[str, str]:
    """HOME, Git identity and config pinned; DVC never phones home; no venv to probe."""
    home = base / "home"
    home.mkdir(parents=True, exist_ok=True)
    # PYTHONDONTWRITEBYTECODE would make every start compile the modules changed since the
    # install again (~10-25 ms each): users' installs keep their bytecode, so does the benchmark.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GIT_", "DVC_", "MLSNAP_"))
           and k not in ("VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")}
    env.update({
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
        "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.com",
        "DVC_NO_ANALYTICS": "1",
        "DVC_NO_UPDATER": "1",
    })
    return env


# A child's peak RSS starts from its parent's high-water mark (fork, then exec, keep the
# maximum), and this process holds large buffers. A fresh, small interpreter therefore spawns and
# reaps each command: wait4 gives that one command's rusage, and it times the command itself.
_LAUNCHER = """
import os, sys, time
report, argv = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.posix_spawnp(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
elapsed = time.perf_counter() - start
with open(report, "w") as f:
    f.write(f"{elapsed} {usage.ru_maxrss}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


@dataclass
class Shell:
    """Runs commands in one isolated environment."""

    env: dict[str, str]
    verbose: bool = False

    def run(self, cmd: Command, cwd: Path, *, check: bool = True) -> tuple[float, int, str]:
        """Run ``cmd``; return (wall seconds, its own peak RSS in KiB, stdout).

        A small launcher starts and reaps the command (see ``_LAUNCHER``), so the peak RSS is
        the command's own and the time excludes the launcher's start-up.
        """
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "report"
            out, err = Path(tmp) / "out", Path(tmp) / "err"
            with open(out, "wb") as fout, open(err, "wb") as ferr:
                code = subprocess.call([sys.executable, "-S", "-c", _LAUNCHER, str(report), *cmd],
                                       cwd=cwd, env=self.env, stdout=fout, stderr=ferr,
                                       stdin=subprocess.DEVNULL)
            stdout, stderr = out.read_bytes(), err.read_bytes()
            if not report.exists():
                raise SystemExit(f"Error: could not start `{' '.join(cmd)}`: "
                                 f"{stderr.decode(errors='replace')[-500:]}")
            elapsed_text, rss_text = report.read_text().split()
        elapsed, rss = float(elapsed_text), int(rss_text)
        if check and code != 0:
            raise SystemExit(f"Error: `{' '.join(cmd)}` in {cwd} exited {code}:\n"
                             f"{stderr.decode(errors='replace')[-2000:]}")
        if self.verbose:
            print(f"    {elapsed:7.3f}s {rss // 1024:6d} MiB  {' '.join(cmd)[:120]}",
                  file=sys.stderr)
        return elapsed, rss, stdout.decode(errors="replace")

    def sequence(self, cmds: Sequence[Command], cwd: Path) -> tuple[float, int]:
        """Run commands one after another; (total seconds, largest peak RSS)."""
        total, peak = 0.0, 0
        for cmd in cmds:
            elapsed, rss, _ = self.run(cmd, cwd)
            total += elapsed
            peak = max(peak, rss)
        return total, peak


# --------------------------------------------------------------------------- data


def write_random(path: Path, size: int, token: str) -> None:
    """``size`` bytes: random 64 MiB blocks, each stamped with ``token`` and its index."""
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(min(size, _BLOCK))
    with open(path, "wb") as f:
        written = 0
        index = 0
        while written < size:
            stamp = f"{token}:{index}:".encode()
            chunk = (stamp + block[len(stamp):])[: size - written]
            f.write(chunk)
            written += len(chunk)
            index += 1


def restamp(path: Path, token: str) -> None:
    """New content in place (first bytes), so every tool has to hash the whole file again."""
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.write(f"{token}:".encode().ljust(48, b"#"))


def write_tree(folder: Path, nfiles: int, token: str, size: int = 1024) -> None:
    """``nfiles`` small files in 100-file subfolders, each with new, unique content.

    Existing files are rewritten in place (new bytes and mtime: every tool hashes them all
    again) rather than deleted: on this disk (ext4 with ``discard``) deleting 20,000 files
    took longer than committing them.
    """
    noise = os.urandom(size)
    for i in range(nfiles):
        sub = folder / f"part{i // 100:04d}"
        if i % 100 == 0:
            sub.mkdir(parents=True, exist_ok=True)
        # A fixed-size stamp keeps every file's size: rewritten in place, never truncated (a
        # truncation frees blocks, and this disk discards them, slowly and unevenly).
        data = f"{token}:{i}:".encode().ljust(_STAMP, b"#")[:_STAMP] + noise
        fd = os.open(sub / f"item{i:06d}.bin", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def md5_seconds(path: Path) -> float:
    """Seconds to MD5 ``path`` once, read from the page cache (the floor of a verified pull)."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while f.read(_BLOCK):  # warm the page cache first: time the hash, not the disk
            pass
        f.seek(0)
        start = time.perf_counter()
        while block := f.read(8 * MiB):
            digest.update(block)
    return time.perf_counter() - start


def drop_cache_object(repo: Path, md5: str | None) -> None:
    """Delete one object from the DVC cache (keeps disk use flat across runs)."""
    if not md5:
        return
    path = repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    if path.exists():
        os.chmod(path, 0o644)
        path.unlink()


def pointer_md5(repo: Path, rel: str) -> str | None:
    pointer = repo / f"{rel}.dvc"
    if not pointer.exists():
        return None
    for line in pointer.read_text().splitlines():
        line = line.strip().lstrip("- ")
        if line.startswith("md5:"):
            return line.split(":", 1)[1].strip()
    return None


# --------------------------------------------------------------------------- cases and results


@dataclass
class Side:
    """One contender of a case: untimed ``prepare(i)``, then the timed ``commands(i)``."""

    label: str
    cwd: Callable[[int], Path]
    commands: Callable[[int], list[Command]]
    prepare: Callable[[int], None] = lambda i: None
    finish: Callable[[int], None] = lambda i: None
    max_runs: int | None = None  # a context side may run fewer times than the contenders


@dataclass
class Row:
    operation: str
    mlsnap: float | None
    peer: float | None
    peer_label: str
    target: str
    passed: bool | None
    unit: str = "s"
    note: str = ""
    samples: dict[str, list[float]] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.mlsnap is None or not self.peer:
            return None
        return self.mlsnap / self.peer


def alternate(shell: Shell, mine: Side, peer: Side, runs: int,
              *context: Side) -> dict[str, list[tuple[float, int]]]:
    """Run every side ``runs`` times, rotating which goes first; (seconds, RSS) per run.

    ``context`` sides (a third contender shown for context) join the rotation.
    """
    sides = [mine, peer, *context]
    results: dict[str, list[tuple[float, int]]] = {side.label: [] for side in sides}
    for i in range(runs):
        order = sides[i % len(sides):] + sides[:i % len(sides)]
        for side in order:
            if side.max_runs is not None and i >= side.max_runs:
                continue
            side.prepare(i)
            results[side.label].append(shell.sequence(side.commands(i), side.cwd(i)))
            side.finish(i)
    return results


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "MiB":
        return f"{value:.0f} MiB"
    return f"{value:.3f} s" if value < 10 else f"{value:.2f} s"


def table(rows: Sequence[Row]) -> str:
    head = ("operation", "mlsnap", "peer", "ratio", "target", "result")
    lines = [head]
    for r in rows:
        ratio = "n/a" if r.ratio is None else f"{r.ratio:.2f}x"
        result = {True: "pass", False: "FAIL", None: "n/a"}[r.passed]
        lines.append((r.operation, fmt(r.mlsnap, r.unit),
                      f"{fmt(r.peer, r.unit)} ({r.peer_label})" if r.peer_label else
                      fmt(r.peer, r.unit), ratio, r.target, result))
    width = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, width)) + " |" for line in lines]
    out.insert(1, "| " + " | ".join("-" * w for w in width) + " |")
    notes = [f"- {r.operation}: {r.note}" for r in rows if r.note]
    return "\n".join(out + ([""] + notes if notes else []))

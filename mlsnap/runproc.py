"""Running a user's command for ``mlsnap run`` and ``mlsnap repro``: output streamed and its
tail kept, Ctrl-C and SIGTERM forwarded to the command's own process group, the group stopped
by a watchdog when mlsnap itself is killed, and the Python distributions the command imported
noted where it can be told.

Standard library only: the command runs for hours, mlsnap only watches it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

TAIL_LINES = 40
TAIL_CHARS = 4096
_KEEP_BYTES = 64 * 1024  # of raw output, to cut the tail from
_STOP_WAIT = (10.0, 5.0)  # seconds given to CMD after the forwarded signal, then after SIGTERM
_PUMP_WAIT = 5.0  # for a pipe still held open by a process CMD left behind
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)")
_PYTHON = re.compile(r"python(\d+(\.\d+)?)?(\.exe)?")


@dataclass(frozen=True)
class Finished:
    returncode: int  # negative: killed by that signal
    started: str  # UTC, ISO 8601
    duration_s: float
    tail: str  # the last lines printed, as a terminal shows them (progress bars collapsed)
    imported: tuple[str, ...] | None  # distributions Python processes of CMD imported


SHOWN_CHARS = 1000  # of a command shown in one line (a recorded one may be huge)


def shown(cmd: Sequence[str], limit: int | None = None) -> str:
    """``cmd`` as a shell would read it, cut after ``limit`` characters when given."""
    import shlex

    text = shlex.join(list(cmd))
    if limit is not None and len(text) > limit:
        text = f"{text[:limit]}... ({len(cmd)} arguments, {len(text):,} characters)"
    return text


def python_of(cmd: Sequence[str], cwd: Path) -> str | None:
    """The interpreter CMD runs when it starts with ``python``/``python3.X`` (a name found on
    PATH, or a path), else None."""
    exe = cmd[0]
    if not _PYTHON.fullmatch(os.path.basename(exe)):
        return None
    if "/" in exe:
        path = Path(exe) if os.path.isabs(exe) else cwd / exe
        return str(path) if path.exists() else None
    return shutil.which(exe)


def how_it_ended(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with code {returncode}"


# The hook every Python process of CMD loads (PYTHONPATH): at exit it writes the
# distributions whose modules it imported, then the user's own sitecustomize still runs.
_SITECUSTOMIZE = '''\
"""mlsnap run: note which installed distributions this process imported (see mlsnap.runproc)."""
import atexit as _atexit
import os as _os
import sys as _sys


def _mlsnap_imports():
    try:
        import importlib.metadata as _md
        import re as _re

        std = getattr(_sys, "stdlib_module_names", ())
        mods = {m.partition(".")[0] for m in list(_sys.modules)}
        owners = _md.packages_distributions()
        names = sorted({_re.sub(r"[-_.]+", "-", d).lower() for m in mods
                        if m and not m.startswith("_") and m not in std
                        for d in owners.get(m, [])})
        where = _os.path.join(_os.environ["MLSNAP_RUN_IMPORTS"], "%d.txt" % _os.getpid())
        with open(where, "w") as f:
            f.write("\\n".join(names))
    except BaseException:  # a Ctrl-C during the exit of CMD too: this hook never prints
        pass


if _os.environ.get("MLSNAP_RUN_IMPORTS"):
    _atexit.register(_mlsnap_imports)
_here = _os.path.dirname(_os.path.abspath(__file__))
_sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or ".") != _here]
_me = _sys.modules.pop("sitecustomize", None)
try:
    import sitecustomize  # noqa: F401 - the environment's own, if it has one
except ImportError:
    pass
finally:
    _sys.modules.setdefault("sitecustomize", _me)  # the import system expects one there
'''


# The watchdog: stops CMD's process group, and removes the hook's folder, when mlsnap ends
# without saying it is done (kill -9, the OOM killer). Its only input is a pipe whose one write
# end mlsnap holds, so the kernel closes it however mlsnap ends. Lines: "pg N" (the group to
# stop), "end" (CMD was reaped: the number is no longer CMD's), "rm PATH", "ok" (mlsnap
# finished its own clean-up: nothing to do).
_WATCHDOG = """\
import os, shutil, signal, sys, time
for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
    signal.signal(sig, signal.SIG_IGN)
fd, pgid, folders, buf = int(sys.argv[1]), None, [], b""
while True:
    try:
        chunk = os.read(fd, 4096)
    except InterruptedError:
        continue
    except OSError:
        chunk = b""
    if not chunk:
        break
    buf += chunk
    while b"\\n" in buf:
        line, buf = buf.split(b"\\n", 1)
        word, _, arg = line.decode("utf-8", "surrogateescape").partition(" ")
        if word == "ok":
            sys.exit(0)
        if word == "pg":
            pgid = int(arg)
        elif word == "end":
            pgid = None
        elif word == "rm":
            folders.append(arg)
if pgid is not None:
    for sig, wait in ((signal.SIGTERM, %(term)r), (signal.SIGKILL, %(kill)r)):
        try:
            os.killpg(pgid, sig)
        except OSError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except OSError:
                break
            time.sleep(0.05)
        else:
            continue
        break
for folder in folders:
    shutil.rmtree(folder, ignore_errors=True)
"""


class _Watchdog:
    """Outlives mlsnap to stop CMD when mlsnap is killed.

    CMD runs in a process group of its own (a Ctrl-C is forwarded to all of it once, and
    mlsnap's own signals never reach it twice), so a kill -9 of mlsnap, or of mlsnap's group,
    used to leave CMD training on with nobody to record it. Linux's PR_SET_PDEATHSIG was the
    other way: it reaches only CMD itself (not the workers of torchrun or the children of a
    shell), it fires when the *thread* that started CMD ends rather than the process, and it
    needs a ``preexec_fn``, unsafe in a process with threads (DVC's, the environment probe).
    This watchdog is a small process in a session of its own (a kill of mlsnap's group does
    not reach it) that waits on a pipe: when mlsnap ends without writing "ok", the kernel
    closes the pipe and the watchdog stops CMD's whole group, SIGTERM then SIGKILL, each after
    a bounded wait (``_STOP_WAIT``), and removes the folders it was told about. It is started
    before anything it guards exists; the only moment not covered is the few microseconds
    between CMD's start and the note of its group.
    """

    def __init__(self, cwd: Path) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.fd: int | None = None
        if not sys.executable:
            return
        read, write = os.pipe()  # neither end is inherited by CMD or any other child
        script = _WATCHDOG % {"term": _STOP_WAIT[0], "kill": _STOP_WAIT[1]}
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", script, str(read)], cwd=cwd,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                pass_fds=(read,), start_new_session=True)
        except OSError:
            os.close(write)
            return
        finally:
            os.close(read)
        self.fd = write

    def say(self, line: str) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.write(self.fd, os.fsencode(line) + b"\n")

    def done(self) -> None:
        """mlsnap finished its clean-up: the watchdog leaves at once."""
        if self.fd is None:
            return
        self.say("ok")
        os.close(self.fd)
        self.fd = None
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired, KeyboardInterrupt):
                self.proc.wait(timeout=_STOP_WAIT[1])


@contextlib.contextmanager
def _imports_hook(env: dict[str, str], watchdog: _Watchdog) -> Iterator[Path]:
    """A temporary folder holding the hook, put first on CMD's PYTHONPATH; yields the folder
    the processes write their reports to. The watchdog removes it if mlsnap is killed."""
    folder = Path(tempfile.mkdtemp(prefix="mlsnap-run-"))
    watchdog.say(f"rm {folder}")
    try:
        hook = folder / "hook"
        reports = folder / "imports"
        hook.mkdir()
        reports.mkdir()
        (hook / "sitecustomize.py").write_text(_SITECUSTOMIZE)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(hook), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
        env["MLSNAP_RUN_IMPORTS"] = str(reports)
        yield reports
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _read_imports(reports: Path) -> tuple[str, ...] | None:
    names: set[str] = set()
    found = False
    for report in reports.glob("*.txt"):
        found = True
        with contextlib.suppress(OSError):
            names.update(n for n in report.read_text().split() if n)
    return tuple(sorted(names)) if found else None


class _Tail:
    """The last bytes of CMD's output, both streams in arrival order."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.lock = threading.Lock()

    def add(self, chunk: bytes) -> None:
        with self.lock:
            self.buf += chunk
            if len(self.buf) > 2 * _KEEP_BYTES:
                del self.buf[:-_KEEP_BYTES]

    def text(self) -> str:
        with self.lock:
            raw = bytes(self.buf[-_KEEP_BYTES:])
        text = _ANSI.sub("", raw.decode("utf-8", errors="replace"))
        lines = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n")]
        while lines and not lines[-1].strip():
            lines.pop()
        kept = "\n".join(lines[-TAIL_LINES:])
        return kept[-TAIL_CHARS:]


def _pump(pipe: IO[bytes], sink: IO[Any] | None, tail: _Tail) -> None:
    """Copy ``pipe`` to ``sink`` as it arrives; a closed sink (``| head``) stops the copy,
    never the reading (CMD must not block on a full pipe)."""
    fd = pipe.fileno()
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        tail.add(chunk)
        if sink is not None:
            try:
                raw = getattr(sink, "buffer", None)
                if raw is not None:
                    raw.write(chunk)
                else:
                    sink.write(chunk.decode("utf-8", errors="replace"))
                sink.flush()
            except (OSError, ValueError):
                sink = None
    with contextlib.suppress(OSError):
        pipe.close()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _stop(proc: subprocess.Popen[bytes], first: int) -> None:
    """Stop CMD and everything in its process group: ``first`` (the signal mlsnap got), then
    SIGTERM, then SIGKILL, each after a bounded wait; a second Ctrl-C goes straight to KILL."""
    for sig, wait in ((first, _STOP_WAIT[0]), (signal.SIGTERM, _STOP_WAIT[1])):
        _signal_group(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
        except KeyboardInterrupt:
            break
    _signal_group(proc.pid, signal.SIGKILL)  # what it left behind in its group, too
    with contextlib.suppress(subprocess.TimeoutExpired, KeyboardInterrupt):
        proc.wait(timeout=_STOP_WAIT[1])


def execute(cmd: Sequence[str], cwd: Path, *, stdout: IO[Any] | None, stderr: IO[Any] | None,
            env: Mapping[str, str] | None = None, track_imports: bool = True) -> Finished:
    """Run ``cmd`` in ``cwd`` in its own process group, its output copied to ``stdout`` /
    ``stderr`` as it arrives. Ctrl-C or SIGTERM (a ``KeyboardInterrupt`` here) is forwarded
    to the group, which is stopped before the exception goes on. ``FileNotFoundError`` /
    ``PermissionError`` when it cannot start."""
    from mlsnap.interrupts import Terminated

    child_env = dict(os.environ if env is None else env)
    child_env.setdefault("PYTHONUNBUFFERED", "1")  # piped output arrives as it is printed
    tail = _Tail()
    with contextlib.ExitStack() as stack:
        watchdog = _Watchdog(cwd)
        stack.callback(watchdog.done)  # last: after the hook's folder is gone
        reports = (stack.enter_context(_imports_hook(child_env, watchdog)) if track_imports
                   else None)
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        clock = time.monotonic()
        stdin = subprocess.DEVNULL if sys.stdin is None or sys.stdin.isatty() else None
        # Its own process group: the signal is forwarded to all of it, once.
        group: dict[str, Any] = ({"process_group": 0} if sys.version_info >= (3, 11)
                                 else {"preexec_fn": os.setpgrp})
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=child_env, stdin=stdin,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, **group)
        assert proc.stdout is not None and proc.stderr is not None
        pumps = [threading.Thread(target=_pump, args=(pipe, sink, tail), daemon=True)
                 for pipe, sink in ((proc.stdout, stdout), (proc.stderr, stderr))]
        try:  # from here on, a Ctrl-C at any moment stops CMD's group before it goes on
            watchdog.say(f"pg {proc.pid}")
            for pump in pumps:
                pump.start()
            returncode = proc.wait()
        except KeyboardInterrupt as exc:
            _stop(proc, signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
            raise
        watchdog.say("end")  # reaped: its number may be reused from now on
        duration = time.monotonic() - clock
        for pump in pumps:
            pump.join(timeout=_PUMP_WAIT)
        imported = _read_imports(reports) if reports is not None else None
    return Finished(returncode, started, round(duration, 3), tail.text(), imported)

"""Push and pull time of one large artifact through each kind of remote, beside a folder remote.

For each remote (folder, S3 on SeaweedFS, SSH on OpenSSH sshd, WebDAV on WsgiDAV, all real
servers on 127.0.0.1, started as in the tests), in a fresh project:
  1. write SIZE MiB of random bytes to ``model.bin`` and ``mlsnap commit model.bin --no-push``
     (hashing is not timed),
  2. time ``mlsnap push`` (the upload, wall clock, whole command),
  3. delete ``model.bin`` and the DVC cache, time ``mlsnap pull`` (download + verify + checkout),
  4. check the restored bytes (sha256).
Servers that cannot run here are reported as skipped.

Usage:  python benchmarks/bench_remotes.py [--size-mb 100] [--runs 1] [--jobs N]
        [--only folder|s3|ssh|webdav]...
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers import Server, make_server  # the same servers as the tests

KINDS = ("folder", "s3", "ssh", "webdav")
_CHUNK = 4 * 1024 * 1024


def bench_env(home: Path) -> dict[str, str]:
    e = dict(os.environ)
    e.update({"DVC_NO_ANALYTICS": "1", "DVC_NO_UPDATER": "1", "CI": "true", "HOME": str(home),
              "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "bench",
              "GIT_AUTHOR_EMAIL": "bench@example.com", "GIT_COMMITTER_NAME": "bench",
              "GIT_COMMITTER_EMAIL": "bench@example.com"})
    return e


def run(cwd: Path, env: dict[str, str], *args: str) -> float:
    """Run a command; return its wall time in seconds (fails loudly on a non-zero exit)."""
    start = time.perf_counter()
    proc = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True,
                          check=False)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return took


def mlsnap(cwd: Path, env: dict[str, str], *args: str) -> float:
    return run(cwd, env, sys.executable, "-m", "mlsnap", *args)


def write_random(path: Path, size_mb: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(size_mb * 1024 * 1024 // _CHUNK):
            block = os.urandom(_CHUNK)
            digest.update(block)
            f.write(block)
    return digest.hexdigest()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def one_run(base: Path, env: dict[str, str], url: str, local: dict[str, str], size_mb: int,
            jobs: list[str]) -> tuple[float, float]:
    root = base / "proj"
    root.mkdir(parents=True)
    run(root, env, "git", "init", "-q", "-b", "main")
    (root / "train.py").write_text("print('train')\n")
    run(root, env, "git", "add", "train.py")
    run(root, env, "git", "commit", "-q", "-m", "code")
    local_args = [a for k, v in local.items() for a in ("--local", f"{k}={v}")]
    mlsnap(root, env, "init", "--remote", url, *local_args)
    expected = write_random(root / "model.bin", size_mb)
    mlsnap(root, env, "commit", "model.bin", "--no-push")
    push = mlsnap(root, env, "push", *jobs)
    (root / "model.bin").unlink()
    shutil.rmtree(root / ".dvc" / "cache")
    pull = mlsnap(root, env, "pull", *jobs)
    if sha256(root / "model.bin") != expected:
        raise SystemExit(f"{url}: the pulled bytes differ from the pushed ones")
    shutil.rmtree(root)
    return push, pull


def bench_kind(kind: str, base: Path, env: dict[str, str], args: argparse.Namespace) -> str:
    jobs = ["--jobs", str(args.jobs)] if args.jobs else []
    server: Server | None = None
    if kind == "folder":
        url, local = str(base / "folder-remote"), {}
    else:
        try:
            server = make_server(kind, base / f"{kind}-server")
        except (pytest.skip.Exception, pytest.fail.Exception) as exc:  # a server is missing
            return f"| {kind} | skipped: {exc} | | | |"
        server.start()
        url, local = server.url("bench"), server.local_options()
    pushes, pulls = [], []
    try:
        for i in range(args.runs):
            push, pull = one_run(base / f"{kind}-{i}", env, url, local, args.size_mb, jobs)
            pushes.append(push)
            pulls.append(pull)
            if kind == "folder":
                shutil.rmtree(url, ignore_errors=True)
    finally:
        if server is not None:
            server.stop()
            server.cleanup()
    push, pull = statistics.median(pushes), statistics.median(pulls)
    return (f"| {kind} | {push:.2f} | {args.size_mb / push:.0f} | {pull:.2f} | "
            f"{args.size_mb / pull:.0f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=100, help="artifact size in MiB")
    parser.add_argument("--runs", type=int, default=1, help="runs per remote (median reported)")
    parser.add_argument("--jobs", type=int, default=None, help="pass --jobs N to push and pull")
    parser.add_argument("--only", action="append", choices=KINDS, help="only these remotes")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="mlsnap-bench-remotes-"))
    home = base / "home"
    home.mkdir()
    env = bench_env(home)
    print(f"# {args.size_mb} MiB artifact, median of {args.runs} run(s), "
          f"{os.cpu_count()} cores, servers on 127.0.0.1")
    print("| remote | push s | push MiB/s | pull s | pull MiB/s |")
    print("| --- | --- | --- | --- | --- |", flush=True)
    try:
        for kind in args.only or KINDS:
            print(bench_kind(kind, base, env, args), flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

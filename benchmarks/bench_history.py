"""How fast mlsnap reads history, beside DVC and Git, on a repository of N snapshots.

Builds (with ``git fast-import``, real commits) a DVC + mlsnap repository holding N snapshot
commits: each changes ``.mlsnap/model.yaml`` (a valid schema-1 manifest with ~100 packages),
``params.yaml`` and ``metrics.json`` (declared in ``dvc.yaml`` so that ``dvc exp show`` has the
same params and metrics to report). Every 100th snapshot is tagged ``model@vX.Y.Z``.

Then times, alternating the commands run after run (median of --runs):
  mlsnap log --json          cold (parse cache removed before each run) and warm
  dvc exp show -A --json     DVC's view of the same history
  git log --oneline          the floor: a bare history walk
  mlsnap show TAG --json, mlsnap diff TAG_A TAG_B --json, mlsnap diff (default pair)

Usage:  python benchmarks/bench_history.py [--snapshots 1000] [--runs 5] [--keep DIR [--reuse]]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml: 1,000 manifests in a second

PACKAGES = {f"package-{i:03d}": f"1.{i % 7}.{i % 11}" for i in range(100)}
CODE_FILE = b"print('train')\n"


def env() -> dict[str, str]:
    e = dict(os.environ)
    # Byte-compiled modules, as in any installed tool (this checkout's shell turns them off).
    e.pop("PYTHONDONTWRITEBYTECODE", None)
    e.update({"DVC_NO_ANALYTICS": "1", "DVC_NO_UPDATER": "1", "CI": "true",
              "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "bench",
              "GIT_AUTHOR_EMAIL": "bench@example.com", "GIT_COMMITTER_NAME": "bench",
              "GIT_COMMITTER_EMAIL": "bench@example.com"})
    return e


def git(root: Path, *args: str, data: bytes | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=root, input=data, capture_output=True, env=env(),
                          check=True)
    return proc.stdout.decode().strip()


def manifest_doc(i: int, code: str) -> dict[str, Any]:
    lr = round(0.1 / (1 + i % 17), 6)
    packages = dict(PACKAGES)
    packages["numpy"] = f"2.{i // 250}.0"  # the environment changes now and then
    doc = {
        "mlsnap": 1, "name": "model", "created": _date(i, iso=True),
        "message": f"run {i}: lr {lr}",
        "code": {"commit": code, "branch": "main", "dirty": False, "patch": None},
        "data": {"hash": None, "inputs": []},
        "artifacts": [{"path": "model.pkl", "md5": f"{i:032x}", "size": 1000 + i, "nfiles": 1}],
        "params": {"lr": lr, "epochs": 10 + i % 5, "optimizer": {"name": "adam"}},
        "metrics": {"accuracy": round(0.5 + (i % 97) / 200, 6), "loss": round(1 / (i + 1), 6)},
        "environment": {"python": "3.11.7", "implementation": "CPython",
                        "os": "Linux-6.1.0-x86_64-with-glibc2.36", "machine": "x86_64",
                        "packages": packages, "accelerators": []},
    }
    return doc


def _date(i: int, iso: bool = False) -> str:
    stamp = 1_767_225_600 + i * 3600  # 2026-01-01 plus one hour per snapshot
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp)) if iso else f"{stamp} +0000"


def blob(path: str, content: bytes) -> bytes:
    return f"M 100644 inline {path}\ndata {len(content)}\n".encode() + content + b"\n"


def build(root: Path, n: int) -> None:
    """A DVC-initialized repository: one code commit, then ``n`` snapshot commits."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, env=env(), check=True)
    (root / "train.py").write_bytes(CODE_FILE)
    (root / "dvc.yaml").write_text("metrics:\n- metrics.json\nparams:\n- params.yaml\n")
    (root / ".mlsnap").mkdir()
    (root / ".mlsnap" / "config.yaml").write_text("default_name: model\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "code")
    code = git(root, "rev-parse", "HEAD")
    stream = bytearray()
    for i in range(n):
        doc = manifest_doc(i, code)
        m = yaml.dump(doc, Dumper=_DUMPER, sort_keys=False, width=1000).encode()
        params, metrics = doc["params"], doc["metrics"]
        msg = f"mlsnap: model: run {i}".encode()
        stream += b"commit refs/heads/main\n"
        stream += f"mark :{i + 1}\ncommitter bench <bench@example.com> {_date(i)}\n".encode()
        stream += f"data {len(msg)}\n".encode() + msg + b"\n"
        if i == 0:
            stream += f"from {code}\n".encode()
        stream += blob(".mlsnap/model.yaml", m)
        stream += blob("params.yaml", yaml.safe_dump(params).encode())
        stream += blob("metrics.json", repr(metrics).replace("'", '"').encode())
        stream += blob("model.pkl.dvc", f"outs:\n- md5: {i:032x}\n  size: {1000 + i}\n"
                                        "  path: model.pkl\n".encode())
        if i % 100 == 99:
            tag = f"model@v1.{i // 100}.0".encode()
            stream += b"tag " + tag + f"\nfrom :{i + 1}\n".encode()
            stream += f"tagger bench <bench@example.com> {_date(i)}\n".encode()
            stream += b"data 4\nv1.x\n"
    git(root, "fast-import", "--quiet", data=bytes(stream))
    git(root, "reset", "-q", "--hard", "main")


def timed(root: Path, argv: list[str]) -> tuple[float, float]:
    """Wall-clock and CPU (user + system) seconds of one run of ``argv``.

    CPU time is reported beside wall time because this machine is shared: under load the wall
    clock measures the neighbours as much as the command.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=root, capture_output=True, env=env(), check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", type=Path, default=None, help="Build the repo here and keep it.")
    parser.add_argument("--no-dvc", action="store_true", help="Skip `dvc exp show` (slow).")
    parser.add_argument("--reuse", action="store_true",
                        help="With --keep: reuse the repository built there by an earlier run.")
    args = parser.parse_args()

    base = args.keep or Path(tempfile.mkdtemp(prefix="mlsnap-bench-history-"))
    root = base / "repo"
    if args.reuse and args.keep and root.is_dir():
        print(f"reusing {root}")
    else:
        if root.exists():
            shutil.rmtree(root)
        started = time.perf_counter()
        build(root, args.snapshots)
        print(f"built {args.snapshots} snapshot commits in {time.perf_counter() - started:.1f} s "
              f"({root})")

    py = sys.executable
    last = (args.snapshots // 100) - 1
    cache = root / ".git" / "mlsnap" / "history.json"
    commands: dict[str, list[str]] = {
        "git log --oneline": ["git", "log", "--oneline"],
        "mlsnap log --json (cold)": [py, "-m", "mlsnap", "log", "--json"],
        "mlsnap log --json (warm)": [py, "-m", "mlsnap", "log", "--json"],
        "mlsnap log (table)": [py, "-m", "mlsnap", "log"],
        "mlsnap show TAG --json": [py, "-m", "mlsnap", "show", f"model@v1.{max(last, 0)}.0",
                                   "--json"],
        "mlsnap diff TAG_A TAG_B --json": [py, "-m", "mlsnap", "diff", "model@v1.0.0",
                                           f"model@v1.{max(last, 0)}.0", "--json"],
        "mlsnap diff": [py, "-m", "mlsnap", "diff"],
    }
    if not args.no_dvc:
        commands["dvc exp show -A --json"] = [py, "-m", "dvc", "exp", "show", "-A", "--json"]
    walls: dict[str, list[float]] = {k: [] for k in commands}
    cpus: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(args.runs):
        for label, argv in commands.items():
            if "(cold)" in label:
                cache.unlink(missing_ok=True)
            wall, cpu = timed(root, argv)
            walls[label].append(wall)
            cpus[label].append(cpu)

    medians = {k: statistics.median(v) for k, v in walls.items()}
    cpu_medians = {k: statistics.median(v) for k, v in cpus.items()}
    floor = medians["git log --oneline"]
    ref = medians.get("dvc exp show -A --json")
    print(f"\n{args.snapshots} snapshots, median of {args.runs} alternating runs "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs):")
    print(f"{'command':34} {'wall s':>8} {'cpu s':>7} {'x git log':>10} {'dvc / this':>11}")
    for label, med in medians.items():
        vs_dvc = f"{ref / med:10.1f}x" if ref else "-"
        print(f"{label:34} {med:8.3f} {cpu_medians[label]:7.3f} {med / floor:9.1f}x {vs_dvc:>11}")
    if args.keep is None:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()

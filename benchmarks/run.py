"""Entry point: ``python -m benchmarks [--quick] [--runs N] [--only CASE]...``.

Builds its own repositories and data in a temporary folder, runs every case with mlsnap and its
peer alternating, and prints one table of medians and ratios against the targets of the project.
Exit status 0 when every target is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.cases import Bench, Sizes
from benchmarks.gc_case import gc_rows
from benchmarks.harness import Row, Shell, isolated_env, table, tool
from benchmarks.history_case import log_rows
from benchmarks.report_case import report_rows
from benchmarks.repro_case import repro_rows

CASES = ("help", "commit", "recommit", "dataset", "pull", "log", "gc", "repro", "rss", "report")


def machine() -> str:
    """Date, machine and versions: the header every published table carries."""
    def version(cmd: list[str]) -> str:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        return proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else "?"

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"{now}; {os.cpu_count()} cores, {platform.machine()}, "
            f"Python {platform.python_version()}, dvc {version([*tool('dvc'), '--version'])}, "
            f"{version(['git', '--version'])}")


def remove(folder: Path) -> None:
    """Delete the run's folder in the background, at idle I/O priority.

    The dataset case leaves ~300,000 small files; unlinking them takes 1-2 minutes on a disk
    mounted with online discard, after every result is known. The table is printed first.
    """
    argv = ["rm", "-rf", "--", str(folder)]
    if shutil.which("ionice"):
        argv = ["ionice", "-c", "3", *argv]
    try:
        subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and 3 runs: about a minute, for everyday use")
    parser.add_argument("--runs", type=int, default=None,
                        help="timed runs per contender (default: 5; 3 with --quick)")
    parser.add_argument("--only", action="append", choices=CASES, help="run only these cases")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--verbose", "-v", action="store_true", help="print every command")
    args = parser.parse_args(argv)
    if args.runs is None:
        args.runs = 3 if args.quick else 5
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    base = Path(tempfile.mkdtemp(prefix="mlsnap-bench-"))
    rows: list[Row] = []
    header = machine()
    print(f"# mlsnap benchmarks ({'quick' if args.quick else 'full'}, {args.runs} runs each, "
          f"medians)\n# {header}", flush=True)
    started = time.perf_counter()
    try:
        bench = Bench(base, Shell(isolated_env(base), args.verbose),
                      Sizes.quick() if args.quick else Sizes.full(), args.runs)
        for case in args.only or CASES:
            t0 = time.perf_counter()
            if case == "gc":
                case_rows = gc_rows(bench)
            elif case == "log":
                case_rows = log_rows(bench)
            elif case == "repro":
                case_rows = repro_rows(bench)
            elif case == "report":
                case_rows = report_rows(bench)
            else:
                method = {"help": "help_env", "commit": "commit_model"}.get(case, case)
                case_rows = getattr(bench, method)()
            rows += case_rows
            print(f"  {case}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        print(table(rows), flush=True)
    finally:
        if args.keep:
            print(f"kept {base}", file=sys.stderr)
        else:
            print(f"deleting {base} in the background", file=sys.stderr)
            remove(base)
    total = time.perf_counter() - started
    print(f"\ntotal {total:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({
            "machine": header, "quick": args.quick, "runs": args.runs, "seconds": total,
            "rows": [{**{k: v for k, v in vars(r).items()}, "ratio": r.ratio} for r in rows],
        }, indent=2))
    return 0 if all(r.passed is not False for r in rows) else 1

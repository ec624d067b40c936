"""The history case: ``mlsnap log --json`` over many snapshots against ``dvc exp show -A``.

The history is written straight into Git with ``git fast-import`` (one process, a second or two
for 1,000 commits): each commit carries a schema-1 manifest, its ``.dvc`` pointer and the
``params.yaml``/``metrics.json`` that DVC reads, as a real training loop would leave them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from benchmarks.cases import Bench
from benchmarks.harness import Row, median
from mlsnap.environment import Environment
from mlsnap.manifest import Code, Manifest, Output, dump

_ENV = Environment(python="3.11.7", implementation="CPython", os="Linux-6.1.0-x86_64",
                   machine="x86_64", packages={"numpy": "2.1.0", "scikit-learn": "1.5.2"})


def _blob(text: str) -> bytes:
    data = text.encode()
    return b"data %d\n%s\n" % (len(data), data)


def history_stream(n: int, parent: str, start: int = 1_700_000_000) -> bytes:
    """A fast-import stream of ``n`` snapshot commits on ``main`` after ``parent``."""
    chunks = []
    for i in range(n):
        md5 = hashlib.md5(f"model {i}".encode()).hexdigest()
        lr = round(0.1 / (1 + i), 6)
        acc = round(0.5 + i / (2 * n), 6)
        manifest = Manifest(
            name="model", created=f"2026-01-01T00:00:{i % 60:02d}Z", message=f"run {i}",
            code=Code(commit=parent, branch="main", dirty=False), data_hash=None, inputs=(),
            artifacts=(Output("model.pkl", md5, 1000 + i, 1),),
            params={"lr": lr, "epochs": 10}, metrics={"accuracy": acc}, environment=_ENV)
        pointer = f"outs:\n- md5: {md5}\n  size: {1000 + i}\n  hash: md5\n  path: model.pkl\n"
        when = start + 60 * i
        chunks.append(b"commit refs/heads/main\n")
        chunks.append(b"committer Bench <bench@example.com> %d +0000\n" % when)
        chunks.append(_blob(f"mlsnap: model: run {i}"))
        if i == 0:
            chunks.append(f"from {parent}\n".encode())
        for path, text in ((".mlsnap/model.yaml", dump(manifest)), ("model.pkl.dvc", pointer),
                           ("params.yaml", f"lr: {lr}\nepochs: 10\n"),
                           ("metrics.json", json.dumps({"accuracy": acc}))):
            chunks.append(f"M 100644 inline {path}\n".encode() + _blob(text))
        chunks.append(b"\n")
    return b"".join(chunks)


def build_history(repo: Path, n: int, env: dict[str, str]) -> None:
    """Append ``n`` snapshot commits to the checked-out ``main`` of ``repo``."""
    def git(*args: str, data: bytes | None = None) -> str:
        proc = subprocess.run(["git", *args], cwd=repo, env=env, input=data,
                              capture_output=True, check=True)
        return proc.stdout.decode().strip()

    parent = git("rev-parse", "HEAD")
    git("fast-import", "--quiet", data=history_stream(n, parent))
    git("reset", "-q", "--hard", "main")


def _builder() -> Callable[[Path, int, dict[str, str]], None]:
    """The history benchmark's own builder (dvc.yaml declares params and metrics) when present."""
    try:
        from benchmarks.bench_history import build
    except ImportError:
        return lambda root, n, env: _build_here(root, n, env)
    return lambda root, n, env: build(root, n)


def _build_here(root: Path, n: int, env: dict[str, str]) -> None:
    root.mkdir(parents=True)
    for args in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "code"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=root, env=env, check=True)
    (root / ".mlsnap").mkdir()
    (root / ".mlsnap" / "config.yaml").write_text("default_name: model\n")
    build_history(root, n, env)


def log_rows(bench: object) -> list[Row]:
    """Rows: ``mlsnap log --json`` without its parse cache vs ``dvc exp show -A --json``
    (the target), and with the cache vs bare ``git log`` (context)."""

    assert isinstance(bench, Bench)
    n = bench.sizes.snapshots
    repo = bench.base / "log"
    _builder()(repo, n, bench.shell.env)
    operation = f"log --json, {n:,} snapshots"
    probe = bench.shell.run([*bench.mlsnap, "log", "--json", "-n", "1"], repo, check=False)
    if not probe[2].strip().startswith(("[", "{")):
        return [Row(operation, None, None, "dvc exp show -A --json", "<= 0.10x", None,
                    note="`mlsnap log --json` is not available in this version")]
    cache = repo / ".git" / "mlsnap"
    commands = {
        "cold": [*bench.mlsnap, "log", "--json"],
        "dvc": [*bench.dvc, "exp", "show", "-A", "--json"],
        "warm": [*bench.mlsnap, "log", "--json"],
        "git": ["git", "log"],
    }
    times: dict[str, list[float]] = {k: [] for k in commands}
    keys = list(commands)
    for i in range(bench.runs):
        for key in keys[i % 4:] + keys[: i % 4]:
            if key == "cold":
                shutil.rmtree(cache, ignore_errors=True)  # the parse cache: measure a first run
            elif key == "warm":
                bench.shell.run(commands[key], repo)  # fill the cache
            times[key].append(bench.shell.run(commands[key], repo)[0])
    versus_dvc = Row(f"{operation} (no parse cache)", median(times["cold"]), median(times["dvc"]),
                     "dvc exp show -A --json", "<= 0.10x", None, samples=times)
    versus_dvc.passed = versus_dvc.ratio is not None and versus_dvc.ratio <= 0.10
    versus_git = Row(f"{operation} (parse cache warm)", median(times["warm"]),
                     median(times["git"]), "git log", "(context)", None)
    return [versus_dvc, versus_git]

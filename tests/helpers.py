"""Small helpers for tests: real git, real mlsnap subprocesses, file digests."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

TRAIN_PY = """\
import json, sys
import yaml
params = yaml.safe_load(open("params.yaml"))
rows = [int(x) for x in open("data/train.csv").read().split()]
weight = sum(rows) * float(params["lr"]) / len(rows)
open("model.pkl", "wb").write(repr(weight).encode() * 1000)
json.dump({"accuracy": round(1 - 1 / (1 + weight), 6)}, open("metrics.json", "w"))
"""


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"git {' '.join(args)} failed: {proc.stderr}"
    return proc.stdout.strip()


def mlsnap(cwd: Path, *args: str, env: dict[str, str] | None = None,
           check: int | None = 0) -> subprocess.CompletedProcess[str]:
    """Run the real command line (`python -m mlsnap`) in ``cwd``."""
    proc = subprocess.run([sys.executable, "-m", "mlsnap", *args], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, check=False, timeout=300)
    if check is not None:
        assert proc.returncode == check, (
            f"mlsnap {' '.join(args)} exited {proc.returncode}, expected {check}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` except .git internals: proves nothing changed."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if rel.startswith((".git/", ".dvc/tmp")) or not p.is_file():
            continue
        out[rel] = sha256(p)
    return out


def make_project(root: Path, remote: Path | None = None, init: bool = True) -> Path:
    """A real Git repo with code, params and data committed; mlsnap-initialized."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    (root / "data").mkdir()
    (root / "data" / "train.csv").write_text("\n".join(str(i) for i in range(1, 501)) + "\n")
    (root / "params.yaml").write_text("lr: 0.1\nepochs: 10\noptimizer:\n  name: adam\n")
    (root / "train.py").write_text(TRAIN_PY)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "code")
    if init:
        remote = remote or root.parent / "remote"
        mlsnap(root, "init", "--remote", str(remote))
    return root


def train(root: Path) -> None:
    subprocess.run([sys.executable, "train.py"], cwd=root, check=True)

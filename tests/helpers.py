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


def wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Path:
    """A real (tiny) wheel of the distribution ``name``: one module, metadata, RECORD."""
    import base64
    import zipfile

    stem = f"{name.replace('-', '_')}-{version}"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    files = {
        f"{name.replace('-', '_')}.py": "VALUE = 1\n",
        f"{stem}.dist-info/METADATA": meta,
        f"{stem}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                   "Tag: py3-none-any\n",
    }
    record = []
    for fname, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{fname},sha256={digest.decode()},{len(text)}")
    record.append(f"{stem}.dist-info/RECORD,,")
    path = folder / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for fname, text in files.items():
            zf.writestr(fname, text)
        zf.writestr(f"{stem}.dist-info/RECORD", "\n".join(record) + "\n")
    return path


def venv(folder: Path, *wheels: Path, see_this_environment: bool = False) -> Path:
    """A real virtualenv (no pip) with ``wheels`` installed; its python.

    ``see_this_environment`` adds a ``.pth`` line naming this interpreter's site-packages, so
    the new environment holds everything installed here (mlsnap, DVC, ...) as well.
    """
    import site
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    if wheels:
        subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                        "--no-index", "--no-deps", *map(str, wheels)], check=True)
    if see_this_environment:
        code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        purelib = subprocess.run([str(python), "-c", code], check=True,
                                 capture_output=True, text=True).stdout.strip()
        here = {sysconfig.get_paths()["purelib"], *site.getsitepackages()}
        (Path(purelib) / "this-environment.pth").write_text("\n".join(sorted(here)) + "\n")
    return python


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

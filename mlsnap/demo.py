"""`mlsnap demo`: the whole loop on a toy model, in a temporary folder, with real Git and DVC.

It trains a small logistic regression (pure Python, so nothing extra to install), takes two
snapshots, clones the repository elsewhere, checks out the first snapshot, pulls it, proves the
model is byte-identical and prints what changed between the snapshots.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import click

TRAIN_PY = '''\
"""Logistic regression by gradient descent; writes model.pkl and metrics.json."""
import json, math, pickle, random
import yaml

params = yaml.safe_load(open("params.yaml"))
rows = [line.split(",") for line in open("data/train.csv").read().split()[1:]]
X = [(float(a), float(b)) for a, b, _ in rows]
y = [int(c) for _, _, c in rows]
w, b = [0.0, 0.0], 0.0
random.seed(params["seed"])
for _ in range(params["epochs"]):
    for i in random.sample(range(len(X)), len(X)):
        z = w[0] * X[i][0] + w[1] * X[i][1] + b
        g = 1 / (1 + math.exp(-z)) - y[i]
        w = [w[0] - params["lr"] * g * X[i][0], w[1] - params["lr"] * g * X[i][1]]
        b -= params["lr"] * g
pred = [int(w[0] * a + w[1] * c + b > 0) for a, c in X]
accuracy = sum(p == t for p, t in zip(pred, y)) / len(y)
pickle.dump({"w": w, "b": b}, open("model.pkl", "wb"))
json.dump({"accuracy": round(accuracy, 4)}, open("metrics.json", "w"))
print(f"trained: accuracy={accuracy:.4f}")
'''


def _data() -> str:
    import random

    rng = random.Random(7)
    lines = ["x1,x2,label"]
    for _ in range(400):
        label = rng.random() < 0.5
        cx = 1.0 if label else -1.0
        lines.append(f"{rng.gauss(cx, 1.2):.4f},{rng.gauss(cx, 1.2):.4f},{int(label)}")
    return "\n".join(lines) + "\n"


class _Shell:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def run(self, cwd: Path, *args: str, show: str | None = None) -> str:
        shown = show or shlex.join(args)
        click.secho(f"$ {shown}", bold=True)
        proc = subprocess.run(list(args), cwd=cwd, env=self.env, capture_output=True, text=True,
                              check=False)
        text = (proc.stdout + proc.stderr).rstrip()
        if text:
            click.echo(text)
        if proc.returncode != 0:
            raise click.ClickException(f"demo step failed ({shown}, exit {proc.returncode})")
        return proc.stdout

    def mlsnap(self, cwd: Path, *args: str) -> str:
        return self.run(cwd, sys.executable, "-m", "mlsnap", *args,
                        show=shlex.join(["mlsnap", *args]))

    def git(self, cwd: Path, *args: str, quiet: bool = False) -> str:
        if quiet:
            return subprocess.run(["git", *args], cwd=cwd, env=self.env, capture_output=True,
                                  text=True, check=True).stdout
        return self.run(cwd, "git", *args)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(keep: bool = False) -> int:
    base = Path(tempfile.mkdtemp(prefix="mlsnap-demo-"))
    env = dict(os.environ)
    env.setdefault("GIT_AUTHOR_NAME", "mlsnap demo")
    env.setdefault("GIT_AUTHOR_EMAIL", "demo@mlsnap.invalid")
    env.setdefault("GIT_COMMITTER_NAME", env["GIT_AUTHOR_NAME"])
    env.setdefault("GIT_COMMITTER_EMAIL", env["GIT_AUTHOR_EMAIL"])
    env["DVC_NO_ANALYTICS"] = "1"
    sh = _Shell(env)
    try:
        proj = base / "proj"
        (proj / "data").mkdir(parents=True)
        (proj / "train.py").write_text(TRAIN_PY)
        (proj / "data" / "train.csv").write_text(_data())
        (proj / "params.yaml").write_text("lr: 0.1\nepochs: 5\nseed: 0\n")
        click.echo(f"# a project in {proj}: train.py, params.yaml, data/train.csv")
        sh.git(proj, "init", "-q", "-b", "main")
        sh.git(proj, "add", "-A")
        sh.git(proj, "commit", "-q", "-m", "code")
        sh.mlsnap(proj, "init", "--remote", str(base / "remote"))
        sh.run(proj, sys.executable, "train.py", show="python train.py")
        first_sha256 = _sha256(proj / "model.pkl")
        sh.mlsnap(proj, "commit", "model.pkl", "--data", "data/train.csv", "--params",
                  "params.yaml", "--metrics", "metrics.json", "-M", "baseline")
        first = sh.git(proj, "rev-parse", "HEAD", quiet=True).strip()

        (proj / "params.yaml").write_text("lr: 0.01\nepochs: 5\nseed: 0\n")
        sh.git(proj, "commit", "-q", "-am", "lower the learning rate")
        sh.run(proj, sys.executable, "train.py", show="python train.py")
        sh.mlsnap(proj, "commit", "-M", "lower lr")

        clone = base / "elsewhere"
        click.echo("# somewhere else: a fresh clone, back to the first snapshot")
        sh.git(base, "clone", "-q", str(proj), str(clone))
        sh.git(clone, "checkout", "-q", first)
        sh.mlsnap(clone, "pull")
        restored = _sha256(clone / "model.pkl")
        same = restored == first_sha256
        click.echo(f"# model.pkl sha256 {restored[:16]}... "
                   f"{'== the first snapshot (byte-exact)' if same else '!= THE FIRST SNAPSHOT'}")
        sh.mlsnap(clone, "status")
        click.echo("# back in the project: the history and what changed between the snapshots")
        sh.mlsnap(proj, "log")
        sh.mlsnap(proj, "diff")
        if not same:
            return 3
        click.secho("demo complete: two snapshots, restored byte-exact in a fresh clone",
                    fg="green")
        return 0
    finally:
        if keep:
            click.echo(f"# kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)

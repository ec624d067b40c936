"""The report case: ``mlsnap report`` over 1,000 snapshots, then the page drawn in Chromium.

Also builds the small real project the report tests and the README's screenshot use: real
``mlsnap init``/``commit``/``tag`` and a real ``Checkpointer`` (two training runs whose indexes
become learning curves), every step a subprocess as a user would run it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from benchmarks.cases import Bench
from benchmarks.harness import Row, median
from benchmarks.history_case import _builder

TRAIN_PY = """\
import json, math
import yaml
params = yaml.safe_load(open("params.yaml"))
lr, epochs = float(params["lr"]), int(params["epochs"])
accuracy = round(0.97 - 0.3 * abs(math.log10(lr) + 1.4) ** 2 / (1 + epochs / 10), 6)
open("model.pkl", "wb").write(b"w" * (2000 * epochs))
json.dump({"accuracy": accuracy, "loss": round(1 - accuracy, 6)}, open("metrics.json", "w"))
"""

CHECKPOINT_RUN = """\
import sys
import mlsnap
first, last, message = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ckpt = mlsnap.Checkpointer("checkpoints", every=1, keep_last=None, name="ckpt")
for step in range(first, last + 1):
    loss = round(2.0 / (1 + step) + 0.05, 6)
    ckpt.save(step, lambda path: path.write_bytes(b"state %d" % step * 100),
              {"val_loss": loss, "val_accuracy": round(1 - loss / 2.1, 6)})
ckpt.commit(message=message, params={"lr": 0.003, "schedule": "cosine"})
"""

# (params, message, tag) of the model's snapshots, in order.
MODEL_RUNS = (
    ({"lr": 0.1, "epochs": 10}, "baseline", "1.0.0"),
    ({"lr": 0.05, "epochs": 10}, "lower lr", None),
    ({"lr": 0.05, "epochs": 20}, "20 epochs", "1.1.0"),
    ({"lr": 0.02, "epochs": 20}, "lr 0.02", None),
)
# (first step, last step, message) of the two Checkpointer runs (the second resumes the first).
CHECKPOINT_RUNS = ((0, 5, "first 6 steps"), (6, 11, "resumed to step 11"))


def _run(cwd: Path, env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True,
                          check=False, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc.stdout


def build_project(root: Path, env: dict[str, str] | None = None) -> Path:
    """A real project with 4 snapshots of ``model`` (two tagged) and 2 of ``ckpt`` (a
    Checkpointer folder); returns its path. ``root`` must not exist."""
    env = {**os.environ, **(env or {})}
    proj, remote = root / "proj", root / "remote"
    (proj / "data").mkdir(parents=True)
    mlsnap = [sys.executable, "-m", "mlsnap"]
    _run(proj, env, "git", "init", "-q", "-b", "main")
    (proj / "train.py").write_text(TRAIN_PY)
    (proj / "data" / "train.csv").write_text("".join(f"{i},{i % 7}\n" for i in range(400)))
    (proj / "params.yaml").write_text("lr: 0.1\nepochs: 10\noptimizer: adam\n")
    _run(proj, env, "git", "add", "-A")
    _run(proj, env, "git", "commit", "-q", "-m", "code")
    _run(proj, env, *mlsnap, "init", "--remote", str(remote))
    for i, (params, message, tag) in enumerate(MODEL_RUNS):
        (proj / "params.yaml").write_text(
            "".join(f"{k}: {v}\n" for k, v in params.items()) + "optimizer: adam\n")
        _run(proj, env, sys.executable, "train.py")
        paths = ["model.pkl", "--data", "data/train.csv", "--params", "params.yaml",
                 "--metrics", "metrics.json"] if i == 0 else []
        _run(proj, env, *mlsnap, "commit", *paths, "--name", "model", "-M", message,
             *(["--tag", tag] if tag else []))
    for first, last, message in CHECKPOINT_RUNS:
        _run(proj, env, sys.executable, "-c", CHECKPOINT_RUN, str(first), str(last), message)
    return proj


def report_rows(bench: object) -> list[Row]:
    """Rows: ``mlsnap report`` over 1,000 snapshots (the command, then the page in Chromium,
    from navigation until every chart is drawn), beside ``mlsnap log --json`` on the same
    history for context."""
    from benchmarks.browser import missing, open_page

    assert isinstance(bench, Bench)
    n = bench.sizes.snapshots
    repo = bench.base / "report"
    _builder()(repo, n, bench.shell.env)
    operation = f"report, {n:,} snapshots"
    probe = bench.shell.run([*bench.mlsnap, "report", "--help"], repo, check=False)
    if "self-contained" not in probe[2]:
        return [Row(operation, None, None, "mlsnap log --json", "(context)", None,
                    note="`mlsnap report` is not available in this version")]
    out = bench.base / "report.html"
    bench.shell.run([*bench.mlsnap, "report", "-o", str(out)], repo)  # the bundle cache, warm
    times: dict[str, list[float]] = {"report": [], "log": []}
    for i in range(bench.runs):
        for key in (["report", "log"] if i % 2 == 0 else ["log", "report"]):
            cmd = ([*bench.mlsnap, "report", "-o", str(out)] if key == "report"
                   else [*bench.mlsnap, "log", "--json"])
            times[key].append(bench.shell.run(cmd, repo)[0])
    rows = [Row(f"`mlsnap report`, {n:,} snapshots", median(times["report"]),
                median(times["log"]), "mlsnap log --json", "(context)", None, samples=times)]
    why = missing()
    if why:
        rows.append(Row(f"report page drawn, {n:,} snapshots", None, None, "-", "<= 5 s",
                        None, note=why))
        return rows
    drawn = []
    for _ in range(bench.runs):
        found = open_page(out)["loaded"]
        assert not found.console_errors, found.console_errors
        assert found.chart("accuracy").points == n, "a chart lost points"
        drawn.append(found.seconds)
    page = Row(f"report page drawn in Chromium, {n:,} snapshots", median(drawn), None, "-",
               "<= 5 s", None, note=f"{out.stat().st_size / 1e6:.1f} MB page")
    page.passed = median(drawn) <= 5.0
    return [*rows, page]

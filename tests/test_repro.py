"""`mlsnap repro`: real trainings re-run in a temporary worktree, compared with their snapshot."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import mlsnap
from tests.helpers import git, make_project, tree_digest, venv, wheel
from tests.helpers import mlsnap as cli

SKLEARN_TRAIN = """\
import json, pickle, sys
import numpy as np
from sklearn.linear_model import RidgeClassifier
data = np.loadtxt("data/digits.csv", delimiter=",")
X, y = data[:, :-1], data[:, -1].astype(int)
C = float(open("params.yaml").read().split(":")[1])
clf = RidgeClassifier(alpha=1 / C).fit(X[:1400], y[:1400])
print("trained, C =", C)
pickle.dump(clf, open("model.pkl", "wb"))
json.dump({"accuracy": clf.score(X[1400:], y[1400:])}, open("metrics.json", "w"))
"""

TORCH_TRAIN = """\
import json
import numpy as np
import torch
torch.manual_seed(0)
torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)
data = np.loadtxt("data/digits.csv", delimiter=",")
X = torch.tensor(data[:, :-1] / 16.0, dtype=torch.float32)
y = torch.tensor(data[:, -1], dtype=torch.long)
model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for epoch in range(30):
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(X[:1400]), y[:1400])
    loss.backward()
    opt.step()
acc = (model(X[1400:]).argmax(1) == y[1400:]).float().mean().item()
torch.save(model.state_dict(), "model.pt")
json.dump({"accuracy": acc, "loss": loss.item()}, open("metrics.json", "w"))
"""

UNSEEDED = """\
import json, random
weights = [random.random() for _ in range(100)]
open("model.bin", "w").write(repr(weights))
json.dump({"accuracy": round(0.9 + weights[0] * 1e-6, 9)}, open("metrics.json", "w"))
"""


def digits_project(tmp_path: Path, script: str, name: str = "train.py") -> Path:
    """A project whose input is scikit-learn's bundled digits, written as data/digits.csv."""
    np = pytest.importorskip("numpy")
    from sklearn.datasets import load_digits

    root = make_project(tmp_path / "proj", tmp_path / "remote", init=False)
    X, y = load_digits(return_X_y=True)
    np.savetxt(root / "data" / "digits.csv", np.column_stack([X, y]), delimiter=",", fmt="%g")
    (root / "params.yaml").write_text("C: 0.5\n")
    (root / name).write_text(script)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "digits training")
    cli(root, "init", "--remote", str(tmp_path / "remote"))
    return root


def sklearn_run(root: Path, *extra: str) -> None:
    cli(root, "run", "-o", "model.pkl", "--data", "data/digits.csv", "--params", "params.yaml",
        "--metrics", "metrics.json", *extra, "--", sys.executable, "train.py")


def untouched(root: Path) -> tuple[str, str, str, dict[str, str]]:
    return (git(root, "rev-parse", "HEAD"), git(root, "symbolic-ref", "HEAD"),
            git(root, "status", "--porcelain", "--ignored"), tree_digest(root))


def worktrees(root: Path) -> int:
    return git(root, "worktree", "list", "--porcelain").count("worktree ")


def test_sklearn_digits_reproduces_byte_exact(tmp_path: Path) -> None:
    root = digits_project(tmp_path, SKLEARN_TRAIN)
    sklearn_run(root, "-M", "baseline")
    before = untouched(root)
    proc = cli(root, "repro")
    assert "trained, C = 0.5" in proc.stdout  # the command's output, streamed
    assert "model.pkl" in proc.stdout and "identical" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("verdict: reproduced")
    assert untouched(root) == before
    assert worktrees(root) == 1

    cert = json.loads(cli(root, "repro", "--json").stdout)
    assert {"verdict", "rev", "artifacts", "metrics", "environment", "duration_s"} <= set(cert)
    assert cert["verdict"] == "reproduced" and cert["rev"] == "HEAD"
    assert cert["artifacts"] == [{"path": "model.pkl", "recorded": cert["artifacts"][0]["recorded"],
                                  "reproduced": cert["artifacts"][0]["recorded"],
                                  "result": "identical"}]
    assert [m["result"] for m in cert["metrics"]] == ["equal"]
    assert cert["environment"]["drift"]["changed"] == {}


def test_repro_of_an_older_snapshot_while_head_is_elsewhere(tmp_path: Path) -> None:
    root = digits_project(tmp_path, SKLEARN_TRAIN)
    sklearn_run(root, "-M", "C 0.5")
    first = git(root, "rev-parse", "HEAD")
    first_model = json.loads(cli(root, "show", "--json").stdout)["artifacts"][0]["md5"]
    (root / "params.yaml").write_text("C: 0.05\n")
    (root / "train.py").write_text(SKLEARN_TRAIN.replace("alpha=1 / C", "alpha=2 / C"))
    git(root, "commit", "-qam", "new code, new C")
    sklearn_run(root, "-M", "C 0.05")
    git(root, "commit", "-q", "--allow-empty", "-m", "later work")
    before = untouched(root)
    cert = json.loads(cli(root, "repro", first, "--json").stdout)
    assert cert["verdict"] == "reproduced"
    assert cert["artifacts"][0]["reproduced"] == first_model  # the old code and old params
    assert untouched(root) == before
    assert worktrees(root) == 1


def test_unseeded_randomness_differs_naming_the_artifact(tmp_path: Path) -> None:
    root = digits_project(tmp_path, UNSEEDED)
    cli(root, "run", "-o", "model.bin", "--metrics", "metrics.json", "--", sys.executable,
        "train.py")
    proc = cli(root, "repro", check=3)
    lines = proc.stdout.splitlines()
    assert any(line.split()[:1] == ["model.bin"] and line.split()[-1] == "differs"
               for line in lines)
    assert any(line.split()[:1] == ["accuracy"] and line.split()[-1] == "differs"
               for line in lines)
    assert lines[-1].startswith("verdict: differs")
    # the same bytes-different run, with metrics inside a tolerance the user states
    within = json.loads(cli(root, "repro", "--atol", "1e-5", "--json").stdout)
    assert within["verdict"] == "within-tolerance"
    assert within["artifacts"][0]["result"] == "differs"
    assert within["metrics"][0]["result"] == "within-tolerance"


def test_dirty_code_snapshot_reproduces_from_its_patch(tmp_path: Path) -> None:
    root = digits_project(tmp_path, SKLEARN_TRAIN)
    (root / "train.py").write_text(SKLEARN_TRAIN.replace("alpha=1 / C", "alpha=10 / C"))
    sklearn_run(root, "--allow-dirty")
    dirty_model = json.loads(cli(root, "show", "--json").stdout)["artifacts"][0]["md5"]
    git(root, "checkout", "--", "train.py")  # the edit is gone from the work tree
    cert = json.loads(cli(root, "repro", "--json").stdout)
    assert cert["verdict"] == "reproduced"  # alpha=10 / C came back from the recorded patch
    assert cert["artifacts"][0]["reproduced"] == dirty_model


def test_command_that_fails_on_rerun_is_failed(tmp_path: Path) -> None:
    root = digits_project(tmp_path, SKLEARN_TRAIN)
    (root / "extra.txt").write_text("read but never recorded\n")  # untracked, not --data
    (root / "needs.py").write_text(
        "import json\nopen('extra.txt').read()\nopen('model.pkl', 'w').write('m')\n")
    git(root, "add", "needs.py")
    git(root, "commit", "-qm", "needs an unrecorded file")
    cli(root, "run", "-o", "model.pkl", "--", sys.executable, "needs.py")
    proc = cli(root, "repro", check=1)
    assert "FileNotFoundError" in proc.stderr  # the command's own error, streamed
    assert proc.stdout.strip().splitlines()[-1].startswith(
        "verdict: failed: `") and "exited with code 1" in proc.stdout
    assert worktrees(root) == 1


def test_snapshot_without_a_recorded_command_is_failed(project: Path) -> None:
    subprocess.run([sys.executable, "train.py"], cwd=project, check=True)
    cli(project, "commit", "model.pkl", "--no-push")
    cert = json.loads(cli(project, "repro", "--json", check=1).stdout)
    assert cert["verdict"] == "failed" and "no recorded command" in cert["reason"]
    assert "run" not in json.loads(cli(project, "show", "--json").stdout)  # still valid


def test_keep_leaves_the_worktree_and_prints_it(tmp_path: Path) -> None:
    root = digits_project(tmp_path, UNSEEDED)
    cli(root, "run", "-o", "model.bin", "--", sys.executable, "train.py")
    cert = json.loads(cli(root, "repro", "--keep", "--json", check=3).stdout)
    kept = Path(cert["worktree"])
    assert (kept / "model.bin").is_file() and worktrees(root) == 2
    git(root, "worktree", "remove", "--force", str(kept))
    kept.parent.rmdir()  # the temporary folder it was made in: empty once the worktree is gone


def test_ctrl_c_during_repro_removes_the_worktree(tmp_path: Path) -> None:
    root = digits_project(tmp_path, "")
    marker = tmp_path / "started"
    (root / "train.py").write_text(
        "import os, sys, time\n"
        "if os.environ.get('REPRO_MARKER'):\n"
        "    open(os.environ['REPRO_MARKER'], 'w').write(os.getcwd())\n"
        "    for _ in range(600):\n        time.sleep(0.1)\n"
        "open('model.bin', 'w').write('m')\n")
    git(root, "commit", "-qam", "slow on rerun")
    cli(root, "run", "-o", "model.bin", "--", sys.executable, "train.py")
    proc = subprocess.Popen([sys.executable, "-m", "mlsnap", "repro"], cwd=root, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "REPRO_MARKER": str(marker)})
    for _ in range(600):
        if marker.exists() and marker.read_text():
            break
        assert proc.poll() is None, proc.communicate()
        subprocess.run(["sleep", "0.05"], check=True)
    where = Path(marker.read_text())
    assert where.exists() and where != root
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("interrupted: `mlsnap repro")
    assert not where.exists() and worktrees(root) == 1


def test_hostile_run_record_is_refused(project: Path) -> None:
    subprocess.run([sys.executable, "train.py"], cwd=project, check=True)
    cli(project, "commit", "model.pkl", "--no-push")
    path = project / ".mlsnap" / "model.yaml"
    path.write_text(path.read_text() + "run: {cmd: [sh, -c, 'true'], cwd: ../.., exit_code: 0,"
                    " started: x, duration_s: 1}\n")
    git(project, "commit", "-qam", "a run record leading out of the repository")
    proc = cli(project, "repro", check=1)
    assert "invalid manifest: run.cwd" in proc.stderr and "Traceback" not in proc.stderr


def test_python_api_returns_the_certificate(tmp_path: Path) -> None:
    root = digits_project(tmp_path, SKLEARN_TRAIN)
    sklearn_run(root)
    cert = mlsnap.repro(repo=root)
    assert cert.verdict == "reproduced" and cert.to_dict()["verdict"] == "reproduced"
    with pytest.raises(AttributeError):
        cert.verdict = "differs"  # type: ignore[misc]


@pytest.mark.torch
def test_torch_cpu_training_with_fixed_seeds_reproduces(tmp_path: Path) -> None:
    if os.environ.get("MLSNAP_REQUIRE_TORCH") != "1":  # CI installs torch: a skip is a failure
        pytest.importorskip("torch")
    root = digits_project(tmp_path, TORCH_TRAIN)
    cli(root, "run", "-o", "model.pt", "--data", "data/digits.csv", "--metrics", "metrics.json",
        "--", sys.executable, "train.py")
    imported = json.loads(cli(root, "show", "--json").stdout)["environment"]["imported"]
    assert "torch" in imported and "numpy" in imported
    cert = json.loads(cli(root, "repro", "--json").stdout)
    assert cert["verdict"] == "reproduced", cert
    assert [m["result"] for m in cert["metrics"]] == ["equal", "equal"]


@pytest.mark.slow  # four pip runs: CI runs it with -m slow
def test_env_rebuild_from_a_local_index_names_what_cannot_be_installed(tmp_path: Path) -> None:
    index = tmp_path / "index"
    elsewhere = tmp_path / "elsewhere"
    index.mkdir()
    elsewhere.mkdir()
    trained_in = venv(tmp_path / "train-env", wheel(index, "alpha-lib", "1.0"),
                      wheel(index, "beta-lib", "2.0"), wheel(elsewhere, "gamma-lib", "3.0"))
    root = make_project(tmp_path / "proj", tmp_path / "remote")
    (root / "fit.py").write_text("import alpha_lib, beta_lib\n"
                                 "open('model.bin', 'w').write(repr(alpha_lib.VALUE * 7))\n")
    git(root, "add", "fit.py")
    git(root, "commit", "-qm", "fit")
    cli(root, "run", "-o", "model.bin", "--", str(trained_in), "fit.py")
    recorded = json.loads(cli(root, "show", "--json").stdout)["environment"]
    assert {"alpha-lib", "beta-lib", "gamma-lib"} <= set(recorded["packages"])
    assert {"alpha-lib", "beta-lib"} <= set(recorded["imported"])
    subprocess.run(["rm", "-rf", str(tmp_path / "train-env")], check=True)  # gone for good

    pip_env = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(index), "PIP_CONSTRAINT": ""}
    proc = cli(root, "repro", "--env", "rebuild", env=pip_env)
    assert "rebuilt environment:" in proc.stdout and "gamma-lib==3.0" in proc.stdout
    cert = json.loads(cli(root, "repro", "--env", "rebuild", "--json", env=pip_env).stdout)
    assert cert["verdict"] == "reproduced"
    rebuilt = cert["environment"]["rebuilt"]
    assert rebuilt["installed"] >= 2
    assert [f.split(":")[0] for f in rebuilt["failed"]] == ["gamma-lib==3.0"]
    assert cert["environment"]["drift"]["missing"] == {"gamma-lib": "3.0"}

"""The Checkpointer: retention, atomic saves under kill -9, resume, snapshots of the folder."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from mlsnap import store
from mlsnap.checkpoint import (
    INDEX_NAME,
    Checkpoint,
    Checkpointer,
    CheckpointFailed,
    CheckpointIndexInvalid,
)
from mlsnap.errors import BadInput
from mlsnap.fsutil import TMP_PREFIX
from tests.helpers import git, mlsnap, sha256

# One metric per step 1..10, no ties: the best under "min" is step 7, under "max" step 4.
LOSSES = {1: 0.9, 2: 0.5, 3: 0.8, 4: 0.95, 5: 0.3, 6: 0.6, 7: 0.1, 8: 0.7, 9: 0.4, 10: 0.85}


def pickle_fn(value: object):
    def save(path: Path) -> None:
        with open(path, "wb") as f:
            pickle.dump(value, f)
    return save


def run_steps(ckpt: Checkpointer, steps: range | list[int]) -> None:
    for step in steps:
        ckpt.save(step, pickle_fn({"step": step}), {"val_loss": LOSSES[step], "epoch": step})


def on_disk(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()} - {INDEX_NAME}


def indexed(directory: Path) -> list[int]:
    doc = yaml.safe_load((directory / INDEX_NAME).read_text())
    return [e["step"] for e in doc["checkpoints"]]


def expected_kept(keep_last: int | None, keep_best: int, mode: str) -> list[int]:
    steps = sorted(LOSSES)
    if keep_last is None:
        return steps
    ranked = sorted(steps, key=lambda s: LOSSES[s] if mode == "min" else -LOSSES[s])
    return sorted(set(steps[len(steps) - keep_last:] if keep_last else []) | set(ranked[:keep_best]))


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("keep_best", [0, 1, 2])
@pytest.mark.parametrize("keep_last", [None, 0, 1, 3])
def test_retention_keeps_exactly_the_union_of_last_and_best(
        tmp_path: Path, keep_last: int | None, keep_best: int, mode: str) -> None:
    if keep_last == 0 and keep_best == 0:
        with pytest.raises(BadInput, match="would keep nothing"):
            Checkpointer(tmp_path / "ckpt", keep_last=0, keep_best=0)
        return
    directory = tmp_path / "ckpt"
    ckpt = Checkpointer(directory, keep_last=keep_last, keep_best=keep_best, mode=mode)
    run_steps(ckpt, range(1, 11))

    want = expected_kept(keep_last, keep_best, mode)
    assert indexed(directory) == want
    assert on_disk(directory) == {c.name for c in ckpt.checkpoints()}
    assert [c.step for c in ckpt.checkpoints()] == want
    assert ckpt.latest() is not None and ckpt.latest().step == max(want)
    in_order = sorted(want, key=lambda s: LOSSES[s] if mode == "min" else -LOSSES[s])
    assert ckpt.best() is not None and ckpt.best().step == in_order[0]
    for c in ckpt.checkpoints():  # every kept file holds what its step saved
        assert pickle.loads(c.path.read_bytes()) == {"step": c.step}
        assert c.metrics == {"val_loss": LOSSES[c.step], "epoch": c.step}


def test_only_due_steps_are_saved_and_force_saves_any(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path / "ckpt", every=4, keep_last=None)
    saved = [s for s in range(1, 11) if ckpt.save(s, pickle_fn(s), {"val_loss": LOSSES[s]})]
    assert saved == [4, 8]
    last = ckpt.save(10, pickle_fn(10), {"val_loss": 0.85}, force=True)
    assert last is not None and last.step == 10
    assert [c.step for c in ckpt.checkpoints()] == [4, 8, 10]


def test_names_carry_step_and_utc_time(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path / "ckpt", suffix=".pkl")
    saved = ckpt.save(120, pickle_fn(1), {"val_loss": 1.0})
    assert saved is not None
    stamp = saved.time.replace("-", "").replace(":", "")
    assert saved.name == f"step-000120-{stamp}.pkl"
    assert saved.path.is_file() and saved.path.parent == (tmp_path / "ckpt").resolve()


def test_hashes_match_dvc_for_a_file_and_a_folder(project: Path) -> None:
    ckpt = Checkpointer(project / "ckpt", keep_last=None)

    def save_folder(path: Path) -> None:  # the shape of save_pretrained / orbax
        (path / "sub").mkdir(parents=True)
        (path / "weights.bin").write_bytes(os.urandom(3000))
        (path / "sub" / "config.json").write_text('{"layers": 2}')

    one = ckpt.save(1, pickle_fn(list(range(100))), {"val_loss": 1.0})
    two = ckpt.save(2, save_folder, {"val_loss": 0.5})
    assert one is not None and two is not None
    assert (two.nfiles, two.size) == (2, 3000 + len('{"layers": 2}'))
    with store.open_repo(project) as repo:
        assert store.workspace_hash(repo, f"ckpt/{one.name}") == one.md5
        assert store.workspace_hash(repo, f"ckpt/{two.name}") == two.md5
    assert two.md5.endswith(".dir")
    assert ckpt.resume() == two


def test_saving_a_step_again_replaces_it(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path / "ckpt", keep_last=5)
    run_steps(ckpt, [1, 2, 3])
    again = ckpt.save(3, pickle_fn("again"), {"val_loss": 0.2})
    assert again is not None
    assert [c.step for c in ckpt.checkpoints()] == [1, 2, 3]
    assert pickle.loads(ckpt.latest().path.read_bytes()) == "again"
    assert len(on_disk(tmp_path / "ckpt")) == 3


def test_keep_best_only_skips_a_checkpoint_that_is_not_better(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path / "ckpt", keep_last=0, keep_best=1)
    assert ckpt.save(1, pickle_fn(1), {"val_loss": 0.5}) is not None
    assert ckpt.save(2, pickle_fn(2), {"val_loss": 0.7}) is None
    assert [c.step for c in ckpt.checkpoints()] == [1]
    assert len(on_disk(tmp_path / "ckpt")) == 1


def test_equal_metrics_keep_the_earlier_checkpoint_as_best(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path / "ckpt", keep_last=1, keep_best=1, mode="max",
                        monitor="acc")
    for step in (1, 2, 3):
        ckpt.save(step, pickle_fn(step), {"acc": 0.9 if step < 3 else 0.5})
    assert [c.step for c in ckpt.checkpoints()] == [1, 3]
    assert ckpt.best().step == 1


def test_metrics_accept_numpy_scalars_and_need_the_monitored_one(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    ckpt = Checkpointer(tmp_path / "ckpt", keep_best=1)
    saved = ckpt.save(1, pickle_fn(1), {"val_loss": np.float32(0.25), "n": np.int64(3)})
    assert saved is not None and saved.metrics == {"val_loss": 0.25, "n": 3}
    assert type(saved.metrics["val_loss"]) is float
    with pytest.raises(BadInput, match="lack a number for 'val_loss'"):
        ckpt.save(2, pickle_fn(2), {"loss": 0.1})
    with pytest.raises(BadInput, match="is not a number"):
        ckpt.save(3, pickle_fn(3), {"val_loss": 0.1, "bad": object()})
    assert [c.step for c in ckpt.checkpoints()] == [1]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"every": 0}, "every=0"),
    ({"keep_last": -1}, "keep_last=-1"),
    ({"mode": "lowest"}, "choose 'min'"),
    ({"suffix": "/x"}, "use an extension"),
    ({"snapshot_every": 0}, "snapshot_every=0"),
])
def test_bad_settings_are_refused_clearly(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        Checkpointer(tmp_path / "ckpt", **kwargs)


def test_a_failing_save_fn_leaves_nothing_behind(tmp_path: Path) -> None:
    directory = tmp_path / "ckpt"
    ckpt = Checkpointer(directory)
    run_steps(ckpt, [1])

    def half_then_fail(path: Path) -> None:
        path.write_bytes(b"partial")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        ckpt.save(2, half_then_fail, {"val_loss": 0.1})
    with pytest.raises(CheckpointFailed, match="save_fn wrote nothing"):
        ckpt.save(3, lambda path: None, {"val_loss": 0.1})
    assert [c.step for c in ckpt.checkpoints()] == [1]
    assert len(on_disk(directory)) == 1


def test_latest_skips_a_truncated_file_and_resume_skips_a_corrupt_one(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path / "ckpt", keep_last=3)
    run_steps(ckpt, [1, 2, 3])
    newest = ckpt.latest()
    assert newest is not None and newest.step == 3
    data = newest.path.read_bytes()
    newest.path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # same size, other bytes
    assert ckpt.latest().step == 3  # the cheap check cannot see it
    assert ckpt.resume().step == 2  # the full check can
    newest.path.write_bytes(data[:5])
    assert ckpt.latest().step == 2
    assert ckpt.resume(which="best").step == 2  # 0.5 beats 0.9; step 3 no longer counts


def test_an_invalid_index_names_the_file(tmp_path: Path) -> None:
    directory = tmp_path / "ckpt"
    directory.mkdir()
    (directory / INDEX_NAME).write_text("mlsnap-checkpoints: 1\ncheckpoints:\n- name: ../../etc\n")
    with pytest.raises(CheckpointIndexInvalid, match=r"index.yaml: invalid checkpoint index"):
        Checkpointer(directory).latest()
    (directory / INDEX_NAME).write_text("mlsnap-checkpoints: 9\n")
    with pytest.raises(CheckpointIndexInvalid, match="newer mlsnap"):
        Checkpointer(directory).latest()
    (directory / INDEX_NAME).write_text("!!python/object:os.system [ls]\n")
    with pytest.raises(CheckpointIndexInvalid, match="not valid YAML"):
        Checkpointer(directory).latest()


CRASH_SCRIPT = textwrap.dedent("""\
    import os, pickle, sys
    from mlsnap import Checkpointer

    ckpt = Checkpointer(sys.argv[1], keep_last=2)
    for step in (1, 2, 3):
        if step == 3:
            os.environ["MLSNAP_FAULT_AT"] = sys.argv[2]
        ckpt.save(step, lambda p: p.write_bytes(pickle.dumps(step) * 1000), {"val_loss": 1 / step})
    print("finished")
""")


@pytest.mark.parametrize(("fault", "latest_step"), [
    ("checkpoint-written", 2),         # the bytes are durable under a temporary name
    ("checkpoint-before-rename", 2),   # the index already names it pending
    ("checkpoint-after-rename", 2),    # final name in place, index not updated yet
    ("checkpoint-index-temp", 2),      # the new index is written but not renamed
    ("checkpoint-before-delete", 3),   # new index in place; step 1 not yet deleted
])
def test_kill_during_a_save_never_exposes_a_partial_checkpoint(
        tmp_path: Path, fault: str, latest_step: int) -> None:
    directory = tmp_path / "ckpt"
    script = tmp_path / "crash.py"
    script.write_text(CRASH_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(directory), fault],
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "finished" not in proc.stdout

    ckpt = Checkpointer(directory, keep_last=2)
    latest = ckpt.latest()
    assert latest is not None and latest.step == latest_step
    assert ckpt.resume() == latest
    assert pickle.loads(latest.path.read_bytes()[:len(pickle.dumps(latest_step))]) == latest_step
    leftovers = on_disk(directory) - {c.name for c in ckpt.checkpoints()}
    assert leftovers, "the crash should have left something to clean up"

    ckpt.save(4, pickle_fn(4), {"val_loss": 0.25})  # the next save clears what the kill left
    assert on_disk(directory) == {c.name for c in ckpt.checkpoints()}
    assert not any(n.startswith(TMP_PREFIX) for n in os.listdir(directory))
    assert [c.step for c in ckpt.checkpoints()] == [latest_step, 4]


def test_a_reader_never_deletes_what_a_writer_has_in_flight(tmp_path: Path) -> None:
    directory = tmp_path / "ckpt"
    run_steps(Checkpointer(directory), [1])
    in_flight = directory / f"{TMP_PREFIX}123-step-000002-20261123T101502Z"
    in_flight.write_bytes(b"being written")
    reader = Checkpointer(directory)
    assert reader.latest().step == 1 and reader.best().step == 1
    assert in_flight.exists()


def test_snapshots_at_chosen_moments_then_resume_in_a_fresh_clone(
        project: Path, tmp_path: Path) -> None:
    before = int(git(project, "rev-list", "--count", "HEAD"))
    directory = project / "runs" / "one" / "checkpoints"  # none of these folders exist yet
    with Checkpointer(directory, every=2, keep_last=2, keep_best=1, snapshot=True,
                      snapshot_every=3, message="training run") as ckpt:
        run_steps(ckpt, range(1, 11))  # five saves: one commit after the third
        assert int(git(project, "rev-list", "--count", "HEAD")) == before + 1
    # The end of the `with` block records the last two saves.
    assert int(git(project, "rev-list", "--count", "HEAD")) == before + 2
    kept = {c.name: sha256(c.path) for c in ckpt.checkpoints()}
    assert [c.step for c in ckpt.checkpoints()] == [2, 8, 10]  # 2 is the best (0.5)
    shown = mlsnap(project, "show", "--name", "checkpoints", "--json").stdout
    assert '"step": 10' in shown and '"val_loss": 0.85' in shown
    with Checkpointer(directory, snapshot=True):
        pass  # nothing new was saved: no empty commit
    assert int(git(project, "rev-list", "--count", "HEAD")) == before + 2

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    mlsnap(clone, "pull")
    fresh = Checkpointer(clone / "runs" / "one" / "checkpoints", every=2, keep_last=2, keep_best=1)
    resumed = fresh.resume()
    assert isinstance(resumed, Checkpoint) and resumed.step == 10
    assert pickle.loads(resumed.path.read_bytes()) == {"step": 10}
    assert {c.name: sha256(c.path) for c in fresh.checkpoints()} == kept
    assert fresh.resume(which="best").step == 2


def test_the_plain_example_runs_and_resumes(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "train_plain.py"
    first = subprocess.run([sys.executable, str(example)], cwd=tmp_path, capture_output=True,
                           text=True, check=True)
    assert "kept:   [30, 40, 50]" in first.stdout
    assert "{'val_loss': 0.0}" in first.stdout  # the best, step 30
    second = subprocess.run([sys.executable, str(example)], cwd=tmp_path, capture_output=True,
                            text=True, check=True)
    assert "resumed from step-000050-" in second.stdout
    assert "kept:   [30, 40, 50]" in second.stdout


def test_steps_may_be_numpy_integers_but_not_negative_or_fractional(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    ckpt = Checkpointer(tmp_path / "ckpt")
    saved = ckpt.save(np.int64(7), pickle_fn(7), {"val_loss": 0.1})
    assert saved is not None and saved.step == 7 and type(saved.step) is int
    for bad in (-1, 2.0, True, "3"):
        with pytest.raises(BadInput, match="non-negative integer"):
            ckpt.save(bad, pickle_fn(0), {"val_loss": 0.1})


def test_snapshot_outside_an_initialized_repo_fails_before_training(tmp_path: Path) -> None:
    from mlsnap.errors import NotAGitRepo, NotInitialized

    with pytest.raises(NotAGitRepo):
        Checkpointer(tmp_path / "ckpt", snapshot=True)
    git(tmp_path, "init", "-q")
    with pytest.raises(NotInitialized, match="mlsnap init"):
        Checkpointer(tmp_path / "ckpt", snapshot=True)
    assert not (tmp_path / "ckpt").exists()


def test_a_snapshot_that_fails_mid_training_warns_and_training_goes_on(project: Path) -> None:
    from mlsnap.errors import DirtyWorktree

    before = git(project, "rev-parse", "HEAD")
    (project / "train.py").write_text("# edited while training\n")
    ckpt = Checkpointer(project / "checkpoints", snapshot=True, snapshot_every=1)
    with pytest.warns(RuntimeWarning, match="not taken, training goes on: tracked code"):
        saved = ckpt.save(1, pickle_fn(1), {"val_loss": 0.5})
    assert saved is not None and ckpt.latest() == saved
    assert git(project, "rev-parse", "HEAD") == before
    with pytest.raises(DirtyWorktree):  # the end of training says it plainly
        ckpt.close()
    git(project, "checkout", "--", "train.py")
    ckpt.close()  # the retry records what was saved
    assert git(project, "rev-parse", "HEAD") != before


def test_a_killed_save_leaves_nothing_once_any_mlsnap_command_runs(project: Path) -> None:
    """A training killed (SIGKILL) in the middle of a save: the partial checkpoint is cleared
    by the repository's next mlsnap command, `status` included, not only by the next save."""
    script = project / "train_kill.py"
    script.write_text(
        "import os, signal\n"
        "from mlsnap import Checkpointer\n"
        "def half(path):\n"
        "    open(path, 'wb').write(b'half a checkpoint')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "Checkpointer('ckpts', snapshot=False).save(1, half)\n")
    proc = subprocess.run([sys.executable, str(script)], cwd=project, check=False, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert [p.name for p in (project / "ckpts").iterdir() if p.name.startswith(".mlsnap-tmp-")]
    mlsnap(project, "log", check=None)
    assert not [p.name for p in (project / "ckpts").iterdir() if p.name.startswith(".mlsnap-tmp-")]
    assert not (project / ".git" / "mlsnap-writers").exists()

"""A real PyTorch (CPU) training loop killed with SIGKILL and resumed reaches the same weights."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mlsnap import Checkpointer

if os.environ.get("MLSNAP_REQUIRE_TORCH") == "1":  # CI installs torch: a skip there is a failure
    import torch
else:
    torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_torch.py"
STEPS = "40"


def train_here(out: Path) -> None:
    """The uninterrupted reference run, in this process (torch is already imported here)."""
    spec = importlib.util.spec_from_file_location("train_torch_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        assert module.main(["--steps", STEPS, "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)


def train(out: Path, *extra: str, env: dict[str, str] | None = None,
          check: int = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, str(EXAMPLE), "--steps", STEPS, "--out", str(out),
                           *extra], capture_output=True, text=True, check=False, timeout=300,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == check, proc.stdout + proc.stderr
    return proc


def kill_when_paused(out: Path, pause_at: int) -> str:
    """Run the example until it reports ``pause_at`` (it then waits on stdin), then SIGKILL it."""
    child = subprocess.Popen([sys.executable, str(EXAMPLE), "--steps", STEPS, "--out", str(out),
                              "--pause-at", str(pause_at)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None
    seen = []
    for line in child.stdout:
        seen.append(line)
        if line.startswith(f"paused at {pause_at}"):
            child.send_signal(signal.SIGKILL)
            break
    child.communicate(timeout=120)
    assert child.returncode == -signal.SIGKILL, "".join(seen)
    return "".join(seen)


def last_state(out: Path) -> dict:
    latest = Checkpointer(out / "checkpoints").latest()
    assert latest is not None
    return torch.load(latest.path, weights_only=True)


def assert_same_tensors(a: object, b: object, where: str = "state") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype, where
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_killed_training_resumes_to_bit_identical_weights(tmp_path: Path) -> None:
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    train_here(straight)

    # Killed between checkpoints: step 23 trained, step 20 is the last checkpoint.
    kill_when_paused(interrupted, 23)
    assert Checkpointer(interrupted / "checkpoints").latest().step == 20
    assert not (interrupted / "final.pt").exists()

    # Resumed, then killed inside its first save (the file is written, not yet renamed).
    second = train(interrupted, env={"MLSNAP_FAULT_AT": "checkpoint-before-rename"},
                   check=-signal.SIGKILL)
    assert "resumed from step-000020-" in second.stdout
    assert Checkpointer(interrupted / "checkpoints").latest().step == 20

    third = train(interrupted)
    assert "resumed from step-000020-" in third.stdout
    assert_same_tensors(torch.load(straight / "final.pt", weights_only=True),
                        torch.load(interrupted / "final.pt", weights_only=True), "weights")
    a, b = last_state(straight), last_state(interrupted)
    assert a["step"] == b["step"] == int(STEPS)
    assert a["optimizer"]["state"], "the optimizer state must be part of the checkpoint"
    assert_same_tensors(a, b, "checkpoint")
    kept = Checkpointer(interrupted / "checkpoints").checkpoints()
    assert [c.step for c in kept] == [c.step for c in Checkpointer(straight / "checkpoints")
                                      .checkpoints()]
    assert sorted(p.name for p in (interrupted / "checkpoints").iterdir()) == sorted(
        [c.name for c in kept] + ["index.yaml"])


def test_the_comparison_sees_a_single_flipped_bit() -> None:
    state = {"w": torch.arange(6, dtype=torch.float32), "opt": {"state": [torch.ones(2)]}}
    other = {"w": state["w"].clone(), "opt": {"state": [torch.ones(2)]}}
    assert_same_tensors(state, other)
    other["opt"]["state"][0].view(torch.int32)[1] ^= 1  # the smallest change a float can take
    with pytest.raises(AssertionError, match=r"opt.state\[0\] differs"):
        assert_same_tensors(state, other)

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


def require(module: str):  # returns the module
    """The framework for an adapter test; CI (MLSNAP_REQUIRE_TORCH=1) installs it, so no skip."""
    if os.environ.get("MLSNAP_REQUIRE_TORCH") == "1":
        return importlib.import_module(module)
    return pytest.importorskip(module)


# Lightning's hints (dataloader workers) and its use of torch APIs newer torch deprecates.
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
def test_lightning_callback_saves_every_n_steps_and_resumes(tmp_path: Path) -> None:
    pl = require("lightning.pytorch")
    from mlsnap.adapters.lightning import MlsnapCheckpoint

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Linear(4, 1)

        def training_step(self, batch: list, batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

        def train_dataloader(self) -> torch.utils.data.DataLoader:
            g = torch.Generator().manual_seed(0)
            data = torch.utils.data.TensorDataset(torch.randn(64, 4, generator=g),
                                                  torch.randn(64, 1, generator=g))
            return torch.utils.data.DataLoader(data, batch_size=8)

    def trainer(max_steps: int, ckpt: Checkpointer) -> object:
        return pl.Trainer(max_steps=max_steps, callbacks=[MlsnapCheckpoint(ckpt)], logger=False,
                          enable_checkpointing=False, enable_progress_bar=False,
                          enable_model_summary=False, accelerator="cpu", devices=1,
                          default_root_dir=tmp_path)

    directory = tmp_path / "ckpt"
    settings = {"every": 4, "keep_last": 2, "keep_best": 1, "monitor": "train_loss",
                "suffix": ".ckpt"}
    ckpt = Checkpointer(directory, **settings)
    trainer(10, ckpt).fit(Tiny())
    steps = [c.step for c in ckpt.checkpoints()]
    assert steps[-2:] == [8, 10] and set(steps) <= {4, 8, 10}  # 10: the end of training
    assert all(isinstance(c.metrics["train_loss"], float) for c in ckpt.checkpoints())

    again = Checkpointer(directory, **settings)
    latest = again.resume()
    assert latest is not None and latest.step == 10
    resumed = trainer(14, again)
    resumed.fit(Tiny(), ckpt_path=latest.path)
    assert resumed.global_step == 14
    assert [c.step for c in again.checkpoints()][-2:] == [12, 14]
    saved = torch.load(again.latest().path, weights_only=False)
    assert saved["global_step"] == 14 and saved["optimizer_states"]


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
def test_keras_callback_saves_each_epoch_and_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_BACKEND", "torch")  # the backend this machine has
    keras = require("keras")
    from mlsnap.adapters.keras import MlsnapKerasCheckpoint
    from mlsnap.errors import BadInput

    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = x @ np.arange(1.0, 5.0, dtype="float32")[:, None]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")

    with pytest.raises(BadInput, match="suffix='.keras'"):
        MlsnapKerasCheckpoint(Checkpointer(tmp_path / "bad"))
    settings = {"every": 1, "keep_last": 1, "keep_best": 1, "suffix": ".keras"}
    ckpt = Checkpointer(tmp_path / "ckpt", **settings)
    model.fit(x, y, validation_split=0.25, epochs=3, verbose=0,
              callbacks=[MlsnapKerasCheckpoint(ckpt)])
    latest = ckpt.latest()
    assert latest is not None and latest.step == 3 and "val_loss" in latest.metrics

    restored = keras.models.load_model(ckpt.resume().path)
    np.testing.assert_array_equal(restored.predict(x, verbose=0), model.predict(x, verbose=0))
    restored.fit(x, y, validation_split=0.25, epochs=5, initial_epoch=latest.step, verbose=0,
                 callbacks=[MlsnapKerasCheckpoint(Checkpointer(tmp_path / "ckpt", **settings))])
    assert ckpt.latest().step == 5

"""Train a tiny PyTorch model with checkpoints every 5 steps; run it again to resume.

    python examples/train_torch.py --steps 60 --out runs/demo

Kill it at any moment (Ctrl-C, kill -9) and run the same command again: it continues from the
latest intact checkpoint and ends with exactly the weights of an uninterrupted run (CPU).
With ``--snapshot`` the kept checkpoints are recorded with ``mlsnap.commit`` at the end (the
script must then run inside an mlsnap-initialized Git repository).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path

import torch

import mlsnap


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The data of one step depends on the step alone, so a resumed run sees the same batches."""
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(32, 8, generator=g)
    y = x @ torch.arange(1.0, 9.0).unsqueeze(1) + 0.1 * torch.randn(32, 1, generator=g)
    return x, y


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--snapshot", action="store_true", help="mlsnap.commit at the end")
    parser.add_argument("--pause-at", type=int, default=-1,
                        help="after this step, wait for a line on stdin (to be killed there)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(1)  # one thread: the same reduction order on every run

    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    ckpt = mlsnap.Checkpointer(Path(args.out) / "checkpoints", every=5, keep_last=2, keep_best=1,
                               monitor="val_loss", mode="min", suffix=".pt",
                               snapshot=args.snapshot, message="tiny regression")
    start = 0
    resumed = ckpt.resume()
    if resumed is not None:
        state = torch.load(resumed.path, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["step"]
        print(f"resumed from {resumed.name}", flush=True)

    val_x, val_y = batch(-1)
    with ckpt:
        for step in range(start + 1, args.steps + 1):
            x, y = batch(step)
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                val_loss = torch.nn.functional.mse_loss(model(val_x), val_y)
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}
            saved = ckpt.save(step, functools.partial(torch.save, state), {"val_loss": val_loss})
            if saved is not None:
                print(f"step {step} val_loss {val_loss.item():.4f} -> {saved.name}", flush=True)
            if step == args.pause_at:
                print(f"paused at {step}", flush=True)
                sys.stdin.readline()
    torch.save(model.state_dict(), Path(args.out) / "final.pt")
    best = ckpt.best()
    print(f"done; best {best.name if best else None}", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    sys.exit(main())

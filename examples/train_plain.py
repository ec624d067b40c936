"""The Checkpointer with nothing but the standard library: run it, kill it, run it again.

    python examples/train_plain.py          # from any folder; checkpoints/ is created there
"""

import pickle
from collections.abc import Callable
from pathlib import Path

import mlsnap


def writer(state: dict) -> Callable[[Path], int]:
    """The save_fn: given a path, write the state there."""
    return lambda path: path.write_bytes(pickle.dumps(state))


ckpt = mlsnap.Checkpointer("checkpoints", every=10, keep_last=2, keep_best=1,
                           monitor="val_loss", mode="min", suffix=".pkl")
resumed = ckpt.resume()
state = pickle.loads(resumed.path.read_bytes()) if resumed else {"step": 0, "w": 0.0}
if resumed:
    print("resumed from", resumed.name)

for step in range(state["step"] + 1, 51):
    state = {"step": step, "w": state["w"] + 0.1}
    val_loss = round(abs(3.0 - state["w"]), 6)  # lowest at step 30
    ckpt.save(step, writer(state), {"val_loss": val_loss})

print("latest:", ckpt.latest().name, ckpt.latest().metrics)
print("best:  ", ckpt.best().name, ckpt.best().metrics)
print("kept:  ", [c.step for c in ckpt.checkpoints()])

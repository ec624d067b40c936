"""RNG states of one process (Python, NumPy, torch CPU and CUDA) as JSON, and back.

``Checkpointer(rng=True)`` writes every rank's states beside a checkpoint (``<name>.rng.json``:
``{"mlsnap-rng": 1, "world_size": N, "ranks": [...]}``) and gives each rank its own back on
resume. JSON, never pickles: the file may come with a clone. torch and NumPy are used only
where the process already has them (a training that never imported torch has no torch state).
"""

from __future__ import annotations

import base64
import importlib
import json
import random
import sys
from pathlib import Path
from typing import Any

from mlsnap.errors import CheckpointIndexInvalid, MlsnapError, one_line

_MAX_BYTES = 64 << 20  # far above any real RNG file (about 16 KB per rank)


def capture() -> dict[str, Any]:
    """This process's Python, NumPy and torch RNG states, as JSON-safe values."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {"python": [version, list(internal), gauss]}
    if _numpy() is not None:
        name, keys, pos, has_gauss, cached = _numpy().random.get_state()
        state["numpy"] = [name, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)]
    torch = sys.modules.get("torch")
    if torch is not None:
        state["torch"] = _b64(torch.get_rng_state())
        if torch.cuda.is_available():
            state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def document(states: list[Any]) -> bytes:
    """The file's bytes for every rank's ``capture()``, in rank order."""
    return json.dumps({"mlsnap-rng": 1, "world_size": len(states), "ranks": states}).encode()


def read(path: Path) -> list[Any]:
    """The per-rank states recorded in ``path`` (checked only for shape: ``apply`` checks each)."""
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read(_MAX_BYTES + 1))
    except (OSError, ValueError) as exc:
        raise CheckpointIndexInvalid(path, f"RNG states unreadable ({one_line(exc)})") from None
    ranks = doc.get("ranks") if isinstance(doc, dict) else None
    if not isinstance(ranks, list) or doc.get("mlsnap-rng") != 1:
        raise CheckpointIndexInvalid(path, "expected 'mlsnap-rng: 1' and a list of 'ranks'")
    return ranks


def apply(path: Path, ranks: list[Any], rank: int) -> None:
    """Set this process's RNGs to rank ``rank``'s recorded states (read from ``path``)."""
    try:
        _set(ranks[rank])
    except (TypeError, ValueError, KeyError, IndexError, MlsnapError) as exc:
        raise CheckpointIndexInvalid(path, f"RNG state of rank {rank} is not valid "
                                     f"({one_line(exc)})") from None


def _set(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(i) for i in internal),
                     None if gauss is None else float(gauss)))
    if "numpy" in state:
        np = _numpy()
        if np is None:
            raise ValueError("it holds a NumPy state and NumPy is not installed")
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((str(name), np.array(keys, dtype=np.uint32), int(pos),
                             int(has_gauss), float(cached)))
    if "torch" in state or "cuda" in state:
        torch = importlib.import_module("torch")
        torch.set_rng_state(_tensor(torch, state["torch"]))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([_tensor(torch, s) for s in state["cuda"]])


def _numpy() -> Any:
    try:
        return importlib.import_module("numpy")
    except ImportError:
        return None


def _b64(tensor: Any) -> str:
    return base64.b64encode(bytes(tensor.tolist())).decode("ascii")


def _tensor(torch: Any, text: str) -> Any:
    return torch.frombuffer(bytearray(base64.b64decode(text, validate=True)), dtype=torch.uint8)

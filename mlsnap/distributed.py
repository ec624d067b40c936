"""Rank awareness for ``mlsnap.Checkpointer``: the same calls on every rank of a distributed job.

The ranks come from ``torch.distributed`` when a process group is initialised, else from the
launcher's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``. torch is never imported here: a process group
exists only in a process that imported torch, so ``sys.modules`` is asked, not the importer.

With a process group every call that decides something is collective and follows one shape:
every rank sends what it knows to every other (an all-gather of small JSON messages, never
pickles), rank 0 acts, and rank 0's answer reaches every rank in a second all-gather. An
all-gather makes rank 0 *receive* from every rank, so a rank that died is noticed there (a send
alone can succeed into a dead peer's socket buffer). Every wait is bounded by the Checkpointer's
``timeout``; a rank that does not answer in time, or whose connection closed, ends the call on
the survivors with ``RankLost``, one line.

- Replicated state (DDP): rank 0 alone calls ``save_fn``, writes the index and prunes; the
  other ranks wait for its answer and return the same ``Checkpoint``.
- Sharded state (``sharded=True``): rank 0 chooses a temporary folder, every rank writes its part
  there (``save_fn(path)`` or DCP's ``save`` of the state dict it was given), and only when every
  rank reported success (DCP's coordinator has then written ``.metadata``, last) does rank 0
  rename the folder into place and list it in the index. A rank killed before that leaves a
  temporary folder the next save removes, never an index entry.
- ``rng=True``: each rank's Python, NumPy and torch (CPU, and CUDA when present) RNG states travel
  to rank 0 in the first all-gather and are written beside the checkpoint
  (``<name>.rng.json``); ``resume()`` gives each rank its own back.

Without a process group the ranks have no channel: rank 0 saves alone and the other ranks'
``save()`` returns None at once (``sharded=True`` needs a process group and says so).
"""

from __future__ import annotations

import datetime
import importlib
import json
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mlsnap import rngstate
from mlsnap.checkpoint_files import dir_hash, hash_share
from mlsnap.errors import BadInput, CheckpointFailed, CheckpointIndexInvalid, RankLost, one_line
from mlsnap.fsutil import fsync_dir, remove_path

if TYPE_CHECKING:
    from mlsnap.checkpoint import Checkpoint, Checkpointer, SaveFn, Slot

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place in the job."""

    rank: int
    world_size: int
    local_rank: int
    group: bool  # a torch.distributed process group carries messages between the ranks

    @property
    def leader(self) -> bool:
        return self.rank == 0

    @property
    def alone(self) -> bool:
        """True when there is nobody to agree with (one rank, or ranks without a channel)."""
        return self.world_size == 1 or not self.group


def _dist() -> Any:
    """``torch.distributed`` if torch is already imported and has it, else None."""
    if "torch" not in sys.modules:
        return None
    dist = importlib.import_module("torch.distributed")
    return dist if dist.is_available() else None


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise BadInput(f"environment variable {name}={raw!r}",
                       "must be a non-negative integer (as torchrun sets it)")
    return value


def world() -> World:
    """The rank, world size and local rank of this process."""
    dist = _dist()
    local = _env_int("LOCAL_RANK", 0)
    if dist is not None and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), local, True)
    rank, size = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
    if size < 1 or rank >= size:
        raise BadInput(f"environment RANK={rank} WORLD_SIZE={size}",
                       "RANK must be below WORLD_SIZE; set both as the launcher does, or neither")
    return World(rank, size, local, False)


def check_config(sharded: bool, timeout: float) -> None:
    if not isinstance(sharded, bool):
        raise BadInput(f"Checkpointer(sharded={sharded!r})", "must be True or False")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise BadInput(f"Checkpointer(timeout={timeout!r})", "must be a number of seconds > 0")


class Channel:
    """Small JSON messages between the ranks of the process group, every wait bounded."""

    def __init__(self, directory: Path, timeout: float) -> None:
        self.directory = directory
        self.timeout = timeout
        dist = _dist()
        self._dist = dist
        self.rank = dist.get_rank()
        # gloo carries CPU tensors; other backends (NCCL) get a gloo group of their own, made on
        # the first collective call, which every rank makes together.
        self._group = None if "gloo" in str(dist.get_backend()) else dist.new_group(backend="gloo")

    def _wait(self, what: str, work: Any) -> None:
        try:
            work.wait(timeout=datetime.timedelta(seconds=self.timeout))
        except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError kinds (DistBackendError)
            raise RankLost(self.directory, what, self.rank, self.timeout, one_line(exc)) from None

    def gather(self, what: str, message: Any) -> list[Any]:
        """Every rank's ``message``, in rank order, on every rank."""
        torch = sys.modules["torch"]
        dist = self._dist
        data = json.dumps(message, separators=(",", ":")).encode()
        size = dist.get_world_size()
        try:
            sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(size)]
            mine = torch.tensor([len(data)], dtype=torch.int64)
            self._wait(what, dist.all_gather(sizes, mine, group=self._group, async_op=True))
            longest = max(int(s.item()) for s in sizes)
            padded = torch.zeros(longest, dtype=torch.uint8)
            padded[:len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
            parts = [torch.empty(longest, dtype=torch.uint8) for _ in range(size)]
            self._wait(what, dist.all_gather(parts, padded, group=self._group, async_op=True))
        except RankLost:
            raise
        except Exception as exc:  # noqa: BLE001 - a dead peer can fail the call, not only the wait
            raise RankLost(self.directory, what, self.rank, self.timeout, one_line(exc)) from None
        return [json.loads(bytes(p[:int(n.item())].tolist())) for p, n in zip(parts, sizes)]

    def from_leader(self, what: str, answer: Any) -> Any:
        """Rank 0's ``answer`` on every rank (the others' arguments are ignored)."""
        return self.gather(what, answer if self.rank == 0 else None)[0]


def _channel(ckpt: Checkpointer) -> Channel:
    if ckpt._channel is None:
        ckpt._channel = Channel(ckpt.directory, ckpt.timeout)
    return ckpt._channel


def _outcome(fn: Callable[[], T]) -> tuple[T | None, Exception | None]:
    """Run ``fn``, keeping its error to tell the other ranks before raising it here."""
    try:
        return fn(), None
    except Exception as exc:  # noqa: BLE001 - every rank must hear of any failure
        return None, exc


def _told(exc: Exception) -> dict[str, Any]:
    return {"error": one_line(exc)}


def _raise_remote(ckpt: Checkpointer, what: str, answer: dict[str, Any], rank: int) -> None:
    raise CheckpointFailed(ckpt.directory, f"{what} failed on rank {rank}: {answer['error']}")


# --- agreeing on a checkpoint ----------------------------------------------------------------


def agree(ckpt: Checkpointer, what: str, decide: Callable[[], Checkpoint | None]
          ) -> Checkpoint | None:
    """``decide()`` on rank 0; its answer on every rank."""
    here = world()
    if here.alone:
        return decide()
    found, error = _outcome(decide) if here.leader else (None, None)
    if error is not None:
        answer: Any = _told(error)
    else:
        answer = {"checkpoint": found.to_dict() if found is not None else None}
    answer = _channel(ckpt).from_leader(what, answer)
    if error is not None:
        raise error
    if "error" in answer:
        _raise_remote(ckpt, what, answer, 0)
    return _checkpoint(ckpt, answer["checkpoint"])


def _checkpoint(ckpt: Checkpointer, doc: dict[str, Any] | None) -> Checkpoint | None:
    from mlsnap.checkpoint_index import entry_from

    return None if doc is None else entry_from(ckpt.index_path, ckpt.directory, 0, doc)


# --- saving ------------------------------------------------------------------------------------


def save(ckpt: Checkpointer, step: int, save_fn: SaveFn | Mapping[str, Any],
         metrics: Mapping[str, Any], rng: bool) -> Checkpoint | None:
    here = world()
    if ckpt.sharded:
        if isinstance(save_fn, Mapping):
            state = save_fn
            save_fn = lambda path: _dcp_call("save", state, path, here.alone)
        if not here.group and here.world_size > 1:
            raise BadInput("Checkpointer(sharded=True)", f"WORLD_SIZE={here.world_size} but no "
                           "torch.distributed process group: call "
                           "torch.distributed.init_process_group() on every rank first")
    if not callable(save_fn):
        raise BadInput(f"save(step={step})", "save_fn must be a function that writes the path "
                       "it is given (a state dict is saved directly only with sharded=True)")
    write: SaveFn = save_fn
    if here.alone:
        if not here.leader:
            return None  # ranks without a process group: rank 0 saves alone
        slot, values = _prepare(ckpt, step, metrics)
        written = ckpt._write(slot.tmp, write)
        if ckpt.sharded and not written[2]:
            remove_path(slot.tmp)
            raise CheckpointFailed(slot.tmp, "save_fn wrote nothing in the folder it was given")
        doc = rngstate.document([rngstate.capture()]) if rng else None
        return ckpt._end(slot, step, values, written, doc)
    return _save_together(ckpt, here, step, write, metrics, rng)


def _save_together(ckpt: Checkpointer, here: World, step: int, write: SaveFn,
                   metrics: Mapping[str, Any], rng: bool) -> Checkpoint | None:
    """One save by every rank: arrive, (sharded: every rank writes its part), rank 0 seals."""
    chan = _channel(ckpt)
    what = f"save(step={step})"
    arrived = chan.gather(what, {"step": step, "rng": rngstate.capture() if rng else None})
    steps = sorted({m["step"] for m in arrived})
    if len(steps) > 1:
        raise BadInput(what, f"the ranks are saving different steps {steps}: call save() with the "
                       "same step on every rank")
    prepared, error = _outcome(lambda: _prepare(ckpt, step, metrics)) if here.leader else (
        None, None)
    slot = prepared[0] if prepared is not None else None
    files: list[tuple[str, str, int]] = []  # sharded: (relpath, md5, size) of every part
    try:
        if ckpt.sharded:
            told = chan.from_leader(what, _told(error) if error else {"tmp": slot and slot.tmp.name})
            if error is not None:
                raise error
            if "error" in told:
                _raise_remote(ckpt, what, told, 0)
            tmp = ckpt.directory / told["tmp"]
            _write_parts(ckpt, chan, what, here, write, tmp)
            files = _hash_parts(ckpt, chan, what, here, tmp)
        elif error is not None:  # replicated: the others are already waiting for the answer
            chan.from_leader(what, _told(error))
            raise error
        if not here.leader:
            answer = chan.from_leader(what, None)
            if "error" in answer:
                _raise_remote(ckpt, what, answer, 0)
            return _checkpoint(ckpt, answer["checkpoint"])
        assert prepared is not None
        slot, values = prepared
        doc = rngstate.document([m["rng"] for m in arrived]) if rng else None
        sealed = slot

        def seal() -> Checkpoint | None:
            if not ckpt.sharded:
                return ckpt._end(sealed, step, values, ckpt._write(sealed.tmp, write), doc)
            if not files:
                raise CheckpointFailed(sealed.tmp, "no rank wrote anything in the folder it was "
                                       "given")
            for parent, _dirs, _files in os.walk(sealed.tmp):
                fsync_dir(Path(parent))
            return ckpt._end(sealed, step, values, dir_hash(files), doc)

        saved, error = _outcome(seal)
        chan.from_leader(what, _told(error) if error else
                         {"checkpoint": saved.to_dict() if saved else None})
        if error is not None:
            raise error
        return saved
    finally:
        if slot is not None:
            remove_path(slot.tmp)  # already renamed into place when the save succeeded


def _prepare(ckpt: Checkpointer, step: int, metrics: Mapping[str, Any]
             ) -> tuple[Slot, dict[str, Any]]:
    values = ckpt._values(step, metrics)
    slot = ckpt._begin(step)
    if ckpt.sharded:
        slot.tmp.mkdir()
    return slot, values


def _write_parts(ckpt: Checkpointer, chan: Channel, what: str, here: World, write: SaveFn,
                 tmp: Path) -> None:
    """Every rank writes its part in the folder rank 0 chose; all must succeed."""
    _done, error = _outcome(lambda: write(tmp))
    reports = chan.gather(what, _told(error) if error else None)
    if error is not None:
        raise error
    for rank, report in enumerate(reports):
        if report is not None:
            _raise_remote(ckpt, what, report, rank)


def _hash_parts(ckpt: Checkpointer, chan: Channel, what: str, here: World, tmp: Path
                ) -> list[tuple[str, str, int]]:
    """Every part is written: each rank fsyncs and hashes its share of the folder, in parallel."""
    share, error = _outcome(lambda: hash_share(tmp, here.rank, here.world_size))
    shares = chan.gather(what, _told(error) if error else share)
    if error is not None:
        raise error
    files = []
    for rank, got in enumerate(shares):
        if isinstance(got, dict):
            _raise_remote(ckpt, what, got, rank)
        files += [(str(rel), str(md5), int(size)) for rel, md5, size in got]
    return files


# --- loading sharded state ---------------------------------------------------------------------


def _dcp() -> Any:
    try:
        return importlib.import_module("torch.distributed.checkpoint")
    except ImportError:
        raise BadInput("Checkpointer(sharded=True)", "needs PyTorch with torch.distributed: "
                       "pip install torch") from None


def _dcp_call(name: str, state: Mapping[str, Any], path: Path, alone: bool) -> None:
    with warnings.catch_warnings():
        if alone:  # DCP warns that one process is "assumed": here it is what was meant
            warnings.filterwarnings("ignore", "torch.distributed is disabled", UserWarning)
        getattr(_dcp(), name)(state, checkpoint_id=str(path), no_dist=alone)


def load(ckpt: Checkpointer, state: Mapping[str, Any], checkpoint: Checkpoint | None
         ) -> Checkpoint:
    found = checkpoint if checkpoint is not None else ckpt.resume()
    if found is None:
        raise CheckpointFailed(ckpt.directory, "load(): there is no checkpoint to load")
    if not (found.path / ".metadata").is_file():
        raise CheckpointIndexInvalid(ckpt.index_path, f"{found.name} is not a DCP checkpoint "
                                     "(no .metadata): load it with the function that wrote it")
    _dcp_call("load", state, found.path, world().alone)
    return found


# --- RNG states (rngstate.py) ------------------------------------------------------------------


def restore_rng(ckpt: Checkpointer, found: Checkpoint) -> None:
    """Give this rank back the RNG states it had when ``found`` was saved."""
    here = world()
    ranks = rngstate.read(found.rng_path)
    if len(ranks) != here.world_size:  # resharded onto another world size: no state to give
        warnings.warn(f"mlsnap: {found.name} holds the RNG states of {len(ranks)} ranks and this "
                      f"job has {here.world_size}: RNG states not restored", RuntimeWarning,
                      stacklevel=3)
        return
    rngstate.apply(found.rng_path, ranks, here.rank)


__all__ = ["Channel", "World", "agree", "load", "restore_rng", "save", "world"]

"""Save throughput of a 1 GiB state on 1 and 2 ranks: the Checkpointer beside bare torch.save/DCP.

Each case saves the same state (float32 tensors of 64 MiB, --gib in all) --runs times into a
fresh folder and reports the median in MB/s of state saved (1 MB = 10^6 bytes):

  1 rank    torch.save + fsync           the bare file write, made durable as the Checkpointer does
  1 rank    Checkpointer.save(torch.save)   plus the md5 of the file (DVC's hash) and the index
  1 rank    DCP save                     torch.distributed.checkpoint without a process group
  1 rank    Checkpointer(sharded=True)   the same, plus hash, rename and index
  2 ranks   DCP save                     each rank writes its half (a Shard(0) DTensor), gloo
  2 ranks   Checkpointer(sharded=True)   the same, every rank calling save()
  2 ranks   Checkpointer.save(torch.save)   replicated: rank 0 writes the whole state

The 2-rank cases run under ``torchrun`` (this file, ``--worker``), on loopback, CPU only.

Usage:  python benchmarks/bench_distributed.py [--gib 1] [--runs 3] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHUNK = 64 << 20  # bytes per tensor


def state(total: int, shard: tuple[int, int] | None = None) -> dict[str, Any]:
    """``total`` bytes of float32 tensors; with ``shard=(rank, world)`` DTensors split by rows."""
    import torch

    tensors = {f"w{i:03d}": torch.full((CHUNK // 4096, 1024), float(i))
               for i in range(total // CHUNK)}
    if shard is None:
        return tensors
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (shard[1],))
    return {k: distribute_tensor(t, mesh, [Shard(0)]) for k, t in tensors.items()}


def timed(runs: int, base: Path, one: Callable[[Path], None], barrier: Callable[[], None]
          ) -> float:
    """Median seconds of ``one(fresh_folder)``, the ranks lined up before each run."""
    times = []
    for n in range(runs):
        folder = base / f"run{n}"
        barrier()
        start = time.perf_counter()
        one(folder)
        barrier()
        times.append(time.perf_counter() - start)
        barrier()
        if os.environ.get("RANK", "0") == "0":
            shutil.rmtree(folder, ignore_errors=True)
    return statistics.median(times)


def torch_save_synced(obj: Any, path: Path) -> None:
    import torch

    torch.save(obj, path)
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def one_rank(total: int, runs: int, base: Path) -> dict[str, float]:
    import importlib
    import warnings

    import mlsnap

    dcp: Any = importlib.import_module("torch.distributed.checkpoint")
    warnings.filterwarnings("ignore", "torch.distributed is disabled")  # one process: meant

    sd = state(total)
    out: dict[str, float] = {}

    def bare(folder: Path) -> None:
        folder.mkdir(parents=True)
        torch_save_synced(sd, folder / "state.pt")

    def dcp_bare(folder: Path) -> None:
        dcp.save(sd, checkpoint_id=str(folder), no_dist=True)

    def ckpt(folder: Path) -> None:
        mlsnap.Checkpointer(folder, keep_last=1, suffix=".pt").save(
            1, lambda p: torch.save(sd, p))

    def ckpt_sharded(folder: Path) -> None:
        mlsnap.Checkpointer(folder, keep_last=1, sharded=True).save(1, sd)

    import torch

    out["1 rank: torch.save + fsync"] = timed(runs, base, bare, lambda: None)
    out["1 rank: Checkpointer.save(torch.save)"] = timed(runs, base, ckpt, lambda: None)
    out["1 rank: DCP save"] = timed(runs, base, dcp_bare, lambda: None)
    out["1 rank: Checkpointer(sharded=True)"] = timed(runs, base, ckpt_sharded, lambda: None)
    return out


def worker(total: int, runs: int, base: Path) -> None:
    """One rank of the 2-rank cases (under torchrun)."""
    import importlib
    import warnings

    import torch
    import torch.distributed as dist

    import mlsnap

    dcp: Any = importlib.import_module("torch.distributed.checkpoint")

    warnings.filterwarnings("ignore")
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=600))
    rank, world = dist.get_rank(), dist.get_world_size()
    sharded = state(total, (rank, world))
    replicated = state(total)
    out: dict[str, float] = {}

    def dcp_bare(folder: Path) -> None:
        dcp.save(sharded, checkpoint_id=str(folder))

    def ckpt_sharded(folder: Path) -> None:
        mlsnap.Checkpointer(folder, keep_last=1, sharded=True, timeout=600).save(1, sharded)

    def ckpt_replicated(folder: Path) -> None:
        mlsnap.Checkpointer(folder, keep_last=1, suffix=".pt", timeout=600).save(
            1, lambda p: torch.save(replicated, p))

    out[f"{world} ranks: DCP save"] = timed(runs, base, dcp_bare, dist.barrier)
    out[f"{world} ranks: Checkpointer(sharded=True)"] = timed(runs, base, ckpt_sharded,
                                                              dist.barrier)
    out[f"{world} ranks: Checkpointer.save(torch.save), rank 0 writes"] = timed(
        runs, base, ckpt_replicated, dist.barrier)
    if rank == 0:
        sys.stdout.write(json.dumps(out) + "\n")
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    total = int(args.gib * (1 << 30)) // CHUNK * CHUNK
    if args.worker:
        worker(total, args.runs, Path(args.base))
        return 0
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    base = Path(tempfile.mkdtemp(prefix="bench-distributed-", dir=args.dir))
    try:
        results = one_rank(total, args.runs, base)
        proc = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
             "--master_addr=127.0.0.1", f"--master_port={free_port()}", __file__, "--worker",
             "--gib", str(args.gib), "--runs", str(args.runs), "--base", str(base)],
            capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-3000:])
            return 1
        results.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"state {total / 1e6:,.0f} MB, median of {args.runs}")
    print("| case | seconds | MB/s |\n| --- | --- | --- |")
    for case, seconds in results.items():
        print(f"| {case} | {seconds:.2f} | {total / 1e6 / seconds:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

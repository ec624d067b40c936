"""Train a tiny model on every rank of a torchrun job with mlsnap checkpoints; run it again to resume.

    torchrun --nproc_per_node=2 examples/train_distributed.py --steps 8 --out runs/ddp
    torchrun --nproc_per_node=2 examples/train_distributed.py --steps 8 --out runs/fsdp --sharded

Replicated (DDP): rank 0 writes each checkpoint. ``--sharded`` splits the parameters across the
ranks (FSDP2 ``fully_shard``) and every rank writes its part with torch.distributed.checkpoint.
Every rank calls ``save()``, ``resume()`` and ``close()`` alike. Each step draws from Python's
``random``, NumPy and torch (shuffling, dropout); ``rng=True`` saves those states, so a run killed
at any moment and started again ends with the weights of an uninterrupted run. Without torchrun
it runs in one process (and resumes a sharded checkpoint of any world size). CPU and gloo only.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

import mlsnap

DATA = 64


def options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--out", default="runs/ddp")
    parser.add_argument("--sharded", action="store_true", help="FSDP2 + DCP: one part per rank")
    parser.add_argument("--keep-last", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds any rank waits for the others (process group and mlsnap)")
    parser.add_argument("--report", action="store_true", help="one JSON line per rank and save")
    parser.add_argument("--die-at", type=int, default=-1, help="(tests) stop at this step ...")
    parser.add_argument("--die-rank", type=int, default=1, help="(tests) ... on this rank ...")
    parser.add_argument("--die-in", choices=["step", "save", "hang"], default="step",
                        help="(tests) ... killed before save(), inside save_fn, or hanging")
    return parser.parse_args(argv)


def say(text: str) -> None:
    """One write per line: the ranks share torchrun's stdout, and lines must not interleave."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 of every tensor's bytes, by name: equal digests are bit-identical weights."""
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    args = options(argv)
    torch.set_num_threads(1)  # one thread: the same reduction order on every run
    if "RANK" in os.environ:
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=args.timeout))
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    try:
        code = train(args, rank, world)
        if dist.is_initialized():
            # Every rank finished before any tears the group down: a rank still inside
            # destroy_process_group while another has left can hang it (pytorch#75097).
            dist.barrier()
        return code
    except mlsnap.MlsnapError as exc:
        print(f"rank {rank}: error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def train(args: argparse.Namespace, rank: int, world: int) -> int:
    torch.manual_seed(0)  # the same initial weights on every rank
    model: Any = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Dropout(0.2),
                                     torch.nn.Tanh(), torch.nn.Linear(32, 1))
    if args.sharded and world > 1:
        from torch.distributed.fsdp import fully_shard

        fully_shard(model)  # each rank holds half of every parameter
    elif world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for seed in (random.seed, np.random.seed, torch.manual_seed):  # each rank its own streams
        seed(100 + rank)
    x = torch.linspace(-1, 1, DATA * 8).reshape(DATA, 8)
    y = x.sum(dim=1, keepdim=True).sin()

    ckpt = mlsnap.Checkpointer(Path(args.out) / "checkpoints", keep_last=args.keep_last,
                               suffix="" if args.sharded else ".pt", sharded=args.sharded,
                               rng=True, timeout=args.timeout, monitor="loss")
    if args.report:
        say(json.dumps({"rank": rank, "pid": os.getpid()}))
    start = 0
    resumed = ckpt.resume()  # rank 0 decides; every rank gets its RNG states back
    if resumed is not None:
        if args.sharded:
            state = {"model": get_model_state_dict(model),
                     "optim": get_optimizer_state_dict(model, optimizer)}
            ckpt.load(state, resumed)  # DCP: resharded to this world size
            set_model_state_dict(model, state["model"])
            set_optimizer_state_dict(model, optimizer, state["optim"])
        else:
            saved = torch.load(resumed.path, weights_only=True)
            getattr(model, "module", model).load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optim"])
        start = resumed.step
        if rank == 0:
            say(f"resumed from {resumed.name}")

    with ckpt:
        for step in range(start + 1, args.steps + 1):
            pick = torch.randperm(DATA)[: 16 * world][rank::world]  # shuffling: torch's RNG
            noise = np.random.normal(0, 0.01, size=(len(pick), 1)) * random.random()
            loss = torch.nn.functional.mse_loss(model(x[pick]), y[pick] + torch.from_numpy(noise))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step == args.die_at and rank == args.die_rank and args.die_in != "save":
                stop(args.die_in)
            saved_ckpt = ckpt.save(step, save_fn(args, model, optimizer, step, rank),
                                   {"loss": round(loss.item(), 6)})
            if args.report:
                say(json.dumps({"rank": rank, "step": step,
                                "saved": saved_ckpt.name if saved_ckpt else None}))
            elif rank == 0 and saved_ckpt is not None:
                say(f"step {step} loss {loss.item():.4f} -> {saved_ckpt.name}")
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    if rank == 0:
        say(f"done at step {args.steps}; weights {digest(full)}")
    return 0


def save_fn(args: argparse.Namespace, model: Any, optimizer: Any, step: int, rank: int) -> Any:
    """What ``save`` writes: a state dict for DCP (sharded), or a function that torch.saves."""
    dying = step == args.die_at and rank == args.die_rank and args.die_in == "save"
    if args.sharded:
        state = {"model": get_model_state_dict(model),
                 "optim": get_optimizer_state_dict(model, optimizer)}
        if not dying:
            return state

        def write_then_die(path: Path) -> None:  # this rank's part is written, then it dies
            import torch.distributed.checkpoint as dcp

            dcp.save(state, checkpoint_id=str(path))
            stop("save")
        return write_then_die

    def write(path: Path) -> None:
        state = {"model": getattr(model, "module", model).state_dict(),
                 "optim": optimizer.state_dict(), "step": step}
        torch.save(state, path)
        if dying:
            stop("save")
    return write


def stop(how: str) -> None:
    say(f"rank {dist.get_rank() if dist.is_initialized() else 0}: stopping ({how})")
    if how == "hang":
        time.sleep(3600)
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())

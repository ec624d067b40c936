"""A Lightning run on 2 CPU processes (gloo) saving through MlsnapCheckpoint; run by
tests/test_distributed.py as ``python tests/lightning_ddp.py OUT MAX_STEPS [ddp|fsdp]``.
Lightning starts the second rank itself by running this script again. ``ddp``: replicated
state, rank 0 writes one file; ``fsdp``: the parameters are split across the ranks
(``FSDPStrategy(state_dict_type="sharded")``) and every rank writes its part of a folder."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from mlsnap import Checkpointer
from mlsnap.adapters.lightning import MlsnapCheckpoint

warnings.filterwarnings("ignore")  # Lightning's hints (dataloader workers, sampler)


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, 1)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss, sync_dist=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)

    def train_dataloader(self) -> torch.utils.data.DataLoader[tuple[torch.Tensor, ...]]:
        g = torch.Generator().manual_seed(0)
        data = torch.utils.data.TensorDataset(torch.randn(64, 4, generator=g),
                                              torch.randn(64, 1, generator=g))
        return torch.utils.data.DataLoader(data, batch_size=8)


class Sharded(Tiny):
    """FSDP2: every parameter split across the data-parallel ranks."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))

    def configure_model(self) -> None:
        from torch.distributed.fsdp import fully_shard

        fully_shard(self.net, mesh=self.device_mesh["data_parallel"])


def main() -> None:
    out, max_steps = Path(sys.argv[1]), int(sys.argv[2])
    sharded = sys.argv[3:4] == ["fsdp"]
    strategy: Any = "ddp"
    if sharded:
        from lightning.pytorch.strategies import ModelParallelStrategy

        strategy = ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1)
    ckpt = Checkpointer(out, every=2, keep_last=2, suffix="" if sharded else ".ckpt",
                        monitor="train_loss", timeout=60, sharded=sharded)
    callback = MlsnapCheckpoint(ckpt)
    trainer = pl.Trainer(max_steps=max_steps, callbacks=[callback], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=2,
                         strategy=strategy, default_root_dir=out.parent)
    latest = ckpt.resume()
    trainer.fit(Sharded() if sharded else Tiny(), ckpt_path=latest.path if latest else None)
    final = ckpt.latest()
    sys.stdout.write(json.dumps({
        "rank": trainer.global_rank, "global_step": trainer.global_step,
        "resumed": latest.name if latest else None,
        "last": callback.last.name if callback.last else None,
        "latest": final.name if final else None}) + "\n")


if __name__ == "__main__":
    main()

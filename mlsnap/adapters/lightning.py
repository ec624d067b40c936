"""A PyTorch Lightning callback that saves through a ``mlsnap.Checkpointer``.

    ckpt = mlsnap.Checkpointer("checkpoints", every=100, keep_last=2, keep_best=1,
                               monitor="val_loss", suffix=".ckpt")
    trainer = Trainer(callbacks=[MlsnapCheckpoint(ckpt)], enable_checkpointing=False)
    latest = ckpt.resume()
    trainer.fit(model, ckpt_path=latest.path if latest else None)

Saves every ``ckpt.every`` optimizer steps (``trainer.global_step``) with
``trainer.save_checkpoint`` (weights, optimizer, loops: everything ``ckpt_path`` resumes), and
once more when training ends. Metrics are ``trainer.callback_metrics``: what ``self.log`` logged.
Single device or DDP (rank 0 writes); with ``Checkpointer(sharded=True)`` every rank writes
its part (FSDP's sharded state dict).
"""

from __future__ import annotations

from typing import Any

try:
    from lightning.pytorch import Callback, LightningModule, Trainer
except ImportError:  # the older package name
    try:
        from pytorch_lightning import Callback, LightningModule, Trainer  # type: ignore[assignment]
    except ImportError:
        raise ImportError("mlsnap.adapters.lightning needs PyTorch Lightning: "
                          "pip install lightning") from None

from mlsnap.checkpoint import Checkpoint, Checkpointer


class MlsnapCheckpoint(Callback):
    def __init__(self, checkpointer: Checkpointer, *, save_on_train_end: bool = True) -> None:
        self.checkpointer = checkpointer
        self.save_on_train_end = save_on_train_end
        self.last: Checkpoint | None = None

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        if self.checkpointer.due(trainer.global_step):
            self._save(trainer, force=False)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        latest = self.checkpointer.latest()
        if self.save_on_train_end and (latest is None or latest.step != trainer.global_step):
            self._save(trainer, force=True)
        if trainer.is_global_zero:
            self.checkpointer.close()  # snapshot=True records the run here

    def _save(self, trainer: Trainer, *, force: bool) -> None:
        step = trainer.global_step
        if step == 0:
            return  # nothing trained yet
        metrics = dict(trainer.callback_metrics)
        if trainer.world_size == 1 or self.checkpointer.sharded:
            # One process, or sharded state (FSDP): every rank writes its part in the folder.
            self.last = self.checkpointer.save(step, trainer.save_checkpoint, metrics, force=force)
            return
        # Replicated (DDP): every rank calls save(); the Checkpointer runs save_fn on rank 0
        # only, so it must not hold save_checkpoint's barrier. The checkpoint is gathered on every
        # rank (some strategies need all for it), then rank 0 writes it as save_checkpoint would.
        checkpoint = trainer._checkpoint_connector.dump_checkpoint(False)
        self.last = self.checkpointer.save(
            step, lambda path: trainer.strategy.save_checkpoint(checkpoint, path), metrics,
            force=force)

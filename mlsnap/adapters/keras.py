"""A Keras 3 callback that saves through a ``mlsnap.Checkpointer`` at the end of epochs.

    ckpt = mlsnap.Checkpointer("checkpoints", every=1, keep_last=2, keep_best=1,
                               monitor="val_loss", suffix=".keras")
    latest = ckpt.resume()
    if latest:
        model = keras.models.load_model(latest.path)
    model.fit(x, y, validation_split=0.2, epochs=20, initial_epoch=latest.step if latest else 0,
              callbacks=[MlsnapKerasCheckpoint(ckpt)])

The step of a checkpoint is the number of epochs done, so ``initial_epoch=latest.step`` resumes.
Metrics are Keras' epoch logs (``loss``, ``val_loss``, ...). ``model.save`` needs names ending in
``.keras`` (``.weights.h5`` with ``weights_only=True``): give the Checkpointer that suffix.
"""

from __future__ import annotations

from typing import Any

try:
    import keras
except ImportError:
    raise ImportError("mlsnap.adapters.keras needs Keras 3: pip install keras") from None

from mlsnap.checkpoint import Checkpoint, Checkpointer
from mlsnap.errors import BadInput


class MlsnapKerasCheckpoint(keras.callbacks.Callback):  # type: ignore[misc]
    def __init__(self, checkpointer: Checkpointer, *, weights_only: bool = False) -> None:
        super().__init__()
        suffix = ".weights.h5" if weights_only else ".keras"
        if not checkpointer.suffix.endswith(suffix):
            raise BadInput(f"Checkpointer(suffix={checkpointer.suffix!r})",
                           f"Keras saves {'weights' if weights_only else 'models'} only to "
                           f"names ending in {suffix!r}; pass suffix={suffix!r}")
        self.checkpointer = checkpointer
        self.weights_only = weights_only
        self.last: Checkpoint | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        save = self.model.save_weights if self.weights_only else self.model.save
        self.last = self.checkpointer.save(epoch + 1, lambda path: save(str(path)), logs or {})

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.checkpointer.close()  # snapshot=True records the run here


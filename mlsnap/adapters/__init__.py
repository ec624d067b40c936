"""Small callbacks that let a framework's training loop drive a ``mlsnap.Checkpointer``.

Each adapter lives in its own module and imports its framework there, so importing
``mlsnap`` (or this package) never pulls in Lightning or Keras:

    from mlsnap.adapters.lightning import MlsnapCheckpoint   # PyTorch Lightning
    from mlsnap.adapters.keras import MlsnapKerasCheckpoint  # Keras 3

The Checkpointer holds all the logic (naming, atomic writes, retention, snapshots); an adapter
only decides when to call ``save`` and with which function.
"""

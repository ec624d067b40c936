"""mlsnap: make every trained model reproducible from Git.

The public API mirrors the command line; heavy modules load only when a function is first used,
so ``import mlsnap`` stays light.
"""

from __future__ import annotations

# No ``typing`` import: this module runs before the program can catch a Ctrl-C, so it does
# nothing that takes time (type checkers treat a module-level ``TYPE_CHECKING = False`` as true).
TYPE_CHECKING = False

__version__ = "0.1.0"

__all__ = [
    "Certificate",
    "Checkpoint",
    "Checkpointer",
    "CommitResult",
    "GcResult",
    "GetResult",
    "InitResult",
    "LogEntry",
    "Manifest",
    "MlsnapError",
    "PullResult",
    "RunResult",
    "SnapshotDiff",
    "StatusReport",
    "TagResult",
    "__version__",
    "commit",
    "diff",
    "gc",
    "get",
    "init",
    "log",
    "pull",
    "push",
    "repro",
    "run",
    "show",
    "status",
    "tag",
]

_LAZY = {
    "commit": "mlsnap.api",
    "pull": "mlsnap.api",
    "push": "mlsnap.api",
    "show": "mlsnap.api",
    "log": "mlsnap.api",
    "status": "mlsnap.api",
    "init": "mlsnap.api",
    "diff": "mlsnap.api",
    "tag": "mlsnap.api",
    "get": "mlsnap.api",
    "gc": "mlsnap.api",
    "run": "mlsnap.api",
    "repro": "mlsnap.api",
    "Checkpointer": "mlsnap.checkpoint",
    "MlsnapError": "mlsnap.errors",
    # the result types the functions above return
    "CommitResult": "mlsnap.snapshot",
    "InitResult": "mlsnap.initialize",
    "PullResult": "mlsnap.restore",
    "StatusReport": "mlsnap.restore",
    "LogEntry": "mlsnap.history",
    "TagResult": "mlsnap.history",
    "GetResult": "mlsnap.retrieve",
    "SnapshotDiff": "mlsnap.compare",
    "GcResult": "mlsnap.retention",
    "Manifest": "mlsnap.manifest",
    "Checkpoint": "mlsnap.checkpoint",
    "RunResult": "mlsnap.runner",
    "Certificate": "mlsnap.reprocheck",
}

if TYPE_CHECKING:
    from typing import Any

    from mlsnap.api import (
        commit,
        diff,
        gc,
        get,
        init,
        log,
        pull,
        push,
        repro,
        run,
        show,
        status,
        tag,
    )
    from mlsnap.checkpoint import Checkpoint, Checkpointer
    from mlsnap.compare import SnapshotDiff
    from mlsnap.errors import MlsnapError
    from mlsnap.history import LogEntry, TagResult
    from mlsnap.initialize import InitResult
    from mlsnap.manifest import Manifest
    from mlsnap.reprocheck import Certificate
    from mlsnap.restore import PullResult, StatusReport
    from mlsnap.retention import GcResult
    from mlsnap.retrieve import GetResult
    from mlsnap.runner import RunResult
    from mlsnap.snapshot import CommitResult


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mlsnap' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

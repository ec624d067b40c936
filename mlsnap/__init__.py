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
    "Checkpointer",
    "MlsnapError",
    "__version__",
    "commit",
    "diff",
    "gc",
    "get",
    "init",
    "log",
    "pull",
    "push",
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
    "Checkpointer": "mlsnap.checkpoint",
    "MlsnapError": "mlsnap.errors",
}

if TYPE_CHECKING:
    from typing import Any

    from mlsnap.api import commit, diff, gc, get, init, log, pull, push, show, status, tag
    from mlsnap.checkpoint import Checkpointer
    from mlsnap.errors import MlsnapError


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mlsnap' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

"""JSON output of manifest values (``--json`` of every command), without importing PyYAML."""

from __future__ import annotations

import math
from typing import Any


def jsonable(value: Any) -> Any:
    """Manifest values for JSON output: NaN and infinities become "nan", "inf", "-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value

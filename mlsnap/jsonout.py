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


def plain(value: Any, where: str, depth: int = 64, *, convert_keys: bool = True) -> Any:
    """``value`` as JSON can hold it, or ``ValueError`` naming the field (``where``).

    Whatever YAML, TOML or a Python caller may hand over becomes a JSON-safe value on the way
    in: dates and times become ISO strings, tuples lists, sets sorted lists, NumPy scalars
    plain numbers, keys strings (``true``, ``1``). Binary data, values of other types, keys
    that collide once they are strings, and nesting deeper than ``depth`` are refused. The
    same object comes back when nothing needed converting.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if depth <= 0:
        top = next((part for part in where.split(".") if part), "value")
        raise ValueError(f"{top}: nested too deeply (the limit is 64 levels)")
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        changed = False
        for key, item in value.items():
            name = key if isinstance(key, str) else _key(key, where, convert_keys)
            if name in out:
                raise ValueError(f"{where}: key {name!r} appears twice")
            out[name] = plain(item, f"{where}.{name}", depth - 1, convert_keys=convert_keys)
            changed = changed or name is not key or out[name] is not item
        return out if changed else value
    if isinstance(value, (list, tuple)):
        items = [plain(v, f"{where}[{i}]", depth - 1, convert_keys=convert_keys)
                 for i, v in enumerate(value)]
        if isinstance(value, list) and all(a is b for a, b in zip(items, value)):
            return value
        return items
    if isinstance(value, (set, frozenset)):
        try:
            ordered = sorted(value)
        except TypeError:
            raise ValueError(f"{where}: a set of mixed types cannot be recorded; use a list") \
                from None
        return plain(ordered, where, depth, convert_keys=convert_keys)
    if isinstance(value, (bytes, bytearray)):
        raise ValueError(  # noqa: TRY004 - every refusal here is a ValueError for to_plain
            f"{where}: binary data (!!binary) cannot be recorded; give it as text")
    if hasattr(value, "isoformat") and type(value).__module__ == "datetime":
        return str(value.isoformat())
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        item = value.item()
        if item is None or isinstance(item, (bool, int, float, str)):
            return item
    raise ValueError(f"{where}: a {type(value).__name__} value cannot be recorded; "
                     "use a number, text, true/false, a list or a mapping")


def _key(key: Any, where: str, convert: bool) -> str:
    if not convert:
        raise ValueError(f"{where}: key {key!r} is not a string")
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, (int, float)):
        return repr(key)
    if hasattr(key, "isoformat") and type(key).__module__ == "datetime":
        return str(key.isoformat())
    raise ValueError(f"{where}: key {key!r} cannot be recorded; use text")

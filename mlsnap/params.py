"""Hyperparameters and metrics from the command line (``K=V``) and from YAML/JSON/TOML files."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from mlsnap.errors import BadInput

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def parse_scalar(text: str) -> Any:
    """A ``-p``/``-m`` value as a YAML scalar: ``0.1`` float, ``3`` int, ``true`` bool."""
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text
    if isinstance(value, (dict, list)) or value is None and text.strip() not in ("null", "~"):
        return text  # `a: b` or `[x]` typed on a command line is meant as text
    return value


def set_dotted(tree: dict[str, Any], key: str, value: Any, source: str) -> None:
    parts = key.split(".")
    if not all(parts):
        raise BadInput(source, f"{key!r} is not a valid key (empty part)")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise BadInput(source, f"{key!r}: {part!r} is already a value, not a section")
        node = child
    node[parts[-1]] = value


def parse_assignments(items: Iterable[str], option: str) -> dict[str, Any]:
    """``["lr=0.1", "optimizer.name=adam"]`` -> ``{"lr": 0.1, "optimizer": {"name": "adam"}}``."""
    tree: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"{option} {item!r}", "expected KEY=VALUE")
        set_dotted(tree, key.strip(), parse_scalar(raw), f"{option} {item!r}")
    return tree


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``extra`` into a copy of ``base`` (``extra`` wins)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_file(spec: str, root: Path) -> dict[str, Any]:
    """Read ``FILE`` or ``FILE:KEY`` (YAML, JSON or TOML by extension) relative to ``root``."""
    path_text, key = spec, None
    if not (root / spec).exists() and ":" in spec:
        path_text, _, key = spec.rpartition(":")
    path = root / path_text
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise BadInput(path_text, "no such file") from None
    except OSError as exc:
        raise BadInput(path_text, f"cannot be read ({exc.strerror})") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            doc = json.loads(raw)
        elif suffix == ".toml":
            doc = tomllib.loads(raw.decode())
        else:
            doc = yaml.safe_load(raw)
    except (ValueError, yaml.YAMLError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise BadInput(path_text, f"not valid {suffix.lstrip('.') or 'YAML'}: {reason}") from None
    if doc is None:
        doc = {}
    if key is not None:
        for part in key.split("."):
            if not isinstance(doc, dict) or part not in doc:
                raise BadInput(spec, f"no section {key!r} in {path_text}")
            doc = doc[part]
    if not isinstance(doc, dict):
        raise BadInput(spec, "expected a mapping of names to values")
    plain: dict[str, Any] = _plain(doc, spec)
    return plain


def _plain(value: Any, source: str) -> Any:
    """Keep values a manifest can hold: str keys; dates become ISO strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v, source) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, source) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise BadInput(source, f"unsupported value {value!r}")


def collect(files: Iterable[str], assignments: Iterable[str], option: str,
            root: Path) -> dict[str, Any]:
    """Files first, in order, then ``K=V`` assignments on top."""
    tree: dict[str, Any] = {}
    for spec in files:
        tree = merge(tree, load_file(spec, root))
    return merge(tree, parse_assignments(assignments, option))


def is_finite_tree(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(is_finite_tree(v) for v in value.values())
    if isinstance(value, list):
        return all(is_finite_tree(v) for v in value)
    return True

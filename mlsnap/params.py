"""Hyperparameters and metrics from the command line (``K=V``) and from YAML/JSON/TOML files."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mlsnap import pathsafety
from mlsnap.errors import BadInput
from mlsnap.jsonout import plain
from mlsnap.safeyaml import MAX_DEPTH, MAX_MANIFEST_BYTES, YamlRefused, parse_yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def parse_scalar(text: str) -> Any:
    """A ``-p``/``-m`` value as a YAML scalar: ``0.1`` float, ``3`` int, ``true`` bool.

    Anything else YAML would make of it (a date, a mapping, a list, binary, an alias) is kept
    as the text typed, so every recorded value is one JSON can hold (``-p when=2024-01-02``
    records the string ``'2024-01-02'``).
    """
    if not text.strip():
        return ""
    try:
        value = parse_yaml(text, "-p")
    except YamlRefused:
        return text
    if value is None:
        return None if text.strip() in ("null", "~", "Null", "NULL") else text
    if isinstance(value, (bool, int, float, str)):
        return value
    return text  # `a: b`, `[x]`, a date typed on a command line is meant as text


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


def split_spec(spec: str, root: Path) -> tuple[str, str | None]:
    """``FILE[:KEY]`` -> (file, key); a file whose own name holds ':' is taken whole."""
    if not os.path.lexists(root / spec) and ":" in spec:
        path_text, _, key = spec.rpartition(":")
        return path_text, key
    return spec, None


def file_problem(path_text: str, root: Path) -> str | None:
    """Why ``path_text`` (a params or metrics file, relative to the repository root) may not
    be read: outside the repository, into ``.git``, or through a link that leaves it."""
    if os.path.isabs(path_text):
        full = Path(os.path.normpath(path_text))
        try:
            rel = full.relative_to(root).as_posix()
        except ValueError:
            return f"{path_text!r} is outside the repository"
    else:
        rel = Path(os.path.normpath(path_text)).as_posix()
    if rel == ".." or rel.startswith("../"):
        return f"{path_text!r} is outside the repository"
    return pathsafety.problem(rel) or pathsafety.escape(root, rel)


def load_file(spec: str, root: Path) -> dict[str, Any]:
    """Read ``FILE`` or ``FILE:KEY`` (YAML, JSON or TOML by extension) relative to ``root``.

    Only files inside the repository are read, with the limits manifests have: at most
    ``MAX_MANIFEST_BYTES``, ``MAX_DEPTH`` levels, no YAML aliases or duplicate keys; every
    value becomes one JSON can hold (``jsonout.plain``) or the file is refused.
    """
    path_text, key = split_spec(spec, root)
    problem = file_problem(path_text, root)
    if problem:
        raise BadInput(path_text, f"{problem}; params and metrics files are read from inside "
                       "the repository (copy it in)")
    path = root / path_text
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise BadInput(path_text, "no such file") from None
    except OSError as exc:
        raise BadInput(path_text, f"cannot be read ({exc.strerror})") from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise BadInput(path_text, f"larger than {MAX_MANIFEST_BYTES} bytes; not a params file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            doc = json.loads(raw, object_pairs_hook=_no_duplicates)
        elif suffix == ".toml":
            doc = tomllib.loads(raw.decode())
        else:
            doc = parse_yaml(raw, path_text)
    except YamlRefused as exc:
        raise BadInput(path_text, exc.reason) from None
    except RecursionError:
        raise BadInput(path_text, f"nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
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
    values: dict[str, Any] = to_plain(doc, spec)
    return values


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise ValueError(f"duplicate key {key!r}")
        doc[key] = value
    return doc


def to_plain(value: Any, source: str) -> Any:
    """Values a manifest and JSON can hold (``jsonout.plain``), or ``BadInput`` naming the
    field."""
    try:
        return plain(value, "", MAX_DEPTH - 1)
    except ValueError as exc:
        where, _, reason = str(exc).partition(": ")
        where = where.lstrip(".")
        raise BadInput(source, f"{where}: {reason}" if where else reason) from None


def collect(files: Iterable[str], assignments: Iterable[str], option: str,
            root: Path) -> dict[str, Any]:
    """Files first, in order, then ``K=V`` assignments on top."""
    tree: dict[str, Any] = {}
    for spec in files:
        tree = merge(tree, load_file(spec, root))
    return merge(tree, parse_assignments(assignments, option))


def is_number(value: Any) -> bool:
    """An int or a float, not a bool (which Python counts as an int)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def as_float(value: Any) -> float | None:
    """A number as a float (NaN and infinities included); None for anything else and for an
    integer no float holds (a recorded ``10**400``: ``float()`` of it raises)."""
    if not is_number(value):
        return None
    try:
        return float(value)
    except OverflowError:
        return None

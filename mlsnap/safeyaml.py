"""YAML from untrusted files (manifests, params, settings, pointers, checkpoint indexes).

Safe tags only, no aliases (no billion laughs), no duplicate keys, a size and a depth limit, and
merge-conflict markers named. libyaml reads the common case ~6x faster; a document it would
judge differently is left to the strict pure-Python loader, so both always agree.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import yaml

from mlsnap.errors import ManifestInvalid

MAX_MANIFEST_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 64  # nesting levels of any YAML mlsnap reads (a manifest needs 4 + the params')


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases (no billion-laughs) and duplicate keys."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.constructor.ConstructorError(
                None, None, "YAML aliases are not allowed (they can expand without bound)", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                other = seen[key]
                # 1, 1.0 and true are one key to Python: the mapping would silently lose one
                reason = (f"duplicate key {key!r}" if type(other) is type(key) else
                          f"keys {other!r} and {key!r} are one key to Python; quote them")
                raise yaml.constructor.ConstructorError(None, None, reason, key_node.start_mark)
            seen[key] = key
        return yaml.SafeLoader.construct_mapping(self, node, deep=deep)


class _NotPlain(Exception):
    """An alias in the document: only the strict loader judges those."""


def load_safely(text: str | bytes, loader: type[Any]) -> Any:
    """Parse one YAML document with ``loader``, which must be a safe loader.

    The one place mlsnap turns YAML into objects: a loader that could build Python objects
    (``yaml.Loader``, ``UnsafeLoader``) is refused here, whoever asks.
    """
    safe = (yaml.SafeLoader, *((yaml.CSafeLoader,) if hasattr(yaml, "CSafeLoader") else ()))
    if not issubclass(loader, safe):
        raise TypeError(f"{loader.__name__} is not a safe YAML loader")
    parser = loader(text)
    try:
        return parser.get_single_data()
    finally:
        parser.dispose()


_CStrictLoader: Any = None
if getattr(yaml, "__with_libyaml__", False):

    class _CStrictLoader(yaml.CSafeLoader):  # type: ignore[no-redef]
        """libyaml's SafeLoader refusing duplicate keys (aliases: see ``_fast_load``)."""

        construct_mapping = _StrictLoader.construct_mapping


class _TooDeep(Exception):
    """Nesting beyond ``MAX_DEPTH``: refused before any object is built (no RecursionError)."""


class YamlRefused(ValueError):
    """Why an untrusted YAML text is not read (one line, without the file name)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _scan(text: str | bytes, loader: type[Any]) -> None:
    """One pass over the parser's events, building nothing: an alias ends it (``_NotPlain``,
    the strict loader words that refusal), nesting deeper than ``MAX_DEPTH`` raises
    ``_TooDeep``."""
    depth = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise _TooDeep
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            raise _NotPlain


def _fast_load(text: str | bytes) -> Any:
    """libyaml: ~6x faster than the pure-Python loader (a manifest of 150 packages: 8 ms, not
    50) for every commit and pull. Its composer cannot be hooked, so documents with aliases are
    left to ``_StrictLoader``, like any document libyaml refuses."""
    _scan(text, yaml.CSafeLoader)
    return load_safely(text, _CStrictLoader)


_CONFLICT_START = re.compile(rb"^<<<<<<<(?: |$)", re.MULTILINE)
_CONFLICT_END = re.compile(rb"^>>>>>>>(?: |$)", re.MULTILINE)


def _conflict(text: str | bytes, source: str) -> str | None:
    raw = text.encode(errors="replace") if isinstance(text, str) else text
    if not (_CONFLICT_START.search(raw) and _CONFLICT_END.search(raw)):
        return None
    if ":" in source or " " in source:  # a file in a commit, not in the work tree
        return ("holds merge-conflict markers (<<<<<<< ... >>>>>>>): it was committed with a "
                "conflict left unresolved; fix it in a new commit")
    return ("holds merge-conflict markers (<<<<<<< ... >>>>>>>): a merge or rebase left a "
            f"conflict in it; keep one side with `git checkout --ours -- {source}` (or "
            f"--theirs), or edit it, then `git add {source}`")


def parse_yaml(text: str | bytes, source: str) -> Any:
    """One YAML document from an untrusted file (manifest, params, settings, pointer): safe
    tags only, no aliases, no duplicate keys, at most ``MAX_MANIFEST_BYTES`` long and
    ``MAX_DEPTH`` levels deep. Any problem raises ``YamlRefused`` with a one-line reason."""
    if len(text) > MAX_MANIFEST_BYTES:
        raise YamlRefused(f"larger than {MAX_MANIFEST_BYTES} bytes")
    conflict = _conflict(text, source)
    if conflict:
        raise YamlRefused(conflict)
    try:
        if _CStrictLoader is not None:
            try:
                return _fast_load(text)
            except (_NotPlain, yaml.YAMLError, RecursionError, ValueError):
                pass  # the strict loader below decides, and words the error, as always
        else:
            with contextlib.suppress(_NotPlain, yaml.YAMLError):
                _scan(text, yaml.SafeLoader)
        return load_safely(text, _StrictLoader)
    except (_TooDeep, RecursionError):
        raise YamlRefused(f"nested deeper than {MAX_DEPTH} levels") from None
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise YamlRefused(f"not valid YAML: {reason}") from None


def safe_load(text: str | bytes, source: str) -> Any:
    """Parse YAML safely (``parse_yaml``); any problem becomes ``ManifestInvalid``."""
    try:
        return parse_yaml(text, source)
    except YamlRefused as exc:
        raise ManifestInvalid(source, exc.reason) from None

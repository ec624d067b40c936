"""Manifest blobs read fast: libyaml with the strict loader's judgement, and a cache by blob id.

``history.log`` parses every manifest version in a history. The strict pure-Python loader of
``manifest.loads`` costs ~15 ms a manifest; this module gets the same answer far cheaper:

* libyaml builds the data whenever the document is plain (no alias, merge key or duplicate
  key); anything else goes to ``manifest.loads``, which decides and words the error;
* the top-level sections of a manifest (``environment:`` is most of it and rarely changes
  between snapshots) are parsed once per distinct text;
* results are cached by Git blob id in ``<git dir>/mlsnap/history.json``: a blob id names its
  content, so an entry can never go stale; the key holds the mlsnap version and schema.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

from mlsnap.environment import Environment
from mlsnap.manifest import (
    SCHEMA,
    Code,
    Manifest,
    Output,
    Patch,
    from_dict,
    loads,
)
from mlsnap.pickles import scan_from_doc
from mlsnap.runrecord import from_doc as run_from_doc
from mlsnap.safeyaml import MAX_MANIFEST_BYTES, load_safely

_CACHE_FORMAT = 1
_CACHE_MAX_ENTRIES = 100_000
# A top-level key line of a block mapping, as mlsnap writes them (after its line break: a
# pattern that starts with a literal is searched for fast, a pattern that starts with ^ is not).
_SECTION = re.compile(r"\n[A-Za-z_][A-Za-z0-9_]*:(?: |$)", re.MULTILINE)
# Top-level blocks already parsed in one batch: text -> (key, value), shared by every manifest
# of that batch holding the same block (see ``parse``).
Seen = dict[str, tuple[Any, Any]]
# Where cutting the text at column-0 keys could change its meaning: other line breaks, a
# byte-order mark, tabs; directives and document markers at the start of a line. Such
# documents are parsed whole.
_UNSPLITTABLE_CHARS = ("\r", "\x85", "\u2028", "\u2029", "\ufeff", "\t")
_UNSPLITTABLE_LINES = ("---", "...", "%")


# An alias needs "*", a merge key "<<" (or the tag "!!merge"): a text without these bytes
# (anywhere, even inside quotes) holds neither, and is parsed without the per-node guards.
_NOT_PLAIN = (b"*", b"<<", b"!")


class _Fallback(Exception):
    """The fast path met something only the strict loader may judge (alias, merge, duplicate)."""


@functools.lru_cache(maxsize=2)
def _c_loader(guarded: bool = False) -> type | None:
    """A libyaml loader that gives up, rather than deciding, on anything the strict one refuses.

    Only plain documents (no aliases, merge keys or duplicate keys) are decided here; for them
    both loaders build the same data. Everything else goes to ``manifest.loads``. The guards
    against aliases and merge keys cost a Python call per node: ``guarded=False`` leaves them
    out, for texts that cannot hold either (see ``_NOT_PLAIN``).
    """
    base = getattr(yaml, "CSafeLoader", None)
    if base is None:
        return None

    class _CPlain(base):  # type: ignore[valid-type, misc]
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            mapping = super().construct_mapping(node, deep=deep)
            if len(mapping) != len(node.value):
                raise _Fallback  # a duplicate key
            return mapping

    class _CGuarded(_CPlain):
        def construct_object(self, node: Any, deep: bool = False) -> Any:
            if node in self.constructed_objects or node in self.recursive_objects:
                raise _Fallback  # the same node reached twice: an alias
            return super().construct_object(node, deep=deep)

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if any(k.tag == "tag:yaml.org,2002:merge" for k, _ in node.value):
                raise _Fallback
            return super().construct_mapping(node, deep=deep)

    return _CGuarded if guarded else _CPlain


def parse(blob: bytes, source: str, seen: Seen | None = None) -> Manifest:
    """Validate one manifest blob exactly like ``manifest.loads``, through libyaml when it can.

    ``seen``: the blocks of a batch (``history.log`` passes one per call), each parsed once and
    shared by the batch's manifests; without it nothing is shared with any other call.
    """
    if _c_loader() is None or len(blob) > MAX_MANIFEST_BYTES:
        return loads(blob, source)
    try:
        doc = _load(blob, {} if seen is None else seen)
    except (_Fallback, yaml.YAMLError, RecursionError, ValueError):
        return loads(blob, source)  # decides, and words the error, exactly as always
    return from_dict(doc, source)


def _load(blob: bytes, seen: Seen | None = None) -> Any:
    seen = {} if seen is None else seen
    loader = _c_loader(guarded=any(mark in blob for mark in _NOT_PLAIN))
    if loader is None:  # PyYAML without libyaml
        raise _Fallback
    text = blob.decode("utf-8")
    parts = _sections(text)
    if parts is None:
        return load_safely(text, loader)
    new = [part for part in dict.fromkeys(parts) if part not in seen]
    if new:  # the blocks not met before, in one document: still top-level blocks, same meaning
        doc = load_safely("".join(new), loader)
        if not isinstance(doc, dict) or len(doc) != len(new):
            raise _Fallback  # a duplicate key, or a block that is not one key
        seen.update(zip(new, doc.items()))
    items = [seen[part] for part in parts]
    doc = dict(items)
    if len(doc) != len(parts):
        raise _Fallback  # a duplicate top-level key
    return doc


def _sections(text: str) -> list[str] | None:
    """The ``key: ...`` blocks of a top-level block mapping, or None when not that simple.

    In block context a line at column 0 ends every plain scalar and nested collection, so each
    block means the same alone as in the document. A cut inside a quoted scalar or a flow
    collection leaves one block unterminated, which fails to parse: then the whole is parsed.
    """
    if any(c in text for c in _UNSPLITTABLE_CHARS) or text.startswith(_UNSPLITTABLE_LINES) \
            or any(f"\n{mark}" in text for mark in _UNSPLITTABLE_LINES):
        return None
    text = "\n" + text
    starts = [m.start() + 1 for m in _SECTION.finditer(text)]
    if not starts or any(line.strip() and not line.startswith("#")
                         for line in text[1:starts[0]].split("\n")):
        return None
    parts = [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)])]
    if not parts[-1].endswith("\n"):
        parts[-1] += "\n"
    return parts


class Cache:
    """Parsed manifests by blob id in ``<git dir>/mlsnap/history.json``; environments shared."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.key = f"{_CACHE_FORMAT}:{SCHEMA}:{_version()}"
        self.blobs: dict[str, Any] = {}
        self.envs: dict[str, Any] = {}
        self._env_keys: dict[int, tuple[dict[str, str], str]] = {}
        self.dirty = False
        try:
            doc = json.loads(path.read_bytes())
            if doc.get("key") == self.key:
                self.blobs, self.envs = doc["blobs"], doc["envs"]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass  # no cache, or an unreadable one: rebuild it

    def get(self, blob: str) -> Manifest | str | None:
        """The manifest, the reason it is invalid, or None when not cached."""
        hit = self.blobs.get(blob)
        if hit is None:
            return None
        try:
            return hit["error"] if "error" in hit else _rebuild(hit["m"], self.envs[hit["e"]])
        except (KeyError, TypeError, ValueError):
            return None

    def put(self, blob: str, result: Manifest | str) -> None:
        if isinstance(result, str):
            self.blobs[blob] = {"error": result}
        else:
            doc = result.to_dict()
            env = doc.pop("environment")
            # Manifests parsed from one environment block share its packages mapping (see
            # ``Seen``), hence its key: digest it once.
            packages = result.environment.packages
            known = self._env_keys.get(id(packages))
            if known is None or known[0] is not packages:
                env_key = hashlib.sha1(json.dumps(env, sort_keys=True).encode()).hexdigest()
                self._env_keys[id(packages)] = (packages, env_key)
            else:
                env_key = known[1]
            self.envs[env_key] = env
            self.blobs[blob] = {"m": doc, "e": env_key}
        self.dirty = True

    def save(self) -> None:
        if not self.dirty or len(self.blobs) > _CACHE_MAX_ENTRIES:
            return
        from mlsnap.fsutil import atomic_write

        doc = {"key": self.key, "blobs": self.blobs, "envs": self.envs}
        try:
            atomic_write(self.path, json.dumps(doc, separators=(",", ":"), allow_nan=True).encode())
        except OSError:
            pass  # a read-only repository still gets its log, only slower next time


def _version() -> str:
    """mlsnap's version and a digest of the validating code: a stricter validator, even
    within one version (an editable install), must not trust what a laxer one accepted."""
    from mlsnap import __version__, manifest, runrecord, safeyaml

    digest = hashlib.sha1()
    for module in (manifest.__file__, safeyaml.__file__, runrecord.__file__, __file__):
        try:
            digest.update(Path(module or "").read_bytes())
        except OSError:
            digest.update(b"?")
    return f"{__version__}:{digest.hexdigest()[:12]}"


def _rebuild(m: dict[str, Any], env: dict[str, Any]) -> Manifest:
    """A ``Manifest`` from a cache entry that ``from_dict`` validated when it was stored."""
    code = m["code"]
    patch = code["patch"]
    return Manifest(
        name=m["name"], created=m["created"], message=m["message"],
        code=Code(code["commit"], code["branch"], code["dirty"],
                  Patch(patch["path"], patch["md5"]) if patch else None),
        data_hash=m["data"]["hash"],
        inputs=tuple(Output(**o) for o in m["data"]["inputs"]),
        artifacts=tuple(Output(**o) for o in m["artifacts"]),
        params=m["params"], metrics=m["metrics"],
        environment=Environment(**env), schema=m["mlsnap"],
        run=run_from_doc(m.get("run"), lambda where, reason: ValueError(f"{where}: {reason}")),
        pickles=scan_from_doc(m.get("pickles"), "cache"),
    )


"""The snapshot manifest (schema 1): dataclasses, safe YAML read/write and validation.

Reading never trusts the file: YAML is parsed with a safe loader that also refuses aliases and
duplicate keys, and every field is type-checked before a ``Manifest`` exists.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from mlsnap import pathsafety
from mlsnap.environment import Environment
from mlsnap.errors import BadInput, ManifestInvalid
from mlsnap.jsonout import plain
from mlsnap.pickles import PickleScan, scan_from_doc
from mlsnap.runrecord import Run
from mlsnap.runrecord import from_doc as run_from_doc
from mlsnap.safeyaml import MAX_DEPTH, safe_load

SCHEMA = 1
MANIFEST_DIR = ".mlsnap"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
SHA_RE = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


def manifest_path(name: str) -> str:
    """Repo-relative POSIX path of the manifest for snapshot ``name``."""
    return f"{MANIFEST_DIR}/{name}.yaml"


def check_version(version: str, label: str) -> str:
    """``version`` (a leading ``v`` allowed) without the ``v`` when it is SemVer 2.0
    (MAJOR.MINOR.PATCH[-pre][+build], checked by the ``semver`` package, DVC's own dependency
    through gto), else ``BadInput`` naming ``label``."""
    import semver

    from mlsnap import redaction

    bare = version.removeprefix("v")
    found = redaction.find(bare)  # build metadata (1.0.0+...) would carry it into a shared ref
    if found:
        raise BadInput(label.split(" ")[0], f"the version holds {found}; tags are pushed and "
                       "shared")
    if not semver.Version.is_valid(bare):
        raise BadInput(label, "not a SemVer version (MAJOR.MINOR.PATCH, e.g. 1.2.0)")
    return bare


def is_valid_name(name: str) -> bool:
    return bool(NAME_RE.match(name)) and name != "config"


@dataclass(frozen=True)
class Output:
    """One DVC-tracked path: a file (nfiles 1) or a directory (md5 ends with ``.dir``)."""

    path: str
    md5: str
    size: int
    nfiles: int

    @property
    def is_dir(self) -> bool:
        return self.md5.endswith(".dir")

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "md5": self.md5, "size": self.size, "nfiles": self.nfiles}


@dataclass(frozen=True)
class Patch:
    path: str
    md5: str


@dataclass(frozen=True)
class Code:
    commit: str
    branch: str | None
    dirty: bool
    patch: Patch | None = None


@dataclass(frozen=True)
class Manifest:
    name: str
    created: str
    message: str
    code: Code
    data_hash: str | None
    inputs: tuple[Output, ...]
    artifacts: tuple[Output, ...]
    params: dict[str, Any]
    metrics: dict[str, Any]
    environment: Environment
    schema: int = SCHEMA
    run: Run | None = None  # optional: the command `mlsnap run` ran (mlsnap.runrecord)
    pickles: PickleScan | None = None  # optional: the pickle scan at commit (mlsnap.pickles)

    @property
    def outputs(self) -> tuple[Output, ...]:
        """Artifacts then inputs: the paths whose bytes the snapshot records."""
        return self.artifacts + self.inputs

    @property
    def tracked(self) -> tuple[tuple[str, str], ...]:
        """``(path, md5)`` of every DVC-tracked path, the code patch included."""
        pairs = tuple((o.path, o.md5) for o in self.outputs)
        if self.code.patch is not None:
            pairs += ((self.code.patch.path, self.code.patch.md5),)
        return pairs

    def to_dict(self) -> dict[str, Any]:
        patch = self.code.patch
        return {
            "mlsnap": self.schema,
            "name": self.name,
            "created": self.created,
            "message": self.message,
            "code": {
                "commit": self.code.commit,
                "branch": self.code.branch,
                "dirty": self.code.dirty,
                "patch": None if patch is None else {"path": patch.path, "md5": patch.md5},
            },
            "data": {"hash": self.data_hash, "inputs": [o.to_dict() for o in self.inputs]},
            "artifacts": [o.to_dict() for o in self.artifacts],
            "params": self.params,
            "metrics": self.metrics,
            "environment": self.environment.to_dict(),
            **({"run": self.run.to_dict()} if self.run is not None else {}),
            **({"pickles": self.pickles.to_dict()} if self.pickles is not None else {}),
        }


def data_fingerprint(inputs: tuple[Output, ...] | list[Output]) -> str | None:
    """One hash over all inputs: md5 of the sorted ``path<TAB>md5`` lines (None without inputs)."""
    if not inputs:
        return None
    lines = "".join(f"{o.path}\t{o.md5}\n" for o in sorted(inputs, key=lambda o: o.path))
    return hashlib.md5(lines.encode()).hexdigest()


# --------------------------------------------------------------------------- writing


class _FlowDict(dict):  # type: ignore[type-arg]
    """A mapping dumped on one line (``{path: ..., md5: ...}``), as in the documented schema."""


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_flow(dumper: yaml.SafeDumper, data: _FlowDict) -> yaml.Node:
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=True)


_Dumper.add_representer(_FlowDict, _represent_flow)


def dump(manifest: Manifest) -> str:
    """Serialize ``manifest`` as YAML, keys in schema order."""
    doc = manifest.to_dict()
    doc["data"]["inputs"] = [_FlowDict(o) for o in doc["data"]["inputs"]]
    doc["artifacts"] = [_FlowDict(o) for o in doc["artifacts"]]
    if doc["code"]["patch"] is not None:
        doc["code"]["patch"] = _FlowDict(doc["code"]["patch"])
    if "pickles" in doc:
        doc["pickles"]["files"] = [_FlowDict(f) for f in doc["pickles"]["files"]]
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=1000)


def loads(text: str | bytes, source: str) -> Manifest:
    """Parse and validate one manifest."""
    return from_dict(safe_load(text, source), source)


def read(path: Path, source: str | None = None) -> Manifest:
    src = source or str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ManifestInvalid(src, f"cannot be read ({exc.strerror})") from None
    return loads(data, src)


class _Checker:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, reason: str) -> ManifestInvalid:
        return ManifestInvalid(self.source, f"{where}: {reason}")

    def mapping(self, doc: Any, where: str, keys: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(doc, dict):
            raise self.fail(where, f"expected a mapping, got {type(doc).__name__}")
        missing = [k for k in keys if k not in doc]
        if missing:
            raise self.fail(where, f"missing key {missing[0]!r}")
        return doc

    def typed(self, value: Any, where: str, *types: type) -> Any:
        # bool is an int in Python; do not let `true` pass as a size.
        if isinstance(value, bool) and bool not in types:
            raise self.fail(where, f"expected {_names(types)}, got bool")
        if not isinstance(value, types):
            raise self.fail(where, f"expected {_names(types)}, got {type(value).__name__}")
        return value

    def output(self, doc: Any, where: str) -> Output:
        doc = self.mapping(doc, where, ("path", "md5", "size", "nfiles"))
        path = check_path(self.typed(doc["path"], f"{where}.path", str), self, f"{where}.path")
        md5 = self.typed(doc["md5"], f"{where}.md5", str)
        if not pathsafety.MD5_RE.match(md5):
            raise self.fail(f"{where}.md5", f"{md5[:80]!r} is not a DVC md5 hash (32 hex digits)")
        size = self.typed(doc["size"], f"{where}.size", int)
        nfiles = self.typed(doc["nfiles"], f"{where}.nfiles", int)
        if size < 0 or nfiles < 0:
            raise self.fail(where, "size and nfiles must not be negative")
        return Output(path, md5, size, nfiles)

    def tree(self, value: Any, where: str) -> dict[str, Any]:
        """A params/metrics mapping, JSON-safe: string keys, no value JSON cannot hold (a date
        written by an older mlsnap becomes its ISO string), bounded depth."""
        value = self.typed(value, where, dict)
        try:
            tree: dict[str, Any] = plain(value, where, MAX_DEPTH - 1, convert_keys=False)
        except ValueError as exc:
            where_, _, reason = str(exc).partition(": ")
            raise self.fail(where_, reason) from None
        return tree


def _names(types: tuple[type, ...]) -> str:
    names = {bool: "bool", int: "int", str: "string", dict: "mapping", list: "list",
             float: "float", type(None): "null"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def check_path(path: str, checker: _Checker | None = None, where: str = "path") -> str:
    """Validate a repo-relative POSIX path from an untrusted source; return it unchanged
    (the rules live in ``mlsnap.pathsafety``, the one gate for every recorded name)."""
    reason = pathsafety.problem_in_repo(path)
    if reason is None:
        return path
    if checker is None:
        raise ManifestInvalid("manifest", f"{where}: {reason}")
    raise checker.fail(where, reason)


def check_inside(root: Path, path: str, source: str) -> Path:
    """Resolve ``path`` under ``root`` and refuse it when a symlink leads outside the repo."""
    reason = pathsafety.escape(root, path)
    if reason is not None:
        raise ManifestInvalid(source, reason)
    return root.resolve().joinpath(*PurePosixPath(path).parts)


def from_dict(doc: Any, source: str) -> Manifest:
    """Validate a parsed manifest document and build a ``Manifest``."""
    c = _Checker(source)
    if not isinstance(doc, dict):
        raise c.fail("document", "expected a mapping at the top level")
    if "mlsnap" not in doc:
        raise c.fail("document", "missing key 'mlsnap' (the schema version)")
    schema = doc["mlsnap"]
    if isinstance(schema, bool) or not isinstance(schema, int):
        raise c.fail("mlsnap", f"schema version must be an integer, got {schema!r}")
    if schema != SCHEMA:
        raise c.fail("mlsnap", f"schema {schema} is not supported by this mlsnap (reads {SCHEMA});"
                     " upgrade mlsnap" if schema > SCHEMA else f"unknown schema {schema}")
    c.mapping(doc, "document", ("name", "created", "message", "code", "data", "artifacts",
                                "params", "metrics", "environment"))
    name = c.typed(doc["name"], "name", str)
    if not is_valid_name(name):
        raise c.fail("name", f"{name[:80]!r} is not a valid snapshot name")
    created = c.typed(doc["created"], "created", str)
    message = c.typed(doc["message"], "message", str)

    code_doc = c.mapping(doc["code"], "code", ("commit", "branch", "dirty", "patch"))
    commit = c.typed(code_doc["commit"], "code.commit", str)
    if not SHA_RE.match(commit):
        raise c.fail("code.commit", f"{commit[:80]!r} is not a full Git commit id")
    branch = c.typed(code_doc["branch"], "code.branch", str, type(None))
    dirty = c.typed(code_doc["dirty"], "code.dirty", bool)
    patch = None
    if code_doc["patch"] is not None:
        pdoc = c.mapping(code_doc["patch"], "code.patch", ("path", "md5"))
        ppath = check_path(c.typed(pdoc["path"], "code.patch.path", str), c, "code.patch.path")
        pmd5 = c.typed(pdoc["md5"], "code.patch.md5", str)
        if not pathsafety.MD5_RE.match(pmd5) or pmd5.endswith(".dir"):
            raise c.fail("code.patch.md5", f"{pmd5[:80]!r} is not an md5 hash")
        patch = Patch(ppath, pmd5)

    data_doc = c.mapping(doc["data"], "data", ("hash", "inputs"))
    data_hash = c.typed(data_doc["hash"], "data.hash", str, type(None))
    inputs_doc = c.typed(data_doc["inputs"], "data.inputs", list)
    inputs = tuple(c.output(o, f"data.inputs[{i}]") for i, o in enumerate(inputs_doc))
    artifacts_doc = c.typed(doc["artifacts"], "artifacts", list)
    artifacts = tuple(c.output(o, f"artifacts[{i}]") for i, o in enumerate(artifacts_doc))
    seen: set[str] = set()
    for out in artifacts + inputs:
        if out.path in seen:
            raise c.fail("artifacts", f"{out.path!r} is listed twice")
        seen.add(out.path)
    if data_hash is not None and data_hash != data_fingerprint(inputs):
        raise c.fail("data.hash", "does not match the inputs it fingerprints")

    params = c.tree(doc["params"] if doc["params"] is not None else {}, "params")
    metrics = c.tree(doc["metrics"] if doc["metrics"] is not None else {}, "metrics")

    env_doc = c.mapping(doc["environment"], "environment",
                        ("python", "implementation", "os", "machine", "packages"))
    packages = c.typed(env_doc["packages"], "environment.packages", dict)
    for pkg, ver in packages.items():
        if not isinstance(pkg, str) or not isinstance(ver, str):
            raise c.fail("environment.packages", f"{pkg!r}: name and version must be strings")
    accelerators = c.typed(env_doc.get("accelerators", []) or [], "environment.accelerators", list)
    used: dict[str, list[str] | None] = {}
    for key in ("imported", "top_level", "tooling"):  # optional: added after schema 1 began
        names = c.typed(env_doc.get(key), f"environment.{key}", list, type(None))
        if names is not None and not all(isinstance(n, str) for n in names):
            raise c.fail(f"environment.{key}", "expected a list of package names")
        used[key] = names
    env = Environment(
        python=str(c.typed(env_doc["python"], "environment.python", str)),
        implementation=c.typed(env_doc["implementation"], "environment.implementation", str),
        os=c.typed(env_doc["os"], "environment.os", str),
        machine=c.typed(env_doc["machine"], "environment.machine", str),
        packages=packages,
        accelerators=accelerators,
        **used,
    )
    run = run_from_doc(doc.get("run"), c.fail)
    return Manifest(name=name, created=created, message=message,
                    code=Code(commit, branch, dirty, patch), data_hash=data_hash, inputs=inputs,
                    artifacts=artifacts, params=params, metrics=metrics, environment=env,
                    schema=schema, run=run,
                    pickles=scan_from_doc(doc.get("pickles"), source))

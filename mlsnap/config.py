"""``.mlsnap/config.yaml``: the project's tracked mlsnap settings.

It remembers, per snapshot name, which params and metrics files the last commit read, so that a
plain ``mlsnap commit`` re-reads them just as it re-records the previous paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlsnap.errors import BadInput, ManifestInvalid, NotInitialized
from mlsnap.fsutil import atomic_write
from mlsnap.manifest import MANIFEST_DIR, is_valid_name, safe_load

CONFIG_PATH = f"{MANIFEST_DIR}/config.yaml"
DEFAULT_NAME = "model"


@dataclass
class Config:
    default_name: str = DEFAULT_NAME
    sources: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"mlsnap": 1, "default_name": self.default_name, "sources": self.sources}


def load(root: Path) -> Config:
    """The settings, validated: this file arrives with every clone, so whoever pushed chose
    it. Remembered params/metrics files must be inside the repository (a cloned config must
    not make a plain ``mlsnap commit`` read the user's own files into a manifest)."""
    path = root / CONFIG_PATH
    if not path.is_file():
        raise NotInitialized(str(root))
    try:
        doc = safe_load(path.read_bytes(), CONFIG_PATH) or {}
    except ManifestInvalid as exc:
        raise BadInput(CONFIG_PATH, exc.reason) from None
    if not isinstance(doc, dict):
        raise BadInput(CONFIG_PATH, "expected a mapping; fix it or delete it and run `mlsnap init`")
    sources = doc.get("sources") or {}
    if not isinstance(sources, dict):
        raise BadInput(CONFIG_PATH, "'sources' must map names to {params: [...], metrics: [...]}")
    for name, entry in sources.items():
        _check_sources(root, name, entry)
    name = doc.get("default_name", DEFAULT_NAME)
    if not isinstance(name, str) or not is_valid_name(name):
        raise BadInput(CONFIG_PATH, f"'default_name' {str(name)[:80]!r} is not a snapshot name "
                       "(letters, digits, '.', '_', '-'); fix it")
    return Config(default_name=name, sources=sources)


def _check_sources(root: Path, name: Any, entry: Any) -> None:
    from mlsnap.params import file_problem, split_spec

    where = f"sources.{name}"
    if not isinstance(name, str) or not isinstance(entry, dict):
        raise BadInput(CONFIG_PATH, f"{where!r} must map a snapshot name to "
                       "{params: [...], metrics: [...]}")
    for kind, specs in entry.items():
        if kind not in ("params", "metrics") or not isinstance(specs, list):
            raise BadInput(CONFIG_PATH, f"'{where}.{kind}' must be a list under params or "
                           "metrics; fix it or remove it")
        for i, spec in enumerate(specs):
            at = f"{where}.{kind}[{i}]"
            if not isinstance(spec, str) or not spec:
                raise BadInput(CONFIG_PATH, f"'{at}' is {str(spec)[:80]!r}, not a file path; "
                               "fix it or remove it")
            problem = file_problem(split_spec(spec, root)[0], root)
            if problem:
                raise BadInput(CONFIG_PATH, f"'{at}': {problem}; a remembered params or metrics "
                               "file must be inside the repository: fix or remove the entry")


def save(root: Path, config: Config) -> None:
    text = "# mlsnap settings for this repository (tracked by Git)\n" + yaml.safe_dump(
        config.to_dict(), sort_keys=False, default_flow_style=False)
    atomic_write(root / CONFIG_PATH, text.encode())

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
from mlsnap.manifest import MANIFEST_DIR, safe_load

CONFIG_PATH = f"{MANIFEST_DIR}/config.yaml"
DEFAULT_NAME = "model"


@dataclass
class Config:
    default_name: str = DEFAULT_NAME
    sources: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"mlsnap": 1, "default_name": self.default_name, "sources": self.sources}


def load(root: Path) -> Config:
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
    if not isinstance(sources, dict) or not all(
        isinstance(v, dict) and all(isinstance(x, list) for x in v.values())
        for v in sources.values()
    ):
        raise BadInput(CONFIG_PATH, "'sources' must map names to {params: [...], metrics: [...]}")
    name = doc.get("default_name", DEFAULT_NAME)
    if not isinstance(name, str):
        raise BadInput(CONFIG_PATH, "'default_name' must be a string")
    return Config(default_name=name, sources=sources)


def save(root: Path, config: Config) -> None:
    text = "# mlsnap settings for this repository (tracked by Git)\n" + yaml.safe_dump(
        config.to_dict(), sort_keys=False, default_flow_style=False)
    atomic_write(root / CONFIG_PATH, text.encode())

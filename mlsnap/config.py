"""``.mlsnap/config.yaml``: the project's tracked mlsnap settings.

It remembers, per snapshot name, which params and metrics files the last commit read, so that a
plain ``mlsnap commit`` re-reads them just as it re-records the previous paths, and holds the
retention policies ``mlsnap gc`` applies when it is given none (``retention:``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlsnap.errors import BadInput, ManifestInvalid, NotInitialized
from mlsnap.fsutil import atomic_write
from mlsnap.manifest import MANIFEST_DIR, is_valid_name
from mlsnap.safeyaml import safe_load

CONFIG_PATH = f"{MANIFEST_DIR}/config.yaml"
DEFAULT_NAME = "model"


@dataclass
class Config:
    default_name: str = DEFAULT_NAME
    sources: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    # Kept as written (validated only by ``retention``) and written back untouched: a commit
    # rewriting the file must never drop or reformat a policy, nor keys a newer mlsnap added.
    retention: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        doc = {"mlsnap": 1, "default_name": self.default_name, "sources": self.sources}
        if self.retention is not None:
            doc["retention"] = self.retention
        return {**doc, **{k: v for k, v in self.extra.items() if k not in doc}}


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
    extra = {k: v for k, v in doc.items()
             if k not in ("mlsnap", "default_name", "sources", "retention")}
    return Config(default_name=name, sources=sources, retention=doc.get("retention"),
                  extra=extra)


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


# --------------------------------------------------------------------------- retention

POLICY_KEYS = ("keep_last", "keep_best", "keep_within_days")
ALL_NAMES = "*"  # the key of the policy for every name without one of its own


@dataclass(frozen=True)
class Best:
    """Keep the ``k`` snapshots with the best ``metric`` (``mode`` max: highest)."""

    metric: str
    mode: str
    k: int


@dataclass(frozen=True)
class Policy:
    """What ``mlsnap gc`` keeps of one snapshot name beyond what it always keeps."""

    keep_last: int | None = None
    keep_best: Best | None = None
    keep_within_days: float | None = None

    def to_dict(self) -> dict[str, Any]:
        best = self.keep_best
        return {"keep_last": self.keep_last,
                "keep_best": None if best is None else {"metric": best.metric,
                                                       "mode": best.mode, "k": best.k},
                "keep_within_days": self.keep_within_days}


def retention(config: Config) -> dict[str, Policy]:
    """The policies of ``retention:``: name -> Policy, ``ALL_NAMES`` for the default.

    Two forms: policy keys at the top (one policy for every name), or names mapping to
    policies; both together make the top-level keys the default of names not listed. The file
    comes with every clone, so each value is checked; a bad one is one line naming it.
    """
    raw = config.retention
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _bad("retention", "must map snapshot names (or keep_last, keep_best, "
                                "keep_within_days) to a policy")
    policies: dict[str, Policy] = {}
    default = {k: v for k, v in raw.items() if k in POLICY_KEYS}
    if default:
        policies[ALL_NAMES] = policy_from(default, "retention")
    from mlsnap.manifest import is_valid_name

    for name, value in raw.items():
        if name in POLICY_KEYS:
            continue
        if not isinstance(name, str) or not is_valid_name(name):
            raise _bad(f"retention.{name}", "is neither a snapshot name nor one of "
                                            + ", ".join(POLICY_KEYS))
        policies[name] = policy_from(value, f"retention.{name}")
    return policies


def policy_from(value: Any, where: str) -> Policy:
    if not isinstance(value, dict):
        raise _bad(where, "must be a mapping of " + ", ".join(POLICY_KEYS))
    unknown = sorted(str(k) for k in value if k not in POLICY_KEYS)
    if unknown:
        raise _bad(f"{where}.{unknown[0]}", "unknown key; use " + ", ".join(POLICY_KEYS))
    last = value.get("keep_last")
    if last is not None and not (_whole(last) and last >= 0):
        raise _bad(f"{where}.keep_last", f"must be a whole number >= 0, not {last!r}")
    days = value.get("keep_within_days")
    if days is not None and not (_number(days) and days >= 0):
        raise _bad(f"{where}.keep_within_days", f"must be a number of days >= 0, not {days!r}")
    best = value.get("keep_best")
    return Policy(last, None if best is None else _best(best, f"{where}.keep_best"),
                  None if days is None else float(days))


def _best(value: Any, where: str) -> Best:
    if not isinstance(value, dict) or not isinstance(value.get("metric"), str) \
            or not value["metric"]:
        raise _bad(where, "must be {metric: NAME, mode: max|min, k: N}")
    unknown = sorted(str(k) for k in value if k not in ("metric", "mode", "k"))
    if unknown:
        raise _bad(f"{where}.{unknown[0]}", "unknown key; use metric, mode, k")
    mode = value.get("mode", "max")
    if mode not in ("max", "min"):
        raise _bad(f"{where}.mode", f"must be max or min, not {mode!r}")
    k = value.get("k", 1)
    if not (_whole(k) and k >= 1):
        raise _bad(f"{where}.k", f"must be a whole number >= 1, not {k!r}")
    return Best(value["metric"], mode, int(k))


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _bad(field_name: str, reason: str) -> BadInput:
    return BadInput(CONFIG_PATH, f"{field_name}: {reason}; fix it there (see docs/storage.md)")

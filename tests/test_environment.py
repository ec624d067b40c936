"""Environment capture agrees with importlib.metadata; redaction and drift on real values."""

from __future__ import annotations

import importlib.metadata
import re

from mlsnap import environment
from mlsnap._envprobe import packages
from mlsnap.environment import Environment


def test_package_scan_agrees_with_importlib_metadata() -> None:
    expected: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
        expected.setdefault(name, dist.version)
    assert packages() == expected
    assert "pyyaml" in expected and "click" in expected


def test_redaction_of_urls_secret_keys_and_known_token_shapes() -> None:
    secrets = environment.env_secrets({"HF_TOKEN": "hf_abcdefghijklmnopqrstuvwxyz012345",
                                       "PATH": "/usr/bin", "MY_KEY": "short"})
    assert secrets == ["hf_abcdefghijklmnopqrstuvwxyz012345"]
    tree = environment.redact({"db": {"password": "pw-123456"}, "key_dim": 64,
                               "url": "https://bob:tok@host/x", "lr": 0.1,
                               "note": "ghp_" + "a" * 36}, secrets)
    assert tree == {"db": {"password": "***"}, "key_dim": 64, "url": "https://***@host/x",
                    "lr": 0.1, "note": "***"}


def test_drift_lists_changed_missing_and_extra_packages() -> None:
    base = {"python": "3.11.7", "implementation": "CPython", "os": "Linux", "machine": "x86_64"}
    recorded = Environment(**base, packages={"numpy": "2.0.0", "torch": "2.13.0", "a": "1"})
    current = Environment(**{**base, "python": "3.11.9"},
                          packages={"numpy": "2.1.0", "a": "1", "new": "0.1"})
    drift = environment.drift(recorded, current)
    assert drift.python == ("3.11.7", "3.11.9")
    assert drift.changed == {"numpy": ("2.0.0", "2.1.0")}
    assert drift.missing == {"torch": "2.13.0"} and drift.extra == {"new": "0.1"}
    table = drift.table()
    assert "1 changed, 1 missing, 1 extra" in table and "(missing)" in table
    assert not environment.drift(recorded, recorded)

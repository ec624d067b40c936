"""Environment capture agrees with importlib.metadata; redaction and drift on real values."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import re
from pathlib import Path

import yaml

import mlsnap as mlsnap_api
from mlsnap import environment
from mlsnap._envprobe import packages
from mlsnap.environment import Environment
from tests.helpers import mlsnap, venv, wheel


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


# --------------------------------------------------------------------------- what leads


def _rows(table: str) -> list[str]:
    """Package names of the table's rows (after its header line and column header)."""
    lines = table.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["package"]) + 1
    rows = []
    for line in lines[start:]:
        if not line.startswith("  ") or line.startswith("  ..."):
            break
        rows.append(line.split()[0])
    return rows


def test_drift_table_leads_with_what_the_training_used_then_platform_then_a_count() -> None:
    base = {"implementation": "CPython", "os": "Linux", "machine": "x86_64"}
    tooling = [f"tool{i:02d}" for i in range(30)]
    recorded = Environment(python="3.11.7", **base,
                           packages={"scikit-learn": "1.9.1", "scipy": "1.16", "aiohttp": "3",
                                     **{t: "1" for t in tooling}},
                           top_level=["scikit-learn", "tool00"], tooling=tooling)
    current = Environment(python="3.12.1", **base, packages={})
    table = environment.drift(recorded, current).table()
    assert table.splitlines()[0] == ("environment drift: 0 changed, 33 missing, 0 extra "
                                     "package(s); 1 of them installed on purpose (no other "
                                     "package requires them)")
    assert _rows(table) == ["scikit-learn", "python"]
    assert table.splitlines()[-1] == ("  ... and 32 more package(s): 30 of mlsnap's own tooling "
                                      "(DVC and its dependencies), 2 other(s) "
                                      "(mlsnap status --json lists all)")
    # What the training imported wins over the top-level guess.
    imported = dataclasses.replace(recorded, imported=["scipy", "tool03"])
    table = environment.drift(imported, current).table()
    assert _rows(table) == ["scipy", "python"] and "1 of them imported by the training" in table
    # A manifest from before these keys: every package, platform first, as it always was.
    old = dataclasses.replace(recorded, top_level=None, tooling=None)
    assert _rows(environment.drift(old, current).table())[:2] == ["python", "aiohttp"]


def test_pull_in_a_fresh_virtualenv_leads_with_the_package_the_training_installed(
        project: Path, tmp_path: Path) -> None:
    # The training environment: everything installed here (mlsnap, DVC and its world), plus
    # trainer-lib, installed on purpose, which brought helper-a with it.
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    training = venv(tmp_path / "train", wheel(wheels, "trainer-lib", "1.0", ("helper-a>=1",)),
                    wheel(wheels, "helper-a", "2.0"), see_this_environment=True)
    fresh = venv(tmp_path / "fresh")
    (project / "model.pkl").write_bytes(b"weights")
    mlsnap(project, "commit", "model.pkl", env={"VIRTUAL_ENV": str(training.parent.parent)})
    recorded = yaml.safe_load((project / ".mlsnap" / "model.yaml").read_text())["environment"]
    assert "trainer-lib" in recorded["top_level"] and "helper-a" not in recorded["top_level"]
    assert {"mlsnap", "dvc", "click"} <= set(recorded["tooling"])
    assert "trainer-lib" not in recorded["tooling"]

    out = mlsnap(project, "pull", "--python", str(fresh)).stdout
    table = out[out.index("environment drift:"):]
    rows = _rows(table)
    used = set(recorded["top_level"]) - set(recorded["tooling"])
    assert rows and set(rows) <= used and ("trainer-lib" in rows or len(used) > 20)
    assert not {"dvc", "aiohttp", "helper-a", "mlsnap", "pip"} & set(rows)
    assert "of mlsnap's own tooling" in table.splitlines()[-1]
    report = json.loads(mlsnap(project, "status", "--json", "--no-remote", "--python",
                               str(fresh)).stdout)
    assert "trainer-lib" in report["drift"]["model"]["used"]
    assert "dvc" in report["drift"]["model"]["tooling"]


def test_a_snapshot_taken_in_the_training_process_leads_with_what_it_imported(
        project: Path, tmp_path: Path) -> None:
    import numpy  # the training's own import (installed by the test extra)

    assert numpy.__version__
    (project / "model.pkl").write_bytes(b"weights")
    result = mlsnap_api.commit("model.pkl", repo=project, push=False)
    imported = result.manifest.environment.imported or []
    assert "numpy" in imported and "mlsnap" not in (result.manifest.environment.used() or [])
    fresh = venv(tmp_path / "fresh")
    table = mlsnap(project, "status", "--no-remote", "--python", str(fresh)).stdout
    rows = _rows(table[table.index("environment drift:"):])
    assert "numpy" in rows and set(rows) <= set(imported) and "dvc" not in rows

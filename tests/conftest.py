from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import make_project


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pin Git identity, HOME and config; keep DVC from phoning home."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Test Author")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "author@example.com")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Test Committer")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "committer@example.com")
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("DVC_NO_UPDATER", "1")
    monkeypatch.setenv("CI", "true")
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    monkeypatch.delenv("MLSNAP_FAULT_AT", raising=False)
    monkeypatch.delenv("MLSNAP_DEBUG", raising=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An initialized project (code, params, data committed) with a folder remote beside it."""
    return make_project(tmp_path / "proj", tmp_path / "remote")


@pytest.fixture
def remote_dir(tmp_path: Path) -> Path:
    return tmp_path / "remote"

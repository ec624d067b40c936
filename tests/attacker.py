"""Hostile repositories built for real: a real upstream with real snapshots and a real folder
remote, edited as an attacker would (crafted objects written into the remote, pointers and
manifests rewritten consistently, commits made with Git), then cloned by a victim with
`git clone`. Used by tests/test_hostile.py."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import mlsnap, tree_digest

MANIFEST = ".mlsnap/model.yaml"
MODEL = b"weights " * 64
DATA = {"a.txt": b"alpha\n", "sub/b.txt": b"beta\n"}


def base_env(home: Path) -> dict[str, str]:
    """What tests/conftest.py pins per test, for the one upstream built per session."""
    home.mkdir(parents=True, exist_ok=True)
    return {"HOME": str(home), "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_CONFIG_HOME": str(home / ".config"), "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Upstream", "GIT_AUTHOR_EMAIL": "up@example.com",
            "GIT_COMMITTER_NAME": "Upstream", "GIT_COMMITTER_EMAIL": "up@example.com",
            "DVC_NO_ANALYTICS": "1", "DVC_NO_UPDATER": "1", "CI": "true"}


def sh(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, f"{args} failed: {proc.stderr}"
    return proc.stdout.strip()


def build_base(base: Path) -> Path:
    """An upstream with one pushed snapshot: model.pkl (a file) and data/ (a folder)."""
    env = base_env(base / "home")
    up = base / "upstream"
    up.mkdir(parents=True)
    sh(up, "git", "init", "-q", "-b", "main", env=env)
    (up / "train.py").write_text("print('train')\n")
    (up / "params.yaml").write_text("lr: 0.1\n")
    sh(up, "git", "add", "-A", env=env)
    sh(up, "git", "commit", "-q", "-m", "code", env=env)
    mlsnap(up, "init", "--remote", str(base / "remote"), env=env)
    (up / "model.pkl").write_bytes(MODEL)
    for rel, content in DATA.items():
        (up / "data" / rel).parent.mkdir(parents=True, exist_ok=True)
        (up / "data" / rel).write_bytes(content)
    mlsnap(up, "commit", "model.pkl", "data", "-M", "baseline", env=env)
    return base


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@dataclass
class Scene:
    """One attack: an upstream and its remote (copies of the base), a victim clone, an
    ``outside`` folder next to them, and a sentinel file that only attacker code would make."""

    root: Path  # the test's tmp_path: everything but victim/ must stay as it was

    @property
    def up(self) -> Path:
        return self.root / "upstream"

    @property
    def remote(self) -> Path:
        return self.root / "remote"

    @property
    def victim(self) -> Path:
        return self.root / "victim"

    @property
    def outside(self) -> Path:
        return self.root / "outside"

    @property
    def sentinel(self) -> Path:
        return self.root / "SENTINEL"

    @classmethod
    def from_base(cls, base: Path, root: Path) -> Scene:
        shutil.copytree(base / "upstream", root / "upstream", symlinks=True)
        shutil.copytree(base / "remote", root / "remote", symlinks=True)
        scene = cls(root)
        scene.outside.mkdir()
        (scene.outside / "keep.txt").write_text("the user's own file\n")
        config = scene.up / ".dvc" / "config"
        config.write_text(config.read_text().replace(str(base / "remote"), str(scene.remote)))
        scene.commit("remote of this scene")
        return scene

    # --- the attacker's side ---------------------------------------------------------------

    def git(self, *args: str, cwd: Path | None = None) -> str:
        return sh(cwd or self.up, "git", *args)

    def commit(self, message: str = "hostile change", force: tuple[str, ...] = ()) -> None:
        """Commit everything changed, and ``force`` too although Git ignores it (a link inside
        a DVC-tracked folder, a .dvc/config.local)."""
        self.git("add", "-A")
        if force:
            self.git("add", "-f", "--", *force)
        self.git("commit", "-q", "--allow-empty", "-m", message)

    def put(self, data: bytes, suffix: str = "") -> str:
        """Write an object into the remote as DVC lays it out; return its id."""
        oid = md5(data) + suffix
        path = self.remote / "files" / "md5" / oid[:2] / oid[2:]
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.chmod(0o644)
        path.write_bytes(data)
        return oid

    def remote_object(self, oid: str) -> Path:
        return self.remote / "files" / "md5" / oid[:2] / oid[2:]

    def manifest(self) -> dict[str, Any]:
        doc: dict[str, Any] = yaml.safe_load((self.up / MANIFEST).read_text())
        return doc

    def output_md5(self, path: str) -> str:
        return next(o["md5"] for o in self.manifest()["artifacts"] if o["path"] == path)

    def point(self, path: str, oid: str) -> None:
        """Make the manifest and the ``.dvc`` pointer of ``path`` name object ``oid``."""
        old = self.output_md5(path)
        for rel in (MANIFEST, f"{path}.dvc"):
            f = self.up / rel
            f.write_text(f.read_text().replace(old, oid))

    def listing(self, entries: list[Any] | bytes, path: str = "data") -> str:
        """A crafted ``.dir`` listing for folder ``path`` on the remote, named by its hash;
        ``entries`` of (relpath, content) get their objects written too."""
        if isinstance(entries, bytes):
            raw = entries
        else:
            rows = []
            for entry in entries:
                if isinstance(entry, tuple):
                    rel, content = entry
                    rows.append({"md5": self.put(content), "relpath": rel})
                else:
                    rows.append(entry)
            raw = json.dumps(rows).encode()
        oid = self.put(raw, ".dir")
        self.point(path, oid)
        return oid

    def pointer(self, path: str, doc: Any) -> None:
        (self.up / f"{path}.dvc").write_text(yaml.safe_dump(doc, sort_keys=False))

    def pointer_doc(self, path: str) -> dict[str, Any]:
        doc: dict[str, Any] = yaml.safe_load((self.up / f"{path}.dvc").read_text())
        return doc

    # --- the victim's side -----------------------------------------------------------------

    def clone(self) -> Path:
        sh(self.root, "git", "clone", "-q", str(self.up), str(self.victim))
        return self.victim

    def outside_state(self) -> dict[str, str]:
        """Every file and link under the scene except the victim's clone, with its content."""
        state = {}
        for dirpath, dirs, files in os.walk(self.root):
            here = Path(dirpath)
            if here == self.victim:
                dirs[:] = []
                continue
            for name in dirs + files:
                p = here / name
                rel = p.relative_to(self.root).as_posix()
                if p.is_symlink():
                    state[rel] = "-> " + os.readlink(p)
                elif p.is_file():
                    state[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
                else:
                    state[rel] = "dir"
        return state

    def git_private(self) -> dict[str, str]:
        """The victim's .git/config and hooks: what would make Git run code."""
        git_dir = self.victim / ".git"
        state = {"config": (git_dir / "config").read_text()}
        for hook in sorted((git_dir / "hooks").iterdir()):
            state[hook.name] = hook.read_text(errors="replace")
        return state

    def status(self) -> str:
        """A real `git status` in the victim: with a planted core.fsmonitor it would run it."""
        return sh(self.victim, "git", "status", "--porcelain", "--untracked-files=all")


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


def _workspace(victim: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(the clone's files, its DVC cache's objects), each path -> sha256."""
    tree = tree_digest(victim)
    cache = {k: v for k, v in tree.items() if k.startswith(".dvc/cache/")}
    return {k: v for k, v in tree.items() if k not in cache}, cache


def attempt(scene: Scene, args: list[str], code: int, *needles: str,
            env: dict[str, str] | None = None, changes_workspace: bool = False,
            fetches: bool = False, cwd: Path | None = None,
            verdict_on_stdout: bool = False) -> Outcome:
    """Run ``mlsnap args`` in the victim and check what every hostile input must leave: the
    exit code, one ``Error: ...`` line on stderr when it fails, no traceback, nothing written
    outside the clone, Git's private files untouched, no sentinel, and (unless
    ``changes_workspace``) the clone exactly as it was, its cache too unless the command
    ``fetches`` verified objects before it refused. ``verdict_on_stdout``: a command that
    prints a verdict, and a command's output on stderr (``repro``), leaves the caller to judge
    stderr."""
    victim = scene.victim
    outside, private = scene.outside_state(), scene.git_private()
    (tree, cache), status = _workspace(victim), scene.status()
    proc = subprocess.run([sys.executable, "-m", "mlsnap", *args], cwd=cwd or victim,
                          capture_output=True, text=True, env={**os.environ, **(env or {})},
                          check=False, timeout=300)
    context = f"mlsnap {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == code, context
    assert "Traceback" not in proc.stderr + proc.stdout, context
    err = proc.stderr.strip()
    if not verdict_on_stdout and (code == 1 or (code != 0 and err)):
        assert err.startswith("Error: ") and "\n" not in err, context
        assert "unexpected" not in err, context
    for needle in needles:
        assert needle in err + proc.stdout, (needle, context)
    after_status = scene.status()  # runs Git for real, as the victim's next command would
    assert not scene.sentinel.exists(), f"attacker code ran: {context}"
    assert scene.outside_state() == outside, f"written outside the clone: {context}"
    assert scene.git_private() == private, f".git/config or hooks changed: {context}"
    if not changes_workspace:
        after_tree, after_cache = _workspace(victim)
        assert after_tree == tree, f"a refused command wrote files: {context}"
        assert after_status == status, context
        if not fetches:
            assert after_cache == cache, f"objects entered the cache: {context}"
        else:
            assert all(after_cache.get(k) == v for k, v in cache.items()), context
    return Outcome(proc.returncode, proc.stdout, proc.stderr)

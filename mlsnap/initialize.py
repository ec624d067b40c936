"""``mlsnap init``: DVC, the default remote and ``.mlsnap/config.yaml``, committed once.

Idempotent and journaled like every writing command: a killed init is finished by the next
mlsnap command, and its set-up files are committed so that clones know the remote.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from mlsnap import config as configmod
from mlsnap import gitrepo, journal, redaction, store, workspace
from mlsnap.errors import BadInput


@dataclass(frozen=True)
class InitResult:
    root: Path
    remote_name: str
    remote_url: str
    created_dvc: bool
    committed: str | None



def default_remote_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "mlsnap" / "storage"


def _remote_url(url: str | None, cwd: Path) -> str:
    """Local folders become absolute (clones on this machine find them); URLs keep no secrets."""
    if url is None:
        folder = default_remote_dir()
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder)
    parts = urlsplit(url)
    found = redaction.find(url)
    if found:  # the URL is tracked in .dvc/config: every clone and push would carry it
        raise BadInput("--remote", f"the URL holds {found}; give it without, and keep the "
                       "credential in .dvc/config.local (never committed): `--local "
                       "password=VALUE` here, or `mlsnap remote set KEY VALUE --local`")
    if len(parts.scheme) > 1:
        return url
    folder = (cwd / url).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder)


def init(remote: str | None = None, *, remote_name: str = store.DEFAULT_REMOTE,
         local_options: dict[str, str] | None = None, cwd: Path | None = None) -> InitResult:
    """Make the Git repo at ``cwd`` ready: DVC, the default remote, ``.mlsnap/config.yaml``.

    Idempotent; the set-up files are committed so clones know the remote.
    """
    cwd = cwd or Path.cwd()
    root = workspace.find_root(cwd)
    gitrepo.require_identity(root)  # init commits its set-up: fail before writing any of it
    intent = journal.Intent("init", argv=journal.command_line("init"),
                            head=gitrepo.head_or_none(root),
                            created=[] if (root / ".dvc").exists() else [".dvc"],
                            staged=list(workspace.SETUP_FILES))
    with journal.operation(root, intent) as op:
        op.protect([*workspace.SETUP_FILES, ".dvc/config.local"], index=True)
        created = store.init(root)
        url = None
        if remote is not None or not _has_remote(root):
            url = _remote_url(remote, cwd)
        store.configure(root, url, remote_name, local_options)
        if not (root / configmod.CONFIG_PATH).is_file():
            configmod.save(root, configmod.Config())
        with store.open_repo(root) as repo:
            name, current_url = store.default_remote(repo)
        files = [f for f in workspace.SETUP_FILES if (root / f).exists()]
        committed = None
        if gitrepo.changed_since_head(root, files):
            committed = gitrepo.commit_paths(root, "mlsnap: init", files)
    return InitResult(root, name or remote_name, current_url or "", created, committed)


def _has_remote(root: Path) -> bool:
    with store.open_repo(root) as repo:
        return store.default_remote(repo)[0] is not None

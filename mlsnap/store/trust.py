"""Settings that arrive with a clone are untrusted: checked before anyone obeys them.

``.dvc/config`` is tracked by Git, so whoever pushed to the repository chose it. A cache
directory outside the repository would make every pull write there; a ``symlink`` or
``hardlink`` cache type restores files as links into the cache, so an in-place edit corrupts it;
``core.site_cache_dir`` moves DVC's own state elsewhere. Those choices belong to the machine, so
they count only from ``.dvc/config.local`` (never committed, never cloned) or the user's own
global and system configs. ``.mlsnap/config.yaml`` is checked by ``mlsnap.config``.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from mlsnap.errors import BadInput

LINK_TYPES = ("symlink", "hardlink")


class UntrustedSetting(BadInput):
    def __init__(self, key: str, value: str, why: str) -> None:
        super().__init__(
            ".dvc/config",
            f"{key} = {value} {why}; a cloned repository does not choose that for this machine. "
            f"To allow it here, set it in .dvc/config.local, which is never committed: "
            f"`dvc config --local {key} {shlex.quote(value)}`",
        )


def _load(root: Path, rel: str) -> dict[str, Any]:
    from dvc.config import Config, ConfigError

    path = root / rel
    if not path.is_file():
        return {}
    try:
        return dict(Config.load_file(os.fspath(path)))
    except ConfigError as exc:
        raise BadInput(rel, f"DVC cannot read it ({' '.join(str(exc).split())[:200]}); fix it, "
                       f"or restore it with `git checkout -- {rel}`") from None


def _outside(root: Path, value: str) -> str | None:
    """Where a path setting of ``.dvc/config`` (relative to ``.dvc/``, ``~`` expanded) lands
    when that is outside the repository or inside its ``.git`` (None: inside, elsewhere)."""
    full = Path(os.path.expanduser(value))
    real = (full if full.is_absolute() else root / ".dvc" / full).resolve()
    top = root.resolve()
    git = top / ".git"
    if real == git or git in real.parents:
        return "into .git"
    return None if real == top or top in real.parents else "outside the repository"


# Machine-only parts of .dvc/: ignored by DVC's .gitignore, so a tracked one came with a clone
# (a committed config.local would pass for this machine's own; a committed cache or tmp link
# would point DVC's writes anywhere).
_MACHINE_ONLY = (".dvc/config.local", ".dvc/cache", ".dvc/tmp")


def _tracked_machine_files(root: Path) -> list[str]:
    from mlsnap import gitrepo

    raw = gitrepo.run(root, ["ls-files", "-z", "--", ".dvc"], check=False).stdout
    names = [n.decode(errors="replace") for n in raw.split(b"\x00") if n]
    return [n for n in names if n == ".dvc"
            or any(n == m or n.startswith(m + "/") for m in _MACHINE_ONLY)]


def check_dvc_config(root: Path) -> None:
    """Refuse, before DVC opens ``root``, the cloned settings that decide where and how this
    machine writes, unless ``.dvc/config.local`` sets them itself."""
    tracked = _tracked_machine_files(root)
    if tracked:
        raise BadInput(tracked[0], "is tracked by Git, so it came with the repository, but it "
                       "belongs to this machine (DVC never commits it); refusing to use it: "
                       f"check it, then `git rm -r --cached {tracked[0]}`")
    repo = _load(root, ".dvc/config")
    if not repo:
        return
    local = _load(root, ".dvc/config.local")
    cache, local_cache = repo.get("cache") or {}, local.get("cache") or {}
    core, local_core = repo.get("core") or {}, local.get("core") or {}
    folder = cache.get("dir")
    where = _outside(root, folder) if isinstance(folder, str) else None
    if where and "dir" not in local_cache:
        raise UntrustedSetting("cache.dir", str(folder), f"puts the cache {where}")
    kind = cache.get("type")
    if isinstance(kind, str) and "type" not in local_cache \
            and any(link in kind.lower() for link in LINK_TYPES):
        raise UntrustedSetting("cache.type", kind, "restores files as links into the cache "
                               "(an edit in place would corrupt it)")
    site = core.get("site_cache_dir")
    if isinstance(site, str) and "site_cache_dir" not in local_core:
        raise UntrustedSetting("core.site_cache_dir", site, "moves DVC's state outside the "
                               "repository")

"""Plain Git hooks: the script ``mlsnap hooks install`` writes, and the installer.

The script calls the absolute interpreter that installed it (a hook must not depend on an
activated virtualenv), strips the ``GIT_*`` variables Git leaks into hooks, and chains the hook
it replaced instead of refusing to install (the two complaints DVC's ``dvc install`` draws).
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from mlsnap import gitrepo
from mlsnap.errors import BadInput, MlsnapError
from mlsnap.fsutil import atomic_write

GIT_HOOKS = ("post-checkout", "pre-commit", "pre-push")
MARKER = "# mlsnap-managed-hook"
CHAIN_SUFFIX = ".pre-mlsnap"


class HookConflict(MlsnapError):
    def __init__(self, hook: Path, chained: Path) -> None:
        super().__init__(
            f"{hook} is not mlsnap's hook and {chained} already exists, so it cannot be kept "
            "there; merge or move one of them away, then run `mlsnap hooks install` again"
        )


# One script serves the three hooks; @HOOK@ and @PYTHON@ are filled in by ``render``.
_SCRIPT = r"""#!/bin/sh
# mlsnap-managed-hook: @HOOK@
# Runs mlsnap's checks for Git's @HOOK@ hook. `mlsnap hooks install` writes this file with the
# absolute interpreter that has mlsnap, so it works without an activated virtualenv; a hook that
# was here before is kept as @HOOK@.pre-mlsnap and runs first (`mlsnap hooks install --uninstall`
# puts it back). Copied by hand, it runs `mlsnap` from PATH unless mlsnap_python is set.
# MLSNAP_SKIP_HOOKS=1 skips mlsnap (not the chained hook) for one command.
hook=@HOOK@
mlsnap_python=@PYTHON@

if [ "$hook" = pre-push ]; then
    refs=$(cat)  # Git sends the pushed refs on stdin; both hooks need them
fi

chained="$0.pre-mlsnap"
if [ -x "$chained" ]; then
    if [ -n "${refs:-}" ]; then
        printf '%s\n' "$refs" | "$chained" "$@" || exit $?
    else
        "$chained" "$@" </dev/null || exit $?
    fi
fi
[ -n "${MLSNAP_SKIP_HOOKS:-}" ] && exit 0

# Git exports GIT_DIR, GIT_INDEX_FILE and friends to hooks; left in place they send nested Git
# calls (DVC makes some) to the wrong place. The index being committed is handed on by name.
if [ -n "${GIT_INDEX_FILE:-}" ]; then
    case "$GIT_INDEX_FILE" in
        /*) MLSNAP_GIT_INDEX_FILE=$GIT_INDEX_FILE ;;
        *) MLSNAP_GIT_INDEX_FILE=$(pwd)/$GIT_INDEX_FILE ;;
    esac
    export MLSNAP_GIT_INDEX_FILE
fi
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_OBJECT_DIRECTORY \
    GIT_ALTERNATE_OBJECT_DIRECTORIES GIT_PREFIX GIT_COMMON_DIR GIT_NAMESPACE

run_mlsnap() {
    if [ -n "$mlsnap_python" ]; then
        if [ ! -x "$mlsnap_python" ]; then
            echo "mlsnap $hook hook: $mlsnap_python is gone; run \`mlsnap hooks install\`" \
                "from the environment that has mlsnap (or MLSNAP_SKIP_HOOKS=1 to skip)" >&2
            exit 1
        fi
        "$mlsnap_python" -m mlsnap "$@"
    elif command -v mlsnap >/dev/null 2>&1; then
        command mlsnap "$@"
    else
        echo "mlsnap $hook hook: mlsnap is not on PATH; install the hook with" \
            "\`mlsnap hooks install\` (or MLSNAP_SKIP_HOOKS=1 to skip)" >&2
        exit 1
    fi
}

case "$hook" in
    pre-commit)
        run_mlsnap hook mlsnap-no-large-files && run_mlsnap hook mlsnap-check-manifest ;;
    pre-push)
        if [ -n "${refs:-}" ]; then
            printf '%s\n' "$refs" | run_mlsnap hook mlsnap-push -- "$@"
        else
            run_mlsnap hook mlsnap-push -- "$@" </dev/null
        fi ;;
    post-checkout)
        run_mlsnap hook mlsnap-pull -- "$@" ;;
esac
"""


def render(hook: str, python: str | None) -> str:
    """The script for ``hook``; ``python`` None gives the hand-copy form in ``hooks/``."""
    if hook not in GIT_HOOKS:
        raise BadInput(hook, f"not a hook mlsnap provides ({', '.join(GIT_HOOKS)})")
    return _SCRIPT.replace("@HOOK@", hook).replace("@PYTHON@", shlex.quote(python or ""))


def hooks_dir(root: Path) -> Path:
    """The folder Git runs hooks from (``core.hooksPath`` when set)."""
    return gitrepo.git_path(root, "hooks")


def is_managed(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return MARKER.encode() in f.read(512)
    except OSError:
        return False


@dataclass(frozen=True)
class HookChange:
    hook: str
    path: Path
    action: str  # what happened, in words


def install(root: Path, python: str | None = None) -> list[HookChange]:
    """Write the three hooks; keep any foreign hook as ``<hook>.pre-mlsnap`` (runs first).

    Journaled like every writing command: a kill leaves at most a partial hook under a
    temporary name, which the next mlsnap command removes."""
    from mlsnap import journal

    folder = hooks_dir(root)
    intent = journal.Intent("hooks", argv=journal.command_line("hooks install"),
                            clean=[str(folder)])
    with journal.operation(root, intent):
        return _install(root, folder, python or os.path.abspath(sys.executable))


def _install(root: Path, folder: Path, python: str) -> list[HookChange]:
    folder.mkdir(parents=True, exist_ok=True)
    plan = []
    for hook in GIT_HOOKS:  # check everything before touching anything
        path, chained = folder / hook, folder / f"{hook}{CHAIN_SUFFIX}"
        foreign = os.path.lexists(path) and not is_managed(path)
        if foreign and os.path.lexists(chained):
            raise HookConflict(path, chained)
        plan.append((hook, path, chained, foreign))
    changes = []
    for hook, path, chained, foreign in plan:
        script = render(hook, python).encode()
        if foreign:
            # One rename: at every instant one of the two names holds the user's hook, and a
            # rerun after a kill right here finds no foreign hook, only the chained one.
            os.replace(path, chained)
            action = f"installed; the previous hook is kept as {chained.name} and runs first"
        elif os.path.lexists(path):
            if path.read_bytes() == script and os.access(path, os.X_OK):
                changes.append(HookChange(hook, path, "already installed"))
                continue
            action = "updated"
        else:
            action = "installed"
        atomic_write(path, script, mode=0o755)  # executable before it appears: Git runs it
        changes.append(HookChange(hook, path, action))
    return changes


def uninstall(root: Path) -> list[HookChange]:
    """Remove mlsnap's hooks and put back the hooks they chained."""
    folder = hooks_dir(root)
    changes = []
    for hook in GIT_HOOKS:
        path, chained = folder / hook, folder / f"{hook}{CHAIN_SUFFIX}"
        if not os.path.lexists(path):
            changes.append(HookChange(hook, path, "not installed"))
        elif not is_managed(path):
            changes.append(HookChange(hook, path, "left alone (not mlsnap's)"))
        elif os.path.lexists(chained):
            os.replace(chained, path)
            changes.append(HookChange(hook, path, f"removed; {chained.name} restored"))
        else:
            path.unlink()
            changes.append(HookChange(hook, path, "removed"))
    return changes


__all__ = ["CHAIN_SUFFIX", "GIT_HOOKS", "MARKER", "HookChange", "HookConflict", "hooks_dir",
           "install", "is_managed", "render", "uninstall"]

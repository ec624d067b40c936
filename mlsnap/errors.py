"""The exceptions mlsnap raises; the CLI maps each to one line on stderr and an exit code.

Every message is built here, in ``__init__``, so callers raise with facts, not prose.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mlsnap.interrupts import Terminated  # noqa: F401 - re-exported; it lives with the SIGTERM handler

EXIT_ERROR = 1
EXIT_CHECK_FAILED = 3


class MlsnapError(Exception):
    """Root of every error a user can act on."""

    exit_code = EXIT_ERROR


class CheckFailed(MlsnapError):
    """A verification found a difference (hash, status, strict environment)."""

    exit_code = EXIT_CHECK_FAILED


class NotAGitRepo(MlsnapError):
    def __init__(self, path: str) -> None:
        super().__init__(f"{path} is not inside a Git repository; run `git init` first")


class NoCommits(MlsnapError):
    def __init__(self, path: str, branch: str | None = None) -> None:
        where = (f"the branch {branch!r} in {path} has no commits yet, so no snapshot is "
                 "recorded at HEAD" if branch else
                 f"the Git repository at {path} has no commits yet")
        super().__init__(f"{where}; commit your code first (`git add -A && git commit -m code`)")


class NoGitIdentity(MlsnapError):
    def __init__(self, path: str) -> None:
        super().__init__(
            f"Git does not know who you are in {path}, and mlsnap records every snapshot as a "
            "Git commit; set it with `git config --global user.name \"Your Name\"` and "
            "`git config --global user.email you@example.com` (drop --global for this "
            "repository only), then run the command again; nothing was changed"
        )


class NotInitialized(MlsnapError):
    def __init__(self, path: str) -> None:
        super().__init__(f"{path} is not set up for mlsnap; run `mlsnap init --remote DIR_OR_URL`")


class DirtyWorktree(MlsnapError):
    def __init__(self, paths: Iterable[str]) -> None:
        names = sorted(paths)
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        super().__init__(
            f"tracked code has uncommitted changes ({shown}); commit them first, "
            "or pass --allow-dirty to record the diff in the snapshot"
        )


class ManifestInvalid(MlsnapError):
    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: invalid manifest: {reason}")


class NoSnapshot(MlsnapError):
    def __init__(self, what: str) -> None:
        super().__init__(f"no snapshot found {what}; take one with `mlsnap commit PATH`")


class BadInput(MlsnapError):
    """A file or value given by the user cannot be used (params files, -p values, paths)."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")


class WouldOverwrite(MlsnapError):
    def __init__(self, paths: Iterable[str]) -> None:
        names = ", ".join(sorted(paths))
        super().__init__(
            f"refusing to overwrite {names}: the current content is not in the DVC cache and "
            "would be lost; snapshot it with `mlsnap commit`, move it away, or pass --force"
        )


class HashMismatch(CheckFailed):
    def __init__(self, path: str, expected: str, actual: str, where: str) -> None:
        super().__init__(
            f"{path}: {where} content hash is {actual}, the manifest expects {expected}; "
            "the bytes are corrupt and were not written to the workspace"
        )


class InterruptedCommit(CheckFailed):
    """Snapshot files differ from HEAD: an ``mlsnap commit`` stopped before its Git commit."""

    def __init__(self, files: Iterable[str]) -> None:
        names = " ".join(sorted(files))
        verb = "differs" if len(names.split()) == 1 else "differ"
        super().__init__(
            f"{names} {verb} from HEAD: an `mlsnap commit` did not finish (or they were edited); "
            f"run `mlsnap commit` again to complete the snapshot, or `git checkout HEAD -- {names}` "
            "to drop it"
        )


class RestoreFailed(MlsnapError):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(
            f"{path}: could not be restored ({reason}); no partial file was left in the "
            "workspace; fix that and run `mlsnap pull` again"
        )


class MissingObjects(MlsnapError):
    def __init__(self, paths: Iterable[str], remote: str) -> None:
        self.paths = sorted(paths)
        self.remote = remote
        names = ", ".join(self.paths)
        super().__init__(
            f"not found in the cache or on remote {remote!r}: {names}; "
            "whoever made the snapshot must run `mlsnap push`"
        )


class PushFailed(MlsnapError):
    def __init__(self, remote: str, reason: str, committed: str | None = None) -> None:
        self.remote = remote
        self.reason = reason
        head = f"snapshot committed as {committed[:12]} but its bytes" if committed else "the bytes"
        super().__init__(
            f"{head} could not be pushed to remote {remote!r} ({reason}); "
            "the local snapshot is kept, retry with `mlsnap push`"
        )


class RemoteError(MlsnapError):
    def __init__(self, remote: str, reason: str) -> None:
        super().__init__(f"remote {remote!r}: {reason}")


class SecretFound(MlsnapError):
    def __init__(self, where: str) -> None:
        super().__init__(
            f"refusing to write the manifest: {where} looks like a secret (token, key or password); "
            "remove it or pass it through an environment variable that mlsnap does not record"
        )


class LockHeld(MlsnapError):
    def __init__(self, lock: str, holder: str) -> None:
        super().__init__(
            f"another mlsnap command holds {lock} ({holder}); wait for it to finish and retry"
        )


class JournalFailed(MlsnapError):
    def __init__(self, path: object, command: str, reason: str | None) -> None:
        super().__init__(
            f"{path}: cannot record what `{command}` is about to do ({reason or 'unknown'}); "
            f"nothing was changed; fix that and run `{command}` again"
        )


class GitFailed(MlsnapError):
    def __init__(self, args: Iterable[str], code: int, stderr: str) -> None:
        detail = " ".join(line.strip() for line in stderr.strip().splitlines()[:3]) or "no output"
        super().__init__(f"`git {' '.join(args)}` failed with exit code {code}: {detail}")


class CheckpointIndexInvalid(MlsnapError):
    def __init__(self, path: object, reason: str) -> None:
        super().__init__(
            f"{path}: invalid checkpoint index: {reason}; restore it with `mlsnap pull` "
            "or move the folder away to start a new run"
        )


class CheckpointFailed(MlsnapError):
    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: checkpoint not saved: {reason}")


class StaleRefs(MlsnapError):
    """``gc --remote`` cannot see every branch other clones may have pushed."""

    def __init__(self, problems: Iterable[str], fix: str) -> None:
        shown = list(problems)
        more = f" (and {len(shown) - 3} more)" if len(shown) > 3 else ""
        super().__init__(
            f"refusing to delete from the remote: {'; '.join(shown[:3])}{more}; snapshots only "
            f"other clones know could lose their bytes; {fix}, or pass --allow-stale-refs to "
            "collect anyway (nothing was deleted)"
        )


class Collected(MlsnapError):
    """The bytes of a snapshot were deleted on purpose by ``mlsnap gc --remote``."""

    def __init__(self, paths: Iterable[str], snapshot: str, says: str) -> None:
        names = ", ".join(sorted(paths))
        super().__init__(
            f"{names}: snapshot {snapshot} was {says}: its bytes are gone on purpose, not "
            "missing a push; check out a snapshot that was kept (`mlsnap log --all`)"
        )


class InputChanged(MlsnapError):
    """An input or params file of ``mlsnap run`` changed while its command ran."""

    def __init__(self, path: str, before: str, after: str) -> None:
        super().__init__(
            f"{path} changed while the command ran ({before[:12]} before it started, "
            f"{after[:12]} now); no snapshot was taken: a snapshot must record the bytes the "
            "training read; leave inputs alone while it runs and run it again"
        )


class CommandFailed(MlsnapError):
    """The command of ``mlsnap run`` could not start or exited non-zero: no snapshot."""

    def __init__(self, command: str, reason: str) -> None:
        super().__init__(f"`{command}` {reason}; no snapshot was taken")


class CodeChanged(MlsnapError):
    """HEAD moved or tracked code was edited while the command of ``mlsnap run`` ran."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} while the command ran; no snapshot was taken: the snapshot "
                         "must name the code that trained; run it again on unchanged code")


class RankLost(MlsnapError):
    """Another rank of a distributed job died or stopped answering during a collective call."""

    def __init__(self, directory: object, what: str, rank: int, timeout: float,
                 reason: str) -> None:
        super().__init__(
            f"{directory}: {what} on rank {rank}: another rank left the job or did not answer "
            f"within {timeout:g} s ({reason}); the index names only complete checkpoints: "
            "restart the job to resume from the latest"
        )


class MissingExtra(MlsnapError):
    """An optional part of mlsnap whose library is not installed."""

    def __init__(self, command: str, what: str, extra: str) -> None:
        super().__init__(f"{command} needs {what}, which is not installed; install it with "
                         f"`pip install 'mlsnap[{extra}]'` in this environment")


def one_line(exc: BaseException) -> str:
    """An exception's text on one bounded line (what a library raised, told by mlsnap)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    # gloo's: "[.../pair.cc:537] Read error [127.0.0.1]:15763: Connection reset by peer. This..."
    text = re.sub(r"^\[[^\]]*\.cc:\d+\] ", "", text).split(". This is typically")[0]
    return text if len(text) <= 300 else text[:297] + "..."

"""Signed snapshots: Git's own commit and tag signatures (SSH or GPG keys), read and judged.

mlsnap signs nothing itself: ``commit --sign`` and ``tag --sign`` ask Git to sign (``gpg.format``,
``user.signingkey``), and every check asks Git (``%G?``, ``git verify-tag``), which runs
``ssh-keygen -Y verify`` against ``gpg.ssh.allowedSignersFile`` or GPG against its keyring.
Only a *good* signature by a signer that file or keyring trusts counts as signed.

What vouches for a snapshot at a revision: the commit that last changed its manifest or any of
its ``.dvc`` pointers (its snapshot commit), or a signed tag on the revision. A signature covers
the commit's whole tree through Git's object ids, so the manifest and pointers read at the
revision must be the very blobs of that commit (checked, not assumed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlsnap import gitrepo
from mlsnap.errors import CheckFailed, MlsnapError

GOOD = "good"
# Git's %G? letters, in words.
_STATES = {"G": GOOD, "U": "untrusted", "B": "bad", "X": "expired", "Y": "expired",
           "R": "revoked", "E": "unverifiable", "N": "unsigned"}
_WHY = {
    "unsigned": "is not signed",
    "bad": "has a BAD signature: the commit was altered after it was signed",
    "untrusted": "is signed by a key nobody here trusts (not in gpg.ssh.allowedSignersFile, or "
                 "a GPG key without trust)",
    "expired": "is signed with an expired key or signature",
    "revoked": "is signed with a revoked key",
    "unverifiable": "has a signature that cannot be checked here (the key is missing, or "
                    "gpg.ssh.allowedSignersFile is not set)",
}


@dataclass(frozen=True)
class Signature:
    """What Git says about the signature of one commit or tag."""

    state: str  # good | unsigned | bad | untrusted | expired | revoked | unverifiable
    signer: str | None = None  # the principal of the allowed-signers file, or the GPG user id
    key: str | None = None  # fingerprint (SSH) or key id (GPG)
    object: str = ""  # the commit id or the tag name
    kind: str = "commit"  # commit | tag

    @property
    def good(self) -> bool:
        return self.state == GOOD

    def describe(self) -> str:
        what = f"{self.kind} {self.object[:12] if self.kind == 'commit' else self.object}"
        if self.good:
            return f"{what}: good signature by {self.signer or '?'} (key {self.key or '?'})"
        key = f" (key {self.key})" if self.key else ""
        return f"{what} {_WHY.get(self.state, self.state)}{key}"

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "signer": self.signer, "key": self.key,
                "object": self.object, "kind": self.kind}


class NotSigned(CheckFailed):
    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__(f"not a trusted signed snapshot: {'; '.join(problems)}; nothing was "
                         "written (sign with `mlsnap commit --sign` or `mlsnap tag --sign`; "
                         "trust keys with gpg.ssh.allowedSignersFile)")


class SigningNotConfigured(MlsnapError):
    def __init__(self, root: Path, fix: str) -> None:
        super().__init__(f"{root}: Git cannot sign here: {fix}; nothing was changed")


def require_signing(root: Path) -> None:
    """Before anything is written: Git knows which key signs (``git commit -S`` would fail
    only after the snapshot's files were staged)."""
    fmt = _config(root, "gpg.format") or "openpgp"
    key = _config(root, "user.signingkey")
    if fmt == "ssh" and not key and not _config(root, "gpg.ssh.defaultKeyCommand"):
        raise SigningNotConfigured(root, "gpg.format is ssh but user.signingkey is not set "
                                   "(`git config user.signingkey ~/.ssh/id_ed25519.pub`)")
    if fmt not in ("ssh", "openpgp", "x509"):
        raise SigningNotConfigured(root, f"gpg.format {fmt!r} is not one Git knows")


def _config(root: Path, key: str) -> str | None:
    proc = gitrepo.run(root, ["config", "--get", key], check=False)
    return proc.stdout.decode(errors="replace").strip() or None if proc.returncode == 0 else None


def of_commits(root: Path, commits: Sequence[str]) -> dict[str, Signature]:
    """The signature of each commit (one ``git log --no-walk``; Git runs the verifier once per
    signed commit, none for unsigned ones)."""
    wanted = list(dict.fromkeys(commits))
    if not wanted:
        return {}
    proc = gitrepo.run(root, ["log", "--no-walk=unsorted", "--stdin",
                              "--format=%H%x1f%G?%x1f%GS%x1f%GK%x1e"],
                       input="".join(f"{c}\n" for c in wanted).encode())
    found: dict[str, Signature] = {}
    for record in proc.stdout.decode(errors="replace").split("\x1e"):
        fields = record.strip("\n").split("\x1f")
        if len(fields) == 4:
            sha, letter, signer, key = fields
            found[sha] = Signature(_STATES.get(letter, "unverifiable"), signer or None,
                                   key or None, sha)
    # Git says "N" (no signature) also for an SSH signature it cannot check because
    # gpg.ssh.allowedSignersFile is not set, and says why on stderr: then the commit objects
    # tell signed from not (one more batched read, only in that case).
    if b"allowedSignersFile" not in proc.stderr:
        return found
    unsigned = [sha for sha, sig in found.items() if sig.state == "unsigned"]
    for sha, raw in gitrepo.blobs(root, unsigned).items():
        header = raw.split(b"\n\n", 1)[0]
        if any(line.startswith((b"gpgsig ", b"gpgsig-sha256 ")) for line in header.split(b"\n")):
            found[sha] = Signature("unverifiable", object=sha)
    return found


def of_tag(root: Path, tag: str) -> Signature:
    """The signature of the annotated tag ``tag`` (``git verify-tag --raw``)."""
    raw = gitrepo.run(root, ["cat-file", "tag", f"refs/tags/{tag}"], check=False)
    if raw.returncode != 0:
        return Signature("unsigned", object=tag, kind="tag")  # a lightweight tag
    if b"-----BEGIN " not in raw.stdout:
        return Signature("unsigned", object=tag, kind="tag")
    proc = gitrepo.run(root, ["verify-tag", "--raw", "--", f"refs/tags/{tag}"], check=False)
    text = proc.stderr.decode(errors="replace")
    signer, key = _signer_of(text)
    if proc.returncode == 0:
        return Signature(GOOD, signer, key, tag, "tag")
    state = "untrusted" if "No principal matched" in text or "TRUST_UNDEFINED" in text else \
        "bad" if "BADSIG" in text or "Could not verify signature" in text else "unverifiable"
    return Signature(state, signer, key, tag, "tag")


def _signer_of(text: str) -> tuple[str | None, str | None]:
    """(signer, key) from ssh-keygen's or GPG's words (``--raw``)."""
    import re

    ssh = re.search(r'Good "git" signature (?:for (?P<who>.+?) )?with \S+ key (?P<key>\S+)', text)
    if ssh:
        return ssh["who"], ssh["key"]
    gpg = re.search(r"\[GNUPG:\] GOODSIG (?P<key>\S+) (?P<who>.+)", text)
    if gpg:
        return gpg["who"].strip(), gpg["key"]
    fingerprint = re.search(r"with \S+ key (?P<key>SHA256:\S+)", text)
    return None, fingerprint["key"] if fingerprint else None


def tags_at(root: Path, commit: str) -> list[str]:
    out = gitrepo.out(root, ["tag", "--points-at", commit])
    return out.split() if out else []


@dataclass(frozen=True)
class Vouch:
    """The signatures that may vouch for one snapshot at a revision."""

    snapshot_commit: str | None  # the commit that last changed its manifest or pointers
    commit: Signature | None
    tags: tuple[Signature, ...]
    mismatch: str | None = None  # why that commit's files are not the ones read

    @property
    def good(self) -> Signature | None:
        """The signature that counts: a good one of the commit, else of a tag."""
        if self.mismatch is None and self.commit is not None and self.commit.good:
            return self.commit
        return next((t for t in self.tags if t.good), None)

    def problem(self) -> str | None:
        if self.good is not None:
            return None
        if self.mismatch:
            return self.mismatch
        parts = [self.commit.describe()] if self.commit else ["no commit recorded it"]
        return "; ".join(parts + [t.describe() for t in self.tags])

    def to_dict(self) -> dict[str, Any]:
        good = self.good
        return {"signed": good is not None, "by": good.to_dict() if good else None,
                "snapshot_commit": self.snapshot_commit,
                "commit": self.commit.to_dict() if self.commit else None,
                "tags": [t.to_dict() for t in self.tags], "problem": self.problem()}


def vouch(root: Path, rev_commit: str, files: Sequence[str], tag: str | None = None) -> Vouch:
    """Who vouches for the snapshot whose manifest and pointers are ``files`` at the commit
    ``rev_commit``: the commit that last changed one of them (its blobs checked equal to
    ``rev_commit``'s), and the signed tags on ``rev_commit`` (``tag`` alone when given)."""
    sha = gitrepo.out(root, ["log", "-1", "--format=%H", "--end-of-options", rev_commit,
                             "--", *files]) or None
    mismatch = None
    if sha is not None and sha != rev_commit:
        here = gitrepo.blob_ids(root, [f"{rev_commit}:{f}" for f in files])
        there = gitrepo.blob_ids(root, [f"{sha}:{f}" for f in files])
        if [here[f"{rev_commit}:{f}"] for f in files] != [there[f"{sha}:{f}"] for f in files]:
            mismatch = (f"the snapshot's files at {rev_commit[:12]} are not those of the commit "
                        f"{sha[:12]} that last changed them (a merge edited them)")
    sig = of_commits(root, [sha])[sha] if sha else None
    names = [tag] if tag else tags_at(root, rev_commit)
    return Vouch(sha, sig, tuple(of_tag(root, t) for t in names), mismatch)


def snapshot_files(manifest: Any) -> list[str]:
    """The files a snapshot's signature must cover: its manifest and its ``.dvc`` pointers."""
    from mlsnap.manifest import manifest_path

    return [manifest_path(manifest.name), *(f"{p}.dvc" for p, _ in manifest.tracked)]


def work_tree_problems(root: Path, manifests: Sequence[Any]) -> list[str]:
    """Why the snapshots of the work tree (what ``pull`` restores) are not vouched for by a
    trusted signature: files edited since HEAD, or HEAD's record unsigned, altered, untrusted."""
    head = gitrepo.head(root)
    problems = []
    for m in manifests:
        files = snapshot_files(m)
        edited = gitrepo.changed_paths(root, files)
        if edited:
            problems.append(f"{', '.join(edited)} {'differs' if len(edited) == 1 else 'differ'} from HEAD (edited after the snapshot "
                            "was committed)")
            continue
        problem = vouch(root, head, files).problem()
        if problem:
            problems.append(f"snapshot {m.name}: {problem}")
    return problems


def of_snapshot(root: Path, rev: str | None, manifest: Any) -> Vouch | None:
    """Who vouches for ``manifest`` as read at ``rev`` (HEAD's record for the work tree's)."""
    sha = gitrepo.resolve(root, rev or "HEAD")
    if sha is None:
        return None
    tag = rev if rev and gitrepo.tag_exists(root, rev) else None
    return vouch(root, sha, snapshot_files(manifest), tag)

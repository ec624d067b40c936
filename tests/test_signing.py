"""Signed snapshots with Git's own SSH signing: a throwaway key, an allowed-signers file, and
the ways a record can stop being vouched for (edited, unsigned on top, unknown signer, forged)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from mlsnap import signing
from tests.helpers import git, mlsnap


def keypair(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
                   check=True)
    return key


@pytest.fixture
def signed_project(project: Path, tmp_path: Path) -> Path:
    """The project signs with alice's key; every clone here trusts alice only (the allowed
    signers file is in the global config of this test's HOME)."""
    keys = tmp_path / "keys"
    alice = keypair(keys, "alice")
    keypair(keys, "mallory")
    allowed = keys / "allowed_signers"
    allowed.write_text("alice@example.com " + " ".join(
        (keys / "alice.pub").read_text().split()[:2]) + "\n")
    subprocess.run(["git", "config", "--global", "gpg.ssh.allowedSignersFile", str(allowed)],
                   check=True)
    git(project, "config", "gpg.format", "ssh")
    git(project, "config", "user.signingkey", f"{alice}.pub")
    (project / "model.pkl").write_bytes(b"weights" * 100)
    return project


def verify(cwd: Path, *args: str, check: int | None = 0) -> dict:  # type: ignore[type-arg]
    proc = mlsnap(cwd, "verify", "--require-signed", "--json", *args, check=check)
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_a_signed_snapshot_verifies_and_names_its_signer(signed_project: Path,
                                                         tmp_path: Path) -> None:
    done = mlsnap(signed_project, "commit", "model.pkl", "--sign", "-M", "signed")
    assert "(signed)" in done.stdout
    report = verify(signed_project)
    by = report["snapshots"][0]["signature"]["by"]
    assert (by["state"], by["signer"], by["kind"]) == ("good", "alice@example.com", "commit")
    assert by["key"].startswith("SHA256:")
    shown = json.loads(mlsnap(signed_project, "show", "--json").stdout)["signature"]
    assert shown["signed"] and shown["by"]["signer"] == "alice@example.com"
    assert "# signature: commit" in mlsnap(signed_project, "show").stdout
    logged = json.loads(mlsnap(signed_project, "log", "--json").stdout)
    assert logged[0]["signature"]["state"] == "good"
    assert logged[0]["signature"]["signer"] == "alice@example.com"

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(signed_project), str(clone))
    mlsnap(clone, "pull", "--require-signed")
    assert (clone / "model.pkl").read_bytes() == b"weights" * 100


def test_a_manifest_edited_after_signing_fails(signed_project: Path) -> None:
    mlsnap(signed_project, "commit", "model.pkl", "--sign", "-M", "signed")
    manifest = signed_project / ".mlsnap" / "model.yaml"
    original = manifest.read_text()
    manifest.write_text(original.replace("message: signed", "message: trusted, honest"))
    report = verify(signed_project, check=3)
    failure = report["snapshots"][0]["failures"][0]
    assert failure["kind"] == "signature" and ".mlsnap/model.yaml" in failure["path"]
    (signed_project / "model.pkl").unlink()
    refused = mlsnap(signed_project, "pull", "--require-signed", check=3)
    assert ".mlsnap/model.yaml differs from HEAD" in refused.stderr
    assert not (signed_project / "model.pkl").exists()

    # The same edit committed with the signature copied over: Git calls it BAD.
    git(signed_project, "add", ".mlsnap/model.yaml")
    tree = git(signed_project, "write-tree")
    signed = subprocess.run(["git", "cat-file", "commit", "HEAD"], cwd=signed_project,
                            capture_output=True, check=True).stdout
    header, _, rest = signed.partition(b"\n")
    assert header.startswith(b"tree ") and b"gpgsig" in rest
    forged = subprocess.run(["git", "hash-object", "-w", "-t", "commit", "--stdin"],
                            cwd=signed_project, input=b"tree " + tree.encode() + b"\n" + rest,
                            capture_output=True, check=True).stdout.decode().strip()
    git(signed_project, "reset", "-q", "--soft", forged)
    report = verify(signed_project, check=3)
    assert "BAD signature" in report["snapshots"][0]["failures"][0]["reason"]
    git(signed_project, "checkout", "-q", "--", ".")
    mlsnap(signed_project, "pull", "--require-signed", check=3)


def test_an_unsigned_commit_on_top_fails(signed_project: Path) -> None:
    mlsnap(signed_project, "commit", "model.pkl", "--sign", "-M", "signed")
    verify(signed_project)
    git(signed_project, "commit", "-q", "--allow-empty", "-m", "code only")
    verify(signed_project)  # the snapshot's record is still the signed commit's
    manifest = signed_project / ".mlsnap" / "model.yaml"
    manifest.write_text(manifest.read_text().replace("metrics: {}", "metrics: {accuracy: 0.99}"))
    git(signed_project, "commit", "-q", "-am", "better numbers")
    report = verify(signed_project, check=3)
    assert "is not signed" in report["snapshots"][0]["failures"][0]["reason"]
    assert verify(signed_project, "HEAD~2")["ok"]  # the signed snapshot itself still verifies
    mlsnap(signed_project, "verify")  # without --require-signed the state is only reported
    assert "is not signed" in mlsnap(signed_project, "pull", "--require-signed",
                                     check=3).stderr


def test_an_unknown_signer_fails_and_a_trusted_signed_tag_vouches(signed_project: Path,
                                                                  tmp_path: Path) -> None:
    git(signed_project, "config", "user.signingkey", str(tmp_path / "keys" / "mallory.pub"))
    mlsnap(signed_project, "commit", "model.pkl", "--sign", "-M", "mallory's")
    report = verify(signed_project, check=3)
    assert "nobody here trusts" in report["snapshots"][0]["failures"][0]["reason"]
    mlsnap(signed_project, "pull", "--require-signed", check=3)

    git(signed_project, "config", "user.signingkey", str(tmp_path / "keys" / "alice.pub"))
    assert "(signed)" in mlsnap(signed_project, "tag", "model", "1.0.0", "--sign").stdout
    by = verify(signed_project, "model@v1.0.0")["snapshots"][0]["signature"]["by"]
    assert (by["kind"], by["object"], by["signer"]) == ("tag", "model@v1.0.0",
                                                        "alice@example.com")
    mlsnap(signed_project, "pull", "--require-signed")  # the signed tag is on HEAD


def test_sign_without_a_key_stops_before_anything_is_written(project: Path) -> None:
    git(project, "config", "gpg.format", "ssh")
    (project / "model.pkl").write_bytes(b"w" * 10)
    head = git(project, "rev-parse", "HEAD")
    err = mlsnap(project, "commit", "model.pkl", "--sign", check=1).stderr
    assert "user.signingkey is not set" in err and len(err.strip().splitlines()) == 1
    assert git(project, "rev-parse", "HEAD") == head
    assert git(project, "status", "--porcelain") == "?? model.pkl"


def test_a_signature_nobody_here_can_check_is_not_called_unsigned(signed_project: Path,
                                                                  tmp_path: Path) -> None:
    """A clone whose Git has no allowed-signers file: Git reports an SSH-signed commit as "N"
    (no signature); mlsnap reads the commit object and says what is missing instead."""
    mlsnap(signed_project, "commit", "model.pkl", "--sign", "-M", "signed")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(signed_project), str(clone))
    subprocess.run(["git", "config", "--global", "--unset", "gpg.ssh.allowedSignersFile"],
                   check=True)
    told = verify(clone, check=3)["snapshots"][0]["signature"]
    assert told["by"] is None and told["commit"]["state"] == "unverifiable", told
    refused = mlsnap(clone, "pull", "--require-signed", check=3)
    assert "cannot be checked here" in refused.stderr and "not signed" not in refused.stderr
    assert not (clone / "model.pkl").exists()
    git(clone, "commit", "-q", "--allow-empty", "-m", "unsigned")  # a commit truly unsigned
    assert signing.of_commits(clone, [git(clone, "rev-parse", "HEAD").strip()]).popitem()[
        1].state == "unsigned"

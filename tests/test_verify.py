"""``mlsnap verify``: the record against its pointers, the cache and the remote against the
recorded hashes; each damaged, missing or disagreeing object named, exit 3."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from tests.helpers import git, mlsnap


def cache_object(root: Path, md5: str) -> Path:
    return root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def remote_object(remote: Path, md5: str) -> Path:
    return remote / "files" / "md5" / md5[:2] / md5[2:]


def flip_byte(path: Path, keep_mtime: bool = False) -> None:
    stat = path.stat()
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.fixture
def snapped(project: Path) -> dict[str, str]:
    """A snapshot of a model file and an input folder of three files, pushed; path -> md5."""
    (project / "model.pkl").write_bytes(b"model" * 2000)
    (project / "data" / "imgs").mkdir()
    for i in range(3):
        (project / "data" / "imgs" / f"{i}.png").write_bytes(bytes([i]) * 5000)
    mlsnap(project, "commit", "model.pkl", "--data", "data/imgs")
    doc = yaml.safe_load((project / ".mlsnap" / "model.yaml").read_text())
    return {o["path"]: o["md5"] for o in [*doc["artifacts"], *doc["data"]["inputs"]]}


def report(cwd: Path, *args: str, check: int = 0) -> dict:  # type: ignore[type-arg]
    return json.loads(mlsnap(cwd, "verify", "--json", *args, check=check).stdout)  # type: ignore[no-any-return]


def test_an_intact_snapshot_verifies_and_reads_only_what_dvc_cannot_vouch_for(
        project: Path, snapped: dict[str, str]) -> None:
    first = report(project)["snapshots"][0]
    assert first["ok"] and first["objects"] == 5  # model, the listing, its three files
    assert first["hashed"] == 1  # the listing; DVC's state proves the files unchanged
    deep = report(project, "--deep")["snapshots"][0]
    assert deep["hashed"] == deep["objects"] == 5
    remote = report(project, "--remote")["snapshots"][0]
    assert remote["ok"] and remote["remote_objects"] == 5
    text = mlsnap(project, "verify", "HEAD", "--remote").stdout
    assert text.splitlines()[-1] == "verified: model"


def test_a_bit_flipped_cache_object_is_named(project: Path, snapped: dict[str, str]) -> None:
    obj = cache_object(project, snapped["model.pkl"])
    flip_byte(obj)
    out = mlsnap(project, "verify", check=3).stdout
    assert "FAILED cache: model.pkl: the cached copy's md5 is" in out
    assert out.splitlines()[-1] == "verify failed: 1 problem(s) (snapshot model)"
    assert obj.is_file()  # verify names, never moves or repairs


def test_a_flip_that_keeps_size_and_mtime_needs_deep(project: Path,
                                                     snapped: dict[str, str]) -> None:
    """The stat-only check trusts DVC's state DB (inode, mtime, size): what --deep is for."""
    listing = cache_object(project, snapped["data/imgs"])
    entry = json.loads(listing.read_bytes())[1]
    flip_byte(cache_object(project, entry["md5"]), keep_mtime=True)
    assert report(project)["ok"]
    deep = report(project, "--deep", check=3)["snapshots"][0]["failures"]
    assert [f["path"] for f in deep] == [f"data/imgs/{entry['relpath']}"]


def test_remote_objects_deleted_or_bit_flipped_are_named(project: Path, remote_dir: Path,
                                                         snapped: dict[str, str]) -> None:
    remote_object(remote_dir, snapped["model.pkl"]).unlink()
    listing = json.loads(cache_object(project, snapped["data/imgs"]).read_bytes())
    flip_byte(remote_object(remote_dir, listing[2]["md5"]))
    assert report(project)["ok"]  # the local cache is intact
    failures = report(project, "--remote", check=3)["snapshots"][0]["failures"]
    assert sorted((f["kind"], f["path"], f["reason"].split(" ")[0]) for f in failures) == [
        ("remote", f"data/imgs/{listing[2]['relpath']}", "remote"),
        ("remote", "model.pkl", "missing")]
    out = mlsnap(project, "verify", "--remote", check=3).stdout
    assert "FAILED remote: model.pkl: missing on remote 'storage'" in out


def test_a_pointer_that_disagrees_with_the_manifest_is_named(project: Path,
                                                             snapped: dict[str, str]) -> None:
    pointer = project / "model.pkl.dvc"
    pointer.write_text(pointer.read_text().replace(snapped["model.pkl"], "0" * 32))
    failures = report(project, check=3)["snapshots"][0]["failures"]
    assert [(f["kind"], f["path"]) for f in failures] == [("manifest", "model.pkl.dvc")]
    git(project, "commit", "-q", "-am", "tampered pointer")
    assert report(project, "HEAD", check=3)["snapshots"][0]["failures"][0]["path"] == \
        "model.pkl.dvc"
    assert report(project, "HEAD~1")["ok"]


def test_a_fresh_clone_lacks_the_bytes_until_the_remote_is_checked(
        project: Path, tmp_path: Path, snapped: dict[str, str]) -> None:
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    out = mlsnap(clone, "verify", check=3).stdout
    assert "FAILED cache: model.pkl: not in this cache" in out
    remote = report(clone, "--remote")["snapshots"][0]
    assert remote["ok"] and remote["remote_only"] == 5
    assert not (clone / ".dvc" / "cache" / "files").exists()  # read, never kept


def test_bad_revisions_and_names_are_one_line(project: Path, snapped: dict[str, str]) -> None:
    err = mlsnap(project, "verify", "no-such-rev", check=1).stderr
    assert err.startswith("Error: no-such-rev: is not a commit") and len(err.splitlines()) == 1
    err = mlsnap(project, "verify", "--name", "other", check=1).stderr
    assert "Traceback" not in err and len(err.splitlines()) == 1

"""Hostile or broken input: refused with one line naming the file and field, exit non-zero,
nothing written, and where code could run, a sentinel file proving it did not."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlsnap.manifest import loads
from tests.attacker import DATA, MANIFEST, MODEL, Scene, attempt, build_base, md5
from tests.helpers import git, mlsnap, tree_digest


@pytest.fixture
def snap(project: Path) -> Path:
    """A project with one pushed snapshot of ``model.pkl``."""
    (project / "model.pkl").write_bytes(b"weights")
    mlsnap(project, "commit", "model.pkl")
    return project


def _plant(root: Path, text: str) -> None:
    """Commit a manifest as a hostile upstream would: it arrives through `git pull`."""
    (root / MANIFEST).write_text(text)
    git(root, "add", MANIFEST)
    git(root, "commit", "-q", "-m", "hostile manifest")


def _refused(root: Path, args: list[str], *needles: str, code: int = 1) -> str:
    before = tree_digest(root)
    proc = mlsnap(root, *args, check=code)
    line = proc.stderr.strip()
    assert line.startswith("Error: ") and "\n" not in line and "Traceback" not in proc.stderr, line
    for needle in needles:
        assert needle in line, (needle, line)
    assert tree_digest(root) == before, "a refused command wrote files"
    return line


def _cases(good: str, sentinel: Path) -> list[tuple[str, str, tuple[str, ...]]]:
    md5 = loads(good, "good").artifacts[0].md5
    path_line = "- {path: model.pkl,"
    assert path_line in good

    def path(p: str) -> str:
        return good.replace(path_line, f"- {{path: {p},")

    bomb = "".join(f"  l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9 if i else ["lol"] * 9) + "]\n"
                   for i in range(9))
    return [
        ("python object tag", good.replace("message: ''", "message: !!python/object/apply:"
                                           f"os.system ['touch {sentinel}']"),
         (MANIFEST, "not valid YAML")),
        ("python name tag", good.replace("message: ''", "message: !!python/name:os.system"),
         (MANIFEST, "not valid YAML")),
        ("alias bomb", good.replace("params: {}\n", "params:\n" + bomb),
         (MANIFEST, "aliases are not allowed")),
        ("duplicate key", good.replace("name: model\n", "name: model\nname: other\n"),
         (MANIFEST, "duplicate key 'name'")),
        ("future schema", good.replace("mlsnap: 1\n", "mlsnap: 99\n"),
         (MANIFEST, "mlsnap: schema 99", "upgrade mlsnap")),
        ("unknown schema", good.replace("mlsnap: 1\n", "mlsnap: 0\n"),
         (MANIFEST, "unknown schema 0")),
        ("schema as text", good.replace("mlsnap: 1\n", "mlsnap: '1'\n"), (MANIFEST, "mlsnap:")),
        ("non-hex hash", good.replace(md5, "z" * 32), (MANIFEST, "artifacts[0].md5")),
        ("short hash", good.replace(md5, md5[:31]), (MANIFEST, "artifacts[0].md5")),
        ("absolute path", path("/etc/passwd"), ("artifacts[0].path", "absolute")),
        ("parent path", path("../outside.pkl"), ("artifacts[0].path", "'..'")),
        ("deep parent path", path("a/../../outside.pkl"), ("artifacts[0].path", "'..'")),
        ("into .git", path(".git/hooks/post-checkout"), ("artifacts[0].path", ".git")),
        ("into .GIT", path(".GIT/hooks/post-checkout"), ("artifacts[0].path", ".git")),
        ("into .git.", path("'.git./hooks/post-checkout'"), ("artifacts[0].path", ".git")),
        ("into .git space", path("'.git /hooks/post-checkout'"), ("artifacts[0].path", ".git")),
        ("sub .Git", path("sub/.Git/config"), ("artifacts[0].path", ".git")),
        ("NUL", path('"model\\0.pkl"'), ("artifacts[0].path", "control characters")),
        ("newline", path('"model\\n.pkl"'), ("artifacts[0].path", "control characters")),
        ("escape", path('"model\\e[31m.pkl"'), ("artifacts[0].path", "control characters")),
        ("backslash", path("'..\\\\evil.pkl'"), ("artifacts[0].path",)),
        ("drive", path("'C:/evil.pkl'"), ("artifacts[0].path", "absolute")),
        ("not a mapping", "- just\n- a list\n", (MANIFEST, "top level")),
        ("tampered hash", good.replace(md5, "f" * 32),
         (MANIFEST, "disagrees with model.pkl.dvc")),
    ]


def test_hostile_manifests_are_refused_and_run_nothing(snap: Path, tmp_path: Path) -> None:
    sentinel = tmp_path / "SENTINEL"
    good = (snap / MANIFEST).read_text()
    (snap / "model.pkl").unlink()  # so a pull that went wrong would have something to write
    cases = _cases(good, sentinel)
    for label, text, needles in cases:
        _plant(snap, text)
        try:
            _refused(snap, ["pull"], *needles)
        except AssertionError as exc:
            raise AssertionError(f"case {label!r}: {exc}") from None
        assert not sentinel.exists(), label
        assert not (snap / "model.pkl").exists(), label
    # The readers that do not touch the workspace refuse the same way (two of the worst cases).
    for label, text, needles in (cases[0], cases[2]):
        _plant(snap, text)
        _refused(snap, ["status"], *needles, code=1)
        _refused(snap, ["show", "HEAD"], *needles[1:])
    assert not sentinel.exists()
    assert len(cases) >= 24


def test_intermediate_symlink_out_of_the_repo_is_refused(snap: Path, tmp_path: Path) -> None:
    """DVC #11101: a cloned repo whose folder is a symlink must not make pull write outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (snap / "models").mkdir()
    (snap / "models" / "m.pkl").write_bytes(b"inner")
    mlsnap(snap, "commit", "models/m.pkl", "--name", "inner")
    # The hostile upstream turns `models` into a symlink; the pointer now lives outside.
    os.replace(snap / "models" / "m.pkl.dvc", outside / "m.pkl.dvc")
    git(snap, "rm", "-q", "-r", "--cached", "models")
    for leftover in (snap / "models").iterdir():
        leftover.unlink()
    (snap / "models").rmdir()
    (snap / "models").symlink_to(outside)
    git(snap, "add", "models")
    git(snap, "commit", "-q", "-m", "models is a symlink now")
    before = sorted(p.name for p in outside.iterdir())
    _refused(snap, ["pull"], ".mlsnap/inner.yaml", "leaves the repository through a symlink")
    _refused(snap, ["pull", "--force"], "leaves the repository through a symlink")
    assert sorted(p.name for p in outside.iterdir()) == before == ["m.pkl.dvc"]
    # The same path is refused when committing, too.
    (outside / "m.pkl").write_bytes(b"outside file")
    _refused(snap, ["commit", "models/m.pkl", "--name", "again"], "models/m.pkl")


def test_symlink_into_git_hooks_is_refused(snap: Path) -> None:
    (snap / "hooks").symlink_to(snap / ".git" / "hooks")
    git(snap, "add", "hooks")
    git(snap, "commit", "-q", "-m", "hooks link")
    good = (snap / MANIFEST).read_text()
    _plant(snap, good.replace("- {path: model.pkl,", "- {path: hooks/post-checkout,"))
    _refused(snap, ["pull", "--force"], "leads into .git through a symlink")
    assert not (snap / ".git" / "hooks" / "post-checkout").exists()
    (snap / ".git" / "hooks" / "x.sh").write_text("#!/bin/sh\n")
    _refused(snap, ["commit", "hooks/x.sh", "--name", "hk"], "hooks/x.sh")


def test_revisions_and_urls_never_become_git_options(snap: Path, tmp_path: Path) -> None:
    sentinel = tmp_path / "SENTINEL"
    evil = f"--upload-pack=touch {sentinel}"
    for args in (["show", "--", evil], ["get", "--", evil], ["diff", "--", evil, "HEAD"],
                 ["tag", "model", "9.9.9", "--", evil]):
        _refused(snap, args, "not a revision")
    proc = mlsnap(snap, "show", f"--output={sentinel}", check=2)  # Click: not an option
    assert "Traceback" not in proc.stderr
    # A remote URL is handed to DVC as a storage URL, never to Git as a transport.
    proc = mlsnap(snap, "init", "--remote", f"ext::sh -c touch% {sentinel}", check=None)
    mlsnap(snap, "push", check=None)
    mlsnap(snap, "pull", "--force", check=None)
    assert "Traceback" not in proc.stderr
    assert not sentinel.exists()
    assert not (tmp_path / "SENTINEL").exists()


def test_nan_and_inf_metrics_have_one_encoding(project: Path) -> None:
    (project / "m.bin").write_bytes(b"m")
    (project / "metrics.json").write_text('{"loss": NaN, "up": Infinity, "down": -Infinity}')
    mlsnap(project, "commit", "m.bin", "--metrics", "metrics.json", "-m", "acc=.nan",
           "--no-push")
    text = (project / MANIFEST).read_text()
    assert "loss: .nan" in text and "up: .inf" in text and "down: -.inf" in text
    assert "acc: .nan" in text
    shown = json.loads(mlsnap(project, "show", "--json").stdout)
    assert shown["metrics"] == {"loss": "nan", "up": "inf", "down": "-inf", "acc": "nan"}
    logged = mlsnap(project, "log", "--json").stdout
    assert "NaN" not in logged and "Infinity" not in logged and '"nan"' in logged


def test_zero_length_artifact_round_trips(project: Path) -> None:
    (project / "empty.bin").write_bytes(b"")
    mlsnap(project, "commit", "empty.bin")
    (project / "empty.bin").unlink()
    mlsnap(project, "pull")
    assert (project / "empty.bin").read_bytes() == b""
    m = loads((project / MANIFEST).read_text(), "m")
    assert (m.artifacts[0].size, m.artifacts[0].md5) == (0, "d41d8cd98f00b204e9800998ecf8427e")
    mlsnap(project, "status")


def test_shallow_clone_pulls_and_says_what_history_lacks(snap: Path, tmp_path: Path) -> None:
    (snap / "model.pkl").write_bytes(b"weights v2")
    mlsnap(snap, "commit", "model.pkl")
    clone = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{snap}", str(clone)],
                   check=True)
    mlsnap(clone, "pull")
    assert (clone / "model.pkl").read_bytes() == b"weights v2"
    line = _refused(clone, ["show", "HEAD~1"], "shallow")
    assert "git fetch --unshallow" in line
    log = mlsnap(clone, "log")
    assert "shallow" in log.stderr and "git fetch --unshallow" in log.stderr


def test_detached_head_binds_the_snapshot_to_the_sha(project: Path) -> None:
    git(project, "checkout", "-q", "--detach")
    code = git(project, "rev-parse", "HEAD")
    (project / "m.bin").write_bytes(b"detached")
    out = mlsnap(project, "commit", "m.bin", "--no-push").stdout
    assert "HEAD is detached" in out and "git switch -c" in out
    m = loads((project / MANIFEST).read_text(), "m")
    assert m.code.branch is None and m.code.commit == code


def test_existing_index_lock_is_reported_and_left_alone(project: Path) -> None:
    lock = project / ".git" / "index.lock"
    lock.write_text("")
    (project / "m.bin").write_bytes(b"locked out")
    head = git(project, "rev-parse", "HEAD")
    line = _refused(project, ["commit", "m.bin", "--no-push"], "index.lock", "File exists")
    assert "Another git process" in line
    assert lock.exists()  # Git's lock is Git's: never deleted
    assert git(project, "rev-parse", "HEAD") == head
    assert (project / "m.bin").read_bytes() == b"locked out"
    lock.unlink()
    mlsnap(project, "commit", "m.bin", "--no-push")


class _Boom:
    def __init__(self, sentinel: str) -> None:
        self.sentinel = sentinel

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.sentinel}",))


def test_pickles_are_never_loaded_and_pull_refuses_dangerous_ones(project: Path,
                                                                  tmp_path: Path) -> None:
    sentinel = tmp_path / "SENTINEL"
    (project / "model.pkl").write_bytes(pickle.dumps(_Boom(str(sentinel))))
    (project / "model.pt").write_bytes(pickle.dumps(_Boom(str(sentinel))))
    mlsnap(project, "commit", "model.pkl", "model.pt")
    for rel in ("model.pkl", "model.pt"):
        (project / rel).unlink()
    err = mlsnap(project, "pull", check=3).stderr
    assert "model.pkl imports os.system; model.pt imports os.system" in err
    out = mlsnap(project, "pull", "--allow-unsafe-pickle").stdout
    assert "no import known to run code" not in out  # neither is called clean
    for args in (["status"], ["show"], ["log"], ["diff"], ["verify"]):
        mlsnap(project, *args, check=None)
    assert not sentinel.exists()


# =========================================================================== hostile clones
# Each case below is built for real (tests/attacker.py): a real upstream and folder remote,
# crafted objects written into the remote, pointers and manifests rewritten consistently and
# committed with Git, a real `git clone`, a real `git status` afterwards. Each asserts the exit
# code, one line on stderr, no traceback, nothing written outside the clone, Git's private
# files untouched, and no sentinel (tests.attacker.attempt).


@pytest.fixture(scope="session")
def hostile_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_base(tmp_path_factory.mktemp("hostile-base"))


@pytest.fixture
def scene(hostile_base: Path, tmp_path: Path) -> Scene:
    return Scene.from_base(hostile_base, tmp_path)


def _fsmonitor(scene: Scene) -> bytes:
    return (f'[core]\n\trepositoryformatversion = 0\n\tbare = false\n'
            f'\tfsmonitor = "touch {scene.sentinel}; false"\n').encode()


# (id, entries of the crafted listing of data/, what the one line names)
LISTINGS: list[tuple[str, Any, tuple[str, ...]]] = [
    ("overwrite .git/config with an fsmonitor command",
     lambda s: [("../.git/config", _fsmonitor(s)), ("a.txt", b"a")], ("'..'",)),
    ("climb out of the repository", lambda s: [("../../../../x.txt", b"x")], ("'..'",)),
    ("climb after a folder", lambda s: [("sub/../../../x.txt", b"x")], ("'..'",)),
    ("absolute path", lambda s: [(str(s.outside / "abs.txt"), b"x")], ("absolute",)),
    ("nested .git/hooks", lambda s: [(".git/hooks/post-checkout", b"#!/bin/sh\n")], (".git",)),
    ("sub/.GIT/config", lambda s: [("sub/.GIT/config", _fsmonitor(s))], (".git",)),
    (".git. with a trailing dot", lambda s: [(".git./config", b"x")], (".git",)),
    (".git with a trailing space", lambda s: [(".git /config", b"x")], (".git",)),
    ("NTFS short name git~1", lambda s: [("GIT~1/config", b"x")], (".git",)),
    ("HFS+ ignorable character", lambda s: [(".g\u200cit/config", b"x")], (".git",)),
    ("backslash climb", lambda s: [("..\\..\\x.txt", b"x")], ("backslash",)),
    ("NUL in a name", lambda s: [("a\x00b", b"x")], ("control characters",)),
    ("newline in a name", lambda s: [("a\nb", b"x")], ("control characters",)),
    ("escape sequence in a name", lambda s: [("\x1b]0;pwned\x07", b"x")],
     ("control characters",)),
    ("empty name", lambda s: [("", b"x")], ("empty",)),
    ("dot component", lambda s: [("./a.txt", b"x")], ("'.' component",)),
    ("double slash", lambda s: [("sub//b.txt", b"x")], ("empty",)),
    ("hash that climbs the cache", lambda s: [
        {"md5": "ab/../../../../../../../../../" + str(s.outside / "keep.txt"),
         "relpath": "x.txt"}], ("not an md5 hash",)),
    ("hash that is not hex", lambda s: [{"md5": "z" * 32, "relpath": "x.txt"}],
     ("not an md5 hash",)),
    ("the same name twice", lambda s: [("a.txt", b"1"), ("a.txt", b"2")], ("twice",)),
    ("a file inside a file", lambda s: [("a", b"1"), ("a/b", b"2")],
     ("both as a file and as a folder",)),
    ("not JSON", lambda s: b"\x00not json", ("not valid JSON",)),
    ("an object, not a list", lambda s: b'{"relpath": "a.txt"}', ("not a list",)),
    ("an entry without relpath", lambda s: [{"md5": md5(b"x")}], ("not {relpath, md5}",)),
    ("deeply nested JSON", lambda s: b"[" * 100000 + b"]" * 100000, ("not valid JSON",)),
]


@pytest.mark.parametrize(("label", "entries", "needles"), LISTINGS, ids=[c[0] for c in LISTINGS])
def test_hostile_listing_on_the_remote_is_refused_before_anything_reads_it(
        scene: Scene, label: str, entries: Any, needles: tuple[str, ...]) -> None:
    """The .dir listing DVC would obey (issue 13: `../.git/config` made a plain `git status`
    run the attacker's command)."""
    oid = scene.listing(entries(scene))
    scene.commit(label)
    scene.clone()
    attempt(scene, ["pull"], 1, "data: the directory listing", oid, *needles)
    assert not (scene.victim / "data").exists()


@pytest.mark.parametrize(("label", "entries", "needles"),
                         [LISTINGS[0], LISTINGS[1], LISTINGS[17]], ids=["git", "climb", "hash"])
def test_hostile_listing_is_refused_by_get_too(scene: Scene, label: str, entries: Any,
                                               needles: tuple[str, ...]) -> None:
    scene.listing(entries(scene))
    scene.commit(label)
    scene.clone()
    attempt(scene, ["get", "HEAD", "-o", "out"], 1, *needles)
    assert not (scene.victim / "out").exists()


def test_corrupt_listing_in_the_cache_is_quarantined(scene: Scene) -> None:
    """Issue 13: "unexpected JSONDecodeError", and never moved aside."""
    victim = scene.clone()
    mlsnap(victim, "pull")
    oid = scene.output_md5("data")
    cached = victim / ".dvc" / "cache" / "files" / "md5" / oid[:2] / oid[2:]
    cached.chmod(0o644)
    cached.write_bytes(cached.read_bytes()[:-7])  # truncated, not JSON any more
    shutil.rmtree(victim / "data")
    out = attempt(scene, ["pull"], 3, "data", oid, "corrupt", "moved aside",
                  changes_workspace=True)
    assert "JSONDecodeError" not in out.stderr
    assert not cached.exists() and cached.with_name(cached.name + ".corrupt").exists()
    assert not (victim / "data").exists()
    mlsnap(victim, "pull")  # the next pull downloads a good copy
    assert (victim / "data" / "sub" / "b.txt").read_bytes() == DATA["sub/b.txt"]


@pytest.mark.parametrize("what", ["listing", "file", "folder entry"])
def test_damaged_remote_object_is_reported_corrupt_not_missing(scene: Scene, what: str) -> None:
    """Issue 13: a truncated remote object was reported as missing (DVC deleted it from the
    folder remote and said so); it is corrupt, and it stays where it is."""
    oid = {"listing": scene.output_md5("data"), "file": scene.output_md5("model.pkl"),
           "folder entry": md5(DATA["a.txt"])}[what]
    damaged = scene.remote_object(oid)
    damaged.chmod(0o644)
    damaged.write_bytes(damaged.read_bytes()[:-3])
    scene.clone()
    out = attempt(scene, ["pull"], 3, oid, "the remote's content hash", "corrupt", fetches=True)
    assert "not found" not in out.stderr
    assert damaged.is_file()  # never deleted from the remote
    assert not (scene.victim / ".dvc" / "cache" / "files" / "md5" / oid[:2] / oid[2:]).exists()


POINTERS: list[tuple[str, Any, tuple[str, ...]]] = [
    ("outs path climbs out", lambda d, s: d["outs"][0].update(path="../../x.txt"),
     ("'../../x.txt'", "contains '..'", "must name it")),
    ("outs path absolute", lambda d, s: d["outs"][0].update(path=str(s.outside / "x.txt")),
     ("is absolute",)),
    ("outs path into .git", lambda d, s: d["outs"][0].update(path=".git/config"),
     ("points into .git",)),
    ("outs path another file", lambda d, s: d["outs"][0].update(path="train.py"),
     ("'train.py'", "must name it")),
    ("wdir moves the output", lambda d, s: d.update(wdir=".."), ("wdir",)),
    ("inline files listing", lambda d, s: d["outs"][0].update(
        files=[{"relpath": "../../x.txt", "md5": md5(b"x")}]), ("'files'",)),
    ("a stage with a command", lambda d, s: d.update(cmd=f"touch {s.sentinel}"), ("'cmd'",)),
    ("a stage with deps", lambda d, s: d.update(deps=[{"path": "/etc/passwd"}]), ("'deps'",)),
    ("two outputs", lambda d, s: d["outs"].append(dict(d["outs"][0], path="y")),
     ("2 outputs",)),
    ("no outs", lambda d, s: d.pop("outs"), ("not a DVC pointer",)),
    ("hash type that is not md5", lambda d, s: d["outs"][0].update(hash="sha256"),
     ("is not md5",)),
]


@pytest.mark.parametrize(("label", "edit", "needles"), POINTERS, ids=[c[0] for c in POINTERS])
def test_hostile_pointer_file_is_refused(scene: Scene, label: str, edit: Any,
                                         needles: tuple[str, ...]) -> None:
    """DVC obeys a .dvc file's outs path, wdir, inline listing (issue 13: a path outside the
    repository was reported as "not found" instead of refused)."""
    doc = scene.pointer_doc("data")
    edit(doc, scene)
    scene.pointer("data", doc)
    scene.commit(label)
    scene.clone()
    line = attempt(scene, ["pull"], 1, "data.dvc", *needles).stderr
    assert "not found" not in line
    attempt(scene, ["status"], 1, "data.dvc")


def test_pointer_that_is_a_symlink_or_a_conflict_is_refused(scene: Scene) -> None:
    (scene.outside / "stolen.dvc").write_text((scene.up / "data.dvc").read_text())
    (scene.up / "data.dvc").unlink()
    (scene.up / "data.dvc").symlink_to(scene.outside / "stolen.dvc")
    scene.commit("pointer is a link")
    scene.clone()
    attempt(scene, ["pull"], 1, "data.dvc", "symbolic link")
    text = (scene.victim / "model.pkl.dvc").read_text()
    (scene.victim / "model.pkl.dvc").write_text(f"<<<<<<< HEAD\n{text}=======\n{text}>>>>>>> b\n")
    attempt(scene, ["push"], 1, "model.pkl.dvc", "merge-conflict", "git checkout --ours")


def _link_in_data(scene: Scene, name: str, target: Path) -> None:
    """Commit a symlink inside the DVC-tracked folder data/ (Git ignores it: force-added)."""
    (scene.up / "data" / name).parent.mkdir(parents=True, exist_ok=True)
    link = scene.up / "data" / name
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)
    elif link.exists() or link.is_symlink():
        link.unlink()
    link.symlink_to(target)
    scene.commit("a link in data/", force=(f"data/{name}",))


def test_committed_folder_link_is_refused_and_force_never_writes_through_it(
        scene: Scene) -> None:
    """Issue 13: `data/sub -> /elsewhere` committed inside a DVC-tracked folder: `pull
    --force` wrote through it."""
    _link_in_data(scene, "sub", scene.outside)
    victim = scene.clone()
    attempt(scene, ["pull"], 1, "data/sub", "symbolic link", "--force")
    attempt(scene, ["status"], 1, "data/sub", "leaves the repository")
    attempt(scene, ["pull", "--force"], 0, "restored data", changes_workspace=True)
    assert not (victim / "data" / "sub").is_symlink()
    assert (victim / "data" / "sub" / "b.txt").read_bytes() == DATA["sub/b.txt"]
    assert sorted(p.name for p in scene.outside.iterdir()) == ["keep.txt"]


def test_committed_file_link_is_replaced_never_written_through(scene: Scene) -> None:
    _link_in_data(scene, "a.txt", scene.outside / "keep.txt")
    victim = scene.clone()
    attempt(scene, ["pull"], 1, "data/a.txt", "symbolic link")
    attempt(scene, ["pull", "--force"], 0, changes_workspace=True)
    assert (victim / "data" / "a.txt").read_bytes() == DATA["a.txt"]
    assert (scene.outside / "keep.txt").read_text() == "the user's own file\n"


@pytest.mark.parametrize("target", ["outside", "git"])
def test_commit_never_reads_the_users_files_through_a_committed_link(scene: Scene,
                                                                     target: str) -> None:
    """A cloned `data/keys -> ~/.ssh` would make `mlsnap commit data` record (and push) them."""
    secret = scene.outside / "id_ed25519"
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n")
    _link_in_data(scene, "keys", scene.outside if target == "outside" else Path("../.git"))
    victim = scene.clone()
    mlsnap(victim, "pull", "--force")  # removes the link, restores the snapshot's files
    (victim / "data" / "keys").symlink_to(scene.outside if target == "outside" else
                                          Path("../.git"))  # ... and Git checks it out again
    cached = sorted((victim / ".dvc" / "cache").rglob("*"))
    attempt(scene, ["commit", "data", "--no-push"], 1, "data/keys", "symbolic link",
            "git rm --cached")
    attempt(scene, ["status"], 1, "data/keys")
    assert sorted((victim / ".dvc" / "cache").rglob("*")) == cached


@pytest.mark.parametrize("part", [".dvc/cache", ".dvc/tmp", ".dvc/config.local"])
def test_machine_only_dvc_files_arriving_with_a_clone_are_refused(scene: Scene,
                                                                  part: str) -> None:
    target = scene.up / part
    if part.endswith("config.local"):
        target.write_text("[cache]\n    dir = " + str(scene.outside / "cache") + "\n")
    else:
        if target.is_dir():
            shutil.rmtree(target)
        target.symlink_to(scene.outside)
    scene.commit(f"ship {part}", force=(part,))
    scene.clone()
    attempt(scene, ["pull"], 1, part, "tracked by Git", "git rm -r --cached")


CONFIGS: list[tuple[str, str, str, Any, tuple[str, ...]]] = [
    ("cache outside, absolute", "cache", "dir", lambda s: str(s.outside / "cache"),
     ("cache.dir", "outside the repository")),
    ("cache outside, relative", "cache", "dir", lambda s: "../../outside/cache",
     ("outside the repository",)),
    ("cache in the home folder", "cache", "dir", lambda s: "~/dvc-cache",
     ("outside the repository",)),
    ("cache inside .git", "cache", "dir", lambda s: "../.git/dvc-cache", ("into .git",)),
    ("symlink cache type", "cache", "type", lambda s: "symlink", ("cache.type", "links")),
    ("hardlink cache type", "cache", "type", lambda s: "hardlink", ("cache.type",)),
    ("links after reflink", "cache", "type", lambda s: "reflink,hardlink,symlink",
     ("cache.type",)),
    ("DVC's state elsewhere", "core", "site_cache_dir", lambda s: str(s.outside / "site"),
     ("core.site_cache_dir",)),
]


def _set_dvc_config(path: Path, section: str, key: str, value: str) -> None:
    import configobj

    conf = configobj.ConfigObj(str(path))
    conf.setdefault(section, {})[key] = value
    conf.write()


@pytest.mark.parametrize(("label", "section", "key", "value", "needles"), CONFIGS,
                         ids=[c[0] for c in CONFIGS])
def test_cloned_cache_settings_are_refused_until_set_for_this_machine(
        scene: Scene, label: str, section: str, key: str, value: Any,
        needles: tuple[str, ...]) -> None:
    _set_dvc_config(scene.up / ".dvc" / "config", section, key, value(scene))
    scene.commit(label)
    victim = scene.clone()
    line = attempt(scene, ["pull"], 1, ".dvc/config", *needles, ".dvc/config.local",
                   "dvc config --local").stderr
    assert not (victim / "model.pkl").exists() and "never committed" in line


def test_a_cache_setting_allowed_in_config_local_is_obeyed(scene: Scene) -> None:
    """The way out the refusal names works: the machine's own untracked config decides."""
    _set_dvc_config(scene.up / ".dvc" / "config", "cache", "type", "symlink")
    scene.commit("links")
    victim = scene.clone()
    _set_dvc_config(victim / ".dvc" / "config.local", "cache", "type", "copy")
    attempt(scene, ["pull"], 0, "restored model.pkl", changes_workspace=True)
    assert not (victim / "model.pkl").is_symlink()
    assert (victim / "model.pkl").read_bytes() == MODEL


def test_unreadable_dvc_config_is_one_line(scene: Scene) -> None:
    (scene.up / ".dvc" / "config").write_text("[cache]\n  dir = a\n[cache]\n  dir = b\n")
    scene.commit("broken config")
    scene.clone()
    attempt(scene, ["pull"], 1, ".dvc/config", "DVC cannot read it")


MLSNAP_CONFIGS: list[tuple[str, Any, tuple[str, ...]]] = [
    ("a kube config outside", lambda s: {"params": [str(s.outside / "kubeconfig.yaml")]},
     ("outside the repository",)),
    ("a file above the repository", lambda s: {"params": ["../outside/kubeconfig.yaml"]},
     ("outside the repository",)),
    ("a section of a file outside", lambda s: {
        "params": [str(s.outside / "kubeconfig.yaml") + ":users"]},
     ("outside the repository",)),
    ("metrics read from .git", lambda s: {"metrics": [".git/config"]}, ("into .git",)),
    ("params through a link out", lambda s: {"params": ["cfg/kubeconfig.yaml"]},
     ("through a symlink",)),
    ("a number, not a path", lambda s: {"params": [123]}, ("sources.model.params[0]",)),
    ("a mapping, not a list", lambda s: {"params": {"a": 1}}, ("must be a list",)),
    ("an unknown kind", lambda s: {"secrets": ["x.yaml"]}, ("sources.model.secrets",)),
]


@pytest.mark.parametrize(("label", "sources", "needles"), MLSNAP_CONFIGS,
                         ids=[c[0] for c in MLSNAP_CONFIGS])
def test_remembered_params_paths_never_read_the_users_files(
        scene: Scene, label: str, sources: Any, needles: tuple[str, ...]) -> None:
    """Issue 13: a cloned .mlsnap/config.yaml "remembering" a params file outside the repo made
    a plain `mlsnap commit model.pkl` record the user's private key."""
    private = "-----BEGIN RSA PRIVATE KEY-----\\nMIIEowIBAAKCAQEA7bq\\n"
    (scene.outside / "kubeconfig.yaml").write_text(f"users:\n  key: \"{private}\"\n")
    (scene.up / "cfg").symlink_to(scene.outside)
    config = yaml.safe_load((scene.up / ".mlsnap" / "config.yaml").read_text())
    config["sources"] = {"model": sources(scene)}
    (scene.up / ".mlsnap" / "config.yaml").write_text(yaml.safe_dump(config))
    scene.commit(label)
    victim = scene.clone()
    (victim / "model.pkl").write_bytes(b"the victim's new model")
    head = scene.git("rev-parse", "HEAD", cwd=victim)
    attempt(scene, ["commit", "model.pkl", "--no-push"], 1, ".mlsnap/config.yaml", *needles)
    assert scene.git("rev-parse", "HEAD", cwd=victim) == head
    assert "MIIEowIBAAKCAQEA7bq" not in (victim / MANIFEST).read_text()


@pytest.mark.parametrize(("label", "text", "needles"), [
    ("default name that climbs", "mlsnap: 1\ndefault_name: ../../x\n", ("default_name",)),
    ("alias bomb", "mlsnap: 1\na: &a [x, x]\nb: [*a, *a]\n", ("aliases are not allowed",)),
    ("merge conflict", "<<<<<<< HEAD\nmlsnap: 1\n=======\nmlsnap: 1\n>>>>>>> theirs\n",
     ("merge-conflict", "git checkout --ours -- .mlsnap/config.yaml")),
], ids=["name", "aliases", "conflict"])
def test_hostile_mlsnap_config_is_one_line(scene: Scene, label: str, text: str,
                                           needles: tuple[str, ...]) -> None:
    (scene.up / ".mlsnap" / "config.yaml").write_text(text)
    scene.commit(label)
    victim = scene.clone()
    (victim / "model.pkl").write_bytes(b"new")
    attempt(scene, ["commit", "model.pkl", "--no-push"], 1, ".mlsnap/config.yaml", *needles,
            changes_workspace=True)


def _manifest_with(scene: Scene, old: str, new: str) -> None:
    text = (scene.up / MANIFEST).read_text()
    assert old in text
    (scene.up / MANIFEST).write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(("label", "params", "command", "needles"), [
    ("nested 100,000 deep", "params: " + "[" * 100000 + "]" * 100000 + "\n", ["pull"],
     ("nested deeper than 64 levels",)),
    ("nested 500 deep", "params: " + "{a: " * 500 + "1" + "}" * 500 + "\n", ["show", "HEAD"],
     ("nested",)),
    ("binary value", "params: {blob: !!binary aGVsbG8=}\n", ["pull"], ("params.blob", "binary")),
    ("a Python tag in params", "params: {x: !!python/name:os.system}\n", ["show", "HEAD"],
     ("python",)),
], ids=["deep", "deep-show", "binary", "python"])
def test_hostile_manifest_values_are_one_line(scene: Scene, label: str, params: str,
                                              command: list[str],
                                              needles: tuple[str, ...]) -> None:
    """Issue 13: a deeply nested manifest gave "unexpected RecursionError"."""
    _manifest_with(scene, "params: {}\n", params)
    scene.commit(label)
    scene.clone()
    attempt(scene, command, 1, MANIFEST, *needles)


def test_merge_conflict_in_a_manifest_says_so_and_how_to_resolve_it(scene: Scene) -> None:
    victim = scene.clone()
    text = (victim / MANIFEST).read_text()
    other = text.replace("message: baseline", "message: theirs")
    (victim / MANIFEST).write_text(f"<<<<<<< HEAD\n{text}=======\n{other}>>>>>>> feature\n")
    attempt(scene, ["pull"], 1, MANIFEST, "merge-conflict",
            f"git checkout --ours -- {MANIFEST}", f"git add {MANIFEST}")


def test_terminal_escapes_in_recorded_text_are_shown_escaped(scene: Scene) -> None:
    """Issue 13: a message holding escape codes was printed raw by `log` (window title,
    cleared screen); JSON output keeps the text as it is."""
    evil = "fine\x1b]0;pwned\x07\x1b[2J\x1b[1A\rhidden\u202egnp.exe"
    _manifest_with(scene, "message: baseline", f"message: {json.dumps(evil)}")
    _manifest_with(scene, "params: {}\n", f"params: {{{json.dumps(evil)}: 1, x: {json.dumps(evil)}}}\n")
    scene.commit("escapes")
    scene.clone()
    for args, code in ((["log"], 0), (["show"], 0), (["show", "HEAD"], 0),
                       (["diff", "HEAD~1"], 0), (["status"], 3)):
        out = attempt(scene, args, code)
        printed = out.stdout + out.stderr
        assert not any(c in printed for c in "\x1b\x07\r\u202e"), args
    assert "\\x1b]0;pwned" in attempt(scene, ["log"], 0).stdout
    logged = json.loads(attempt(scene, ["log", "--json"], 0).stdout)
    assert logged[0]["message"] == evil
    assert json.loads(attempt(scene, ["show", "--json"], 0).stdout)["params"]["x"] == evil


def test_requirements_of_a_hostile_manifest_add_no_pip_options(scene: Scene) -> None:
    """`show --requirements > req.txt; pip install -r req.txt` must install nothing else."""
    _manifest_with(scene, "  packages:\n", '  packages:\n    "numpy==1.0\\n--index-url '
                   'https://evil.example/simple": "1"\n    sixx-evil: "1.0; python_version>0"\n')
    scene.commit("requirements")
    scene.clone()
    out = attempt(scene, ["show", "--requirements"], 0)
    assert "--index-url" not in out.stdout and "evil" not in out.stdout
    assert "2 package(s) left out" in out.stdout


def test_dates_in_an_old_manifest_become_text_and_json_works(scene: Scene) -> None:
    """Issue 13: `-p when=2024-01-02` broke `log --json`, `show --json` and `diff --json` for
    good; a manifest holding a YAML date is read with the date as its ISO string."""
    _manifest_with(scene, "params: {}\n",
                   "params: {when: 2024-01-02, at: 2024-01-02 10:00:00, s: !!set {b, a}}\n")
    scene.commit("a date")
    scene.clone()
    shown = json.loads(attempt(scene, ["show", "--json"], 0).stdout)
    assert shown["params"] == {"when": "2024-01-02", "at": "2024-01-02T10:00:00",
                               "s": ["a", "b"]}
    assert json.loads(attempt(scene, ["log", "--json"], 0).stdout)[0]["params"]["when"] == \
        "2024-01-02"
    attempt(scene, ["diff", "HEAD~1", "HEAD", "--json"], 0)


def test_hostile_checkpoint_index_is_one_line(scene: Scene) -> None:
    victim = scene.clone()
    ckpt = victim / "ckpt"
    ckpt.mkdir()
    script = ("import sys, mlsnap\n"
              "from mlsnap.errors import MlsnapError\n"
              "try:\n"
              "    mlsnap.Checkpointer('ckpt').save(1, lambda p: open(p, 'wb').write(b'x'))\n"
              "except MlsnapError as exc:\n"
              "    sys.exit(f'Error: {exc}')\n")
    outside = scene.outside_state()
    escaping = ("mlsnap-checkpoints: 1\ncheckpoints:\n- {name: '../../../x', step: 1, time: t, "
                "metrics: {}, md5: d41d8cd98f00b204e9800998ecf8427e, size: 0, nfiles: 1}\n")
    for index in (escaping, "mlsnap-checkpoints: 1\npending: ['../x']\n",
                  "mlsnap-checkpoints: 1\na: &a [x, x]\nb: [*a, *a]\n"):
        (ckpt / "index.yaml").write_text(index)
        proc = subprocess.run([sys.executable, "-c", script], cwd=victim, capture_output=True,
                              text=True, check=False)
        line = proc.stderr.strip()
        assert proc.returncode == 1 and "\n" not in line and "Traceback" not in line, line
        assert line.startswith("Error: ") and "invalid checkpoint index" in line, line
    assert sorted(p.name for p in ckpt.iterdir()) == ["index.yaml"]
    assert scene.outside_state() == outside and not scene.sentinel.exists()


def test_bad_lock_timeout_is_one_line(scene: Scene) -> None:
    scene.clone()
    attempt(scene, ["pull"], 1, "MLSNAP_LOCK_TIMEOUT", env={"MLSNAP_LOCK_TIMEOUT": "abc"})


PARAMS_FILES: list[tuple[str, str, bytes, tuple[str, ...]]] = [
    ("alias bomb (2 KB that expands to gigabytes)", "params.yaml",
     b"".join(f"l{i}: &l{i} [".encode() + b",".join([f"*l{i - 1}".encode()] * 9 if i else
                                                     [b"lol"] * 9) + b"]\n" for i in range(9)),
     ("aliases are not allowed",)),
    ("nested 100,000 deep, YAML", "params.yaml", b"a: " + b"[" * 100000 + b"]" * 100000,
     ("nested deeper than 64 levels",)),
    ("nested 100,000 deep, JSON", "params.json", b"[" * 100000 + b"]" * 100000,
     ("nested deeper than 64 levels",)),
    ("nested 100,000 deep, TOML", "params.toml", b"a = " + b"[" * 100000 + b"]" * 100000,
     ("nested deeper than 64 levels",)),
    ("nested 200 deep, JSON", "params.json", b'{"a":' * 200 + b"1" + b"}" * 200,
     ("nested too deeply",)),
    ("binary value", "params.yaml", b"blob: !!binary aGVsbG8=\n", ("blob", "binary")),
    ("Python object tag", "params.yaml", b"x: !!python/object/apply:os.system ['touch S']\n",
     ("not valid YAML",)),
    ("duplicate JSON keys", "params.json", b'{"lr": 0.1, "lr": 9}', ("duplicate key 'lr'",)),
    ("keys equal once they are text", "params.yaml", b"1: a\n'1': b\n",
     ("key '1' appears twice",)),
    ("keys equal to Python", "params.yaml", b"1: a\ntrue: b\n", ("are one key to Python",)),
    ("merge conflict", "params.yaml", b"<<<<<<< HEAD\nlr: 1\n=======\nlr: 2\n>>>>>>> x\n",
     ("merge-conflict",)),
    ("larger than 8 MiB", "params.yaml", b"a: " + b"x" * (8 * 1024 * 1024 + 1) + b"\n",
     ("larger than",)),
]


@pytest.mark.parametrize(("label", "name", "content", "needles"), PARAMS_FILES,
                         ids=[c[0] for c in PARAMS_FILES])
def test_hostile_params_file_is_refused_in_one_line(scene: Scene, label: str, name: str,
                                                     content: bytes,
                                                     needles: tuple[str, ...]) -> None:
    """Issue 13: a 2 KB params file with nested aliases hung `commit` (2.8 GB after 60 s);
    params files are read with the limits manifests have."""
    (scene.up / name).write_bytes(content.replace(b"touch S", f"touch {scene.sentinel}".encode()))
    scene.commit(label)
    victim = scene.clone()
    (victim / "model.pkl").write_bytes(b"new weights")
    head = scene.git("rev-parse", "HEAD", cwd=victim)
    attempt(scene, ["commit", "model.pkl", "--params", name, "--no-push"], 1, name, *needles)
    assert scene.git("rev-parse", "HEAD", cwd=victim) == head


def test_dates_and_odd_scalars_in_params_are_recorded_as_json_safe_values(scene: Scene) -> None:
    """Issue 13: `-p when=2024-01-02` broke `log`, `log --json`, `show --json` and `diff
    --json` for good ("Object of type date is not JSON serializable")."""
    victim = scene.clone()
    mlsnap(victim, "pull")
    (victim / "dated.yaml").write_text("at: 2024-01-02 10:00:00\ntags: !!set {b, a}\n"
                                       "pairs: !!omap [{x: 1}, {y: 2}]\n1: one\nfalse: yes\n")
    scene.git("add", "dated.yaml", cwd=victim)
    scene.git("commit", "-q", "-m", "dated params", cwd=victim)
    (victim / "model.pkl").write_bytes(b"retrained")
    attempt(scene, ["commit", "model.pkl", "--params", "dated.yaml", "-p", "when=2024-01-02",
                    "-p", "raw=!!binary aGk=", "-p", "t=2024-01-02T10:00:00Z", "--no-push"], 0,
            changes_workspace=True)
    for args in (["log"], ["log", "--json"], ["show", "--json"], ["diff", "--json"], ["diff"]):
        attempt(scene, args, 0)
    params = json.loads(attempt(scene, ["show", "--json"], 0).stdout)["params"]
    assert params == {"at": "2024-01-02T10:00:00", "tags": ["a", "b"],
                      "pairs": [["x", 1], ["y", 2]], "1": "one", "false": True,
                      "when": "2024-01-02", "raw": "!!binary aGk=", "t": "2024-01-02T10:00:00Z"}

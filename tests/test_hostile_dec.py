"""The December features attacked with hostile clones: `run:` records and `repro`, dirty-code
patches, pickle verdicts recorded in manifests, signatures, `report` and `verify`.

Every clone is built for real (tests/attacker.py): a real upstream with a real pushed snapshot,
edited as an attacker would (objects written into the real folder remote, manifests and
pointers rewritten, commits made with Git), then cloned with `git clone` by a victim who runs
the real `mlsnap` command line. Each case checks what the victim sees from outside: the exit
code, one line on stderr, no traceback, nothing written outside the clone or into `.git`, and
sentinel files proving no code of the attacker's ran where none may run.

`repro` runs a snapshot's recorded command by design; there the promise is narrower and checked
as such: the argv never goes through a shell, it is shown before any of it runs, it runs in a
temporary worktree (under TMPDIR, removed afterwards), never in the clone or outside it.

55 real clones, a repro or a browser in many: the slow suite runs them (CI with it).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.attacker import MANIFEST, MODEL, Scene, attempt, build_base

RUN: dict[str, Any] = {"cmd": ["true"], "cwd": ".", "exit_code": 0,
                       "started": "2026-12-01T10:00:00Z", "duration_s": 1.5}
PATCH = ".mlsnap/patches/model.patch"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def hostile_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_base(tmp_path_factory.mktemp("hostile-dec-base"))


@pytest.fixture
def scene(hostile_base: Path, tmp_path: Path) -> Scene:
    return Scene.from_base(hostile_base, tmp_path)


@pytest.fixture
def tmpdir_env(tmp_path: Path) -> dict[str, str]:
    """TMPDIR of the victim's mlsnap: a folder of this test beside the scene, so that where
    `repro` made its worktree, and that it removed it, can be seen."""
    folder = tmp_path.parent / f"{tmp_path.name}-tmp"
    folder.mkdir()
    return {"TMPDIR": str(folder)}


def _write_manifest(scene: Scene, doc: dict[str, Any]) -> None:
    (scene.up / MANIFEST).write_text(yaml.safe_dump(doc, sort_keys=False))


def _with_run(scene: Scene, run: Any, message: str = "run record") -> None:
    """The upstream's snapshot now claims it was taken by `mlsnap run` with ``run``."""
    doc = scene.manifest()
    doc["run"] = run
    _write_manifest(scene, doc)
    scene.commit(message)


def _worktrees_left(env: dict[str, str]) -> list[str]:
    return sorted(p.name for p in Path(env["TMPDIR"]).iterdir())


# =========================================================================== run: records

# (id, the run: value, what the one line names)
RUN_RECORDS: list[tuple[str, Any, tuple[str, ...]]] = [
    ("cmd is a shell string", {**RUN, "cmd": "touch SENTINEL; echo hi"}, ("run.cmd",)),
    ("cmd is empty", {**RUN, "cmd": []}, ("run.cmd",)),
    ("cmd holds a number", {**RUN, "cmd": ["echo", 3]}, ("run.cmd[1]",)),
    ("cmd holds a mapping", {**RUN, "cmd": ["echo", {"a": 1}]}, ("run.cmd[1]",)),
    ("cmd holds null", {**RUN, "cmd": [None]}, ("run.cmd[0]",)),
    ("cmd holds NUL", {**RUN, "cmd": ["echo", "a\x00b"]}, ("run.cmd[1]",)),
    ("cmd has too many arguments", {**RUN, "cmd": ["true"] * 5000}, ("run.cmd",)),
    ("cwd climbs out", {**RUN, "cwd": "../.."}, ("run.cwd", "'..'")),
    ("cwd climbs after a folder", {**RUN, "cwd": "sub/../../x"}, ("run.cwd", "'..'")),
    ("cwd is absolute", {**RUN, "cwd": "/tmp"}, ("run.cwd", "absolute")),
    ("cwd is .git", {**RUN, "cwd": ".git/hooks"}, ("run.cwd", ".git")),
    ("cwd is a number", {**RUN, "cwd": 7}, ("run.cwd",)),
    ("exit_code is a bool", {**RUN, "exit_code": True}, ("run.exit_code",)),
    ("exit_code is text", {**RUN, "exit_code": "0"}, ("run.exit_code",)),
    ("duration is text", {**RUN, "duration_s": "long"}, ("run.duration_s",)),
    ("duration is NaN", {**RUN, "duration_s": float("nan")}, ("run.duration_s",)),
    ("duration is negative", {**RUN, "duration_s": -1}, ("run.duration_s",)),
    ("duration no float holds", {**RUN, "duration_s": 10 ** 400}, ("run.duration_s",)),
    ("started is a number", {**RUN, "started": 5}, ("run.started",)),
    ("a key is missing", {k: v for k, v in RUN.items() if k != "cwd"}, ("run", "'cwd'")),
    ("run is a list", ["true"], ("run",)),
    ("output tail is a list", {**RUN, "output_tail": ["x"]}, ("run.output_tail",)),
]


@pytest.mark.parametrize("label,run,needles", RUN_RECORDS, ids=[c[0] for c in RUN_RECORDS])
def test_hostile_run_record_is_one_line_in_show_log_and_repro(
        scene: Scene, tmpdir_env: dict[str, str], label: str, run: Any,
        needles: tuple[str, ...]) -> None:
    _with_run(scene, run)
    scene.clone()
    for args in (["show"], ["show", "--json"], ["repro"], ["repro", "--json"]):
        attempt(scene, args, 1, MANIFEST, *needles, env=tmpdir_env)
    logged = attempt(scene, ["log", "--json"], 0, env=tmpdir_env)
    newest = json.loads(logged.stdout)[0]
    assert MANIFEST in newest["error"] and needles[0] in newest["error"], newest
    assert "Traceback" not in attempt(scene, ["log"], 0).stdout
    assert _worktrees_left(tmpdir_env) == []


def _repro(scene: Scene, env: dict[str, str], code: int, *needles: str,
           args: tuple[str, ...] = ()) -> str:
    """`mlsnap repro` in the victim: the outcome's stdout; no worktree left behind."""
    found = attempt(scene, ["repro", *args], code, *needles, env=env, fetches=True,
                    verdict_on_stdout=True)
    err = found.stderr.strip()
    if "verdict: " not in found.stdout:  # refused before a verdict: one line says why
        assert err.startswith("Error: ") and "\n" not in err and "unexpected" not in err, err
    assert _worktrees_left(env) == [], "repro left its worktree"
    return found.stdout


def test_repro_runs_the_argv_without_a_shell_shown_first_in_a_temporary_worktree(
        scene: Scene, tmpdir_env: dict[str, str]) -> None:
    s = scene.sentinel
    hostile = [f"$(touch {s})", f"; touch {s}", f"`touch {s}`", f"| touch {s}", f"&& touch {s}",
               "\x1b]0;title\x07\x1b[2J", "*", "~"]
    program = "import os, sys; print('cwd=' + os.getcwd()); print('argv=' + ascii(sys.argv[1:]))"
    _with_run(scene, {**RUN, "cmd": [sys.executable, "-c", program, *hostile]})
    scene.clone()
    out = _repro(scene, tmpdir_env, 3, "verdict: differs")  # it made no model: differs
    lines = out.splitlines()
    shown = next(i for i, line in enumerate(lines) if line.startswith("running `"))
    ran = next(i for i, line in enumerate(lines) if line.startswith("cwd="))
    assert shown < ran, out  # the command is shown before any of it runs
    assert "\x1b" not in lines[shown] and "\x07" not in lines[shown], out
    assert "\\x1b]0;title" in lines[shown]  # recorded control characters shown escaped
    where = Path(lines[ran][len("cwd="):])
    assert where.is_relative_to(Path(tmpdir_env["TMPDIR"]).resolve()), where
    assert lines[shown].startswith(f"running `{sys.executable} -c ")
    assert lines[shown].endswith(" in a temporary worktree of " + scene.manifest()["code"][
        "commit"][:7])
    assert lines[ran + 1] == "argv=" + ascii(hostile)  # every argument reached it literally


def test_repro_refuses_a_cwd_that_is_a_committed_link_out_of_the_repository(
        scene: Scene, tmpdir_env: dict[str, str]) -> None:
    (scene.up / "work").symlink_to(Path("..") / "outside")  # victim/work -> the user's folder
    _with_run(scene, {**RUN, "cwd": "work", "cmd": ["touch", "made-here"]})
    scene.clone()
    _repro(scene, tmpdir_env, 1, MANIFEST, "run.cwd", "through a symlink")
    (scene.up / "abs").symlink_to(scene.outside)  # in the snapshot's own commit, so restored
    _with_run(scene, {**RUN, "cwd": "abs", "cmd": ["touch", "made-here"]})
    scene.git("pull", "-q", cwd=scene.victim)
    _repro(scene, tmpdir_env, 1, MANIFEST, "run.cwd", "through a symlink")
    assert sorted(p.name for p in scene.outside.iterdir()) == ["keep.txt"]


def test_repro_never_takes_a_relative_program_from_outside_the_repository(
        scene: Scene, tmpdir_env: dict[str, str]) -> None:
    """`../outside/python` names a file beside the clone; relative to the worktree it names
    nothing, and must not be looked up beside the clone instead."""
    program = scene.outside / "python"
    program.write_text(f"#!/bin/sh\ntouch {scene.sentinel}\n")
    program.chmod(0o755)
    _with_run(scene, {**RUN, "cmd": ["../outside/python", "train.py"]})
    scene.clone()
    out = _repro(scene, tmpdir_env, 1, "verdict: failed", "could not start")
    assert "running `../outside/python train.py`" in out


def test_repro_of_a_cwd_missing_at_the_code_commit_says_so(
        scene: Scene, tmpdir_env: dict[str, str]) -> None:
    _with_run(scene, {**RUN, "cwd": "nowhere", "cmd": ["touch", "made-here"]})
    scene.clone()
    out = _repro(scene, tmpdir_env, 1, "verdict: failed", "run.cwd 'nowhere' is not a folder")
    assert "running `" not in out


def test_repro_runs_a_committed_interpreter_only_in_the_worktree_after_showing_it(
        scene: Scene, tmpdir_env: dict[str, str]) -> None:
    """A `run:` naming a script of the clone as its interpreter: describing that interpreter
    runs it, so that too happens only after the command is shown, in the worktree."""
    import mlsnap

    (scene.up / "bin").mkdir()
    fake = scene.up / "bin" / "python"
    fake.write_text("#!/bin/sh\npwd >> trace.txt\n")  # relative: wherever it was started
    fake.chmod(0o755)
    _with_run(scene, {**RUN, "cmd": ["bin/python", "train.py"]})
    scene.clone()
    package = Path(mlsnap.__file__).parent
    proc = subprocess.run([sys.executable, "-m", "mlsnap", "repro"], cwd=scene.victim,
                          capture_output=True, text=True, env={**os.environ, **tmpdir_env},
                          check=False, timeout=300)
    assert proc.returncode == 1, proc
    assert proc.stdout.startswith("running `bin/python train.py` in a temporary worktree of "), \
        proc.stdout
    err = proc.stderr.strip()
    assert err.startswith("Error: ") and "\n" not in err and "unexpected" not in err, err
    assert "bin/python: could not describe this interpreter" in err
    assert not (package / "trace.txt").exists(), "it ran in mlsnap's own folder"
    assert not (scene.victim / "trace.txt").exists() and not (scene.victim / "bin" /
                                                             "trace.txt").exists()
    assert scene.status() == ""
    assert _worktrees_left(tmpdir_env) == []


def test_repro_of_a_command_too_long_for_the_system_fails_in_one_line(
        scene: Scene, tmpdir_env: dict[str, str]) -> None:
    _with_run(scene, {**RUN, "cmd": ["echo", "x" * 300_000]})  # > MAX_ARG_STRLEN (128 KiB)
    scene.clone()
    out = _repro(scene, tmpdir_env, 1, "verdict: failed", "could not start")
    assert "Argument list too long" in out
    assert max(map(len, out.splitlines())) < 2000, "a 300 kB command printed whole"
    assert "2 arguments, 300,005 characters" in out
    cert = json.loads(attempt(scene, ["repro", "--json"], 1, env=tmpdir_env, fetches=True,
                              verdict_on_stdout=True).stdout)
    assert cert["verdict"] == "failed" and "Argument list too long" in cert["reason"]


# =========================================================================== dirty-code patches


def _dirty(scene: Scene, patch: bytes, run: dict[str, Any]) -> None:
    """The snapshot claims dirty code: its patch (crafted, put on the remote) and a `run:`."""
    oid = scene.put(patch)
    doc = scene.manifest()
    doc["code"]["dirty"] = True
    doc["code"]["patch"] = {"path": PATCH, "md5": oid}
    doc["run"] = run
    _write_manifest(scene, doc)
    pointer = scene.pointer_doc("model.pkl")
    pointer["outs"][0].update(md5=oid, size=len(patch), path="model.patch")
    (scene.up / PATCH).parent.mkdir(exist_ok=True)
    scene.pointer(PATCH, pointer)
    scene.commit("dirty snapshot")


def _new_file(path: str, text: str, mode: str = "100644") -> str:
    body = "".join(f"+{line}\n" for line in text.splitlines())
    count = len(text.splitlines())
    return (f"diff --git a/{path} b/{path}\nnew file mode {mode}\n--- /dev/null\n"
            f"+++ b/{path}\n@@ -0,0 +1,{count} @@\n{body}")


def _new_link(path: str, target: str) -> str:
    return (f"diff --git a/{path} b/{path}\nnew file mode 120000\n--- /dev/null\n"
            f"+++ b/{path}\n@@ -0,0 +1 @@\n+{target}\n\\ No newline at end of file\n")


PATCHES: list[tuple[str, Any]] = [
    ("edit a file beside the clone", lambda s: (
        "diff --git a/../outside/keep.txt b/../outside/keep.txt\n--- a/../outside/keep.txt\n"
        "+++ b/../outside/keep.txt\n@@ -1 +1 @@\n-the user's own file\n+pwned\n")),
    ("create a file beside the clone", lambda s: _new_file("../outside/new.txt", "pwned")),
    ("create a file by absolute path", lambda s: _new_file(f"{s.outside}/new.txt", "pwned")),
    ("plant a git hook", lambda s: _new_file(".git/hooks/post-checkout",
                                             f"#!/bin/sh\ntouch {s.sentinel}\n", "100755")),
    ("plant a hook through .GIT", lambda s: _new_file(".GIT/hooks/post-checkout",
                                                      f"#!/bin/sh\ntouch {s.sentinel}\n")),
    ("write through a link it makes", lambda s: _new_link("esc", str(s.outside))
     + _new_file("esc/new.txt", "pwned")),
]


@pytest.mark.parametrize("label,patch", PATCHES, ids=[c[0] for c in PATCHES])
def test_repro_refuses_a_patch_that_writes_outside_the_worktree(
        scene: Scene, tmpdir_env: dict[str, str], label: str, patch: Any) -> None:
    _dirty(scene, patch(scene).encode(), {**RUN, "cmd": ["touch", "ran.txt"]})
    scene.clone()
    out = _repro(scene, tmpdir_env, 1, PATCH, "does not apply")
    assert "running `" not in out  # refused before the command ran
    assert sorted(p.name for p in scene.outside.iterdir()) == ["keep.txt"]


def test_repro_refuses_links_a_patch_makes_out_of_the_worktree(
        scene: Scene, tmpdir_env: dict[str, str]) -> None:
    """The patch applies (a link is a file to Git), but the cwd it makes a link out of the
    worktree, and an artifact path it turns into a link to the user's file, are refused."""
    _dirty(scene, _new_link("esc", str(scene.outside)).encode(),
           {**RUN, "cwd": "esc", "cmd": ["touch", "made-here"]})
    scene.clone()
    _repro(scene, tmpdir_env, 1, "run.cwd", "through a symlink")
    assert sorted(p.name for p in scene.outside.iterdir()) == ["keep.txt"]

    scene2 = scene  # the same clone, a new snapshot on top: model.pkl is a link now
    _dirty(scene2, _new_link("model.pkl", str(scene.outside / "keep.txt")).encode(),
           {**RUN, "cmd": ["sh", "-c", "echo weights > model.pkl"]})
    scene.git("pull", "-q", cwd=scene.victim)
    _repro(scene, tmpdir_env, 1, "model.pkl", "symlink")
    assert (scene.outside / "keep.txt").read_text() == "the user's own file\n"


# =========================================================================== pickle verdicts


def _os_system_pickle(command: str) -> bytes:
    """A pickle that calls os.system(command) when loaded (protocol 0, written by hand)."""
    return b"cos\nsystem\n(V" + command.encode() + b"\ntR."


VERDICTS: list[tuple[str, Any]] = [
    ("claimed clean", lambda f: [{"path": "model.pkl", "verdict": "clean"}]),
    ("claimed safe format", lambda f: [{"path": "model.pkl", "verdict": "clean", "imports": []}]),
    ("verdict of another path", lambda f: [{"path": "other.pkl", "verdict": "clean"}]),
    ("no files listed", lambda f: []),
]


@pytest.mark.parametrize("label,files", VERDICTS, ids=[c[0] for c in VERDICTS])
def test_a_manifest_calling_a_dangerous_pickle_clean_is_not_believed(
        scene: Scene, label: str, files: Any) -> None:
    """The attacker swaps model.pkl for a pickle that runs os.system and records the scan
    that would pass it: pull and get scan the bytes themselves."""
    evil = _os_system_pickle(f"touch {scene.sentinel}")
    scene.point("model.pkl", scene.put(evil))
    doc = scene.manifest()
    doc["pickles"] = {"scanner": "picklescan 99.0", "files": files(evil)}
    _write_manifest(scene, doc)
    scene.commit("model.pkl: a clean model, as the scan says")
    scene.clone()
    attempt(scene, ["pull"], 3, "model.pkl", "os.system", fetches=True)
    assert not (scene.victim / "model.pkl").exists()
    out = scene.victim / "got"
    attempt(scene, ["get", "HEAD", "-o", str(out)], 3, "model.pkl", "os.system", fetches=True)
    assert not out.exists() or not (out / "model.pkl").exists()


def test_a_pickle_verdict_naming_a_path_out_of_the_repository_is_one_line(scene: Scene) -> None:
    doc = scene.manifest()
    doc["pickles"]["files"] = [{"path": "../outside/keep.txt", "verdict": "clean"}]
    _write_manifest(scene, doc)
    scene.commit()
    scene.clone()
    for args in (["pull"], ["show"], ["verify"]):
        attempt(scene, args, 1, MANIFEST, "pickles.files[0].path", "'..'")


# =========================================================================== signatures


def _keypair(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
                   check=True, capture_output=True)
    return key


@pytest.fixture
def signers(scene: Scene, tmp_path: Path) -> dict[str, Path]:
    """alice (whom the victim trusts: the allowed-signers file of the victim's own global Git
    config) and mallory (the attacker, whose key signs the upstream's snapshots)."""
    keys = tmp_path / "keys"
    alice, mallory = _keypair(keys, "alice"), _keypair(keys, "mallory")
    allowed = keys / "allowed_signers"
    allowed.write_text("alice@example.com " + " ".join(
        (keys / "alice.pub").read_text().split()[:2]) + "\n")
    subprocess.run(["git", "config", "--global", "gpg.ssh.allowedSignersFile", str(allowed)],
                   check=True)
    scene.git("config", "gpg.format", "ssh")
    scene.git("config", "user.signingkey", f"{mallory}.pub")
    return {"alice": alice, "mallory": mallory}


def _signed_snapshot(scene: Scene, key: Path, content: bytes, message: str) -> None:
    scene.git("config", "user.signingkey", f"{key}.pub")
    (scene.up / "model.pkl").write_bytes(content)
    proc = subprocess.run([sys.executable, "-m", "mlsnap", "commit", "model.pkl", "data",
                           "--sign", "-M", message], cwd=scene.up, capture_output=True,
                          text=True, check=False, timeout=300)
    assert proc.returncode == 0 and "(signed)" in proc.stdout, proc


def test_a_snapshot_signed_by_a_key_nobody_trusts_is_refused(
        scene: Scene, signers: dict[str, Path]) -> None:
    _signed_snapshot(scene, signers["mallory"], MODEL + b"mallory", "signed, honestly")
    scene.clone()
    found = attempt(scene, ["verify", "--require-signed"], 3, "nobody here trusts")
    assert ".mlsnap/model.yaml" in found.stdout + found.stderr
    attempt(scene, ["pull", "--require-signed"], 3, "nobody here trusts")
    assert not (scene.victim / "model.pkl").exists()
    report = json.loads(attempt(scene, ["verify", "--require-signed", "--json"], 3).stdout)
    assert report["ok"] is False
    signature = report["snapshots"][0]["signature"]
    assert signature["signed"] is False and signature["by"] is None
    assert signature["commit"]["state"] == "untrusted", signature


def test_an_unsigned_edit_on_top_of_a_trusted_signature_is_refused(
        scene: Scene, signers: dict[str, Path]) -> None:
    """alice signed the snapshot; the attacker's later commit points model.pkl at other bytes
    (manifest and pointer rewritten consistently, the object on the remote)."""
    _signed_snapshot(scene, signers["alice"], MODEL + b"alice", "alice's model")
    scene.point("model.pkl", scene.put(b"the attacker's weights"))
    scene.commit("refresh model")
    scene.clone()
    attempt(scene, ["verify", "--require-signed"], 3, "is not signed")
    attempt(scene, ["pull", "--require-signed"], 3, "is not signed")
    assert not (scene.victim / "model.pkl").exists()
    # The same attack on the pointer alone (the manifest left as alice signed it).
    scene.git("checkout", "-q", "HEAD~1", "--", MANIFEST)
    scene.commit("manifest as signed")
    scene.git("pull", "-q", cwd=scene.victim)
    attempt(scene, ["verify", "--require-signed"], 3, "is not signed")
    attempt(scene, ["pull", "--require-signed"], 1, MANIFEST, "disagrees with model.pkl.dvc")
    assert not (scene.victim / "model.pkl").exists()


def test_trust_settings_arriving_with_the_clone_are_not_obeyed(
        scene: Scene, signers: dict[str, Path]) -> None:
    """The clone brings an allowed-signers file trusting mallory, a Git config file naming it
    and a program to check signatures with, and mlsnap settings pointing at them: none of it
    is the victim's own configuration, so mallory's signature stays untrusted."""
    _signed_snapshot(scene, signers["mallory"], MODEL + b"mallory", "signed")
    mallory_pub = " ".join((signers["mallory"].parent / "mallory.pub").read_text().split()[:2])
    (scene.up / ".mlsnap" / "allowed_signers").write_text(f"mallory@example.com {mallory_pub}\n")
    evil = scene.up / "check-signature.sh"
    evil.write_text(f"#!/bin/sh\ntouch {scene.sentinel}\nexit 0\n")
    evil.chmod(0o755)
    (scene.up / ".gitconfig").write_text(
        '[gpg "ssh"]\n\tallowedSignersFile = .mlsnap/allowed_signers\n'
        "\tprogram = ./check-signature.sh\n[gpg]\n\tprogram = ./check-signature.sh\n")
    (scene.up / ".git-config").write_text((scene.up / ".gitconfig").read_text())
    config = scene.up / ".mlsnap" / "config.yaml"
    config.write_text(config.read_text() + "signing:\n  allowed_signers: "
                      ".mlsnap/allowed_signers\n  gpg_program: ./check-signature.sh\n")
    # Committed on top but leaving the snapshot's files alone: mallory's commit still vouches.
    scene.commit("signing setup")
    scene.git("commit", "-q", "--amend", "--no-edit", "-S")
    scene.clone()
    attempt(scene, ["verify", "--require-signed"], 3, "nobody here trusts")
    attempt(scene, ["pull", "--require-signed"], 3, "nobody here trusts")
    assert not (scene.victim / "model.pkl").exists()


# =========================================================================== verify


def test_verify_names_a_pointer_swapped_under_the_manifest(scene: Scene) -> None:
    """The attacker points model.pkl.dvc at other bytes (on the remote) and leaves the
    manifest as it was: the record and its pointer disagree."""
    other = scene.put(b"the attacker's weights")
    pointer = scene.pointer_doc("model.pkl")
    pointer["outs"][0].update(md5=other, size=len(b"the attacker's weights"))
    scene.pointer("model.pkl", pointer)
    scene.commit("pointer only")
    scene.clone()
    attempt(scene, ["verify"], 3, "model.pkl")
    attempt(scene, ["verify", "--remote"], 3, "model.pkl")
    attempt(scene, ["pull"], 1, MANIFEST, "disagrees with model.pkl.dvc")


def test_verify_of_swapped_pointers_names_both(scene: Scene) -> None:
    """model.pkl.dvc and data.dvc trade places: each names the other's object."""
    a, b = scene.pointer_doc("model.pkl"), scene.pointer_doc("data")
    a_out, b_out = dict(a["outs"][0]), dict(b["outs"][0])
    a["outs"][0] = {**b_out, "path": a_out["path"]}
    b["outs"][0] = {**a_out, "path": b_out["path"]}
    scene.pointer("model.pkl", a)
    scene.pointer("data", b)
    scene.commit("swap")
    scene.clone()
    found = attempt(scene, ["verify", "--json"], 3)
    failures = json.loads(found.stdout)["snapshots"][0]["failures"]
    named = " ".join(f["path"] + " " + f["reason"] for f in failures)
    assert "model.pkl" in named and "data" in named, failures


@pytest.mark.parametrize("path,needle", [("../outside/keep.txt", "'..'"),
                                         ("/etc/passwd", "absolute"),
                                         (".git/config", ".git")])
def test_verify_refuses_a_manifest_naming_a_path_outside_the_repository(
        scene: Scene, path: str, needle: str) -> None:
    text = (scene.up / MANIFEST).read_text().replace("- {path: model.pkl,", f"- {{path: '{path}',")
    (scene.up / MANIFEST).write_text(text)
    scene.commit()
    scene.clone()
    for args in (["verify"], ["verify", "--remote"], ["verify", "--require-signed"]):
        attempt(scene, args, 1, MANIFEST, "artifacts[0].path", needle)


def test_verify_never_follows_a_committed_link_out_of_the_repository(scene: Scene) -> None:
    """model.pkl is now a committed link to the user's file: verify must not hash the user's
    file as if it were the artifact, nor change it."""
    (scene.up / "models").symlink_to(Path("..") / "outside")
    text = (scene.up / MANIFEST).read_text().replace("- {path: model.pkl,",
                                                     "- {path: models/keep.txt,")
    (scene.up / MANIFEST).write_text(text)
    os.replace(scene.up / "model.pkl.dvc", scene.up / "models.dvc.tmp")
    scene.commit()
    scene.clone()
    found = attempt(scene, ["verify"], 1, "models/keep.txt", "through a symlink")
    assert "keep.txt" in found.stderr


# =========================================================================== report

SCRIPT = "</script><script>window.__pwned = 1; alert('index')</script>"
MARKUP = "<img src=x onerror=\"window.__pwned = 2; alert('curve')\">"
HUGE = 10 ** 400  # an integer no float holds


def _report_scene(scene: Scene) -> None:
    """The upstream adds a Checkpointer folder whose index.yaml is the attacker's, and a
    manifest whose metrics are hostile text, huge and NaN numbers and deep nesting."""
    ckpt = scene.up / "ckpt"
    ckpt.mkdir()
    (ckpt / "w.dat").write_bytes(b"weights")
    points = [{"step": i, "time": SCRIPT if i == 1 else f"2026-12-01T10:00:0{i}Z",
               "metrics": {"loss": 1.0 / i, SCRIPT: 0.5, MARKUP: 0.25, "big": HUGE,
                           "nan": float("nan"), "inf": float("inf"), "text": SCRIPT,
                           "nested": {"deeper": {"x": 1}}}}
              for i in range(1, 4)]
    points.append({"step": "</script>", "metrics": {"loss": 0.1}})
    points.append({"step": 9, "metrics": ["not", "a", "mapping"]})
    (ckpt / "index.yaml").write_text(
        yaml.safe_dump({"mlsnap-checkpoints": 1, "checkpoints": points}, width=10 ** 6))
    proc = subprocess.run([sys.executable, "-m", "mlsnap", "commit", "ckpt", "--name", "ckpt",
                           "-M", SCRIPT], cwd=scene.up, capture_output=True, text=True,
                          check=False, timeout=300)
    assert proc.returncode == 0, proc
    manifest = scene.up / ".mlsnap" / "ckpt.yaml"
    doc = yaml.safe_load(manifest.read_text())
    deep: dict[str, Any] = {"leaf": 1.0}
    for _ in range(60):
        deep = {"d": deep}
    doc["metrics"] = {"accuracy": 0.9, MARKUP: 0.8, "big": HUGE, "nan": float("nan"),
                      "text": SCRIPT, "deep": deep}
    doc["params"] = {SCRIPT: MARKUP}
    manifest.write_text(yaml.safe_dump(doc, sort_keys=False, width=10 ** 6))
    scene.commit("ckpt: hostile metrics")


def _page_is_inert(page: Path) -> None:
    """Opened in the real headless Chromium (network blocked): nothing injected ran."""
    from benchmarks import browser

    html = page.read_text()
    assert 'http-equiv="Content-Security-Policy" content="default-src &#x27;none&#x27;' in html
    for hostile in (SCRIPT, MARKUP, "<img src=x"):
        assert hostile not in html
    found = browser.open_page(page, probe={
        "pwned": "typeof window.__pwned",
        "injected": "document.querySelectorAll('img, iframe, object, embed').length",
        "scripts": "document.querySelectorAll('script:not([type])').length",
    })["loaded"]
    assert found.dialogs == [] and found.requests == [], found
    assert found.console_errors == [], found.console_errors
    assert found.values["pwned"] == "undefined" and found.values["injected"] == 0
    assert SCRIPT in found.text


def _require_report() -> None:
    from tests.test_report import require

    require()


def test_report_of_a_hostile_checkpoint_index_and_metrics_runs_no_script(
        scene: Scene, tmp_path: Path) -> None:
    _require_report()
    _report_scene(scene)
    scene.clone()
    attempt(scene, ["pull"], 0, changes_workspace=True)
    page = tmp_path.parent / f"{tmp_path.name}-report.html"  # the user's own choice
    cache = {"XDG_CACHE_HOME": str(tmp_path.parent / f"{tmp_path.name}-cache")}  # the bundle
    found = attempt(scene, ["report", "-o", str(page)], 0, env=cache)
    assert "learning-curve point(s)" in found.stdout
    assert re.search(r"[1-9]\d* learning-curve point", found.stdout), found.stdout
    _page_is_inert(page)


def test_report_never_writes_through_a_committed_link(scene: Scene) -> None:
    """A clone whose `reports` folder, or whose default report file, is a committed link to
    the user's files: the report is refused or replaces the link, never writes through it."""
    _require_report()
    (scene.up / "reports").symlink_to(Path("..") / "outside")
    (scene.up / "mlsnap-report.html").symlink_to(Path("..") / "outside" / "keep.txt")
    (scene.up / "sub").mkdir()
    (scene.up / "sub" / "mlsnap-report.html").symlink_to(Path("../..") / "outside" / "keep.txt")
    scene.commit("links")
    scene.clone()
    cache = {"XDG_CACHE_HOME": str(scene.root.parent / f"{scene.root.name}-cache")}
    attempt(scene, ["report", "-o", "reports/r.html"], 1, "reports/r.html", "symlink", env=cache)
    attempt(scene, ["report", "-o", "reports/keep.txt"], 1, "reports/keep.txt", "symlink",
            env=cache)
    attempt(scene, ["report"], 1, "mlsnap-report.html", "symlink", env=cache)
    attempt(scene, ["report"], 1, "mlsnap-report.html", "symlink", env=cache,
            cwd=scene.victim / "sub")
    assert (scene.outside / "keep.txt").read_text() == "the user's own file\n"


def test_a_number_no_float_holds_is_a_number_nowhere(scene: Scene,
                                                     tmpdir_env: dict[str, str]) -> None:
    """Two snapshots whose metric is a 400-digit integer: every reader that compares, charts
    or keeps the best by it treats it as no number, and none stops on it."""
    for i, value in enumerate((HUGE, HUGE * 10)):
        doc = scene.manifest()
        doc["metrics"] = {"acc": value, "loss": 0.5 - i / 10}
        doc["run"] = {**RUN, "cmd": ["true"]}
        (scene.up / MANIFEST).write_text(yaml.safe_dump(doc, sort_keys=False, width=10 ** 6))
        scene.commit(f"huge {i}")
    scene.clone()
    for args in (["show"], ["show", "--json"], ["log"], ["log", "--json"], ["log", "--plot", "acc"],
                 ["log", "--plot", "loss"], ["diff", "HEAD~1", "HEAD"],
                 ["diff", "--json", "HEAD~1", "HEAD"], ["gc", "--keep-best", "acc", "1"],
                 ["gc", "--keep-best", "acc", "1", "--json"]):
        attempt(scene, args, 0, env=tmpdir_env)
    delta = json.loads(attempt(scene, ["diff", "--json", "HEAD~1", "HEAD"], 0).stdout)
    assert "acc" in json.dumps(delta)
    out = _repro(scene, tmpdir_env, 3, "acc", "not-measured")
    assert "verdict: differs" in out


def test_repro_never_reads_a_metrics_file_through_a_committed_link(
        scene: Scene, tmpdir_env: dict[str, str]) -> None:
    """The snapshot's settings name metrics.json, committed as a link to a file of the user's:
    repro would remove it before the run and read it after; it refuses, reading nothing."""
    secret = scene.outside / "secret.json"
    secret.write_text('{"accuracy": 0.123456789}\n')
    (scene.up / "metrics.json").symlink_to(secret)
    config = scene.up / ".mlsnap" / "config.yaml"
    config.write_text(config.read_text().replace("sources: {}",
                                                 "sources: {model: {metrics: [metrics.json]}}"))
    doc = scene.manifest()
    doc["metrics"] = {"accuracy": 0.5}
    _write_manifest(scene, doc)
    _with_run(scene, {**RUN, "cmd": ["true"]})
    scene.clone()
    out = _repro(scene, tmpdir_env, 1, ".mlsnap/config.yaml", "metrics.json")
    assert "0.123456789" not in out
    assert secret.read_text() == '{"accuracy": 0.123456789}\n'


def test_get_never_writes_through_a_committed_link(scene: Scene) -> None:
    """`mlsnap get -o models` where the clone's `models` is a committed link to a folder of
    the user's: the artifacts would land outside the repository."""
    (scene.up / "models").symlink_to(Path("..") / "outside")
    (scene.up / "hooks").symlink_to(Path(".git") / "hooks")
    scene.commit("links")
    scene.clone()
    for out in ("models", "models/x", "hooks/x"):
        attempt(scene, ["get", "HEAD", "-o", out], 1, f"-o {out}", "through a symlink")
    (scene.victim / "sub").mkdir()
    attempt(scene, ["get", "HEAD", "-o", "../models"], 1, "-o ../models", "through a symlink",
            cwd=scene.victim / "sub")
    assert sorted(p.name for p in scene.outside.iterdir()) == ["keep.txt"]


def test_escape_codes_in_a_run_record_are_shown_escaped(scene: Scene) -> None:
    evil = "\x1b]0;pwned\x07\x1b[2J\r\u202e"
    _with_run(scene, {**RUN, "cmd": ["python", f"train{evil}.py"], "cwd": ".",
                      "output_tail": f"epoch 1\n{evil}done"})
    scene.clone()
    for args in (["show"], ["log"], ["log", "-n", "1"], ["diff", "HEAD~1", "HEAD"]):
        out = attempt(scene, args, 0).stdout
        assert not re.search("[\x1b\x07\r\u202e]", out), (args, out)
    shown = attempt(scene, ["show"], 0).stdout
    assert "train\\e]0;pwned\\a\\e[2J" in shown, shown  # YAML's own escapes
    doc = json.loads(attempt(scene, ["show", "--json"], 0).stdout)
    assert doc["run"]["cmd"][1] == f"train{evil}.py"  # JSON keeps the text, escaped by JSON

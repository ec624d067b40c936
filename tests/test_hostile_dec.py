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
    assert lines[shown].endswith(f" in {where}")
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
    assert proc.stdout.startswith("running `bin/python train.py` in "), proc.stdout
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

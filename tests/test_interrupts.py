"""Random-time interruptions of every writing command, checked from the outside as a user would.

Each scenario builds one template (a real repository with a previous snapshot, and its folder
remote), measures one uninterrupted run of the command on a copy, then runs it again on fresh
copies and sends SIGKILL, SIGINT (to the process group, as Ctrl-C does; sometimes with the
stdout reader gone too) or SIGTERM at a delay drawn uniformly over that measured time. After each
interruption it checks the crash-safety promise of DESIGN.md: the exit status and the one
`interrupted:` line, whole files only, the user's newest bytes back after the next command,
`git status` unchanged, the rerun completing with no temporary file anywhere, a cache and a remote
whose objects hash to their names, a manifest that describes the workspace and exactly one
snapshot commit per piece of work. See ``tests/interrupts.py`` for the knobs that replay a case.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import git, make_project, mlsnap
from tests.interrupts import (
    TALLIES,
    Scenario,
    assert_contract,
    count,
    digest,
    exercise,
    md5_file,
    set_remote_url,
    store_problems,
    summary,
)
from tests.servers import S3Server, Server, make_server

MiB = 1024 * 1024


@pytest.fixture(scope="module", autouse=True)
def report_counts(request: pytest.FixtureRequest) -> Iterator[None]:
    """At the end of the module, the number of interruptions per command (for the docs)."""
    yield
    if TALLIES:
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        text = summary()
        if reporter is not None:
            reporter.write_line("")
            for line in text.splitlines():
                reporter.write_line(line)
        else:
            print(text)


# --------------------------------------------------------------------------- building templates


def write_files(folder: Path, names: list[str], rng: random.Random) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(rng.randbytes(rng.randrange(64, 1024)))


def new_template(base: Path) -> Path:
    """``base/proj`` (code, params and data committed; mlsnap initialized) and ``base/remote``.

    An untracked notes file stands in the work tree: `git status` must keep showing just it."""
    root = make_project(base / "proj", base / "remote")
    (root / "notes.txt").write_text("my own untracked notes\n")
    return root


def folder_changes(folder: Path, rng: random.Random, changed: int, added: int) -> None:
    """Some files change, some are added, one is removed (names sorted, so it is reproducible)."""
    names = sorted(p.name for p in folder.iterdir())
    for name in rng.sample(names[1:], changed):
        (folder / name).write_bytes(rng.randbytes(rng.randrange(64, 1024)))
    write_files(folder, [f"new-{i:05d}.bin" for i in range(added)], rng)
    (folder / names[0]).unlink()


def commit_scenario(label: str, base: Path, argv: list[str], tracked: list[str],
                    old: dict[str, str], pushes: bool) -> Scenario:
    proj = base / "proj"
    return Scenario(label=label, template=base, argv=argv, name="model", tracked=tracked,
                    old=old, new=digest(proj, tracked), commits=1, settled="new", pushes=pushes)


def run_scenario(s: Scenario, tmp_path: Path, n: int) -> None:
    n = count(n)
    tally = exercise(s, tmp_path / "runs", n)
    assert_contract(s.label, tally, n)


# --------------------------------------------------------------------------- 1-3. commit


@pytest.mark.slow
def test_commit_of_a_64_mib_model_over_its_previous_snapshot(tmp_path: Path) -> None:
    base = tmp_path / "template"
    proj = new_template(base)
    (proj / "model.bin").write_bytes(os.urandom(64 * MiB))
    mlsnap(proj, "commit", "model.bin", "-M", "first")
    old = digest(proj, ["model.bin"])
    (proj / "model.bin").write_bytes(os.urandom(64 * MiB))  # retrained: every byte differs
    s = commit_scenario("commit 64 MiB file", base,
                        [sys.executable, "-m", "mlsnap", "commit", "model.bin", "-M", "retrained"],
                        ["model.bin"], old, pushes=True)
    run_scenario(s, tmp_path, 24)


@pytest.mark.slow
def test_commit_of_a_3000_file_folder_with_changes_additions_and_a_removal(
        tmp_path: Path) -> None:
    rng = random.Random(3000)
    base = tmp_path / "template"
    proj = new_template(base)
    write_files(proj / "ckpt", [f"part-{i:05d}.bin" for i in range(3000)], rng)
    mlsnap(proj, "commit", "ckpt", "--no-push")
    old = digest(proj, ["ckpt"])
    folder_changes(proj / "ckpt", rng, changed=300, added=200)
    s = commit_scenario("commit 3000-file folder", base,
                        [sys.executable, "-m", "mlsnap", "commit", "ckpt", "--no-push"],
                        ["ckpt"], old, pushes=False)
    run_scenario(s, tmp_path, 36)


def data_commit_scenario(tmp_path: Path, model_size: int) -> Scenario:
    base = tmp_path / "template"
    proj = new_template(base)
    (proj / "model.bin").write_bytes(os.urandom(model_size))
    mlsnap(proj, "commit", "model.bin", "--data", "data/train.csv", "-p", "lr=0.1")
    tracked = ["model.bin", "data/train.csv"]
    old = digest(proj, tracked)
    with open(proj / "data" / "train.csv", "a") as f:  # new rows arrived
        f.write("".join(f"{i}\n" for i in range(501, 200_000)))
    (proj / "model.bin").write_bytes(os.urandom(model_size))
    return commit_scenario("commit with changed --data", base,
                           [sys.executable, "-m", "mlsnap", "commit", "model.bin", "--data",
                            "data/train.csv", "-p", "lr=0.2"], tracked, old, pushes=True)


@pytest.mark.slow
def test_commit_with_a_changed_data_input(tmp_path: Path) -> None:
    run_scenario(data_commit_scenario(tmp_path, 2 * MiB), tmp_path, 50)


def test_commit_interrupted_three_times(tmp_path: Path) -> None:
    """The everyday version: three random interruptions of a small commit."""
    run_scenario(data_commit_scenario(tmp_path, 1 * MiB), tmp_path, 3)


# --------------------------------------------------------------------------- 4. pull


@pytest.mark.slow
def test_pull_after_git_checkout_of_another_snapshot(tmp_path: Path) -> None:
    rng = random.Random(4)
    base = tmp_path / "template"
    proj = new_template(base)
    (proj / "model.bin").write_bytes(os.urandom(8 * MiB))
    write_files(proj / "ckpt", [f"part-{i:04d}.bin" for i in range(400)], rng)
    mlsnap(proj, "commit", "model.bin", "ckpt", "-M", "A")
    tracked = ["model.bin", "ckpt"]
    target = digest(proj, tracked)
    git(proj, "branch", "previous")
    (proj / "model.bin").write_bytes(os.urandom(8 * MiB))
    folder_changes(proj / "ckpt", rng, changed=100, added=50)
    mlsnap(proj, "commit", "model.bin", "ckpt", "-M", "B")
    current = digest(proj, tracked)
    git(proj, "switch", "-q", "previous")  # the .dvc pointers now name A; the bytes are B's
    s = Scenario(label="pull after checkout", template=base,
                 argv=[sys.executable, "-m", "mlsnap", "pull"], name="model", tracked=tracked,
                 old=current, new=target, commits=0, settled="either")
    run_scenario(s, tmp_path, 45)


# --------------------------------------------------------------------------- 5-6. push


def push_template(base: Path, files: int, model_size: int, rng: random.Random,
                  **init: Any) -> Path:
    """A pushed snapshot, then a newer one committed with --no-push."""
    proj = init.get("proj") or new_template(base)
    (proj / "model.bin").write_bytes(os.urandom(model_size))
    write_files(proj / "ckpt", [f"part-{i:04d}.bin" for i in range(files)], rng)
    mlsnap(proj, "commit", "model.bin", "ckpt", "-M", "pushed")
    (proj / "model.bin").write_bytes(os.urandom(model_size))
    folder_changes(proj / "ckpt", rng, changed=files // 4, added=files // 8)
    mlsnap(proj, "commit", "model.bin", "ckpt", "-M", "local only", "--no-push")
    return proj


@pytest.mark.slow
def test_push_to_a_folder_remote(tmp_path: Path) -> None:
    base = tmp_path / "template"
    proj = push_template(base, 400, 8 * MiB, random.Random(5))
    tracked = ["model.bin", "ckpt"]
    now = digest(proj, tracked)
    s = Scenario(label="push (folder remote)", template=base,
                 argv=[sys.executable, "-m", "mlsnap", "push"], name="model", tracked=tracked,
                 old=now, new=now, commits=0, settled="old", pushes=True)
    run_scenario(s, tmp_path, 45)


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = make_server("s3", tmp_path_factory.mktemp("s3-server"))
    with srv:
        yield srv


def s3_problems(srv: S3Server, proj: Path, prefix: str) -> list[str]:
    """Every object under the copy's prefix hashes to its key; HEAD's objects are all there."""
    import hashlib
    import json

    client = srv.client()
    keys: list[str] = []
    token: dict[str, str] = {}
    for _ in range(1000):  # bounded pagination
        page = client.list_objects_v2(Bucket=srv.BUCKET, Prefix=f"{prefix}/", **token)
        keys += [o["Key"] for o in page.get("Contents", [])]
        if not page.get("IsTruncated"):
            break
        token = {"ContinuationToken": page["NextContinuationToken"]}
    problems, present = [], set()
    for key in keys:
        rel = key[len(prefix) + 1:]
        parts = rel.split("/")
        if len(parts) != 4 or parts[:2] != ["files", "md5"]:
            problems.append(f"s3: stray key {rel}")
            continue
        name = parts[2] + parts[3]
        body = client.get_object(Bucket=srv.BUCKET, Key=key)["Body"].read()
        if hashlib.md5(body).hexdigest() != name.removesuffix(".dir"):
            problems.append(f"s3: {rel} holds bytes hashing to {hashlib.md5(body).hexdigest()}")
        present.add(name)
    manifest = yaml.safe_load(git(proj, "show", "HEAD:.mlsnap/model.yaml"))
    for entry in manifest["artifacts"] + manifest["data"]["inputs"]:
        needed = [entry["md5"]]
        if entry["md5"].endswith(".dir"):
            listing = proj / ".dvc" / "cache" / "files" / "md5" / entry["md5"][:2]
            listing = listing / entry["md5"][2:]
            needed += [e["md5"] for e in json.loads(listing.read_bytes())]
        problems += [f"s3: object {m} missing" for m in needed if m not in present]
    return problems


@pytest.mark.slow
@pytest.mark.servers
def test_push_to_a_real_s3_server(tmp_path: Path, s3_server: Server) -> None:
    assert isinstance(s3_server, S3Server)
    srv = s3_server
    base = tmp_path / "template"
    proj = make_project(base / "proj", init=False)
    local = [a for k, v in srv.local_options().items() for a in ("--local", f"{k}={v}")]
    mlsnap(proj, "init", "--remote", srv.url(f"tmpl-{uuid.uuid4().hex[:8]}"), *local)
    (proj / "notes.txt").write_text("my own untracked notes\n")
    push_template(base, 60, 4 * MiB, random.Random(6), proj=proj)
    tracked = ["model.bin", "ckpt"]
    now = digest(proj, tracked)
    prefixes: dict[str, str] = {}

    def localize(copy: Path, index: int) -> None:
        prefixes[copy.name] = f"run-{uuid.uuid4().hex[:12]}"  # an empty store per copy
        set_remote_url(copy / "proj", srv.url(prefixes[copy.name]))

    s = Scenario(label="push (S3 server)", template=base,
                 argv=[sys.executable, "-m", "mlsnap", "push"], name="model", tracked=tracked,
                 old=now, new=now, commits=0, settled="old", pushes=True, localize=localize,
                 remote_check=lambda copy: s3_problems(srv, copy / "proj", prefixes[copy.name]))
    run_scenario(s, tmp_path, 30)


# --------------------------------------------------------------------------- 7. get


@pytest.mark.slow
def test_get_into_a_fresh_clone_without_a_cache(tmp_path: Path) -> None:
    src = tmp_path / "src"
    proj = new_template(src)
    (proj / "model.bin").write_bytes(os.urandom(8 * MiB))
    write_files(proj / "ckpt", [f"part-{i:04d}.bin" for i in range(200)], random.Random(7))
    mlsnap(proj, "commit", "model.bin", "ckpt", "-M", "to export")
    rev = git(proj, "rev-parse", "HEAD")
    out = {k: v for k, v in digest(proj, ["model.bin", "ckpt"]).items()}
    base = tmp_path / "template"
    base.mkdir()
    subprocess.run(["git", "clone", "-q", str(proj), str(base / "proj")], check=True,
                   timeout=120)
    shutil.copytree(src / "remote", base / "remote")
    assert not (base / "proj" / ".dvc" / "cache").exists()
    s = Scenario(label="get -o into empty cache", template=base,
                 argv=[sys.executable, "-m", "mlsnap", "get", rev, "-o", "../out"],
                 name="model", tracked=["model.bin", "ckpt"], old={}, new={}, commits=0,
                 settled="old", out=out)
    run_scenario(s, tmp_path, 35)


# --------------------------------------------------------------------------- 8. Checkpointer

CKPT_SIZE = 512 * 1024
KEEP_LAST = 3
STEPS = 10
TRAIN_CKPT = f'''\
"""A small training loop: resume from the latest checkpoint, train to STEPS, record a snapshot."""
import random
import sys

from mlsnap import Checkpointer


def payload(step):
    return random.Random(step).randbytes({CKPT_SIZE})


def main():
    steps = int(sys.argv[1])
    ck = Checkpointer("checkpoints", keep_last={KEEP_LAST}, snapshot=True, name="ckpt")
    latest = ck.latest()
    weight = 0.0
    for step in range((latest.step if latest else 0) + 1, steps + 1):
        weight += 0.1 * (1.0 - weight)  # one "epoch"
        ck.save(step, lambda path, s=step: path.write_bytes(payload(s)),
                {{"val_loss": round(1.0 - weight, 6)}})
    ck.commit(message=f"trained to step {{steps}}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("training stopped by Ctrl-C", file=sys.stderr)
        sys.exit(130)
'''


def payload(step: int) -> bytes:
    return random.Random(step).randbytes(CKPT_SIZE)


def checkpoint_problems(copy: Path, final: bool) -> list[str]:
    """Whatever stands in the folder is whole; the index names only whole checkpoints; at the
    end the index keeps exactly the last steps and nothing else is there."""
    folder = copy / "proj" / "checkpoints"
    problems = []
    index_path = folder / "index.yaml"
    try:
        index = yaml.safe_load(index_path.read_text())
        entries = index["checkpoints"]
        pending = index.get("pending") or []
    except (OSError, yaml.YAMLError, TypeError, KeyError) as exc:
        return [f"checkpoints/index.yaml unreadable: {exc!r}"]
    for e in entries:
        path = folder / e["name"]
        if not path.is_file():
            problems.append(f"index names {e['name']}, which is absent")
        elif md5_file(path) != e["md5"] or path.read_bytes() != payload(e["step"]):
            problems.append(f"index names {e['name']}, whose bytes are not step {e['step']}'s")
    for p in sorted(folder.iterdir()):
        if p.name == "index.yaml" or not p.name.startswith("step-"):
            continue
        step = int(p.name.split("-")[1])
        if p.is_file() and p.read_bytes() != payload(step):
            problems.append(f"partial checkpoint at final path {p.name}")
    if final:
        steps = [e["step"] for e in entries]
        if steps != list(range(STEPS - KEEP_LAST + 1, STEPS + 1)) or pending:
            problems.append(f"index after the rerun keeps steps {steps}, pending {pending}")
        names = {e["name"] for e in entries} | {"index.yaml"}
        extra = sorted(p.name for p in folder.iterdir() if p.name not in names)
        if extra:
            problems.append(f"checkpoints/ holds files the index does not name: {extra[:5]}")
    return problems


@pytest.mark.slow
def test_checkpointer_save_in_a_training_loop(tmp_path: Path) -> None:
    base = tmp_path / "template"
    proj = new_template(base)
    (proj / "train_ckpt.py").write_text(TRAIN_CKPT)
    git(proj, "add", "train_ckpt.py")
    git(proj, "commit", "-q", "-m", "training script")
    subprocess.run([sys.executable, "train_ckpt.py", "3"], cwd=proj, check=True, timeout=300,
                   capture_output=True)  # an earlier run: steps 1-3, snapshot "ckpt"
    s = Scenario(label="Checkpointer.save", template=base,
                 argv=[sys.executable, "train_ckpt.py", str(STEPS)], name="ckpt", tracked=[],
                 old={}, new={}, commits=1, settled="either", pushes=True, script=True,
                 after_interrupt=lambda copy: checkpoint_problems(copy, final=False),
                 final=lambda copy: checkpoint_problems(copy, final=True))
    run_scenario(s, tmp_path, 40)


def test_harness_sees_a_partial_file_and_litter(tmp_path: Path) -> None:
    """The checks themselves: a truncated file, a DVC temp name and a bad cache object are
    reported (so a clean run of the harness means something)."""
    from tests.interrupts import files_problems, litter

    proj = new_template(tmp_path / "t")
    (proj / "model.bin").write_bytes(b"x" * 1000)
    mlsnap(proj, "commit", "model.bin", "--no-push")
    good = digest(proj, ["model.bin"])
    (proj / "model.bin").write_bytes(b"x" * 500)
    assert files_problems(digest(proj, ["model.bin"]), [good], "t")
    (proj / f".{'a' * 22}.tmp").write_bytes(b"")
    (proj / "data" / ".mlsnap-tmp-1-x").write_bytes(b"")
    assert sorted(litter(proj)) == [f".{'a' * 22}.tmp", "data/.mlsnap-tmp-1-x"]
    obj = next((proj / ".dvc" / "cache" / "files" / "md5").rglob("*"))
    obj = next(obj.iterdir()) if obj.is_dir() else obj
    os.chmod(obj, 0o644)
    obj.write_bytes(b"flipped")
    assert store_problems(proj / ".dvc" / "cache", "cache")

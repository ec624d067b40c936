"""Random-time interruptions of every writing command, checked from the outside as a user would.

Each scenario builds one template (a real repository with an earlier snapshot, its folder remote
and whatever the command needs), measures one uninterrupted run of the command on a copy, then
runs it on fresh copies and sends SIGKILL (to the process group), SIGINT or SIGTERM (to the main
process) at a delay drawn uniformly over that measured time. After each one it checks the
crash-safety contract (DESIGN.md "Crash safety"): the exit status and the one `interrupted:`
line, whole files only, the user's newest bytes back after the next command, `git status`
unchanged, the rerun completing with no temporary file in the work tree, cache or remote, a
manifest that describes the workspace, exactly one snapshot commit per piece of work, and every
object on the remote after a push. Knobs and how to replay a case: ``tests/interrupts.py``.

``test_commit_interrupted_three_times`` is the everyday version, with three kills at fixed
moments (``mlsnap run`` while its command trains, ``repro`` while its command runs, ``commit
--sign --tag`` between its commit and its tag); the rest are marked ``interrupts``
(``python -m pytest -m interrupts -n 2``).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import interrupts as ih
from tests.helpers import make_project, mlsnap
from tests.servers import S3Server, Server, make_server

MiB = 1024 * 1024
HERE = "tests/test_interrupts.py"


@pytest.fixture(scope="module", autouse=True)
def report_counts(request: pytest.FixtureRequest) -> Iterator[None]:
    """At the end of the module: interruptions per command and signal (quoted by the docs)."""
    yield
    if not any(t.cases for t in ih.TALLIES.values()):
        return
    text = ih.summary()
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")
        for line in text.splitlines():
            reporter.write_line(line)
    else:
        print(text)


def run_scenario(s: ih.Scenario, tmp_path: Path, n: int, test: str) -> None:
    n = ih.scaled(n)
    test_id = f"'{HERE}::{test}'"
    tally = ih.exercise(s, tmp_path / "runs", n, test_id)
    ih.assert_contract(tally, n, test_id)


# --------------------------------------------------------------------------- templates


def new_template(base: Path) -> Path:
    """``base/proj`` (code, params and data committed; mlsnap initialized), ``base/remote``.

    An untracked file of the user's stands in the work tree: `git status` must keep showing it
    (and only it)."""
    root = make_project(base / "proj", base / "remote")
    (root / "notes.txt").write_text("my own untracked notes\n")
    return root


def write_files(folder: Path, names: list[str], rng: random.Random) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(rng.randbytes(rng.randrange(64, 1024)))


def change_folder(folder: Path, rng: random.Random, changed: int, added: int) -> None:
    """Some files change, some are added, the first one (by name) is removed."""
    names = sorted(p.name for p in folder.iterdir())
    for name in rng.sample(names[1:], changed):
        (folder / name).write_bytes(rng.randbytes(rng.randrange(64, 1024)))
    write_files(folder, [f"new-{i:05d}.bin" for i in range(added)], rng)
    (folder / names[0]).unlink()


def commit_scenario(label: str, base: Path, args: list[str], paths: list[str],
                    old: dict[str, str], pushes: bool) -> ih.Scenario:
    """The workspace holds the user's new bytes; the command records them."""
    now = ih.digest(base, paths)
    return ih.Scenario(label=label, template=base, argv=ih.mlsnap_argv(*args), paths=paths,
                       before=now, after=now, versions=[old], pushes=pushes)


# --------------------------------------------------------------------------- 1-3. commit


@pytest.mark.interrupts
def test_commit_of_a_64_mib_model(tmp_path: Path) -> None:
    base = tmp_path / "template"
    proj = new_template(base)
    (proj / "model.bin").write_bytes(os.urandom(64 * MiB))
    mlsnap(proj, "commit", "model.bin", "-M", "first")
    old = ih.digest(base, ["proj/model.bin"])
    (proj / "model.bin").write_bytes(os.urandom(64 * MiB))  # retrained: every byte differs
    s = commit_scenario("commit-64mib", base, ["commit", "model.bin", "-M", "retrained"],
                        ["proj/model.bin"], old, pushes=True)
    run_scenario(s, tmp_path, 30, "test_commit_of_a_64_mib_model")


@pytest.mark.interrupts
def test_commit_of_a_folder_of_3000_files(tmp_path: Path) -> None:
    rng = random.Random(3000)
    base = tmp_path / "template"
    proj = new_template(base)
    write_files(proj / "shards", [f"part-{i:05d}.bin" for i in range(3000)], rng)
    mlsnap(proj, "commit", "shards", "-M", "first")
    old = ih.digest(base, ["proj/shards"])
    change_folder(proj / "shards", rng, changed=300, added=200)
    s = commit_scenario("commit-3000-files", base, ["commit", "shards", "-M", "more shards"],
                        ["proj/shards"], old, pushes=True)
    run_scenario(s, tmp_path, 16, "test_commit_of_a_folder_of_3000_files")


def data_commit_scenario(base: Path, label: str, size: int) -> ih.Scenario:
    """A model and its --data input, both changed since the last snapshot."""
    proj = new_template(base)
    (proj / "model.bin").write_bytes(os.urandom(size))
    mlsnap(proj, "commit", "model.bin", "--data", "data/train.csv", "-p", "lr=0.1")
    paths = ["proj/model.bin", "proj/data/train.csv"]
    old = ih.digest(base, paths)
    rows = size // 8
    with open(proj / "data" / "train.csv", "a") as f:  # new rows arrived
        f.write("".join(f"{i}\n" for i in range(501, 501 + rows)))
    (proj / "model.bin").write_bytes(os.urandom(size))
    return commit_scenario(label, base, ["commit", "model.bin", "--data", "data/train.csv",
                                         "-p", "lr=0.2", "-M", "more data"],
                           paths, old, pushes=True)


@pytest.mark.interrupts
def test_commit_with_a_changed_data_input(tmp_path: Path) -> None:
    s = data_commit_scenario(tmp_path / "template", "commit-data", 4 * MiB)
    run_scenario(s, tmp_path, 45, "test_commit_with_a_changed_data_input")


def test_commit_interrupted_three_times(tmp_path: Path) -> None:
    """The everyday version: three random interruptions (one per signal) of a small commit."""
    s = data_commit_scenario(tmp_path / "template", "smoke-commit", 1 * MiB)
    run_scenario(s, tmp_path, 3, "test_commit_interrupted_three_times")


# --------------------------------------------------------------------------- 4. pull


def drop_from_cache(proj: Path, keep_rev: str, drop_rev: str) -> int:
    """Remove from the local cache the objects ``drop_rev`` needs and ``keep_rev`` does not
    (as if they had been collected): the pull must fetch them."""
    cache = proj / ".dvc" / "cache"

    def needed(rev: str) -> set[str]:
        ih.git(proj, "checkout", "-q", rev)
        try:
            return set(ih.referenced_objects(proj, "model"))
        finally:
            ih.git(proj, "checkout", "-q", "-")

    drop = needed(drop_rev) - needed(keep_rev)
    for md5 in drop:
        ih.object_path(cache, md5).unlink()
    return len(drop)


@pytest.mark.interrupts
def test_pull_after_switching_to_an_older_snapshot(tmp_path: Path) -> None:
    rng = random.Random(4)
    base = tmp_path / "template"
    proj = new_template(base)
    (proj / "model.bin").write_bytes(os.urandom(8 * MiB))
    write_files(proj / "ckpt", [f"part-{i:04d}.bin" for i in range(200)], rng)
    mlsnap(proj, "commit", "model.bin", "ckpt", "-M", "A")
    paths = ["proj/model.bin", "proj/ckpt"]
    target = ih.digest(base, paths)
    ih.git(proj, "branch", "older")
    (proj / "model.bin").write_bytes(os.urandom(8 * MiB))
    change_folder(proj / "ckpt", rng, changed=50, added=25)
    mlsnap(proj, "commit", "model.bin", "ckpt", "-M", "B")
    current = ih.digest(base, paths)
    # The user switches to the older snapshot: the pointers name A, the workspace holds B.
    ih.git(proj, "switch", "-q", "older")
    assert drop_from_cache(proj, "main", "older") > 0
    s = ih.Scenario(label="pull-switch", template=base, argv=ih.mlsnap_argv("pull"),
                    paths=paths, before=current, after=target, settled="whole", commits=0,
                    remote_writes=False)
    run_scenario(s, tmp_path, 30, "test_pull_after_switching_to_an_older_snapshot")


# --------------------------------------------------------------------------- 5-6. push


def push_template(proj: Path, files: int, model_size: int, rng: random.Random) -> None:
    """A pushed snapshot, then a newer one committed with --no-push."""
    (proj / "model.bin").write_bytes(os.urandom(model_size))
    write_files(proj / "ckpt", [f"part-{i:04d}.bin" for i in range(files)], rng)
    mlsnap(proj, "commit", "model.bin", "ckpt", "-M", "pushed")
    (proj / "model.bin").write_bytes(os.urandom(model_size))
    change_folder(proj / "ckpt", rng, changed=files // 4, added=files // 8)
    mlsnap(proj, "commit", "model.bin", "ckpt", "-M", "local only", "--no-push")


@pytest.mark.interrupts
def test_push_to_a_folder_remote(tmp_path: Path) -> None:
    base = tmp_path / "template"
    proj = new_template(base)
    push_template(proj, 200, 8 * MiB, random.Random(5))
    paths = ["proj/model.bin", "proj/ckpt"]
    now = ih.digest(base, paths)
    s = ih.Scenario(label="push-folder", template=base, argv=ih.mlsnap_argv("push"),
                    paths=paths, before=now, after=now, commits=0, pushes=True)
    run_scenario(s, tmp_path, 35, "test_push_to_a_folder_remote")


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = make_server("s3", tmp_path_factory.mktemp("s3-server"))
    with srv:
        yield srv


def s3_keys(srv: S3Server, prefix: str) -> dict[str, str]:
    """Every object under ``prefix``: its DVC name (``md5`` or ``md5.dir``) -> the md5 of its
    bytes: the server's ETag of a single-part upload (its MD5), else the md5 of the downloaded
    body (bounded pagination)."""
    import hashlib

    client = srv.client()
    found: dict[str, str] = {}
    token: dict[str, str] = {}
    for _ in range(1000):
        page = client.list_objects_v2(Bucket=srv.BUCKET, Prefix=f"{prefix}/", **token)
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix) + 1:]
            etag = str(obj.get("ETag", "")).strip('"')
            if len(etag) == 32 and "-" not in etag:
                found[rel] = etag
            else:
                body = client.get_object(Bucket=srv.BUCKET, Key=obj["Key"])["Body"].read()
                found[rel] = hashlib.md5(body).hexdigest()
        if not page.get("IsTruncated"):
            break
        token = {"ContinuationToken": page["NextContinuationToken"]}
    return found


def s3_problems(srv: S3Server, c: ih.Case, prefix: str) -> list[str]:
    """(8) for S3: every object of HEAD's snapshot is on the server, each hashing to its name,
    nothing else is there; `mlsnap status` (which asks the remote) says clean; in every third
    case and the measured runs a fresh clone pulls, verified, the same bytes."""
    problems = []
    present = set()
    for rel, actual in sorted(s3_keys(srv, prefix).items()):
        m = ih.OBJECT.match(rel)
        if not m:
            problems.append(f"[litter] s3: stray key {rel}")
        elif actual != m[1] + m[2]:
            problems.append(f"[corrupt] s3: {rel} holds bytes hashing to {actual}")
        else:
            present.add(m[1] + m[2] + (m[3] or ""))
    missing = [m for m in ih.referenced_objects(c.proj, "model") if m not in present]
    if missing:
        problems.append(f"[remote] {len(missing)} object(s) missing on S3: {missing[:3]}")
    st = ih.run(ih.mlsnap_argv("status"), c.proj, c.env)
    if st.returncode != 0:
        problems.append(f"[remote] `mlsnap status` after the rerun exit {st.returncode}: "
                        f"{st.stdout.strip()[-300:]!r} {st.tail()}")
    if c.index % 3:
        return problems  # every third case (and the measured runs) also pulls into a clone
    clone = c.folder / "verify-clone"
    subprocess.run(["git", "clone", "-q", str(c.proj), str(clone)], check=True, timeout=120,
                   env=ih.command_env())
    shutil.copy2(c.proj / ".dvc" / "config.local", clone / ".dvc" / "config.local")
    env = ih.command_env(c.folder / "verify")
    pull = ih.run(ih.mlsnap_argv("pull"), clone, env)
    if pull.returncode != 0:
        problems.append(f"[remote] `mlsnap pull` in a fresh clone exit {pull.returncode}: "
                        f"{pull.tail()}")
    else:
        problems += ih.exact_problems(ih.digest(clone, ["model.bin", "ckpt"]),
                                      ih.digest(c.proj, ["model.bin", "ckpt"]),
                                      "fresh clone after `mlsnap pull`")
    return problems


@pytest.mark.interrupts
@pytest.mark.servers
def test_push_to_a_real_s3_server(tmp_path: Path, s3_server: Server) -> None:
    assert isinstance(s3_server, S3Server)
    srv = s3_server
    base = tmp_path / "template"
    proj = make_project(base / "proj", init=False)
    local = [a for k, v in srv.local_options().items() for a in ("--local", f"{k}={v}")]
    mlsnap(proj, "init", "--remote", srv.url(f"tmpl-{uuid.uuid4().hex[:8]}"), *local)
    (proj / "notes.txt").write_text("my own untracked notes\n")
    push_template(proj, 40, 4 * MiB, random.Random(6))
    paths = ["proj/model.bin", "proj/ckpt"]
    now = ih.digest(base, paths)

    def prefix(folder: Path) -> str:  # an empty store of its own for every copy
        return f"{tmp_path.name}-{folder.name}-{uuid.uuid5(uuid.NAMESPACE_URL, str(folder)).hex[:8]}"

    s = ih.Scenario(label="push-s3", template=base, argv=ih.mlsnap_argv("push"), paths=paths,
                    before=now, after=now, commits=0, pushes=True, remote=None,
                    localize=lambda folder: ih.set_local_remote(folder / "proj",
                                                                srv.url(prefix(folder))),
                    remote_check=lambda c: s3_problems(srv, c, prefix(c.folder)))
    run_scenario(s, tmp_path, 12, "test_push_to_a_real_s3_server")


# --------------------------------------------------------------------------- 7. get


@pytest.mark.interrupts
def test_get_into_a_clone_with_an_empty_cache(tmp_path: Path) -> None:
    src = tmp_path / "src"
    proj = new_template(src)
    (proj / "model.bin").write_bytes(os.urandom(8 * MiB))
    write_files(proj / "ckpt", [f"part-{i:04d}.bin" for i in range(150)], random.Random(7))
    mlsnap(proj, "commit", "model.bin", "ckpt", "-M", "to export")
    rev = ih.git(proj, "rev-parse", "HEAD").strip()
    out = {f"out/{k[len('proj/'):]}": v
           for k, v in ih.digest(src, ["proj/model.bin", "proj/ckpt"]).items()}
    base = tmp_path / "template"
    base.mkdir()
    subprocess.run(["git", "clone", "-q", str(proj), str(base / "proj")], check=True,
                   timeout=120)
    shutil.copytree(src / "remote", base / "remote")
    ih.set_local_remote(base / "proj", str(base / "remote"))
    (base / "proj" / "notes.txt").write_text("my own untracked notes\n")
    assert not (base / "proj" / ".dvc" / "cache").exists()

    def out_litter(c: ih.Case) -> list[str]:
        return [f"[litter] -o folder: {p}" for p in ih.litter(c.folder / "out", git_dir=False)]

    s = ih.Scenario(label="get-empty-cache", template=base,
                    argv=ih.mlsnap_argv("get", rev, "-o", "../out"), paths=["out"], before={},
                    after=out, settled="whole", name=None, commits=0, remote_writes=False,
                    final=out_litter)
    run_scenario(s, tmp_path, 30, "test_get_into_a_clone_with_an_empty_cache")


# --------------------------------------------------------------------------- 8. Checkpointer

CKPT_SIZE = 1 * MiB
KEEP_LAST = 3
STEPS = 10
TRAIN_CKPT = f'''\
"""A small training loop: resume from the latest checkpoint, train to STEPS, take a snapshot.

Ctrl-C ends it with one line, exit 130 (the try is the first statement: a user's own choice)."""
try:
    import random
    import sys

    from mlsnap import Checkpointer

    def payload(step):
        return random.Random(step).randbytes({CKPT_SIZE})

    def main():
        steps = int(sys.argv[1])
        ck = Checkpointer("checkpoints", keep_last={KEEP_LAST}, name="ckpt")
        latest = ck.latest()
        for step in range((latest.step if latest else 0) + 1, steps + 1):
            ck.save(step, lambda path, s=step: path.write_bytes(payload(s)),
                    {{"val_loss": round(1.0 / step, 6)}})
        ck.commit(message=f"trained to step {{steps}}")

    if __name__ == "__main__":
        main()
except KeyboardInterrupt:
    import sys

    print("training stopped by Ctrl-C", file=sys.stderr)
    sys.exit(130)
'''


def payload(step: int) -> bytes:
    return random.Random(step).randbytes(CKPT_SIZE)


def checkpoint_problems(c: ih.Case, final: bool) -> list[str]:
    """The index names only whole checkpoints; no partial checkpoint stands at a final name;
    after the rerun the index keeps exactly the last steps and the folder nothing else."""
    import yaml

    folder = c.proj / "checkpoints"
    try:
        index = yaml.safe_load((folder / "index.yaml").read_text())
        listed = index["checkpoints"]
        pending = index.get("pending") or []
    except (OSError, yaml.YAMLError, TypeError, KeyError) as exc:
        return [f"[checkpoint] checkpoints/index.yaml unreadable: {exc!r}"]
    problems = []
    for e in listed:
        path = folder / e["name"]
        if not path.is_file():
            problems.append(f"[checkpoint] the index names {e['name']}, which is absent")
        elif ih.md5_file(path) != e["md5"] or path.read_bytes() != payload(e["step"]):
            problems.append(f"[checkpoint] the index names {e['name']}, whose bytes are not "
                            f"step {e['step']}'s")
    for p in sorted(folder.iterdir()):
        if p.name.startswith("step-") and p.is_file() \
                and p.read_bytes() != payload(int(p.name.split("-")[1])):
            problems.append(f"[partial] a partial checkpoint at the final name {p.name}")
    if final:
        steps = [e["step"] for e in listed]
        if steps != list(range(STEPS - KEEP_LAST + 1, STEPS + 1)) or pending:
            problems.append(f"[checkpoint] after the rerun the index keeps steps {steps}, "
                            f"pending {pending}")
        names = {e["name"] for e in listed} | {"index.yaml"}
        extra = sorted(p.name for p in folder.iterdir() if p.name not in names)
        if extra:
            problems.append(f"[litter] checkpoints/ holds files the index does not name: "
                            f"{extra[:5]}")
    return problems


@pytest.mark.interrupts
def test_checkpointer_save_in_a_training_loop(tmp_path: Path) -> None:
    base = tmp_path / "template"
    proj = new_template(base)
    (proj / "train_ckpt.py").write_text(TRAIN_CKPT)
    ih.git(proj, "add", "train_ckpt.py")
    ih.git(proj, "commit", "-q", "-m", "training script")
    subprocess.run([sys.executable, "train_ckpt.py", "3"], cwd=proj, check=True, timeout=300,
                   capture_output=True, env=ih.command_env(tmp_path))  # steps 1-3, snapshot
    s = ih.Scenario(label="checkpointer-save", template=base,
                    argv=[sys.executable, "train_ckpt.py", str(STEPS)], paths=[], before={},
                    after={}, name="ckpt", commits=1, pushes=True, script=True,
                    after_interrupt=lambda c: checkpoint_problems(c, final=False),
                    final=lambda c: checkpoint_problems(c, final=True))
    run_scenario(s, tmp_path, 30, "test_checkpointer_save_in_a_training_loop")


# --------------------------------------------------------------------------- 9. init, hooks


def init_problems(c: ih.Case) -> list[str]:
    """The set-up is committed and names the remote the user gave."""
    problems = []
    tracked = set(ih.git(c.proj, "ls-files", ".dvc", ".mlsnap").split())
    for rel in (".dvc/config", ".mlsnap/config.yaml"):
        if rel not in tracked:
            problems.append(f"[init] {rel} is not committed")
    config = c.proj / ".dvc" / "config"
    if not config.is_file() or str(c.folder / "remote") not in config.read_text():
        problems.append("[init] .dvc/config does not name the remote")
    return problems


@pytest.mark.interrupts
def test_init_of_a_fresh_repository(tmp_path: Path) -> None:
    base = tmp_path / "template"
    proj = make_project(base / "proj", init=False)
    (proj / "notes.txt").write_text("my own untracked notes\n")
    paths = ["proj/data", "proj/params.yaml", "proj/train.py", "proj/notes.txt"]
    now = ih.digest(base, paths)
    s = ih.Scenario(label="init", template=base,
                    argv=ih.mlsnap_argv("init", "--remote", "../remote"), paths=paths,
                    before=now, after=now, name=None, commits=1, recover_codes=(0, 1, 3),
                    final=init_problems)
    run_scenario(s, tmp_path, 40, "test_init_of_a_fresh_repository")


USER_HOOKS = {"pre-commit": b"#!/bin/sh\necho 'my lint hook'\n",
              "post-checkout": b"#!/bin/sh\necho 'my checkout hook' \"$@\"\n"}


def hook_problems(c: ih.Case, final: bool) -> list[str]:
    """Each of the user's hooks is, at every instant, whole at its name or at
    ``<hook>.pre-mlsnap``; what stands at a hook's name is the user's or mlsnap's whole,
    executable script; after the rerun mlsnap's hooks chain the user's."""
    from mlsnap.hookscripts import CHAIN_SUFFIX, GIT_HOOKS, render

    hooks = c.proj / ".git" / "hooks"
    python = os.path.abspath(sys.executable)
    problems = []
    for hook in GIT_HOOKS:
        path, chained = hooks / hook, hooks / f"{hook}{CHAIN_SUFFIX}"
        mine = render(hook, python).encode()
        user = USER_HOOKS.get(hook)
        here = path.read_bytes() if path.is_file() else None
        kept = chained.read_bytes() if chained.is_file() else None
        if user is not None and user not in (here, kept):
            problems.append(f"[lost] the user's {hook} hook is at neither {hook} nor "
                            f"{chained.name}")
        if here is not None and here not in (user, mine):
            problems.append(f"[partial] .git/hooks/{hook} is neither the user's nor mlsnap's "
                            "whole script")
        elif here == mine and not os.access(path, os.X_OK):
            problems.append(f"[hooks] .git/hooks/{hook} is not executable")
        if final and (here != mine or kept != user):
            problems.append(f"[hooks] after the rerun {hook} is not mlsnap's hook chaining the "
                            "user's")
    return problems


@pytest.mark.interrupts
def test_hooks_install_over_the_users_own_hooks(tmp_path: Path) -> None:
    base = tmp_path / "template"
    proj = new_template(base)
    (proj / "model.bin").write_bytes(b"a small model")
    mlsnap(proj, "commit", "model.bin", "-M", "a snapshot to check hooks against")
    for hook, text in USER_HOOKS.items():
        path = proj / ".git" / "hooks" / hook
        path.write_bytes(text)
        path.chmod(0o755)
    paths = ["proj/model.bin", "proj/data", "proj/notes.txt"]
    now = ih.digest(base, paths)
    s = ih.Scenario(label="hooks-install", template=base,
                    argv=ih.mlsnap_argv("hooks", "install"), paths=paths, before=now, after=now,
                    commits=0, remote_writes=False,
                    after_interrupt=lambda c: hook_problems(c, final=False),
                    final=lambda c: hook_problems(c, final=True))
    run_scenario(s, tmp_path, 80, "test_hooks_install_over_the_users_own_hooks")


# --------------------------------------------------------------------------- 10. run, repro

TRAIN_STEPS = 20
TRAIN_CHUNK = 64 * 1024
STOP_GRACE = 1.5  # s: a stopped command's script takes no step after this (a loaded machine)
TRAIN_RUN = f'''\
"""Trains for about 2 s: notes its pid, then writes model.bin through a temporary outside the
work tree, renamed into place at the end (as a careful script does), noting the time of every
step in its pid's file. Its model depends only on params.yaml, so a re-run makes the same
bytes. Quiet while it trains (as a script logging to a file is: a closed pipe cannot end it).
Ctrl-C ends it quietly (exit 130)."""
try:
    import os
    import random
    import sys
    import time

    import yaml

    print("training", flush=True)
    log = open(os.path.join(os.environ["TRAIN_PID_DIR"], str(os.getpid())), "a")
    lr = yaml.safe_load(open("params.yaml"))["lr"]
    rng = random.Random(str(lr))
    scratch = os.path.join(os.environ["TRAIN_SCRATCH"], "model-%d.bin" % os.getpid())
    with open(scratch, "wb") as f:
        for step in range({TRAIN_STEPS}):
            log.write("%r\\n" % time.time())
            log.flush()
            f.write(rng.randbytes({TRAIN_CHUNK}))
            f.flush()
            time.sleep(0.1)
    os.replace(scratch, "model.bin")
    log.write("done %r\\n" % time.time())
    log.flush()
except KeyboardInterrupt:
    sys.exit(130)
'''


def trained_model(lr: float) -> bytes:
    rng = random.Random(str(lr))
    return b"".join(rng.randbytes(TRAIN_CHUNK) for _ in range(TRAIN_STEPS))


def train_env(folder: Path) -> dict[str, str]:
    """Where the training script notes its pid and keeps its temporary (outside the work tree),
    and a temporary folder of the copy's own (TMPDIR), checked for what mlsnap leaves there."""
    env = {}
    for var, sub in (("TRAIN_PID_DIR", "pids"), ("TRAIN_SCRATCH", "scratch"), ("TMPDIR", "tmp")):
        (folder / sub).mkdir(exist_ok=True)
        env[var] = str(folder / sub)
    return env


def train_pids(c: ih.Case) -> list[int]:
    folder = c.folder / "pids"
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) \
        if folder.is_dir() else []


def stopped_problems(c: ih.Case) -> list[str]:
    """The training script started by the interrupted command is gone within a bounded
    wait, and took no step later than STOP_GRACE s after the signal (a script that trains for
    another hour would otherwise go unnoticed)."""
    r = c.run
    assert r is not None
    pids = train_pids(c)
    problems = ih.survivors(c.folder, pids)
    if not r.signalled or r.returncode == 0:
        return problems
    for pid in pids:
        steps = (c.folder / "pids" / str(pid)).read_text().split()
        times = [float(t) for t in steps if t.replace(".", "", 1).isdigit()]
        if ("done" not in steps or times[-1] > r.sent_at) and any(t < r.sent_at for t in times):
            c.notes.append("the signal came while the script trained")
        late = [t for t in times if t > r.sent_at + STOP_GRACE]
        if late:
            problems.append(f"[survivor] the script (pid {pid}) went on training for "
                            f"{late[-1] - r.sent_at:.1f}s after {r.sig and r.sig.name} of "
                            f"mlsnap ({len(late)} step(s) later than {STOP_GRACE:.0f}s)")
    return problems


def tmp_litter(c: ih.Case) -> list[str]:
    tmp = c.folder / "tmp"
    left = sorted(p.name for p in tmp.iterdir()) if tmp.is_dir() else []
    return [f"[litter] TMPDIR: {name}" for name in left]


def git_state(proj: Path) -> dict[str, str]:
    """HEAD, the branch, Git's index (staged entries), the registered worktrees (paths
    relative to the copy's folder), the tags."""
    listed = [ln.split(" ", 1)[1] for ln in ih.git(proj, "worktree", "list", "--porcelain")
              .splitlines() if ln.startswith("worktree ")]
    return {"HEAD": ih.git(proj, "rev-parse", "HEAD").strip(),
            "branch": ih.git(proj, "symbolic-ref", "-q", "HEAD", check=False).strip(),
            "index": ih.git(proj, "ls-files", "-s"),
            "worktrees": "\n".join(os.path.relpath(w, proj.parent) for w in listed),
            "tags": ih.git(proj, "tag", "-l")}


def git_state_problems(c: ih.Case, expected: dict[str, str], when: str,
                       skip: tuple[str, ...] = ()) -> list[str]:
    now = git_state(c.proj)
    return [f"[git] {when}: {k} is {now[k]!r}, before the command {expected[k]!r}"
            for k in expected if k not in skip and now[k] != expected[k]]


def run_template(base: Path) -> Path:
    """A project whose first snapshot was taken with `mlsnap run` (lr 0.1)."""
    proj = new_template(base)
    (proj / "train_run.py").write_text(TRAIN_RUN)
    ih.git(proj, "add", "train_run.py")
    ih.git(proj, "commit", "-q", "-m", "training script")
    env = {**ih.command_env(base), **train_env(base)}
    proc = subprocess.run(ih.mlsnap_argv("run", "-o", "model.bin", "-M", "first", "--",
                                         sys.executable, "train_run.py"),
                          cwd=proj, capture_output=True, text=True, timeout=300, env=env,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    for sub in ("pids", "scratch", "tmp"):
        shutil.rmtree(base / sub)
    return proj


RUN_PATHS = ["proj/model.bin", "proj/data", "proj/params.yaml", "proj/train_run.py",
             "proj/notes.txt"]


@pytest.mark.interrupts
def test_run_of_a_training_script(tmp_path: Path) -> None:
    """`mlsnap run` of a real script: Ctrl-C and SIGTERM stop the script and make no snapshot,
    kill -9 of mlsnap does not leave the script running, one snapshot after the rerun."""
    base = tmp_path / "template"
    proj = run_template(base)
    (proj / "params.yaml").write_text("lr: 0.2\nepochs: 10\noptimizer:\n  name: adam\n")
    ih.git(proj, "commit", "-q", "-am", "tune lr")
    before = ih.digest(base, RUN_PATHS)
    assert (proj / "model.bin").read_bytes() == trained_model(0.1)
    after = {**before, "proj/model.bin": hashlib.sha256(trained_model(0.2)).hexdigest()}

    def stopped(c: ih.Case) -> list[str]:
        problems = stopped_problems(c)
        r = c.run
        assert r is not None
        cut_short = (c.proj / "model.bin").read_bytes() == trained_model(0.1)
        made = ih.snapshot_commits(c.proj, c.head_before)
        if r.signalled and r.returncode in (130, 143) and cut_short and made:
            problems.append(f"[snapshot] {r.sig and r.sig.name} stopped the script, yet "
                            f"{made} snapshot commit(s) were made")
        return problems

    s = ih.Scenario(label="run", template=base,
                    argv=ih.mlsnap_argv("run", "-o", "model.bin", "-M", "lr 0.2", "--",
                                        sys.executable, "train_run.py"),
                    paths=RUN_PATHS, before=before, after=after, settled="whole", pushes=True,
                    case_env=train_env, after_interrupt=stopped, after_recover=tmp_litter,
                    final=tmp_litter)
    run_scenario(s, tmp_path, 15, "test_run_of_a_training_script")


@pytest.mark.interrupts
def test_repro_of_a_recorded_run(tmp_path: Path) -> None:
    """`mlsnap repro`: HEAD, branch, index and work tree untouched at every moment; no
    process, worktree or temporary folder of it left once the next command has run."""
    base = tmp_path / "template"
    proj = run_template(base)
    before = ih.digest(base, RUN_PATHS)
    state = git_state(proj)

    def right_after(c: ih.Case) -> list[str]:
        return stopped_problems(c) + git_state_problems(
            c, state, "right after the interruption", skip=("worktrees",))

    def settled(c: ih.Case) -> list[str]:
        return git_state_problems(c, state, "after the next command") + tmp_litter(c)

    s = ih.Scenario(label="repro", template=base, argv=ih.mlsnap_argv("repro"),
                    paths=RUN_PATHS, before=before, after=before, commits=0,
                    remote_writes=False, case_env=train_env, after_interrupt=right_after,
                    after_recover=settled, final=settled)
    run_scenario(s, tmp_path, 9, "test_repro_of_a_recorded_run")


def test_kill_9_of_mlsnap_run_stops_its_command(tmp_path: Path) -> None:
    """The everyday version of the run scenario's survivor check, at a chosen moment: kill -9
    of `mlsnap run`'s process group while a quiet script trains (in a group of its own) ends
    the script within seconds and leaves nothing in TMPDIR."""
    base = tmp_path / "case"
    proj = run_template(base)
    env = {**ih.command_env(base), **train_env(base)}
    (proj / "slow.py").write_text(
        "import os, time\n"
        "open(os.path.join(os.environ['TRAIN_PID_DIR'], str(os.getpid())), 'w').close()\n"
        "time.sleep(120)\n")
    ih.git(proj, "add", "slow.py")
    ih.git(proj, "commit", "-q", "-m", "slow")
    proc = subprocess.Popen(ih.mlsnap_argv("run", "-o", "model.bin", "--", sys.executable,
                                           "slow.py"), cwd=proj, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    pids: list[int] = []
    for _ in range(600):  # bounded: 60 s for DVC to load and the script to start
        pids = sorted(int(p.name) for p in (base / "pids").iterdir())
        if pids or proc.poll() is not None:
            break
        time.sleep(0.1)
    assert pids, "the script never started"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert ih.survivors(base, pids, wait=10.0) == []
    assert sorted(p.name for p in (base / "tmp").iterdir()) == []


def test_next_command_removes_a_killed_repros_worktree_and_no_other(tmp_path: Path) -> None:
    """kill -9 of `mlsnap repro` once its worktree exists: the next `mlsnap status` removes
    that worktree (folder and Git's record), and leaves alone a worktree of the user's that
    even looks like one of mlsnap's."""
    base = tmp_path / "case"
    proj = run_template(base)
    env = {**ih.command_env(base), **train_env(base)}
    mine = base / "tmp" / "mlsnap-repro-mine"
    ih.git(proj, "worktree", "add", "-q", "--detach", str(mine), "HEAD")
    proc = subprocess.Popen(ih.mlsnap_argv("repro"), cwd=proj, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):  # bounded: until the script runs in the repro's worktree
        if any((base / "pids").iterdir()) or proc.poll() is not None:
            break
        time.sleep(0.1)
    assert proc.poll() is None, "repro ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert ih.survivors(base, train_pids_in(base / "pids"), wait=10.0) == []
    left = sorted(p.name for p in (base / "tmp").iterdir())
    assert len(left) == 2 and "mlsnap-repro-mine" in left  # the killed one's is still there
    status = ih.run(ih.mlsnap_argv("status", "--no-remote"), proj, env)
    assert status.returncode in (0, 3), status.stderr
    assert sorted(p.name for p in (base / "tmp").iterdir()) == ["mlsnap-repro-mine"]
    listed = ih.git(proj, "worktree", "list", "--porcelain")
    assert listed.count("worktree ") == 2 and f"worktree {mine}" in listed
    assert not (proj / ".git" / "mlsnap-worktrees").exists()


def train_pids_in(folder: Path) -> list[int]:
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())


# --------------------------------------------------------------------------- 11. report


GENERATED = re.compile(rb"generated \d{4}-\d\d-\d\d \d\d:\d\d UTC")


def report_problems(c: ih.Case, new: bytes, old: bytes, final: bool) -> list[str]:
    """report.html is last week's report or the new one, whole (the same page but for the
    minute it names as generated); after the rerun, the new one."""
    path = c.proj / "report.html"
    if not path.is_file():
        return ["[lost] report.html is gone"]
    now = path.read_bytes()
    if now == old:
        return ["[report] after the rerun report.html is still last week's"] if final else []
    if GENERATED.sub(b"generated <when>", now) != new:
        return [(f"[partial] report.html ({len(now)} B) is neither the old report nor a whole "
                f"new one ({len(new)} B)")]
    return []


@pytest.mark.interrupts
def test_report_over_an_older_one(tmp_path: Path) -> None:
    """`mlsnap report -o report.html`: the file is the old report or the new one, whole."""
    base = tmp_path / "template"
    proj = new_template(base)
    for i in range(4):
        (proj / "model.bin").write_bytes(random.Random(i).randbytes(4096))
        mlsnap(proj, "commit", "model.bin", "-p", f"lr=0.{i + 1}", "-m", f"acc=0.{i + 5}",
               "-M", f"try {i}", "--no-push")
    with open(proj / ".git" / "info" / "exclude", "a") as f:
        f.write("report.html\n")  # the user keeps reports out of Git
    mlsnap(proj, "report", "-o", "report.html")
    new = GENERATED.sub(b"generated <when>", (proj / "report.html").read_bytes())
    assert new.count(b"generated <when>") == 1
    old = b"<html><body>last week's report</body></html>\n"
    (proj / "report.html").write_bytes(old)
    paths = ["proj/model.bin", "proj/notes.txt", "proj/data"]
    before = ih.digest(base, paths)

    def during(c: ih.Case) -> list[str]:
        return report_problems(c, new, old, final=False)

    def after(c: ih.Case) -> list[str]:
        return report_problems(c, new, old, final=True) + tmp_litter(c)

    s = ih.Scenario(label="report", template=base,
                    argv=ih.mlsnap_argv("report", "-o", "report.html"), paths=paths,
                    before=before, after=before, commits=0, remote_writes=False,
                    case_env=train_env, after_interrupt=during, after_recover=tmp_litter,
                    final=after)
    run_scenario(s, tmp_path, 9, "test_report_over_an_older_one")


# --------------------------------------------------------------------------- 12. signed


def signing_template(base: Path) -> Path:
    """A project signing with a throwaway SSH key (no passphrase), trusted by the repository's
    own allowed-signers file; one signed, tagged snapshot."""
    proj = new_template(base)
    keys = base.parent / "keys"
    keys.mkdir()
    key = keys / "alice"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice", "-f",
                    str(key)], check=True, timeout=60)
    allowed = keys / "allowed_signers"
    allowed.write_text("alice@example.com " + " ".join(
        (keys / "alice.pub").read_text().split()[:2]) + "\n")
    for k, v in (("gpg.format", "ssh"), ("user.signingkey", f"{key}.pub"),
                 ("gpg.ssh.allowedSignersFile", str(allowed))):
        ih.git(proj, "config", k, v)
    (proj / "model.bin").write_bytes(os.urandom(2 * MiB))
    mlsnap(proj, "commit", "model.bin", "--sign", "--tag", "1.0.0", "-M", "first")
    return proj


def signed_problems(c: ih.Case, made: bool = True) -> list[str]:
    """The new tag and the snapshot commit it names carry good signatures; with ``made``
    False (after the next command), only if the tag is there already."""
    proj = c.proj
    tag = "model@v1.1.0"
    if not ih.git(proj, "tag", "-l", tag).strip():
        return [f"[tag] {tag} was not made"] if made else []
    problems = []
    target = ih.git(proj, "rev-parse", f"{tag}^{{commit}}").strip()
    if target != ih.git(proj, "rev-parse", "HEAD").strip():
        problems.append(f"[tag] {tag} names {target[:7]}, not the snapshot at HEAD")
    for what, args in (("tag", ["verify-tag", tag]), ("commit", ["verify-commit", target])):
        proc = subprocess.run(["git", *args], cwd=proj, capture_output=True, text=True,
                              timeout=60, env=ih.command_env(), check=False)
        if proc.returncode != 0 or "Good" not in proc.stderr:
            problems.append(f"[signature] the {what} of {tag} has no good signature: "
                            f"{proc.stderr.strip()[-200:]!r}")
    return problems


def test_a_kill_between_the_signed_commit_and_its_tag(tmp_path: Path) -> None:
    """`commit --sign --tag` killed right after its Git commit (the fault point the random
    delays rarely hit): the next command makes the tag signed, the rerun finishes."""
    base = tmp_path / "t"
    proj = signing_template(base)
    (proj / "model.bin").write_bytes(os.urandom(1 * MiB))
    argv = ih.mlsnap_argv("commit", "model.bin", "--sign", "--tag", "1.1.0", "-M", "retrained")
    killed = ih.run(argv, proj, {**ih.command_env(base), "MLSNAP_FAULT_AT": "after-git-commit"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not ih.git(proj, "tag", "-l", "model@v1.1.0").strip()
    case = ih.Case(ih.Scenario(label="t", template=base, argv=argv, paths=[], before={},
                               after={}), 0, base, None, 0.0, 0.0, 0.0)
    status = ih.run(ih.mlsnap_argv("status", "--no-remote"), proj, ih.command_env(base))
    assert status.returncode in (0, 3), status.stderr
    assert signed_problems(case) == []
    again = ih.run(argv, proj, ih.command_env(base))
    assert again.returncode == 0, again.stderr
    assert signed_problems(case) == [] and ih.snapshot_commits(proj, "model@v1.0.0") == 1


@pytest.mark.interrupts
def test_signed_tagged_commit(tmp_path: Path) -> None:
    """`mlsnap commit --sign --tag`: finished by the next command or the rerun, the tag and
    the snapshot commit are both signed."""
    base = tmp_path / "template"
    proj = signing_template(base)
    old = ih.digest(base, ["proj/model.bin"])
    (proj / "model.bin").write_bytes(os.urandom(2 * MiB))
    s = commit_scenario("commit-sign-tag", base,
                        ["commit", "model.bin", "--sign", "--tag", "1.1.0", "-M", "retrained"],
                        ["proj/model.bin"], old, pushes=True)
    s.after_recover = lambda c: signed_problems(c, made=False)  # a roll-forward's tag too
    s.final = signed_problems
    run_scenario(s, tmp_path, 6, "test_signed_tagged_commit")


# --------------------------------------------------------------------------- the checks


def test_the_checks_see_partial_files_litter_and_bad_objects(tmp_path: Path) -> None:
    """The harness's own checks report a truncated file, temporary names, a stale Git lock and
    a bad cache object (so a clean run of the harness means something)."""
    base = tmp_path / "t"
    proj = new_template(base)
    (proj / "model.bin").write_bytes(b"x" * 1000)
    mlsnap(proj, "commit", "model.bin", "--no-push")
    good = ih.digest(base, ["proj/model.bin"])
    (proj / "model.bin").write_bytes(b"x" * 500)
    assert ih.whole_files_problems(ih.digest(base, ["proj/model.bin"]), [good], "t", True)
    assert ih.manifest_problems(proj, "model")
    (proj / f".{'a' * 22}.tmp").write_bytes(b"")
    (proj / f"model.bin.{'b' * 22}.tmp").write_bytes(b"")
    (proj / "data" / ".mlsnap-tmp-1-x").write_bytes(b"")
    (proj / ".git" / "index.lock").write_bytes(b"")
    assert ih.litter(proj) == sorted([f".{'a' * 22}.tmp", f"model.bin.{'b' * 22}.tmp",
                                      "data/.mlsnap-tmp-1-x", ".git/index.lock"])
    cache = proj / ".dvc" / "cache"
    obj = next(p for p in cache.rglob("*") if p.is_file() and ih.OBJECT.match(
        p.relative_to(cache).as_posix()))
    obj.chmod(0o644)
    obj.write_bytes(b"flipped")
    (obj.parent / f"{obj.name}.{'c' * 22}.tmp").write_bytes(b"")
    found = ih.store_problems(cache, "cache")
    assert any("[corrupt]" in p for p in found) and any("[litter]" in p for p in found)
    # A late SIGINT that ends the process by Python's default action is reported.
    r = ih.Run(["x"], ih.signal.SIGINT, 0.1, returncode=-2, signalled=True)
    assert ih.exit_problems(r, script=False)
    r = ih.Run(["x"], ih.signal.SIGTERM, 0.1, returncode=143, signalled=True,
               stderr="interrupted: `mlsnap commit` stopped before it finished\n")
    assert not ih.exit_problems(r, script=False)
    # The interpreter's own start-up is told from mlsnap's: by SigCgt, by Python's fatal init
    # error, by a traceback of Python's frames only; a frame of mlsnap's makes it mlsnap's.
    r = ih.Run(["x"], ih.signal.SIGINT, 0.01, returncode=-2, signalled=True, caught=set())
    assert ih.python_start_up(r, early=True) and not ih.python_start_up(r, early=False)
    r = ih.Run(["x"], ih.signal.SIGINT, 0.01, returncode=1, signalled=True, caught={2},
               stderr="Fatal Python error: init_import_site: Failed to import the site module\n")
    assert ih.python_start_up(r, early=True)
    frozen = 'Traceback (most recent call last):\n  File "<frozen runpy>", line 1, in f\n'
    r = ih.Run(["x"], ih.signal.SIGINT, 0.01, returncode=-2, signalled=True, caught={2},
               stderr=frozen + "KeyboardInterrupt\n")
    assert ih.python_start_up(r, early=True)
    r.stderr = frozen + '  File "/x/mlsnap/__init__.py", line 9, in <module>\nKeyboardInterrupt\n'
    assert not ih.python_start_up(r, early=True) and ih.exit_problems(r, script=False)
    # A SIGTERM that finds no SIGTERM handler early on came before mlsnap's entry module ran;
    # later in the run it means mlsnap lost its handler, which is reported.
    r = ih.Run(["x"], ih.signal.SIGTERM, 0.01, returncode=-15, signalled=True, caught={2})
    assert ih.python_start_up(r, early=True) and not ih.python_start_up(r, early=False)
    assert not ih.exit_problems(r, script=False, duration=1.0)
    r.delay = 0.9
    assert any(p.startswith("[exit-early]") for p in ih.exit_problems(r, script=False,
                                                                      duration=1.0))
    line = ih.tally_line(ih.Tally("x", "y").to_json())
    assert "0 interrupted" in line and json.loads(json.dumps(ih.Tally("x", "y").to_json()))

"""The README's and docs' `$` transcripts, run for real: a transcript that stops matching fails.

Every fenced block holding `$ ` lines is either run here, in a scene built the way its prose
describes, or listed in NOT_RUN with the reason (and the test that checks that behaviour
instead). Outputs are compared after normalising what changes from run to run: commit and
object hashes, dates, the temporary folders (mapped to the paths the docs show) and the width
of aligned columns. A line `...` in a transcript stands for any number of lines.

To rewrite the transcripts from a real run (then review the diff):

    MLSNAP_UPDATE_DOCS=1 python -m pytest tests/test_docs.py
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest

import mlsnap
from tests.helpers import git, make_project, train
from tests.helpers import mlsnap as run_cli

SOURCE = Path(mlsnap.__file__).resolve().parent.parent
DOCS = ["README.md", *sorted(f"docs/{p.name}" for p in (SOURCE / "docs").glob("*.md"))]
UPDATE = bool(os.environ.get("MLSNAP_UPDATE_DOCS"))
BROKEN = "mlsnap: 1\nname: model\nparams: [oops\n"


# --------------------------------------------------------------------------- reading the docs


@dataclass
class Step:
    command: str  # as written, continuation lines joined
    expected: list[str]


@dataclass
class Block:
    file: str
    line: int
    raw: str  # the block's text in the file, fences excluded
    indent: str
    steps: list[Step] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.file}: {self.steps[0].command}"


def transcripts() -> list[Block]:
    """Every fenced block with `$ ` lines, in file order; keys made unique with #2, #3..."""
    found: list[Block] = []
    for name in DOCS:
        text = (SOURCE / name).read_text()
        for match in re.finditer(r"^([ \t]*)```[^\n]*\n(.*?)^[ \t]*```", text, re.MULTILINE | re.DOTALL):
            indent, raw = match.group(1), match.group(2)
            body = textwrap.dedent(raw)
            if not re.search(r"^\$ ", body, re.MULTILINE):
                continue
            block = Block(name, text[:match.start()].count("\n") + 1, raw, indent)
            lines = body.splitlines()
            i = 0
            while i < len(lines):
                line = lines[i]
                i += 1
                if line.startswith("$ "):
                    command = line[2:]
                    while command.endswith("\\") and i < len(lines):
                        command += "\n" + lines[i]
                        i += 1
                    block.steps.append(Step(command, []))
                elif block.steps:
                    block.steps[-1].expected.append(line)
            found.append(block)
    seen: dict[str, int] = {}
    for block in found:
        seen[block.key] = seen.get(block.key, 0) + 1
        if seen[block.key] > 1:
            block.steps[0].command += f"  #{seen[block.key]}"  # only in the key
    return found


def _command(step: Step) -> str:
    return re.sub(r"  #\d+$", "", step.command)


# --------------------------------------------------------------------------- comparing


HEX = re.compile(r"\b[0-9a-f]{7,64}\b")
DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?Z?\b")
STAMP = re.compile(r"\b\d{8}T\d{6}Z\b")
DURATION = re.compile(r"\b\d+(\.\d+)?s\b")


def normalise(line: str) -> str:
    line = STAMP.sub("<stamp>", DATE.sub("<date>", line))
    line = HEX.sub("<hex>", DURATION.sub("<secs>", line))
    return " ".join(line.split())


def matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line after ``normalise``; an expected ``...`` line stands for any lines."""
    exp = [normalise(e) for e in expected]
    act = [normalise(a) for a in actual]
    while exp and not exp[-1]:
        exp.pop()
    while act and not act[-1]:
        act.pop()

    def walk(i: int, j: int) -> bool:
        if i == len(exp):
            return j == len(act)
        if exp[i] == "...":
            return any(walk(i + 1, k) for k in range(j, len(act) + 1))
        return j < len(act) and exp[i] == act[j] and walk(i + 1, j + 1)

    return walk(0, 0)


# --------------------------------------------------------------------------- running


@dataclass
class Scene:
    cwd: Path  # where the first block starts
    paths: dict[str, str]  # real path -> the path the docs show


def shell_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a reader's shell: `mlsnap` and `python` on PATH (this checkout's)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, target in (("mlsnap", f'exec "{sys.executable}" -m mlsnap "$@"'),
                         ("python", f'exec "{sys.executable}" "$@"'),
                         ("python3", f'exec "{sys.executable}" "$@"')):
        (bin_dir / name).write_text(f"#!/bin/sh\n{target}\n")
        (bin_dir / name).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(SOURCE), "PYTHONUNBUFFERED": "1", "COLUMNS": "100",
            "LC_ALL": "C.UTF-8"}


def run_block(block: Block, cwd: Path, scene: Scene, env: dict[str, str]) -> tuple[list[list[str]], Path]:
    """Run the block's commands in one bash, in order; each one's output (stdout and stderr
    as a terminal shows them, interleaved) and the folder the block ends in."""
    to_real = sorted(((doc, real) for real, doc in scene.paths.items()), key=lambda p: -len(p[0]))
    script = ["set +e", f'cd "{cwd}"']
    for n, step in enumerate(block.steps):
        command = _command(step)
        for doc, real in to_real:
            command = command.replace(doc, real)
        script += [f"printf '\\036{n}\\n'", "{", command, "} 2>&1"]
    script += ["printf '\\036end %s\\n' \"$PWD\""]
    proc = subprocess.run(["bash", "-c", "\n".join(script)], env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for real, doc in sorted(scene.paths.items(), key=lambda p: -len(p[0])):
        out = out.replace(real, doc)
    parts = out.split("\x1e")[1:]
    outputs = [part.split("\n", 1)[1].splitlines() for part in parts[:-1]]
    end = parts[-1].split(" ", 1)[1].strip()
    for real, doc in scene.paths.items():  # back to the real folder the block ended in
        if end.startswith(doc):
            end = real + end[len(doc):]
    return outputs, Path(end)


def update(block: Block, outputs: list[list[str]]) -> None:
    """Write the real outputs into the doc (keeping each `...` that ends an output)."""
    lines = []
    for step, actual in zip(block.steps, outputs):
        lines += [f"$ {_command(step)}"]
        if "..." in [e.strip() for e in step.expected]:
            cut = [e.strip() for e in step.expected].index("...")
            lines += actual[:cut] + [step.expected[cut]]
        else:
            lines += actual
    new = "".join(f"{block.indent}{line}\n" if line else "\n" for line in lines)
    path = SOURCE / block.file
    text = path.read_text()
    assert text.count(block.raw) == 1, f"{block.key}: the block is not unique in its file"
    path.write_text(text.replace(block.raw, new))


def check(blocks: list[Block], scene: Scene, env: dict[str, str]) -> None:
    cwd = scene.cwd
    for block in blocks:
        outputs, cwd = run_block(block, cwd, scene, env)
        assert len(outputs) == len(block.steps)
        if UPDATE:
            update(block, outputs)
            continue
        for step, actual in zip(block.steps, outputs):
            assert matches(step.expected, actual), (
                f"{block.file}:{block.line}: `$ {_command(step)}` printed\n"
                + "\n".join(actual) + "\n--- the docs show ---\n" + "\n".join(step.expected))


# --------------------------------------------------------------------------- scenes


def quickstart(tmp_path: Path) -> Scene:
    """A Git repository `proj` with train.py, params.yaml and data/train.csv committed."""
    base = tmp_path / "qs"
    make_project(base / "proj", init=False)
    return Scene(base, {str(base): "/tmp/qs"})


def _history(base: Path) -> Path:
    """The project of docs/history.md: baseline (tagged model@v1.0.0), lr 0.05, 20 epochs."""
    demo = make_project(base / "demo", base / "storage")
    train(demo)
    run_cli(demo, "commit", "model.pkl", "--params", "params.yaml", "--metrics",
            "metrics.json", "-M", "baseline", "--tag", "1.0.0")
    for text, code, label in (
            ("lr: 0.05\nepochs: 10\noptimizer:\n  name: adam\n", "lower the learning rate",
             "lr 0.05"),
            ("lr: 0.05\nepochs: 20\noptimizer:\n  name: adam\n", "train longer", "20 epochs")):
        (demo / "params.yaml").write_text(text)
        git(demo, "commit", "-qam", code)
        train(demo)
        run_cli(demo, "commit", "-M", label)
    return demo


@pytest.fixture(scope="module")
def history_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("docdemo")
    with pytest.MonkeyPatch.context() as mp:
        home = base / "home"
        home.mkdir()
        mp.setenv("HOME", str(home))
        mp.setenv("XDG_DATA_HOME", str(home / "share"))
        for key, value in {"GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "Test Author",
                           "GIT_AUTHOR_EMAIL": "author@example.com",
                           "GIT_COMMITTER_NAME": "Test Committer",
                           "GIT_COMMITTER_EMAIL": "committer@example.com",
                           "DVC_NO_ANALYTICS": "1", "DVC_NO_UPDATER": "1", "CI": "true"}.items():
            mp.setenv(key, value)
        mp.delenv("VIRTUAL_ENV", raising=False)
        _history(base)
    yield base


def _history_scene(history_project: Path, tmp_path: Path, variant: str) -> Scene:
    base = tmp_path / "docdemo"
    shutil.copytree(history_project, base, symlinks=True)
    demo = base / "demo"  # its remote is still the module's folder: the scenes only read it
    if variant in ("tagged", "broken", "clone", "get"):
        run_cli(demo, "tag", "model", "1.1.0")
    if variant == "broken":
        (demo / ".mlsnap" / "model.yaml").write_text(BROKEN)
        git(demo, "commit", "-qm", "edit the manifest by hand", "--", ".mlsnap/model.yaml")
    if variant == "folder":
        (demo / "tok").mkdir()
        (demo / "tok" / "vocab.txt").write_text("a\nb\nc\n")
        (demo / "tok" / "merges.txt").write_text("a b\n")
        run_cli(demo, "commit", "tok", "--name", "tokenizer", "-M", "tokenizer", "--no-push")
        (demo / "tok" / "vocab.txt").write_text("a\nb\nc\nd\n")
        (demo / "tok" / "merges.txt").unlink()
        (demo / "tok" / "config.json").write_text("{}\n")
        run_cli(demo, "commit", "tok", "--name", "tokenizer", "-M", "new vocabulary",
                "--no-push")
    cwd = demo
    if variant == "clone":
        git(base, "clone", "-q", str(demo), str(base / "prod"))
        cwd = base / "prod"
    paths = {str(base): "/tmp/docdemo"}
    return Scene(cwd if variant != "get" else base, paths)


def plain_training(tmp_path: Path) -> Scene:
    base = tmp_path / "proj"
    (base / "examples").mkdir(parents=True)
    shutil.copy2(SOURCE / "examples" / "train_plain.py", base / "examples")
    return Scene(base, {str(base): "/tmp/proj"})


def storage(tmp_path: Path) -> Scene:
    """docs/storage.md: a project with a Git remote (`origin.git`) and four snapshots of
    `model`, the first tagged model@v1.0.0, each learning rate lower than the last."""
    base = tmp_path / "gcdemo"
    proj = make_project(base / "proj", base / "storage")
    git(base, "init", "-q", "--bare", "-b", "main", str(base / "origin.git"))
    git(proj, "remote", "add", "origin", str(base / "origin.git"))
    for n, lr in enumerate(("0.1", "0.05", "0.02", "0.01")):
        if n:
            (proj / "params.yaml").write_text(f"lr: {lr}\nepochs: 10\noptimizer:\n  name: adam\n")
            git(proj, "commit", "-qam", f"lr {lr}")
        train(proj)
        mlsnap.commit("model.pkl", params_files=["params.yaml"], metrics_files=["metrics.json"],
                      message=f"lr {lr}", tag="1.0.0" if n == 0 else None, repo=proj)
    git(proj, "push", "-q", "-u", "origin", "main", "--tags")
    return Scene(proj, {str(base): "/tmp/gcdemo"})


def reproduce(tmp_path: Path) -> Scene:
    """README's "Run and reproduce" and docs/reproduce.md: the quickstart's project, set up."""
    base = tmp_path / "repro"
    make_project(base / "proj", base / "storage")
    return Scene(base / "proj", {str(base): "/tmp/repro"})


def _variant(name: str) -> Callable[[Path, Path], Scene]:
    return lambda project, tmp_path: _history_scene(project, tmp_path, name)


# Each session: a scene and the blocks run in it, in order (a block starts where the last ended).
SESSIONS: dict[str, tuple[Callable[..., Scene], bool, list[str]]] = {
    "quickstart": (quickstart, False, [
        ("README.md: cd proj                               # a Git repository: train.py, "
         "params.yaml, data/train.csv committed"),
        ("README.md: cd .. && git clone -q proj elsewhere && cd elsewhere && git checkout -q "
         "HEAD~1   # the baseline"),
    ]),
    "readme-history": (_variant("clone"), True, ["README.md: mlsnap log"]),
    "readme-report": (_variant("tagged"), True, ["README.md: mlsnap report -o ../report.html"]),
    "log": (_variant("tagged"), True, [
        "docs/history.md: mlsnap log", "docs/history.md: mlsnap log -n 1 --json",
        "docs/history.md: mlsnap show model@v1.0.0 --json", "docs/history.md: mlsnap diff",
        "docs/history.md: mlsnap diff model@v1.0.0 model@v1.1.0 --json"]),
    "broken": (_variant("broken"), True, [
        "docs/history.md: mlsnap log  #2", "docs/history.md: mlsnap show HEAD"]),
    "tag": (_variant("untagged"), True, ["docs/history.md: mlsnap tag model 1.1.0"]),
    "folder": (_variant("folder"), True, ["docs/history.md: mlsnap diff --name tokenizer"]),
    "get": (_variant("get"), True, ["docs/history.md: git clone -q demo prod && cd prod"]),
    "readme-reproduce": (reproduce, False, [
        ("README.md: mlsnap run -o model.pkl --data data/train.csv --params params.yaml "
        "--metrics metrics.json -M baseline -- python train.py")]),
    "reproduce": (reproduce, False, [
        ("docs/reproduce.md: mlsnap run -o model.pkl --data data/train.csv --params params.yaml "
        "--metrics metrics.json -M baseline -- python train.py"),
        ("docs/reproduce.md: printf 'import random\\nnoise = random.random() * 1e-6\\nopen("
        "\"model.pkl\", \"a\").write(repr(noise))\\njson.dump({\"accuracy\": 1 - 1 / (1 + "
        "weight) + noise}, open(\"metrics.json\", \"w\"))\\n' >> train.py && git commit -qam "
        "\"unseeded noise\"")]),
    "plain-training": (plain_training, False, ["docs/training.md: python examples/train_plain.py"]),
    "storage": (storage, False, [
        "docs/storage.md: mlsnap gc",
        ("docs/storage.md: cd .. && git clone -q origin.git laptop && cd laptop && git checkout "
         "-q HEAD~1")]),
}

NOT_RUN = {
    "README.md: mlsnap commit model.pkl helper.pkl --sign -M baseline": "a throwaway SSH "
    "signing key and allowed-signers file; tests/test_signing.py, tests/test_pickles.py and "
    "tests/test_verify.py run each step",
    "README.md: mlsnap init --remote s3://models/churn --local endpointurl=http://127.0.0.1:8333 \\\n"
    "      --local access_key_id=teamkey --local secret_access_key=...":
        "needs S3, SSH and WebDAV servers; tests/test_remotes.py runs these set-ups",
    "docs/benchmarks.md: python -m benchmarks --quick        # small sizes, 3 runs each: about "
    "50-65 s here": "timings; `python -m benchmarks` is the check",
    "docs/history.md: python benchmarks/bench_history.py --snapshots 1000 --runs 7":
        "timings of a 1,000-snapshot history",
    "docs/hooks.md: pre-commit install --allow-missing-config":
        "the framework builds its hook venv from PyPI; tests/test_hooks.py runs it",
    "docs/hooks.md: git add weights.pt": "the framework's hook venv; tests/test_hooks.py",
    "docs/hooks.md: mlsnap commit model.pt -M \"more epochs\" --no-push":
        "the framework's hook venv and a Git remote; tests/test_hooks.py",
    "docs/hooks.md: .venv/bin/mlsnap hooks install": "a user's own pre-commit hook and venv "
    "path; tests/test_hooks.py checks install, chaining and uninstall",
    "docs/hooks.md: command -v mlsnap || echo \"mlsnap is not on PATH\"":
        "a shell without mlsnap on PATH and a Git remote; tests/test_hooks.py",
    "docs/hooks.md: git push -q origin main": "a cache object removed between two pushes "
    "(prose, not a command); tests/test_hooks.py",
    "docs/hooks.md: git push -q origin main  #2": "as above",
    "docs/reliability.md: mlsnap commit model.bin          # Ctrl-C while DVC copies 64 MiB into "
    "the cache": "a Ctrl-C at a moment; tests/test_faults.py sends it",
    "docs/reliability.md: mlsnap pull          # one byte of the cached object flipped":
        "a byte flipped in the cache; tests/test_faults.py",
    "docs/reliability.md: mlsnap commit model.bin --no-push        # 3 MiB on a 6 MiB tmpfs":
        "a full tmpfs; tests/test_faults.py mounts one",
    "docs/reliability.md: mlsnap pull          # the remote's listing of data/ names "
    "../.git/config (core.fsmonitor)": "each command against a different hostile clone; "
    "tests/test_hostile.py builds every one for real",
    "docs/reliability.md: mlsnap remote set url https://ghp_AAAA...@github.com/acme/store":
        "a token elided in the text; tests/test_secrets.py and tests/test_redaction.py",
    "docs/remotes.md: mlsnap init --remote s3://models/churn --local "
    "endpointurl=http://127.0.0.1:8333 --local access_key_id=teamkey --local "
    "secret_access_key=team-secret-8f2k": "an S3 server; tests/test_remotes.py",
    "docs/remotes.md: mlsnap init --remote ssh://root@127.0.0.1:2222/tmp/demo6/srv/ssh/store/"
    "churn --local keyfile=/tmp/demo6/home/.ssh/id_mlsnap": "an SSH server; tests/test_remotes.py",
    "docs/remotes.md: mlsnap init --remote webdav://127.0.0.1:8080/mlsnap/churn --local "
    "user=alice --local password=dav-secret-3xq": "a WebDAV server; tests/test_remotes.py",
    "docs/remotes.md: git clone -q churn laptop": "an S3 server; tests/test_remotes.py",
    "docs/remotes.md: mlsnap remote set password wrong-password --local":
        "a WebDAV server; tests/test_remotes.py",
    "docs/remotes.md: mlsnap commit model.pkl -M retrained": "a server stopped mid-way; "
    "tests/test_remotes.py",
    "docs/training.md: python examples/train_torch.py --steps 40 --out runs/demo --snapshot "
    "--pause-at 23": "a kill -9 at a pause; tests/test_torch_training.py",
    "docs/training.md: python examples/train_torch.py --steps 40 --out runs/demo --snapshot":
        "follows the kill above; tests/test_torch_training.py",
    "docs/training.md: git clone ../proj other && cd other": "follows the torch run above; "
    "tests/test_torch_training.py and tests/test_checkpoint.py",
    "docs/training.md: torchrun --nproc_per_node=2 examples/train_distributed.py --steps 8 --out "
    "runs/ddp": "torchrun jobs (seconds each); tests/test_distributed.py runs the same script",
    "docs/training.md: torchrun --nproc_per_node=2 examples/train_distributed.py --steps 8 --out "
    "runs/fsdp --sharded --die-at 5 --die-rank 1 --die-in save 2>torchrun.log":
        "a SIGKILLed rank under torchrun; tests/test_distributed.py",
    "docs/training.md: python examples/train_distributed.py --steps 8 --out runs/fsdp --sharded":
        "follows the torchrun runs above; tests/test_distributed.py loads it in one process",
    "README.md: torchrun --nproc_per_node=2 examples/train_distributed.py --steps 4 --out runs/ddp "
    "--keep-last 2": "torchrun jobs; tests/test_distributed.py checks the bit-identical resume",
}


def test_every_transcript_is_run_or_says_why_not() -> None:
    keys = [b.key for b in transcripts()]
    assert len(keys) == len(set(keys))
    run = [k for _, _, blocks in SESSIONS.values() for k in blocks]
    unexcused = sorted(set(keys) - set(NOT_RUN) - set(run))
    assert not unexcused, f"transcripts neither run nor in NOT_RUN: {unexcused}"
    assert not set(run) - set(keys), f"SESSIONS name transcripts that are gone: {set(run) - set(keys)}"
    assert not set(NOT_RUN) - set(keys), f"NOT_RUN names gone ones: {set(NOT_RUN) - set(keys)}"
    assert not set(NOT_RUN) & set(run)
    assert len(run) >= len(keys) // 3


@pytest.mark.parametrize("session", sorted(SESSIONS))
def test_transcript(session: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    make, needs_history, keys = SESSIONS[session]
    by_key = {b.key: b for b in transcripts()}
    if needs_history:
        scene = make(request.getfixturevalue("history_project"), tmp_path)
    else:
        scene = make(tmp_path)
    check([by_key[k] for k in keys], scene, shell_env(tmp_path))


# --------------------------------------------------------------------------- the command table


def test_readme_command_table_lists_every_command_and_option() -> None:
    from mlsnap.cli import main

    text = (SOURCE / "README.md").read_text()
    table = text.split("## Commands\n", 1)[1].strip().split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines()[2:]:
        usage = line.split("`")[1]
        words = usage.split()
        path = " ".join(w for w in words[1:3] if re.fullmatch(r"[a-z-]+", w)) or "mlsnap"
        rows[path] = usage

    def commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
        for name, command in group.commands.items():
            if isinstance(command, click.Group) and name != "hook":
                yield from commands(command, f"{prefix}{name} ")
            else:
                yield f"{prefix}{name}", command

    for path, command in commands(main):
        row = rows.get(path)
        assert row is not None, f"README's command table has no row for `mlsnap {path}`"
        subs = command.commands.values() if isinstance(command, click.Group) else [command]
        for sub in subs:
            for param in sub.params:
                if isinstance(param, click.Option) and not param.hidden and param.name != "help":
                    for opt in param.opts:
                        assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", row), \
                            f"`mlsnap {path}` row lacks {opt}"
    for opt in ("--debug", "--version"):
        assert opt in rows["mlsnap"]

"""The Checkpointer in distributed jobs: real torchrun, 2 CPU ranks, gloo on loopback.

Each torchrun start costs seconds, so the runs are made once per module (fixtures) and several
tests read what they left. The example script is the training: examples/train_distributed.py.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from mlsnap.checkpoint import tree_hash

if os.environ.get("MLSNAP_REQUIRE_TORCH") == "1":  # CI installs torch: a skip there is a failure
    import torch
else:
    torch = pytest.importorskip("torch")

# Every test here starts torchrun jobs (seconds each): the slow suite runs them, CI with it.
pytestmark = [pytest.mark.torch, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_distributed.py"
STEPS = 6
ENV = {"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun_cmd(out: Path, *extra: str, nproc: int = 2) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
            "--master_addr=127.0.0.1", f"--master_port={free_port()}", "--monitor_interval=0.1",
            str(EXAMPLE), "--steps", str(STEPS), "--out", str(out), "--timeout", "60", *extra]


def torchrun(out: Path, *extra: str, check: int | None = 0) -> subprocess.CompletedProcess[str]:
    job = subprocess.Popen(torchrun_cmd(out, *extra), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env={**os.environ, **ENV},
                           start_new_session=True)
    stdout, stderr = finish(job, also_stderr=True)
    proc = subprocess.CompletedProcess(job.args, job.returncode, stdout, stderr)
    if check is not None:
        assert proc.returncode == check, proc.stdout + proc.stderr[-3000:]
    return proc


def finish(job: subprocess.Popen[str], also_stderr: bool = False) -> Any:
    """The job's output once it ended; a job still running after 300 s fails the test with
    the Python stacks of its processes (py-spy, where installed), then is killed."""
    try:
        stdout, stderr = job.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        pids = [job.pid] + [int(p) for p in subprocess.run(
            ["pgrep", "-g", str(os.getpgid(job.pid))], capture_output=True, text=True,
            check=False).stdout.split() if int(p) != job.pid]
        stacks = [subprocess.run(["py-spy", "dump", "--pid", str(pid)], capture_output=True,
                                 text=True, timeout=60, check=False).stdout
                  for pid in pids] if shutil.which("py-spy") else ["(py-spy not installed)"]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job.pid, signal.SIGKILL)
        stdout, _ = job.communicate()
        pytest.fail(f"torchrun still running after 300 s; output: {stdout[-2000:]}\n"
                    + "\n".join(stacks))
    return (stdout, stderr) if also_stderr else stdout


def reports(stdout: str) -> list[dict[str, Any]]:
    found = [json.loads(m) for m in re.findall(r"\{[^{}\n]*\}", stdout)]
    return [doc for doc in found if "step" in doc]


def weights(stdout: str) -> str:
    done = [line for line in stdout.splitlines() if line.startswith("done at step")]
    assert len(done) == 1, stdout
    return done[0].rsplit(" ", 1)[1]


def index(folder: Path, settled: bool = True) -> list[dict[str, Any]]:
    """The index's entries; ``settled``: no save was cut short (nothing pending deletion)."""
    import yaml

    doc = yaml.safe_load((folder / "index.yaml").read_text())
    assert not settled or doc["pending"] == [], doc
    assert not {e["name"] for e in doc["checkpoints"]} & set(doc["pending"]), doc
    return list(doc["checkpoints"])


def example_module() -> Any:
    spec = importlib.util.spec_from_file_location("train_distributed_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_index_names_complete_checkpoints(folder: Path, sharded: bool) -> None:
    """What a kill may leave: every entry of the index is whole (hash) and loads."""
    for entry in index(folder, settled=False) if (folder / "index.yaml").exists() else []:
        path = folder / entry["name"]
        assert tree_hash(path)[0] == entry["md5"], entry
        assert (folder / (entry["name"] + ".rng.json")).is_file(), entry
        if sharded:
            from torch.distributed.checkpoint import FileSystemReader

            meta = FileSystemReader(str(path)).read_metadata()
            assert "model.0.weight" in meta.state_dict_metadata
        else:
            assert torch.load(path, weights_only=True)["step"] == entry["step"]


# --- DDP: replicated state, every rank calls save() ---------------------------------------------


@pytest.fixture(scope="module")
def ddp(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("ddp")
    whole = torchrun(root / "whole", "--report")
    # rank 0 SIGKILLed inside save_fn at step 4: the bytes are written, the save not finished
    killed = torchrun(root / "cut", "--report", "--die-at", "4", "--die-rank", "0",
                      "--die-in", "save", check=None)
    left = sorted(p.name for p in (root / "cut" / "checkpoints").iterdir())
    resumed = torchrun(root / "cut", "--report")
    return {"root": root, "whole": whole, "killed": killed, "left": left, "resumed": resumed}



def test_ddp_every_rank_gets_the_same_checkpoint_once_per_step(ddp: dict[str, Any]) -> None:
    seen = reports(ddp["whole"].stdout)
    by_step: dict[int, set[str]] = {}
    for r in seen:
        by_step.setdefault(r["step"], set()).add(r["saved"])
    assert sorted(by_step) == list(range(1, STEPS + 1))
    assert all(len(names) == 1 and None not in names for names in by_step.values()), by_step
    assert len({next(iter(n)) for n in by_step.values()}) == STEPS  # no step written twice
    assert sorted((r["rank"], r["step"]) for r in seen) == sorted(
        (rank, step) for rank in (0, 1) for step in range(1, STEPS + 1))


def test_ddp_keep_last_leaves_exactly_the_newest_three(ddp: dict[str, Any]) -> None:
    folder = ddp["root"] / "whole" / "checkpoints"
    kept = index(folder)
    assert [e["step"] for e in kept] == [4, 5, 6]
    names = {r["step"]: r["saved"] for r in reports(ddp["whole"].stdout)}
    assert [e["name"] for e in kept] == [names[4], names[5], names[6]]
    on_disk = sorted(p.name for p in folder.iterdir())
    assert on_disk == sorted(["index.yaml", *(e["name"] for e in kept),
                              *(e["name"] + ".rng.json" for e in kept)])
    assert_index_names_complete_checkpoints(folder, sharded=False)


def test_ddp_rank_killed_mid_save_leaves_the_index_at_the_step_before(ddp: dict[str, Any]) -> None:
    assert ddp["killed"].returncode != 0
    assert "rank 0: stopping (save)" in ddp["killed"].stdout
    # the killed save's bytes stand under a temporary name only; the index ends at step 3
    assert any(name.startswith(".mlsnap-tmp-") for name in ddp["left"]), ddp["left"]
    assert not any(name.startswith("step-000004") for name in ddp["left"]), ddp["left"]


def test_ddp_resumed_run_ends_bit_identical_to_the_uninterrupted_one(ddp: dict[str, Any]) -> None:
    out = ddp["resumed"].stdout
    assert "resumed from step-000003-" in out
    assert weights(out) == weights(ddp["whole"].stdout)
    folder = ddp["root"] / "cut" / "checkpoints"
    assert [e["step"] for e in index(folder)] == [4, 5, 6]
    assert not [p for p in folder.iterdir() if p.name.startswith(".mlsnap-tmp-")]  # cleared


# --- sharded: FSDP2 parameters split across the ranks, DCP save/load ----------------------------


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("sharded")
    whole = torchrun(root / "whole", "--sharded", "--report")
    # rank 1 writes its part of step 3 and is SIGKILLed before the save completes
    killed = torchrun(root / "cut", "--sharded", "--report", "--die-at", "3", "--die-rank", "1",
                      "--die-in", "save", check=None)
    left = index(root / "cut" / "checkpoints")
    resumed = torchrun(root / "cut", "--sharded", "--report")
    return {"root": root, "whole": whole, "killed": killed, "left": left, "resumed": resumed}


def test_sharded_checkpoint_holds_one_part_per_rank_and_dcp_metadata(
        sharded: dict[str, Any]) -> None:
    from torch.distributed.checkpoint import FileSystemReader

    folder = sharded["root"] / "whole" / "checkpoints"
    kept = index(folder)
    assert [e["step"] for e in kept] == [4, 5, 6]
    for entry in kept:
        path = folder / entry["name"]
        assert sorted(p.name for p in path.iterdir()) == [".metadata", "__0_0.distcp",
                                                          "__1_0.distcp"]
        meta = FileSystemReader(str(path)).read_metadata()
        chunks = meta.state_dict_metadata["model.0.weight"].chunks
        assert len(chunks) == 2 and {c.sizes[0] for c in chunks} == {16}  # 32 rows, split
    assert_index_names_complete_checkpoints(folder, sharded=True)


def test_sharded_checkpoint_loads_in_one_process_resharded(sharded: dict[str, Any]) -> None:
    """World size 1: the Checkpointer's load() (DCP) fills a plain model with the full weights."""
    import mlsnap

    module = example_module()
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Dropout(0.2), torch.nn.Tanh(),
                                torch.nn.Linear(32, 1))
    before = module.digest(model.state_dict())
    state = {"model": model.state_dict()}
    ckpt = mlsnap.Checkpointer(sharded["root"] / "whole" / "checkpoints", sharded=True)
    with pytest.warns(RuntimeWarning, match="RNG states of 2 ranks and this job has 1"):
        loaded = ckpt.load(state)
    assert loaded.step == STEPS
    model.load_state_dict(state["model"])
    assert module.digest(model.state_dict()) == weights(sharded["whole"].stdout) != before


def test_sharded_rank_killed_mid_save_never_enters_the_index(sharded: dict[str, Any]) -> None:
    assert sharded["killed"].returncode != 0
    assert "rank 1: stopping (save)" in sharded["killed"].stdout
    assert [e["step"] for e in sharded["left"]] == [1, 2]
    out = sharded["resumed"].stdout
    assert "resumed from step-000002-" in out
    assert weights(out) == weights(sharded["whole"].stdout)
    folder = sharded["root"] / "cut" / "checkpoints"
    assert not [p for p in folder.iterdir() if p.name.startswith(".mlsnap-tmp-")]


# --- survivors: a rank dead or silent ends the others' save with one line -----------------------


def by_hand(out: Path, die_in: str) -> tuple[subprocess.CompletedProcess[str], subprocess.Popen[str]]:
    """Two ranks started without torchrun (no agent to kill the survivor): rank 1 stops at 3."""
    port = str(free_port())
    procs = []
    for rank in (0, 1):
        env = {**os.environ, **ENV, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
        procs.append(subprocess.Popen(
            [sys.executable, str(EXAMPLE), "--steps", str(STEPS), "--out", str(out), "--timeout",
             "5", "--die-at", "3", "--die-rank", "1", "--die-in", die_in], env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    try:
        stdout, stderr = procs[0].communicate(timeout=300)
    finally:
        procs[1].kill()
        procs[1].communicate(timeout=60)
    return subprocess.CompletedProcess(procs[0].args, procs[0].returncode, stdout, stderr), procs[1]


@pytest.mark.parametrize(("die_in", "says"), [("step", "Connection"), ("hang", "timed out")])
def test_survivor_fails_with_one_line_when_a_rank_dies_or_hangs(
        tmp_path: Path, die_in: str, says: str) -> None:
    survivor, _other = by_hand(tmp_path, die_in)
    assert survivor.returncode == 1, survivor.stdout + survivor.stderr
    lines = survivor.stderr.strip().splitlines()
    assert len(lines) == 1, survivor.stderr
    assert lines[0].startswith("rank 0: error: ") and "save(step=3) on rank 0" in lines[0]
    assert "did not answer within 5 s" in lines[0] and says in lines[0], lines[0]
    assert "Traceback" not in survivor.stderr
    assert [e["step"] for e in index(tmp_path / "checkpoints")] == [1, 2]


# --- without a process group, and bad input (no torch in the process) ---------------------------


def run_py(tmp_path: Path, code: str, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path,
                          capture_output=True, text=True, env={**base, **(env or {})},
                          timeout=120, check=False)


SAVE_ONE = """
import sys, mlsnap
ckpt = mlsnap.Checkpointer("ck", keep_last=2)
saved = ckpt.save(1, lambda p: p.write_bytes(b"weights"))
print(saved.name if saved else None, "torch" in sys.modules)
"""


def test_ranks_without_a_process_group_leave_the_writing_to_rank_0(tmp_path: Path) -> None:
    other = run_py(tmp_path, SAVE_ONE, {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert other.returncode == 0, other.stderr
    assert other.stdout.split() == ["None", "False"]  # nothing written, torch never imported
    assert not (tmp_path / "ck" / "index.yaml").exists()
    first = run_py(tmp_path, SAVE_ONE, {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    assert first.returncode == 0, first.stderr
    name, imported = first.stdout.split()
    assert name.startswith("step-000001-") and imported == "False"
    assert [e["name"] for e in index(tmp_path / "ck")] == [name]


@pytest.mark.parametrize(("env", "says"), [
    ({"RANK": "x", "WORLD_SIZE": "2"}, "environment variable RANK='x': must be a non-negative"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK must be below WORLD_SIZE"),
])
def test_bad_rank_variables_are_one_clear_error(tmp_path: Path, env: dict[str, str],
                                                says: str) -> None:
    proc = run_py(tmp_path, """
        import mlsnap
        try:
            mlsnap.Checkpointer("ck").save(1, lambda p: p.write_bytes(b"w"))
        except mlsnap.MlsnapError as e:
            print(e)
        """, env)
    assert proc.returncode == 0, proc.stderr
    assert says in proc.stdout and len(proc.stdout.strip().splitlines()) == 1, proc.stdout
    assert not (tmp_path / "ck" / "index.yaml").exists()


def test_sharded_without_a_process_group_says_what_to_call(tmp_path: Path) -> None:
    proc = run_py(tmp_path, """
        import mlsnap
        try:
            mlsnap.Checkpointer("ck", sharded=True).save(1, {"w": 1})
        except mlsnap.MlsnapError as e:
            print(e)
        """, {"RANK": "0", "WORLD_SIZE": "2"})
    assert "WORLD_SIZE=2 but no torch.distributed process group" in proc.stdout, proc.stderr
    assert "init_process_group()" in proc.stdout and not (tmp_path / "ck" / "index.yaml").exists()


def test_sharded_save_fn_that_writes_nothing_is_refused_and_leaves_nothing(
        tmp_path: Path) -> None:
    proc = run_py(tmp_path, """
        import mlsnap
        try:
            mlsnap.Checkpointer("ck", sharded=True).save(1, lambda path: None)
        except mlsnap.MlsnapError as e:
            print(e)
        """)
    assert "checkpoint not saved: save_fn wrote nothing in the folder it was given" in proc.stdout
    assert list((tmp_path / "ck").iterdir()) == []


RNG_RUN = """
import random, sys, numpy as np, mlsnap
ckpt = mlsnap.Checkpointer("ck", rng=True, keep_last=1)
if sys.argv[1] == "save":
    random.seed(7); np.random.seed(7)
    random.random(); np.random.rand(3)
    ckpt.save(1, lambda p: p.write_bytes(b"w"))
else:
    random.seed(0); np.random.seed(0)
    assert ckpt.resume() is not None
print(repr(random.random()), repr(float(np.random.rand())), "torch" in sys.modules)
"""


def test_rng_states_come_back_with_resume_without_torch(tmp_path: Path) -> None:
    (tmp_path / "rng.py").write_text(RNG_RUN)
    saved = run_py(tmp_path, "import runpy, sys; sys.argv = ['rng.py', 'save']; "
                   "runpy.run_path('rng.py', run_name='__main__')")
    resumed = run_py(tmp_path, "import runpy, sys; sys.argv = ['rng.py', 'resume']; "
                     "runpy.run_path('rng.py', run_name='__main__')")
    assert saved.returncode == 0 and resumed.returncode == 0, saved.stderr + resumed.stderr
    assert saved.stdout == resumed.stdout and saved.stdout.split()[-1] == "False"


def test_a_damaged_rng_file_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "rng.py").write_text(RNG_RUN)
    run_py(tmp_path, "import runpy, sys; sys.argv = ['rng.py', 'save']; "
           "runpy.run_path('rng.py', run_name='__main__')")
    sidecar = next((tmp_path / "ck").glob("*.rng.json"))
    sidecar.write_text('{"mlsnap-rng": 1, "world_size": 1, "ranks": [{"python": [3, [1], null]}]}')
    proc = run_py(tmp_path, """
        import mlsnap
        try:
            mlsnap.Checkpointer("ck", rng=True).resume()
        except mlsnap.MlsnapError as e:
            print(e)
        """)
    assert proc.returncode == 0, proc.stderr
    assert ".rng.json: invalid checkpoint index: RNG state of rank 0 is not valid" in proc.stdout


# --- slow: SIGKILL of one rank or of the whole job at seeded random moments ---------------------

KILLS = int(os.environ.get("MLSNAP_DISTRIBUTED_KILLS", "20"))
SEED = int(os.environ.get("MLSNAP_INTERRUPT_SEED", "20240611"))


def start_job(out: Path, extra: tuple[str, ...]) -> tuple[subprocess.Popen[str], dict[int, int]]:
    """The job started, once both ranks said their pid (they are about to resume and train)."""
    job = subprocess.Popen(torchrun_cmd(out, "--report", *extra), stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, env={**os.environ, **ENV},
                           start_new_session=True)
    assert job.stdout is not None
    pids: dict[int, int] = {}
    for line in job.stdout:  # bounded: the job ends, and the stream with it
        for doc in map(json.loads, re.findall(r"\{[^{}\n]*\}", line)):
            if "pid" in doc:
                pids[doc["rank"]] = doc["pid"]
        if len(pids) == 2:
            break
    return job, pids


def kill_at_random(out: Path, extra: tuple[str, ...], rng: random.Random, span: float) -> str:
    """SIGKILL one rank, or the whole job (agent and both workers), at a moment in ``span``."""
    job, pids = start_job(out, extra)
    time.sleep(rng.uniform(0, span))
    target = rng.choice(["rank 0", "rank 1", "job"])
    victims = [job.pid, *pids.values()] if target == "job" else [pids[int(target[-1])]]
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    stdout = finish(job)
    if "done at step" in stdout:
        target += ", too late: the job had ended"
    return target


@pytest.mark.slow
def test_sigkill_at_random_moments_never_breaks_the_index_and_resumes_bit_identical(
        tmp_path: Path) -> None:
    rng = random.Random(SEED)
    reference, spans = {}, {}
    for mode in ("", "--sharded"):
        extra = (mode,) if mode else ()
        job, _pids = start_job(tmp_path / f"ref{mode}", extra)
        started = time.monotonic()
        assert job.stdout is not None
        for line in job.stdout:  # the training: from the pids to the last step's line
            if "done at step" in line:
                spans[mode] = time.monotonic() - started
                reference[mode] = weights(line)
                break
        finish(job)
        assert job.returncode == 0 and mode in spans
    outcomes = []
    for i in range(KILLS):
        mode = "--sharded" if i % 2 else ""
        extra = (mode,) if mode else ()
        out = tmp_path / f"run{i}"
        target = kill_at_random(out, extra, rng, spans[mode])
        folder = out / "checkpoints"
        kept = ([e["step"] for e in index(folder, settled=False)]
                if (folder / "index.yaml").exists() else [])
        if folder.exists():
            assert_index_names_complete_checkpoints(folder, sharded=bool(mode))
        done = torchrun(out, *extra)
        assert weights(done.stdout) == reference[mode], (i, target, done.stdout)
        outcomes.append(f"{i} {mode or 'ddp'}: killed {target}; index then held steps {kept}")
        with open(tmp_path / "outcomes.txt", "a") as log:  # where each kill landed, as it goes
            log.write(outcomes[-1] + "\n")
    late = sum("too late" in o for o in outcomes)
    assert len(outcomes) == KILLS and late <= KILLS // 2, outcomes


# --- slow: Lightning's own DDP launcher, the adapter on both ranks ------------------------------

LIGHTNING = Path(__file__).resolve().parent / "lightning_ddp.py"


def lightning_run(out: Path, max_steps: int, strategy: str) -> list[dict[str, Any]]:
    proc = subprocess.run([sys.executable, str(LIGHTNING), str(out), str(max_steps), strategy],
                          capture_output=True, text=True, env={**os.environ, **ENV}, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    found = [json.loads(m) for m in re.findall(r"\{[^{}\n]*\}", proc.stdout)]
    return sorted((d for d in found if "global_step" in d), key=lambda d: d["rank"])


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_lightning_saves_once_per_due_step_and_resumes_on_both_ranks(tmp_path: Path,
                                                                     strategy: str) -> None:
    """``ddp``: Lightning's DDPStrategy, rank 0 writes a file. ``fsdp``: FSDP2 through Lightning's
    ModelParallelStrategy (its FSDPStrategy refuses a CPU), every rank writes its DCP part."""
    if os.environ.get("MLSNAP_REQUIRE_TORCH") != "1":
        pytest.importorskip("lightning")
    out = tmp_path / "ck"
    first = lightning_run(out, 6, strategy)
    assert [d["rank"] for d in first] == [0, 1]
    assert first[0]["last"] == first[1]["last"] == first[0]["latest"] == first[1]["latest"]
    assert [e["step"] for e in index(out)] == [4, 6]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["index.yaml", *(e["name"] for e in index(out))])
    again = lightning_run(out, 10, strategy)
    assert {d["resumed"] for d in again} == {first[0]["latest"]}
    assert {d["global_step"] for d in again} == {10}
    assert again[0]["latest"] == again[1]["latest"] == index(out)[-1]["name"]
    assert [e["step"] for e in index(out)] == [8, 10]
    last = out / index(out)[-1]["name"]
    assert tree_hash(last)[0] == index(out)[-1]["md5"]
    if strategy == "ddp":
        saved = torch.load(last, weights_only=False)
        assert saved["global_step"] == 10 and saved["optimizer_states"]
        return
    from torch.distributed.checkpoint import FileSystemReader

    assert sorted(p.name for p in last.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    meta = FileSystemReader(str(last)).read_metadata()
    weight = meta.state_dict_metadata["state_dict.net.0.weight"]
    assert list(weight.size) == [8, 4] and len(weight.chunks) == 2  # one half on each rank
    assert torch.load(last / "meta.pt", weights_only=False)["global_step"] == 10

"""History: log, show, diff, tag and get over a real repository with several snapshots.

One repository is built per module (real Git, real DVC, a folder remote), with pinned commit
dates so the order is known:

    main:  h0 code + init
           h1 s1   model      lr 0.1            tagged model@v1.0.0 (pushed)
           h2 code change
           h3 s2   model      lr 0.05, dropout, data changed, other packages and Python
           h4 broken          .mlsnap/model.yaml edited by hand into invalid YAML
           h5 s3   tokenizer  a folder artifact
           h6 s4   model      lr 0.02 (no dropout)              tagged model@v1.1.0
    exp (from s2):
           h7 s5   model      lr 0.5

Tests that change the repository work on a copy.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlsnap import api, blobs, compare, environment, history, retrieve, snapshot
from mlsnap.errors import BadInput, ManifestInvalid
from mlsnap.manifest import loads
from mlsnap.safeyaml import safe_load
from tests.helpers import git, make_project, mlsnap, sha256

BASE = 1_767_225_600  # 2026-01-01T00:00:00Z
ENV = {
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com", "GIT_COMMITTER_NAME": "Test Committer",
    "GIT_COMMITTER_EMAIL": "committer@example.com", "DVC_NO_ANALYTICS": "1",
    "DVC_NO_UPDATER": "1", "CI": "true",
}
BROKEN = b"mlsnap: 1\nname: model\nparams: [never closed\n"


@dataclasses.dataclass
class Repo:
    root: Path
    sha: dict[str, str]
    model_bytes: dict[str, bytes]


def _hour(mp: pytest.MonkeyPatch, h: int) -> None:
    stamp = f"{BASE + h * 3600} +0000"
    mp.setenv("GIT_AUTHOR_DATE", stamp)
    mp.setenv("GIT_COMMITTER_DATE", stamp)


def _snap(root: Path, label: str, model: bytes, params: dict[str, Any], metrics: dict[str, Any],
          *, name: str = "model", paths: tuple[str, ...] = ("model.pkl",),
          data: tuple[str, ...] = ("data",), tag: str | None = None, push: bool = False,
          env: environment.Environment | None = None) -> str:
    (root / "model.pkl").write_bytes(model)
    result = snapshot.commit(list(paths), data=list(data), name=name, message=label,
                             param_files=[], metric_files=[], extra_params=params,
                             extra_metrics=metrics, tag=tag, push=push, cwd=root,
                             env=env or environment.this_process())
    return result.commit


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repo]:
    base = tmp_path_factory.mktemp("history")
    with pytest.MonkeyPatch.context() as mp:
        home = base / "home"
        home.mkdir()
        mp.setenv("HOME", str(home))
        mp.setenv("XDG_DATA_HOME", str(home / "share"))
        for key, value in ENV.items():
            mp.setenv(key, value)
        mp.delenv("VIRTUAL_ENV", raising=False)
        _hour(mp, 0)
        root = make_project(base / "proj", base / "remote")
        mp.chdir(root)  # DVC resolves the paths of an in-process `add` against the cwd
        sha: dict[str, str] = {}
        models = {k: f"weights of {k}\n".encode() * 200 for k in ("s1", "s2", "s4", "s5")}

        _hour(mp, 1)
        sha["s1"] = _snap(root, "first", models["s1"], {"lr": 0.1, "optimizer": {"name": "adam"}},
                          {"accuracy": 0.8, "loss": 0.5}, tag="1.0.0", push=True)
        _hour(mp, 2)
        (root / "train.py").write_text((root / "train.py").read_text() + "# tuned\n")
        git(root, "commit", "-q", "-am", "tune the training loop")
        sha["code"] = git(root, "rev-parse", "HEAD")

        _hour(mp, 3)
        with open(root / "data" / "train.csv", "a") as f:
            f.write("501\n")
        here = environment.this_process()
        packages = {k: v for k, v in here.packages.items() if k != "pyyaml"}
        packages.update({"numpy": "0.0.1", "extra-package": "1.0"})
        other_env = dataclasses.replace(here, python="3.99.0", packages=packages)
        sha["s2"] = _snap(root, "second", models["s2"],
                          {"lr": 0.05, "dropout": 0.2, "optimizer": {"name": "adam"}},
                          {"accuracy": 0.9, "loss": 0.4}, env=other_env)

        _hour(mp, 4)
        (root / ".mlsnap" / "model.yaml").write_bytes(BROKEN)
        git(root, "commit", "-q", "-m", "edit the manifest by hand", "--", ".mlsnap/model.yaml")
        sha["broken"] = git(root, "rev-parse", "HEAD")

        _hour(mp, 5)
        (root / "tok").mkdir()
        (root / "tok" / "vocab.txt").write_text("a\nb\nc\n")
        (root / "tok" / "merges.txt").write_text("a b\n")
        result = snapshot.commit(["tok"], name="tokenizer", message="tokenizer", param_files=[],
                                 metric_files=[], push=False, cwd=root,
                                 env=environment.this_process())
        sha["s3"] = result.commit

        _hour(mp, 6)
        sha["s4"] = _snap(root, "fourth", models["s4"], {"lr": 0.02, "optimizer": {"name": "adam"}},
                          {"accuracy": 0.95, "loss": 0.3})
        history.tag("model", "1.1.0", "HEAD", cwd=root)

        _hour(mp, 7)
        git(root, "switch", "-q", "-c", "exp", sha["s2"])
        sha["s5"] = _snap(root, "on a branch", models["s5"],
                          {"lr": 0.5, "dropout": 0.2, "optimizer": {"name": "adam"}},
                          {"accuracy": 0.7, "loss": 0.9})
        git(root, "switch", "-q", "main")
        (root / "model.pkl").write_bytes(models["s4"])
        yield Repo(root, sha, models)


@pytest.fixture
def copy(repo: Repo, tmp_path: Path) -> Repo:
    """A private copy of the module repository, for tests that change it."""
    root = tmp_path / "copy"
    shutil.copytree(repo.root, root, symlinks=True)
    return Repo(root, repo.sha, repo.model_bytes)


def _json(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(proc.stdout)


# --------------------------------------------------------------------------- log


def test_log_lists_snapshots_reachable_from_head_newest_first(repo: Repo) -> None:
    entries = _json(mlsnap(repo.root, "log", "--json"))
    got = [(e["short"], e["name"]) for e in entries]
    s = repo.sha
    assert got == [(s["s4"][:7], "model"), (s["s3"][:7], "tokenizer"),
                   (s["broken"][:7], "model"), (s["s2"][:7], "model"), (s["s1"][:7], "model")]
    assert [e["date"] for e in entries] == [
        "2026-01-01T06:00:00Z", "2026-01-01T05:00:00Z", "2026-01-01T04:00:00Z",
        "2026-01-01T03:00:00Z", "2026-01-01T01:00:00Z"]


def test_log_all_includes_other_branches(repo: Repo) -> None:
    entries = _json(mlsnap(repo.root, "log", "--all", "--json"))
    assert [e["commit"] for e in entries][:2] == [repo.sha["s5"], repo.sha["s4"]]
    assert len(entries) == 6
    assert repo.sha["s5"] not in {e["commit"] for e in _json(mlsnap(repo.root, "log", "--json"))}


def test_log_filters_by_name_and_limits(repo: Repo) -> None:
    only = _json(mlsnap(repo.root, "log", "--name", "tokenizer", "--json"))
    assert [(e["commit"], e["name"]) for e in only] == [(repo.sha["s3"], "tokenizer")]
    two = _json(mlsnap(repo.root, "log", "-n", "2", "--json"))
    assert [e["commit"] for e in two] == [repo.sha["s4"], repo.sha["s3"]]
    assert _json(mlsnap(repo.root, "log", "--name", "nothing", "--json")) == []


def test_log_json_schema_and_tags(repo: Repo) -> None:
    entries = _json(mlsnap(repo.root, "log", "--json"))
    keys = {"commit", "short", "date", "name", "tags", "message", "error", "created",
            "code_commit", "params", "metrics", "artifacts", "data_hash", "collected",
            "signature"}
    assert all(set(e) == keys for e in entries)
    by_commit = {e["commit"]: e for e in entries}
    s1, s4 = by_commit[repo.sha["s1"]], by_commit[repo.sha["s4"]]
    assert s1["tags"] == ["model@v1.0.0"] and s4["tags"] == ["model@v1.1.0"]
    assert s1["params"] == {"lr": 0.1, "optimizer": {"name": "adam"}}
    assert s1["metrics"] == {"accuracy": 0.8, "loss": 0.5}
    assert s1["message"] == "first" and s1["error"] is None
    assert s1["artifacts"][0]["path"] == "model.pkl"
    assert s1["artifacts"][0]["size"] == len(repo.model_bytes["s1"])
    assert by_commit[repo.sha["s3"]]["tags"] == []  # model@ tags are not the tokenizer's


def test_log_reports_a_malformed_old_manifest_in_one_line_and_goes_on(repo: Repo) -> None:
    entries = _json(mlsnap(repo.root, "log", "--json"))
    broken = next(e for e in entries if e["commit"] == repo.sha["broken"])
    assert "invalid manifest" in broken["error"] and "not valid YAML" in broken["error"]
    assert broken["params"] == {} and broken["artifacts"] == []
    table = mlsnap(repo.root, "log", env={"COLUMNS": "200"}).stdout.splitlines()
    error_lines = [line for line in table if "error:" in line]
    assert len(error_lines) == 1 and error_lines[0].startswith(repo.sha["broken"][:7])
    assert table[-1].startswith(repo.sha["s1"][:7])  # older snapshots still listed


def _shallow(repo: Repo, tmp_path: Path, depth: int) -> Path:
    clone = tmp_path / f"depth{depth}"
    git(tmp_path, "clone", "-q", "--depth", str(depth), f"file://{repo.root}", str(clone))
    return clone


def test_shallow_clone_log_never_attributes_older_snapshots_to_its_oldest_commit(
        repo: Repo, tmp_path: Path) -> None:
    # depth 1: the one commit holds the manifests of model (made there, s4) and of tokenizer
    # (made at s3, which this clone lacks): Git shows both as added at s4.
    one = _shallow(repo, tmp_path, 1)
    proc = mlsnap(one, "log", "--json")
    assert [(e["commit"], e["name"]) for e in _json(proc)] == [(repo.sha["s4"], "model")]
    assert "shallow" in proc.stderr and "tokenizer" in proc.stderr
    assert "git fetch --unshallow" in proc.stderr
    table = mlsnap(one, "log").stdout
    assert "tokenizer" not in table and repo.sha["s4"][:7] in table
    # depth 2: tokenizer's own commit is the oldest one now, and it is listed there.
    two = _shallow(repo, tmp_path, 2)
    proc = mlsnap(two, "log", "--json")
    assert [(e["commit"], e["name"]) for e in _json(proc)] == [
        (repo.sha["s4"], "model"), (repo.sha["s3"], "tokenizer")]
    assert "model in its oldest commit" in proc.stderr  # the hand-edited one of h4


def test_shallow_clone_diff_names_the_cut_history_not_a_missing_snapshot(
        repo: Repo, tmp_path: Path) -> None:
    one = _shallow(repo, tmp_path, 1)
    proc = mlsnap(one, "diff", "--name", "model", check=1)
    assert "shallow clone" in proc.stderr and "git fetch --unshallow" in proc.stderr
    assert "take one with" not in proc.stderr and proc.stderr.count("\n") == 1
    # An explicit older revision outside the clone says the same kind of thing.
    proc = mlsnap(one, "diff", repo.sha["s2"], "--name", "model", check=1)
    assert "shallow" in proc.stderr


def test_log_table_fits_the_terminal_and_shows_varying_params(repo: Repo) -> None:
    wide = mlsnap(repo.root, "log", env={"COLUMNS": "200"}).stdout.splitlines()
    header = wide[0].split()
    assert header[:5] == ["COMMIT", "DATE", "NAME", "TAGS", "MESSAGE"]
    assert "lr" in header and "dropout" in header and "accuracy" in header
    assert "optimizer.name" not in header  # the same in every snapshot: not shown
    narrow = mlsnap(repo.root, "log", env={"COLUMNS": "50"}).stdout.splitlines()
    assert all(len(line) <= 50 for line in narrow if "error:" not in line)
    assert narrow[0].startswith("COMMIT") and narrow[1].startswith(repo.sha["s4"][:7])


def test_log_runs_one_git_log_and_one_cat_file_whatever_the_history(repo: Repo,
                                                                     tmp_path: Path) -> None:
    cache = repo.root / ".git" / "mlsnap" / "history.json"
    cache.unlink(missing_ok=True)
    trace = tmp_path / "trace"

    def git_commands() -> list[str]:
        lines = trace.read_text().splitlines() if trace.exists() else []
        trace.unlink(missing_ok=True)
        return [line.split("trace: built-in: git ")[1].split()[0]
                for line in lines if "trace: built-in: git " in line]

    mlsnap(repo.root, "log", "--all", "--json", env={"GIT_TRACE": str(trace)})
    cold = git_commands()
    # The walk, and (--json) one batched `git log --no-walk --stdin` for the signatures.
    assert cold.count("log") == 2 and cold.count("cat-file") == 1, cold
    assert len(cold) <= 5, cold  # plus rev-parse (the root) and for-each-ref (tags)
    mlsnap(repo.root, "log", "--all", "--json", env={"GIT_TRACE": str(trace)})
    warm = git_commands()
    assert warm.count("log") == 2 and "cat-file" not in warm, warm  # parsed blobs are cached
    assert cache.is_file()


def test_history_commands_do_not_import_dvc(repo: Repo) -> None:
    code = ("import sys\nfrom mlsnap.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
            "sys.stderr.write(f'exit={code} dvc=' + str(any(m == 'dvc' or m.startswith('dvc.')"
            " for m in sys.modules)))\n")
    for args in (["log", "--all"], ["show", "model@v1.0.0"], ["diff", "model@v1.0.0", "exp"],
                 ["diff", repo.sha["s2"], "--name", "model", "--json"]):
        proc = subprocess.run([sys.executable, "-c", code, *args], cwd=repo.root,
                              capture_output=True, text=True, check=False)
        assert proc.stderr.endswith("exit=0 dvc=False"), (args, proc.stderr)


def test_fast_reader_keeps_libyaml_for_stars_and_bangs_in_text(repo: Repo) -> None:
    text = (repo.root / ".mlsnap" / "model.yaml").read_bytes()
    marked = text.replace(b"message: fourth", b"message: 'lr*2 <<works>>!'")
    assert marked != text
    # decided by libyaml with the alias guards on, not handed to the slow strict loader
    assert blobs._load(marked) == safe_load(marked, "m")
    assert blobs.parse(marked, "m").message == "lr*2 <<works>>!"


def test_log_calls_share_no_parsed_objects(repo: Repo) -> None:
    cache = repo.root / ".git" / "mlsnap" / "history.json"
    cache.unlink(missing_ok=True)  # parse every manifest, in both calls
    first = api.log(name="model", repo=repo.root)
    cache.unlink(missing_ok=True)
    second = api.log(name="model", repo=repo.root)
    a, b = first[0].manifest, second[0].manifest
    assert a is not None and b is not None and a.params == b.params
    assert a.params is not b.params  # editing one call's result cannot reach the other's


def test_python_api_log_returns_frozen_entries(repo: Repo) -> None:
    entries = api.log(name="model", limit=3, repo=repo.root)
    assert [e.commit for e in entries] == [repo.sha["s4"], repo.sha["broken"], repo.sha["s2"]]
    assert entries[0].manifest is not None and entries[0].params["lr"] == 0.02
    assert entries[1].manifest is None and entries[1].error
    with pytest.raises(dataclasses.FrozenInstanceError):
        entries[0].name = "other"  # type: ignore[misc]


# --------------------------------------------------------------------------- show


def test_show_reads_any_revision_and_version_tag_without_checkout(repo: Repo) -> None:
    before = git(repo.root, "rev-parse", "HEAD")
    shown = _json(mlsnap(repo.root, "show", "model@v1.0.0", "--json"))
    assert shown["params"]["lr"] == 0.1 and shown["name"] == "model"
    assert _json(mlsnap(repo.root, "show", "exp", "--json"))["params"]["lr"] == 0.5
    reqs = mlsnap(repo.root, "show", repo.sha["s2"], "--requirements").stdout
    assert "numpy==0.0.1" in reqs and "extra-package==1.0" in reqs
    assert git(repo.root, "rev-parse", "HEAD") == before


def test_show_of_the_malformed_revision_fails_with_the_manifest_error(repo: Repo) -> None:
    proc = mlsnap(repo.root, "show", repo.sha["broken"], "--name", "model", check=1)
    assert proc.stderr.startswith("Error: ") and "invalid manifest" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_show_refuses_revisions_that_look_like_options(repo: Repo) -> None:
    proc = mlsnap(repo.root, "show", "--name", "model", "--", "--output=/tmp/x", check=1)
    assert "not a revision" in proc.stderr
    assert "is not a commit" in mlsnap(repo.root, "show", "no-such-rev", check=1).stderr


def test_show_needs_a_name_where_several_snapshots_live(repo: Repo) -> None:
    assert "--name" in mlsnap(repo.root, "show", "HEAD", check=1).stderr
    assert _json(mlsnap(repo.root, "show", "HEAD", "--name", "tokenizer", "--json"))[
        "artifacts"][0]["path"] == "tok"


# --------------------------------------------------------------------------- diff


def test_diff_reports_every_section(repo: Repo) -> None:
    d = _json(mlsnap(repo.root, "diff", "model@v1.0.0", repo.sha["s2"], "--json"))
    assert d["name"] == "model" and d["same"] is False
    assert d["a"]["commit"] == repo.sha["s1"] and d["a"]["tags"] == ["model@v1.0.0"]
    assert d["params"]["added"] == {"dropout": 0.2}
    assert d["params"]["changed"] == [{"key": "lr", "old": 0.1, "new": 0.05}]
    acc = next(m for m in d["metrics"] if m["key"] == "accuracy")
    assert acc["old"] == 0.8 and acc["new"] == 0.9
    assert acc["delta"] == pytest.approx(0.1) and acc["relative"] == pytest.approx(0.125)
    outputs = {o["path"]: o for o in d["outputs"]}
    assert outputs["model.pkl"]["status"] == "changed" and outputs["model.pkl"]["kind"] == "artifact"
    assert outputs["model.pkl"]["new"]["size"] == len(repo.model_bytes["s2"])
    assert outputs["data"]["kind"] == "data" and outputs["data"]["status"] == "changed"
    assert d["data_hash"]["old"] != d["data_hash"]["new"]
    packages = {p["key"]: (p["old"], p["new"]) for p in d["packages"]}
    assert packages["extra-package"] == (None, "1.0")
    assert packages["pyyaml"][1] is None and packages["numpy"][1] == "0.0.1"
    assert {"key": "python", "old": environment.this_process().python,
            "new": "3.99.0"} in d["platform"]
    assert d["code"]["count"] == 2
    assert any("tune the training loop" in line for line in d["code"]["commits"])


def test_diff_text_shows_removed_params_and_relative_deltas(repo: Repo) -> None:
    out = mlsnap(repo.root, "diff", repo.sha["s2"], "model@v1.1.0").stdout
    assert "- dropout: 0.2" in out and "~ lr: 0.05 -> 0.02" in out
    assert "accuracy: 0.9 -> 0.95 (+0.05, +5.56%)" in out
    assert "+ pyyaml" in out and "~ python 3.99.0 ->" in out
    assert "3 commit(s)" in out and "edit the manifest by hand" in out  # s2..s3, s4 took s3


def test_diff_of_identical_snapshots_says_so_and_exits_zero(repo: Repo) -> None:
    proc = mlsnap(repo.root, "diff", "model@v1.1.0", "HEAD", "--name", "model")
    assert proc.stdout.strip().endswith("no differences")
    assert _json(mlsnap(repo.root, "diff", "model@v1.1.0", "main", "--json"))["same"] is True


def test_diff_default_compares_head_with_the_previous_snapshot(copy: Repo) -> None:
    git(copy.root, "switch", "-q", "exp")
    d = _json(mlsnap(copy.root, "diff", "--json"))
    assert d["a"]["commit"] == copy.sha["s2"] and d["b"]["commit"] == copy.sha["s5"]
    assert d["params"]["changed"] == [{"key": "lr", "old": 0.05, "new": 0.5}]


def test_diff_of_a_folder_names_the_files_added_removed_and_changed_inside(copy: Repo) -> None:
    root = copy.root
    (root / "tok" / "vocab.txt").write_text("a\nb\nc\nd\n")  # changed
    (root / "tok" / "merges.txt").unlink()  # removed
    (root / "tok" / "config.json").write_text("{}\n")  # added
    mlsnap(root, "commit", "tok", "--name", "tokenizer", "--no-push")
    text = mlsnap(root, "diff", "--name", "tokenizer").stdout.splitlines()
    at = text.index(next(line for line in text if line.startswith("  ~ tok [artifact]")))
    assert text[at + 1:at + 4] == ["      + config.json", "      - merges.txt",
                                   "      ~ vocab.txt"]
    files = _json(mlsnap(root, "diff", "--name", "tokenizer", "--json"))["outputs"][0]["files"]
    assert files == {"added": ["config.json"], "removed": ["merges.txt"],
                     "changed": ["vocab.txt"], "count": 3, "shown": 3, "error": None}
    # An input folder too: data/train.csv grew between s1 and s2.
    text = mlsnap(root, "diff", copy.sha["s1"], copy.sha["s2"]).stdout
    assert "  ~ data [data]:" in text and "      ~ train.csv" in text


def test_diff_of_a_folder_caps_the_file_list_with_a_count(copy: Repo) -> None:
    root = copy.root
    for i in range(15):
        (root / "tok" / f"shard-{i:02d}.bin").write_bytes(bytes([i]) * 10)
    mlsnap(root, "commit", "tok", "--name", "tokenizer", "--no-push")
    text = mlsnap(root, "diff", "--name", "tokenizer").stdout.splitlines()
    listed = [line for line in text if line.startswith("      + ")]
    assert len(listed) == 10
    assert "      ... and 5 more file(s) (15 added, 0 removed, 0 changed; --json lists up to " \
           "100)" in text


def test_diff_of_a_folder_in_a_fresh_clone_says_where_the_file_list_is(copy: Repo,
                                                                      tmp_path: Path) -> None:
    (copy.root / "tok" / "vocab.txt").write_text("z\n")
    mlsnap(copy.root, "commit", "tok", "--name", "tokenizer", "--no-push")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(copy.root), str(clone))
    out = mlsnap(clone, "diff", "--name", "tokenizer").stdout
    assert "~ tok [artifact]" in out and "is not in the local cache; `mlsnap pull`" in out


def test_diff_against_the_malformed_manifest_fails_with_the_manifest_error(repo: Repo) -> None:
    proc = mlsnap(repo.root, "diff", "--name", "model", check=1)  # s4's previous is the broken one
    assert "invalid manifest" in proc.stderr and "Traceback" not in proc.stderr
    assert "invalid manifest" in mlsnap(repo.root, "diff", repo.sha["broken"], "HEAD",
                                        "--name", "model", check=1).stderr


def test_compare_deltas_handle_missing_and_non_numeric_metrics() -> None:
    deltas = {m.key: m for m in compare.metric_deltas(
        {"a": 0, "b": "x", "c": {"d": 2.0}, "gone": 1}, {"a": 1, "b": "y", "c": {"d": 3.0}})}
    assert deltas["a"].delta == 1 and deltas["a"].relative is None  # no relative change from 0
    assert deltas["b"].delta is None and deltas["b"].changed
    assert deltas["c.d"].relative == pytest.approx(0.5)
    assert deltas["gone"].new is None and deltas["gone"].delta is None


# --------------------------------------------------------------------------- tag


def test_tag_creates_an_annotated_semver_tag_on_a_snapshot(copy: Repo) -> None:
    out = mlsnap(copy.root, "tag", "model", "2.0.0-rc.1", copy.sha["s2"]).stdout
    assert out.strip() == f"tagged model@v2.0.0-rc.1 on {copy.sha['s2'][:7]}"
    assert git(copy.root, "cat-file", "-t", "model@v2.0.0-rc.1") == "tag"
    entry = next(e for e in _json(mlsnap(copy.root, "log", "--json"))
                 if e["commit"] == copy.sha["s2"])
    assert entry["tags"] == ["model@v2.0.0-rc.1"]
    assert _json(mlsnap(copy.root, "show", "model@v2.0.0-rc.1", "--json"))["params"]["lr"] == 0.05


@pytest.mark.parametrize("version", ["1.2", "01.2.3", "1.2.3.4", "latest", "1.2.3-"])
def test_tag_refuses_versions_that_are_not_semver(copy: Repo, version: str) -> None:
    proc = mlsnap(copy.root, "tag", "model", version, check=1)
    assert "not a SemVer version" in proc.stderr
    assert "model@v" + version not in git(copy.root, "tag", "--list")


def test_tag_refuses_duplicates_and_revisions_without_that_snapshot(copy: Repo) -> None:
    before = git(copy.root, "rev-parse", "model@v1.0.0")
    proc = mlsnap(copy.root, "tag", "model", "1.0.0", copy.sha["s4"], check=1)
    assert "model@v1.0.0: already exists" in proc.stderr
    assert git(copy.root, "rev-parse", "model@v1.0.0") == before
    assert "no snapshot found named 'tokenizer'" in mlsnap(
        copy.root, "tag", "tokenizer", "1.0.0", copy.sha["s2"], check=1).stderr
    with pytest.raises(ManifestInvalid):
        history.tag("model", "9.9.9", copy.sha["broken"], cwd=copy.root)
    with pytest.raises(BadInput):
        history.tag("model", "9.9.9", "--all", cwd=copy.root)


# --------------------------------------------------------------------------- get


def _state(root: Path) -> tuple[str, str, str, str]:
    return (git(root, "rev-parse", "HEAD"), git(root, "ls-files", "--stage"),
            git(root, "status", "--porcelain", "--untracked-files=all"),
            sha256(root / "model.pkl"))


def test_get_fetches_a_tagged_snapshot_from_the_remote_leaving_the_repo_alone(copy: Repo,
                                                                               tmp_path: Path) -> None:
    shutil.rmtree(copy.root / ".dvc" / "cache")  # the bytes must come from the remote
    before = _state(copy.root)
    out = tmp_path / "deploy"
    proc = mlsnap(copy.root, "get", "model@v1.0.0", "-o", str(out))
    assert (out / "model.pkl").read_bytes() == copy.model_bytes["s1"]
    assert "all verified" in proc.stdout and "downloaded" in proc.stdout
    assert _state(copy.root) == before
    assert not [p for p in out.iterdir() if p.name.startswith(".mlsnap-tmp")]


def test_get_copies_a_folder_artifact_from_the_cache(copy: Repo, tmp_path: Path) -> None:
    before = _state(copy.root)
    result = retrieve.get("HEAD", "tokenizer", tmp_path / "tok-out", cwd=copy.root)
    assert (tmp_path / "tok-out" / "tok" / "vocab.txt").read_text() == "a\nb\nc\n"
    assert sorted(p.name for p in result.files) == ["merges.txt", "vocab.txt"]
    assert result.fetched == 0 and _state(copy.root) == before


def test_get_refuses_a_corrupt_cache_object(copy: Repo, tmp_path: Path) -> None:
    md5 = loads((copy.root / ".mlsnap" / "model.yaml").read_bytes(), "m").artifacts[0].md5
    obj = copy.root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    os.chmod(obj, 0o644)
    obj.write_bytes(b"tampered")
    proc = mlsnap(copy.root, "get", "model@v1.1.0", "-o", str(tmp_path / "out"), check=3)
    assert "model.pkl" in proc.stderr and "hash" in proc.stderr
    assert not (tmp_path / "out" / "model.pkl").exists()


# --------------------------------------------------------------------------- fast reader


@pytest.mark.parametrize("text", [
    b"mlsnap: 1\nname: &n model\nother: *n\n",
    b"mlsnap: 1\nmlsnap: 1\n",
    b"mlsnap: 1\n<<: {name: model}\n",
    b"mlsnap: [1\n",
    BROKEN,
])
def test_fast_reader_judges_exactly_like_the_strict_one(text: bytes) -> None:
    with pytest.raises(ManifestInvalid) as strict:
        loads(text, "src")
    with pytest.raises(ManifestInvalid) as fast:
        blobs.parse(text, "src")
    assert str(fast.value) == str(strict.value)


def test_fast_reader_reads_a_real_manifest_like_the_strict_one(repo: Repo) -> None:
    text = (repo.root / ".mlsnap" / "model.yaml").read_bytes()
    assert blobs.parse(text, "m") == loads(text, "m")


@pytest.mark.parametrize("text", [
    # a cut at column 0 inside a quoted scalar or a flow collection must not change the meaning
    b"mlsnap: 1\nname: 'two\nlines: x'\n",
    b"mlsnap: 1\nparams: {a: 1,\nb: 2}\n",
    b"mlsnap: 1\nname: model\n...\nname: other\n",
    b"mlsnap: 1\nname: &a model\nmessage: *a\n",
    b"mlsnap: 1\nyes: 1\ntrue: 2\n",
    b"# comment\nmlsnap: 1\nmessage: a\n  b\n",
    b"mlsnap: 1\nmessage: |\n  line one\n  line two\nparams: {}\n",
    b"mlsnap: 1\n# between\nname:   spaced  \nparams:\nmetrics: {}",
    b"mlsnap: 1\n\"name\": quoted\nmessage: m\n",
    b"a: &x 1\nb: *x\n",
    b"env:\n" + b"".join(b"  pkg%d: '1.%d'\n" % (i, i) for i in range(40)) + b"env: again\n",
])
def test_fast_reader_sections_agree_with_the_whole_document(text: bytes) -> None:
    try:
        fast_doc = blobs._load(text)
    except (blobs._Fallback, yaml.YAMLError):  # the fast path gave up: the strict one decides
        fast_doc = None
    if fast_doc is not None:
        assert fast_doc == safe_load(text, "src")
    try:
        expected: Any = loads(text, "src")
    except ManifestInvalid as exc:
        expected = str(exc)
    try:
        got: Any = blobs.parse(text, "src")
    except ManifestInvalid as exc:
        got = str(exc)
    assert got == expected


def test_fast_reader_reads_shared_sections_once(repo: Repo) -> None:
    text = (repo.root / ".mlsnap" / "model.yaml").read_bytes()
    assert blobs._load(text) == safe_load(text, "m")  # the fast path itself, not a fallback
    seen: blobs.Seen = {}  # one batch, as `log` parses a history
    first = blobs.parse(text, "a", seen=seen)
    second = blobs.parse(text.replace(b"message: fourth", b"message: again"), "b", seen=seen)
    assert second.message == "again" and second.environment == first.environment
    assert second.environment.packages is first.environment.packages  # parsed once
    assert second.params is first.params  # small blocks too: only the new message was parsed
    # outside a batch (`show`, `diff`) nothing is shared with another call
    assert blobs.parse(text, "c").params is not blobs.parse(text, "d").params


def test_cache_round_trip_gives_the_same_manifest(repo: Repo, tmp_path: Path) -> None:
    text = (repo.root / ".mlsnap" / "model.yaml").read_bytes()
    manifest = blobs.parse(text, "m")
    cache = blobs.Cache(tmp_path / "history.json")
    cache.put("b1", manifest)
    cache.put("b2", "params: not valid")
    cache.save()
    again = blobs.Cache(tmp_path / "history.json")
    assert again.get("b1") == manifest and again.get("b2") == "params: not valid"
    assert again.get("unknown") is None
    (tmp_path / "history.json").write_text("{not json")
    assert blobs.Cache(tmp_path / "history.json").get("b1") is None  # a broken cache is ignored


def test_get_reports_objects_missing_from_the_remote(copy: Repo, tmp_path: Path) -> None:
    shutil.rmtree(copy.root / ".dvc" / "cache")  # s4 was never pushed
    proc = mlsnap(copy.root, "get", "model@v1.1.0", "-o", str(tmp_path / "out"), check=1)
    assert "not found in the cache or on remote" in proc.stderr and "model.pkl" in proc.stderr
    assert not (tmp_path / "out" / "model.pkl").exists()

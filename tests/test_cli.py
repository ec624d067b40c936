"""Every command and option explains itself; errors are one line with the documented codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click
import yaml
from click.testing import CliRunner

from mlsnap.cli import main
from tests.helpers import git, mlsnap


def walk(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Command]]:
    yield " ".join(path) or "mlsnap", command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from walk(sub, (*path, name))


def test_every_command_and_option_has_help_text() -> None:
    commands = dict(walk(main))
    assert {"init", "commit", "pull", "push", "status", "show", "log", "diff", "tag", "get",
            "env", "demo", "remote set", "hooks install"} <= set(commands)
    for name, command in commands.items():
        assert command.help or command.short_help, f"{name} has no help"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts[0]} has no help"
        result = CliRunner().invoke(main, [*name.split(), "--help"] if name != "mlsnap"
                                    else ["--help"])
        assert result.exit_code == 0 and "Usage:" in result.output


def test_usage_errors_exit_2_and_fixable_errors_exit_1(tmp_path: Path) -> None:
    assert mlsnap(tmp_path, "commit", "--no-such-option", check=2).returncode == 2
    proc = mlsnap(tmp_path, "status", check=1)
    assert proc.stderr.startswith("Error: ") and proc.stderr.count("\n") == 1


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    proc = mlsnap(tmp_path, "--debug", "status", check=None)
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    assert "Traceback" not in mlsnap(tmp_path, "status", check=1).stderr


# --------------------------------------------------------------------------- habits


def test_git_habit_dash_m_message_is_a_usage_error_pointing_at_dash_capital_m(
        project: Path) -> None:
    (project / "m.pkl").write_bytes(b"weights")
    proc = mlsnap(project, "commit", "m.pkl", "-m", "baseline", check=2)
    assert "'baseline' is not KEY=VALUE" in proc.stderr and "-M MESSAGE" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (project / "m.pkl.dvc").exists()
    assert "-p KEY=VALUE" in mlsnap(project, "commit", "m.pkl", "-p", "0.1", check=2).stderr


def test_dash_n_counts_in_log_and_the_old_dash_n_name_keeps_working(project: Path) -> None:
    (project / "m.pkl").write_bytes(b"weights")
    old = mlsnap(project, "commit", "m.pkl", "-n", "other", "--no-push")
    assert "snapshot other:" in old.stdout and "--name NAME" in old.stderr
    (project / "m.pkl").write_bytes(b"more weights")
    mlsnap(project, "commit", "m.pkl", "--name", "other", "--no-push")
    assert len(json.loads(mlsnap(project, "log", "-n", "1", "--json").stdout)) == 1
    for command in ("commit", "pull", "push", "status", "show", "diff", "get"):
        text = mlsnap(project, command, "--help").stdout
        assert "--name NAME" in text and "-n," not in text, command
    assert "-n, --max-count N" in mlsnap(project, "log", "--help").stdout
    assert "give the snapshot name once" in mlsnap(
        project, "status", "-n", "a", "--name", "b", check=2).stderr


def _record_a_package_this_environment_lacks(project: Path) -> None:
    """The snapshot at HEAD says it was trained with a package not installed here."""
    manifest = project / ".mlsnap" / "model.yaml"
    doc = yaml.safe_load(manifest.read_text())
    doc["environment"]["packages"]["only-on-the-training-box"] = "1.0"
    doc["environment"]["top_level"].append("only-on-the-training-box")
    manifest.write_text(yaml.safe_dump(doc, sort_keys=False))
    git(project, "commit", "-qm", "trained elsewhere", "--", ".mlsnap/model.yaml")


def test_status_strict_env_with_drift_ends_with_a_verdict_line(project: Path) -> None:
    (project / "m.pkl").write_bytes(b"weights")
    mlsnap(project, "commit", "m.pkl")
    _record_a_package_this_environment_lacks(project)
    lenient = mlsnap(project, "status", "--no-remote")
    assert "only-on-the-training-box" in lenient.stdout
    assert lenient.stdout.splitlines()[-1].startswith("clean: ")
    strict = mlsnap(project, "status", "--no-remote", "--strict-env", check=3)
    assert strict.stdout.splitlines()[-1] == (
        "not clean: the environment differs (--strict-env) (snapshot model)")
    (project / "m.pkl").write_bytes(b"edited")
    last = mlsnap(project, "status", "--no-remote", check=3).stdout.splitlines()[-1]
    assert last == "not clean: 1 modified (snapshot model)"


def test_commit_in_a_subfolder_reads_params_files_from_that_folder(project: Path) -> None:
    sub = project / "exp"
    sub.mkdir()
    (sub / "params.yaml").write_text("lr: 0.5\n")  # the root has its own params.yaml (lr 0.1)
    (sub / "m.pkl").write_bytes(b"weights")
    mlsnap(sub, "commit", "m.pkl", "--params", "params.yaml", "--no-push")
    doc = yaml.safe_load((project / ".mlsnap" / "model.yaml").read_text())
    assert doc["params"] == {"lr": 0.5}
    cfg = yaml.safe_load((project / ".mlsnap" / "config.yaml").read_text())
    assert cfg["sources"]["model"]["params"] == ["exp/params.yaml"]
    proc = mlsnap(sub, "commit", "m.pkl", "--params", "missing.yaml", check=1)
    assert "exp/missing.yaml: no such file" in proc.stderr


def test_status_on_an_unborn_branch_says_it_has_no_commits(project: Path) -> None:
    (project / "m.pkl").write_bytes(b"weights")
    mlsnap(project, "commit", "m.pkl", "--no-push")
    git(project, "checkout", "-q", "--orphan", "fresh")
    proc = mlsnap(project, "status", "--no-remote", check=1)
    assert "the branch 'fresh'" in proc.stderr and "no commits yet" in proc.stderr
    assert "did not finish" not in proc.stderr and proc.stderr.count("\n") == 1


def test_a_path_with_a_newline_keeps_the_error_on_one_line(project: Path) -> None:
    proc = mlsnap(project, "commit", "bad\nname.pkl", check=1)
    assert proc.stderr.startswith("Error: bad\\nname.pkl: ") and proc.stderr.count("\n") == 1
    proc = mlsnap(project, "commit", "esc\x1b[31m.pkl", check=1)
    assert "\x1b" not in proc.stderr and "esc\\x1b[31m.pkl" in proc.stderr


def test_commit_without_name_beside_other_snapshots_hints_and_never_steals_a_path(
        project: Path) -> None:
    (project / "a.bin").write_bytes(b"model a")
    (project / "b.bin").write_bytes(b"model b")
    mlsnap(project, "commit", "a.bin", "--name", "a", "--no-push")
    mlsnap(project, "commit", "b.bin", "--name", "b", "--no-push")
    (project / "b.bin").write_bytes(b"model b, retrained")
    head = git(project, "rev-parse", "HEAD")
    proc = mlsnap(project, "commit", "b.bin", "--no-push", check=1)
    assert "b.bin: is an artifact of snapshot 'b'" in proc.stderr and "--name b" in proc.stderr
    assert git(project, "rev-parse", "HEAD") == head
    (project / "c.bin").write_bytes(b"model c")
    out = mlsnap(project, "commit", "c.bin", "--no-push").stdout
    assert "recorded as 'model' (the default name)" in out and "also has a, b" in out
    assert "--name" in out


def test_get_pull_and_status_work_from_a_subfolder_of_a_fresh_clone(project: Path,
                                                                    tmp_path: Path) -> None:
    (project / "models").mkdir()
    (project / "models" / "m.bin").write_bytes(b"weights\n" * 50)
    mlsnap(project, "commit", "models/m.bin", "-M", "one")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    deep = clone / "notebooks" / "week1"
    deep.mkdir(parents=True)
    out = mlsnap(deep, "get", "HEAD", "-o", str(tmp_path / "out"))
    assert "all verified" in out.stdout
    assert (tmp_path / "out" / "models" / "m.bin").read_bytes() == b"weights\n" * 50
    mlsnap(deep, "pull")
    assert (clone / "models" / "m.bin").read_bytes() == b"weights\n" * 50
    assert "clean" in mlsnap(deep, "status").stdout


# --------------------------------------------------------------------------- help


def test_help_lists_commands_in_workflow_order() -> None:
    text = CliRunner().invoke(main, ["--help"]).output
    commands = text.split("Commands:\n")[1].split("\n\n")[0]
    listed = [line.split()[0] for line in commands.splitlines() if line.strip()]
    assert listed[:12] == ["init", "commit", "run", "repro", "push", "pull", "status", "log",
                           "show", "diff", "tag", "get"]
    assert set(listed) == set(main.commands)


def _parse(args: list[str]) -> None:
    """Parse ``mlsnap ARGS`` the way the command line would, without running anything."""
    ctx = main.make_context("mlsnap", list(args), resilient_parsing=False)
    command: click.Command = main
    rest = ctx.protected_args + ctx.args
    while isinstance(command, click.Group) and rest:
        name, *rest = rest
        sub = command.get_command(ctx, name)
        assert sub is not None, f"no command {name!r} in {args}"
        ctx = sub.make_context(name, rest, parent=ctx)
        command, rest = sub, ctx.protected_args + ctx.args


def test_every_command_help_ends_with_examples_that_parse() -> None:
    import shlex

    for name, command in walk(main):
        text = CliRunner().invoke(main, [*name.split()[0:], "--help"] if name != "mlsnap"
                                  else ["--help"]).output
        assert "Examples:\n" in text, f"{name} --help has no Examples: block"
        examples = text.split("Examples:\n")[1].splitlines()
        assert examples and all(line.startswith("    ") for line in examples if line), name
        for line in filter(None, examples):
            words = shlex.split(line.strip(), comments=True)
            words = words[words.index("mlsnap"):]  # after `git checkout ... &&`
            words = words[:words.index(">")] if ">" in words else words
            assert words[0] == "mlsnap" and (name == "mlsnap" or
                                             " ".join(words[1:]).startswith(name)), line
            _parse(words[1:])

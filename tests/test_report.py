"""`mlsnap report`: one offline HTML page, opened in a real headless Chromium with the network
blocked and read from outside (benchmarks/browser.py): what it draws, what it refuses to run.

The project is real (mlsnap init/commit/tag, a real Checkpointer, real DVC): benchmarks/
report_case.py builds it once for this module, and every test here only reads it. Needs the
`report` extra (vl-convert-python), Playwright and Chromium; CI installs all three and sets
MLSNAP_REQUIRE_REPORT=1, where their absence fails instead of skipping.
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

from benchmarks import browser
from benchmarks.report_case import CHECKPOINT_RUNS, MODEL_RUNS, build_project
from tests.attacker import base_env
from tests.helpers import git, make_project, mlsnap, train, tree_digest

HOSTILE_MESSAGE = "</script><script>window.__pwned = 1; alert('message')</script>"
HOSTILE_PARAM = "<img src=x onerror=\"window.__pwned = 2; alert('param')\">"
HOSTILE_METRIC = "</script><!--<b>metric</b>"
HOSTILE_TAG = "evil<svg/onload=window.__pwned=3>"


def require(*, page: bool = True) -> None:
    """Skip (a developer machine without them) or fail (CI) when a part is missing."""
    why = None
    try:
        import vl_convert  # noqa: F401
    except ImportError:
        why = "the report extra is not installed (pip install 'mlsnap[report]')"
    if why is None and page:
        why = browser.missing()
    if why is None:
        return
    if os.environ.get("MLSNAP_REQUIRE_REPORT") == "1":
        pytest.fail(f"{why} (MLSNAP_REQUIRE_REPORT=1: CI must install it)")
    pytest.skip(why)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The module's project, built once, and one cache folder for the charting bundle."""
    base = tmp_path_factory.mktemp("report")
    proj = build_project(base / "scene", base_env(base / "home"))
    return {"proj": proj, "cache": base / "cache"}


@pytest.fixture
def scene(shared: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(shared["cache"]))  # the bundle built once
    return shared["proj"]


def log_of(repo: Path) -> list[dict[str, Any]]:
    return json.loads(mlsnap(repo, "log", "--json").stdout)  # type: ignore[no-any-return]


def numeric_metrics(entries: list[dict[str, Any]]) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    for e in entries:
        for key, value in e["metrics"].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                found.setdefault(key, []).append(float(value))
    return found


def select(page: Any, element: str, label: str) -> None:
    browser.redraw(page, lambda: page.select_option(element, label=label))


def test_the_page_draws_every_snapshot_offline_and_its_controls_redraw(
        scene: Path, tmp_path: Path) -> None:
    require()
    before, status = tree_digest(scene), git(scene, "status", "--porcelain")
    out = tmp_path / "report.html"
    proc = mlsnap(scene, "report", "-o", str(out))
    entries = log_of(scene)
    assert proc.stdout.startswith(f"wrote {out}: {len(entries)} snapshot(s) of ckpt, model")
    assert tree_digest(scene) == before and git(scene, "status", "--porcelain") == status

    def click_first_point(page: Any) -> None:
        point = page.locator(".chart[data-metric] g.points_marks path").first
        point.hover(force=True)
        page.wait_for_selector("#vg-tooltip-element.visible", timeout=10_000)
        page.evaluate("window.__tip = document.querySelector('#vg-tooltip-element').textContent")
        point.click(force=True)

    steps = {
        "log": lambda page: browser.redraw(page, lambda: page.check("#log-scale")),
        "date": lambda page: select(page, "#x-axis", "date"),
        "scatter": lambda page: (select(page, "#scatter-param", "lr"),
                                 select(page, "#scatter-metric", "val_loss")),
        "click": click_first_point,
    }
    probe = {
        "hash": "location.hash",
        "tip": "window.__tip",
        "params_header": "Array.from(document.querySelectorAll('#params th'))"
                         ".map(t => t.textContent)",
        "best": "Array.from(document.querySelectorAll('#params td.best')).map(t => t.textContent)",
    }
    found = browser.open_page(out, steps=steps, probe=probe, screenshot=tmp_path / "page.png")
    loaded = found["loaded"]
    assert loaded.console_errors == [] and loaded.requests == [] and loaded.dialogs == []

    metrics = numeric_metrics(entries)
    steps_saved = sum(last + 1 for _, last, _ in CHECKPOINT_RUNS)  # keep_last=None: all kept
    for name, state in found.items():
        if name == "click":
            continue
        for key, values in metrics.items():
            assert state.chart(f"{key} (").points == len(values), (name, key)
        for key in ("val_loss", "val_accuracy"):
            assert state.chart(f"{key} against step").points == steps_saved, (name, key)
        sizes = next(c for c in state.charts if c.id == "chart-sizes")
        assert sizes.points == sum(len(e["artifacts"]) for e in entries)
        assert all(c.svg == 1 and c.error is None for c in state.charts), state.charts

    # Tags and HEAD are marked on the metric chart; the log-scale toggle changed its axis.
    accuracy = loaded.chart("accuracy (")
    assert {"model@v1.0.0", "model@v1.1.0", "HEAD"} <= set(accuracy.texts)
    assert found["log"].chart("accuracy (").texts != accuracy.texts
    assert "snapshot date (UTC)" in found["date"].chart("accuracy (").texts
    # The scatter starts on the metric most snapshots record and follows the selects.
    scatter = {n: next(c for c in f.charts if c.id == "chart-scatter") for n, f in found.items()}
    assert scatter["loaded"].points == len(metrics["accuracy"])
    both = [e for e in entries if "lr" in e["params"] and "val_loss" in e["metrics"]]
    assert scatter["scatter"].points == len(both) == len(CHECKPOINT_RUNS)

    # A click on a point leads to the row of the snapshot its tooltip names.
    values = found["click"].values
    clicked = [e for e in entries if values["hash"] == f"#snap-{e['commit']}"]
    assert len(clicked) == 1 and clicked[0]["name"] == "model", values["hash"]
    assert f"commit{clicked[0]['short']}" in values["tip"].replace(" ", ""), values["tip"]
    # Only params that differ within a name get a column; each metric's best is highlighted.
    assert {"epochs", "lr"} <= set(values["params_header"])
    assert "optimizer" not in values["params_header"]  # adam in every model snapshot
    assert "schedule" not in values["params_header"]  # cosine in every ckpt snapshot
    assert f"{max(metrics['accuracy']):.6g}" in values["best"]
    assert f"{min(metrics['loss']):.6g}" in values["best"]

    for e in entries:  # every snapshot: its commit, message and the commands that restore it
        assert f"git checkout {e['short']} && mlsnap pull --name {e['name']}" in loaded.text
        assert f"mlsnap get {e['short']} --name {e['name']}" in loaded.text
        assert e["message"] in loaded.text
    # Beside each snapshot: what it shares with, and changed since, the previous one.
    first, resumed = CHECKPOINT_RUNS
    added = resumed[1] - first[1]
    assert re.search(rf"checkpoints/: {added} added \(step-0*{resumed[0]}-", loaded.text)
    assert "unchanged since the previous snapshot" in loaded.text
    width, height, colours = found["click"].screenshot or (0, 0, 0)
    assert width == 1280 and height > 1500 and colours > 200  # charts and text, not blank


def test_a_hostile_clone_cannot_inject_script_or_markup(tmp_path: Path) -> None:
    """The attacker's snapshot message, param name, metric name and tag are shown as text."""
    require()
    up = make_project(tmp_path / "up", tmp_path / "remote")
    train(up)
    mlsnap(up, "commit", "model.pkl", "--metrics", "metrics.json", "-M", "plain")
    manifest = up / ".mlsnap" / "model.yaml"
    doc = yaml.safe_load(manifest.read_text())
    doc["message"] = HOSTILE_MESSAGE
    doc["params"][HOSTILE_PARAM] = "x"
    doc["metrics"][HOSTILE_METRIC] = 0.5
    doc["environment"]["python"] = "3.99.0"  # a change between neighbours, shown as one
    manifest.write_text(yaml.safe_dump(doc, sort_keys=False))
    git(up, "commit", "-qam", "mlsnap: model: hostile")
    git(up, "tag", HOSTILE_TAG)
    victim = tmp_path / "victim"
    git(tmp_path, "clone", "-q", str(up), str(victim))
    out = tmp_path / "report.html"
    mlsnap(victim, "report", "-o", str(out))
    page = out.read_text()
    for hostile in (HOSTILE_MESSAGE, HOSTILE_PARAM, HOSTILE_METRIC, HOSTILE_TAG, "<img src=x"):
        assert hostile not in page

    def hover_newest(page: Any) -> None:
        page.locator(".chart[data-metric] g.points_marks path").last.hover(force=True)
        page.wait_for_selector("#vg-tooltip-element.visible", timeout=10_000)

    found = browser.open_page(out, steps={"hover": hover_newest}, probe={
        "pwned": "typeof window.__pwned",
        "images": "document.querySelectorAll('img, main svg foreignObject').length",
        "tooltip": "document.querySelector('#vg-tooltip-element').textContent",
        "tooltip_markup": "document.querySelectorAll('#vg-tooltip-element script, "
                          "#vg-tooltip-element img').length",
        "headers": "Array.from(document.querySelectorAll('#params th')).map(t => t.textContent)",
    })["hover"]
    assert found.console_errors == [] and found.dialogs == [] and found.requests == []
    assert found.values["pwned"] == "undefined"
    assert found.values["images"] == 0 and found.values["tooltip_markup"] == 0
    assert HOSTILE_MESSAGE in found.values["tooltip"]
    assert HOSTILE_PARAM in found.values["headers"]
    for hostile in (HOSTILE_MESSAGE, HOSTILE_METRIC, HOSTILE_TAG):
        assert hostile in found.text
    assert re.search(r"environment: python [0-9.]+ -> 3\.99\.0", found.text)
    assert f"HEAD {HOSTILE_TAG}" in found.chart(f"{HOSTILE_METRIC} (").texts  # the label


def test_without_the_report_extra_one_line_says_what_to_install(scene: Path,
                                                                  tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    code = ("import sys; sys.modules['vl_convert'] = None; "  # the import now fails, as uninstalled
            "sys.argv = ['mlsnap', 'report', '-o', sys.argv[1]]; "
            "from mlsnap.__main__ import main; main()")
    proc = subprocess.run([sys.executable, "-c", code, str(out)], cwd=scene, capture_output=True,
                          text=True, check=False, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        ("Error: mlsnap report needs the charting library (vl-convert-python), which is not "
        "installed; install it with `pip install 'mlsnap[report]'` in this environment")]
    assert not out.exists()


def test_bad_input_is_one_line_and_keeps_the_previous_report(scene: Path, tmp_path: Path) -> None:
    require(page=False)
    out = tmp_path / "report.html"
    out.write_text("the previous report\n")
    cases = [
        (["nosuchrev"], "Error: nosuchrev: is not a commit, branch or tag in this repository"),
        (["--name", "other"], "Error: no snapshot found named 'other' reachable from HEAD"),
        (["--name", "../x"], "Error: --name '../x': use letters, digits"),
    ]
    for args, line in cases:
        proc = mlsnap(scene, "report", *args, "-o", str(out), check=1)
        assert proc.stderr.startswith(line) and len(proc.stderr.splitlines()) == 1, proc.stderr
        assert out.read_text() == "the previous report\n"
    proc = mlsnap(scene, "report", "-o", str(tmp_path / "nowhere" / "r.html"), check=1)
    assert proc.stderr.startswith(f"Error: -o {tmp_path / 'nowhere' / 'r.html'}: the folder ")
    proc = mlsnap(scene, "report", "-o", str(tmp_path), check=1)
    assert "is a folder; name the HTML file to write" in proc.stderr
    empty = make_project(tmp_path / "empty", tmp_path / "remote")
    proc = mlsnap(empty, "report", check=1)
    assert proc.stderr == "Error: no snapshot found reachable from HEAD; take one with " \
                          "`mlsnap commit PATH`\n"
    assert not (empty / "mlsnap-report.html").exists()


def test_a_kill_while_writing_leaves_the_previous_report_and_no_partial_file(
        scene: Path, tmp_path: Path) -> None:
    require(page=False)
    out = tmp_path / "report.html"
    out.write_text("the previous report\n")
    proc = mlsnap(scene, "report", "-o", str(out), env={"MLSNAP_FAULT_AT": "report-written"},
                  check=None)
    assert proc.returncode == -9  # SIGKILL once the new page is on disk under a temporary name
    assert out.read_text() == "the previous report\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".mlsnap-tmp-")]
    mlsnap(scene, "log", "-n", "1")  # any next command clears what the killed one left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "report.html"]
    out.chmod(0o640)
    mlsnap(scene, "report", "-o", str(out))
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert out.stat().st_mode & 0o777 == 0o640  # a replaced file keeps its mode
    fresh = tmp_path / "fresh.html"
    mlsnap(scene, "report", "-o", str(fresh))  # a new one is what the umask gives (not 0600)
    mask = os.umask(0o022)
    os.umask(mask)
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~mask


def rows(page: str) -> list[str]:
    return re.findall(r'<tr id="snap-([0-9a-f]{40})">', page)


def test_revs_and_name_choose_the_snapshots(scene: Path, tmp_path: Path) -> None:
    require(page=False)
    entries = log_of(scene)
    newest = {name: next(e["commit"] for e in entries if e["name"] == name)
              for name in ("model", "ckpt")}
    tagged = next(e["commit"] for e in entries if "model@v1.0.0" in e["tags"])
    out = tmp_path / "r.html"
    mlsnap(scene, "report", "model@v1.0.0", "HEAD", "-o", str(out))  # HEAD holds both names
    assert sorted(rows(out.read_text())) == sorted([tagged, newest["model"], newest["ckpt"]])
    mlsnap(scene, "report", "--name", "model", "-o", str(out))
    assert rows(out.read_text()) == [e["commit"] for e in entries if e["name"] == "model"]
    assert len(rows(out.read_text())) == len(MODEL_RUNS)


def test_default_file_in_the_current_folder_and_curves_missing_from_a_fresh_clone(
        scene: Path, tmp_path: Path) -> None:
    require(page=False)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(scene), str(clone))
    proc = mlsnap(clone, "report")
    assert "0 learning-curve point(s)" in proc.stdout
    note = ("checkpoints: the file list of 2 snapshot(s) is not in the local DVC cache, so any "
            "learning curve it holds is not drawn; `mlsnap pull` (or `dvc fetch`) brings it")
    assert proc.stderr == f"  note: {note}\n"
    page = (clone / "mlsnap-report.html").read_text()
    assert note.replace("`", "&#x60;") in page or note in page


def test_open_hands_the_file_to_the_web_browser(scene: Path, tmp_path: Path) -> None:
    require(page=False)
    seen = tmp_path / "opened.txt"
    fake = tmp_path / "browser.py"
    fake.write_text(f"import sys; open({str(seen)!r}, 'w').write(sys.argv[1])\n")
    out = tmp_path / "r.html"
    mlsnap(scene, "report", "-o", str(out), "--open",
           env={"BROWSER": f"{sys.executable} {fake} %s"})
    assert seen.read_text() == out.as_uri()


def test_log_plot_draws_a_sparkline_per_name_oldest_first(scene: Path) -> None:
    entries = log_of(scene)
    lines = mlsnap(scene, "log", "--plot", "accuracy").stdout.splitlines()
    values = [e["metrics"]["accuracy"] for e in reversed(entries) if e["name"] == "model"]
    match = re.fullmatch(r"accuracy model: ([▁-█]+)  (\S+) \.\. (\S+) \((\d+) snapshot\(s\)\)",
                         lines[-1])
    assert match, lines[-1]
    sparks = match.group(1)
    assert len(sparks) == len(values) == int(match.group(4))
    assert sparks[values.index(min(values))] == "▁" and sparks[values.index(max(values))] == "█"
    assert float(match.group(2)) == pytest.approx(min(values), rel=1e-5)
    assert float(match.group(3)) == pytest.approx(max(values), rel=1e-5)
    assert lines[0].startswith("COMMIT") and len(lines) > len(entries)  # the table comes first
    proc = mlsnap(scene, "log", "--plot", "accuracy", "--json", check=2)
    assert "--plot draws under the table; it does not go with --json" in proc.stderr


@pytest.mark.slow
def test_a_thousand_snapshots_are_all_drawn(tmp_path: Path) -> None:
    """1,000 snapshots written straight into Git (benchmarks/history_case.py): every point on
    the page. How long it takes is the benchmark's business (`python -m benchmarks --only
    report`), not this test's."""
    require()
    from benchmarks.history_case import build_history

    repo = make_project(tmp_path / "big", tmp_path / "remote")
    build_history(repo, 1000, dict(os.environ))
    out = tmp_path / "r.html"
    mlsnap(repo, "report", "-o", str(out))
    found = browser.open_page(out)["loaded"]
    assert found.console_errors == [] and found.requests == []
    assert found.chart("accuracy (").points == 1000
    assert next(c for c in found.charts if c.id == "chart-sizes").points == 1000
    assert len(rows(out.read_text())) == 1000

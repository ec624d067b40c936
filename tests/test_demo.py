from __future__ import annotations

from pathlib import Path

from tests.helpers import mlsnap


def test_demo_runs_the_whole_loop_and_restores_byte_exact(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    proc = mlsnap(tmp_path, "demo", env={"TMPDIR": str(scratch)})
    assert "== the first snapshot (byte-exact)" in proc.stdout
    assert "~ lr: 0.1 -> 0.01" in proc.stdout and "baseline" in proc.stdout
    assert "clean: the workspace matches snapshot model" in proc.stdout
    assert list(scratch.iterdir()) == []  # the temporary folder is removed


def test_demo_keep_leaves_the_folder_for_inspection(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    proc = mlsnap(tmp_path, "demo", "--keep", env={"TMPDIR": str(scratch)})
    kept = [p for p in scratch.iterdir()]
    assert len(kept) == 1 and f"# kept {kept[0]}" in proc.stdout
    assert (kept[0] / "elsewhere" / "model.pkl").is_file()

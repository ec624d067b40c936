"""Secrets planted everywhere a user might leak one never reach a manifest, a commit message
or mlsnap's output; the last scan before the manifest is written refuses what slipped through."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import git, mlsnap

# Shapes of real credentials (fake values).
GH_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
AWS_KEY = "AKIA" + "Z7Q2X9W4V6T1R3P8"
ENV_TOKEN = "plain-looking-but-secret-9f8e7d"
PARAM_KEY = "sk-" + "proj_" + "x" * 24
FILE_PASSWORD = "hunter2hunter2"
URL_TOKEN = "urltoken-77aa55cc"
PIP_TOKEN = "piptoken-1234abcd"


def _everything(root: Path, *outputs: str) -> str:
    """Every place a secret could land: manifests, commit messages, tags, outputs."""
    parts = list(outputs)
    parts += [p.read_text(errors="replace") for p in (root / ".mlsnap").glob("*.yaml")]
    parts.append(git(root, "log", "--all", "--format=%B"))
    parts.append(git(root, "for-each-ref", "--format=%(contents)", "refs/tags"))
    parts += [p.read_text(errors="replace") for p in root.glob("*.dvc") if p.is_file()]
    return "\n".join(parts)


def _fake_dist(site: Path) -> None:
    """An installed package whose `pip freeze` line would read `pkg @ git+https://user:TOKEN@`."""
    info = site / "private_pkg-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: private-pkg\nVersion: 1.0\n")
    (info / "direct_url.json").write_text(json.dumps({
        "url": f"git+https://builder:{PIP_TOKEN}@github.com/acme/private-pkg",
        "vcs_info": {"vcs": "git", "commit_id": "0" * 40}}))
    (info / "RECORD").write_text("")


def test_planted_secrets_never_reach_manifest_commit_or_output(project: Path,
                                                               tmp_path: Path) -> None:
    site = tmp_path / "site"
    _fake_dist(site)
    env = {"MY_SERVICE_TOKEN": ENV_TOKEN, "GITHUB_TOKEN": GH_TOKEN,
           "AWS_ACCESS_KEY_ID": AWS_KEY, "PYTHONPATH": str(site)}
    (project / "train_cfg.yaml").write_text(
        f"lr: 0.1\ndb:\n  password: {FILE_PASSWORD}\n"
        f"  url: postgres://ml:{URL_TOKEN}@db.example.com/runs\n")
    (project / "model.pkl").write_bytes(b"weights")
    proc = mlsnap(project, "commit", "model.pkl", "--params", "train_cfg.yaml",
                  "-p", f"api_key={PARAM_KEY}", "-p", f"note=made with {GH_TOKEN}",
                  "-p", f"service=uses {ENV_TOKEN}",
                  "-p", f"mirror=https://me:{URL_TOKEN}@mirror.example.com/x",
                  "-M", f"trained with {ENV_TOKEN} and {AWS_KEY}", "--tag", "1.0.0",
                  "--no-push", env=env)
    outputs = [proc.stdout, proc.stderr]
    for args in (["show"], ["show", "--json"], ["log"], ["env", "--json"],
                 ["env", "--requirements"], ["show", "--requirements"]):
        shown = mlsnap(project, *args, env=env)
        outputs += [shown.stdout, shown.stderr]
    text = _everything(project, *outputs)
    for secret in (GH_TOKEN, AWS_KEY, ENV_TOKEN, PARAM_KEY, FILE_PASSWORD, URL_TOKEN, PIP_TOKEN):
        assert secret not in text, secret
    manifest = (project / ".mlsnap" / "model.yaml").read_text()
    assert "private-pkg: '1.0'" in manifest or "private-pkg: 1.0" in manifest  # recorded, clean
    assert "api_key: '***'" in manifest and "password: '***'" in manifest
    assert "postgres://***@db.example.com/runs" in manifest


def test_remote_url_with_credentials_is_refused_without_echoing_them(project: Path) -> None:
    proc = mlsnap(project, "init", "--remote",
                  f"https://ml:{URL_TOKEN}@dav.example.com/store", check=1)
    assert URL_TOKEN not in proc.stdout + proc.stderr
    assert "--local" in proc.stderr or "credentials" in proc.stderr
    assert URL_TOKEN not in (project / ".dvc" / "config").read_text()
    proc = mlsnap(project, "remote", "set", "password", URL_TOKEN, check=1)  # never tracked
    assert URL_TOKEN not in proc.stdout + proc.stderr and "--local" in proc.stderr
    assert URL_TOKEN not in (project / ".dvc" / "config").read_text()
    assert git(project, "status", "--porcelain", ".dvc") == ""


def _refuses_to_write(root: Path, args: list[str], env: dict[str, str] | None = None) -> str:
    head = git(root, "rev-parse", "HEAD")
    proc = mlsnap(root, "commit", *args, "--no-push", env=env, check=1)
    assert proc.stderr.startswith("Error: refusing to write the manifest")
    assert not (root / ".mlsnap" / "model.yaml").exists()
    assert git(root, "rev-parse", "HEAD") == head
    return proc.stderr


def test_final_scan_refuses_a_secret_that_slipped_through(project: Path) -> None:
    (project / "model.pkl").write_bytes(b"weights")
    # A credential used as a key: redaction cleans values, the scan still sees it.
    err = _refuses_to_write(project, ["model.pkl", "-p", f"{GH_TOKEN}=1"])
    assert GH_TOKEN not in err and "credential" in err
    # A secret env value that arrives as a number, not a string.
    err = _refuses_to_write(project, ["model.pkl", "-p", "seed=86420975"],
                            env={"DB_PASSWORD": "86420975"})
    assert "86420975" not in err and "secret environment variable" in err
    # An access key used as a section name in a params file.
    (project / "cfg.yaml").write_text(f"{AWS_KEY}:\n  region: eu\n")
    err = _refuses_to_write(project, ["model.pkl", "--params", "cfg.yaml"])
    assert AWS_KEY not in err

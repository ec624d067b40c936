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


# =========================================================================== every way in
# Realistic (fake) secrets planted in every place a value can enter a snapshot: environment
# variables, nested params in YAML, JSON and TOML files, metrics files, -p values, the message,
# the tag, remote URLs and `remote set`. Then everything is scanned: the manifest, the whole
# history (`git log -p --all`), tag names and messages, .dvc/config and all output.

SECRETS = {
    "github classic": "ghp_" + "Zq8Xw2Ty6Uv4Rs0Pn3Mk7Lj1Hg5Fd9Cb2Ae4",
    "github fine-grained": "github_pat_" + "11ABCDEFG0" + "abcdefghij" * 5,
    "gitlab": "glpat-" + "Xy7Zw3Vu9Ts1Rq5Po2Nm",
    "aws key id": "AKIA" + "QYLPMN5HHHFPZAM2",
    "aws secret": "wJalrXUtnFEMI/" + "K7MDENG/bPxRfiCYEXAMPLEKEY",
    "slack bot": "xoxb-" + "2718281828-3141592653-AbCdEfGhIjKlMnOpQrStUvWx",
    "slack webhook": "https://hooks.slack.com/services/" + "T0ABCDEF1/B0GHIJKL2/" + "q" * 24,
    "discord webhook": "https://discord.com/api/webhooks/" + "112233445566778899/" + "Ab-Cd" * 10,
    "openai": "sk-proj-" + "Pq7Rs8Tu9Vw0Xy1Za2Bc3De4Fg5Hi6Jk",
    "anthropic": "sk-ant-api03-" + "Lm9No8Pq7Rs6Tu5Vw4Xy3Za2Bc1",
    "huggingface": "hf_" + "aBcDeFgHiJkLmNoPqRsTuVwXyZ012345",
    "google": "AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
    "stripe": "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "npm": "npm_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "pypi": "pypi-AgEIcHlwaS5vcmc" + "CJGI4ZjM2YTg5LWNmNzItNDU2Zi05ZTk1LTA1YjVlNWUzNWE3YgACKl",
    "sendgrid": "SG." + "ngeVfQFYQlKU0ufo8x5d1A" + "." + "TwL2iGABf9DHoTf-09kqeF8tAmbihYzrnopKc-1s5cr",
    "jwt": "eyJhbGciOiJIUzI1NiJ9" + ".eyJzdWIiOiJtbHNuYXAtdGVzdCJ9.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg",
    "private key body": "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7",
    "azure account key": "Zm9vYmFyYmF6cXV4" + "MTIzNDU2Nzg5MGFiY2RlZmdoaWprbG1ub3A=",
    "sql password": "S3cr3t!Passw0rd",
    "postgres password": "pg-pass-4f3e2d1c",
    "token-only URL": "tok" + "9f8e7d6c5b4a3f2e1d0c9b8a",
    "bearer": "bearer-" + "0a1b2c3d4e5f6a7b8c9d",
    "basic": "YWRtaW46c3VwZXJzZWNyZXQ=",
    "yaml api key": "yaml-api-key-77ab99cd",
    "json password": "json-password-5566aa",
    "toml secret": "toml-secret-8877bbcc",
    "env token": "env-token-looks-plain-31415",
    "env password": "env-password-27182",
    "-p password": "cli-password-16180",
    "sas sig": "sv2022sigAbCdEf1234567890",
    "camel secret": "camel-client-secret-9090",
    "message password": "msg-password-4242",
    "x-api-key": "x-api-key-value-6d6d6d",
    "metrics token": "metrics-token-0101ab",
}
S = SECRETS

LOOKALIKES = {
    "data_dir": None,  # $PWD/data: filled in with the real path
    "key_dim": 64,
    "tokenizer": "bpe",
    "num_tokens": 512,
    "max_tokens": 2048,
    "pad_token": "<pad>",
    "password_file": "/run/secrets/db_password",
    "sort_key": "created_at",
    "secret_name": "prod-db-credentials",
    "repo": "ssh://git@github.com/acme/models.git",
    "mirror": "https://alice@example.com/acme/models",
    "checksum": "d41d8cd98f00b204e9800998ecf8427e",
    "author": "Ada Lovelace",
    "keyboard": "qwerty",
    "token_type": "bearer",
    "socket": "/tmp/ssh-XXXXabcd/agent.1234",
}


def test_secrets_planted_everywhere_never_leave_and_lookalikes_stay_verbatim(
        project: Path) -> None:
    env = {"MY_SERVICE_TOKEN": S["env token"], "DB_PASSWORD": S["env password"],
           "AWS_SECRET_ACCESS_KEY": S["aws secret"], "AWS_ACCESS_KEY_ID": S["aws key id"],
           "HF_TOKEN": S["huggingface"], "PWD": str(project), "OLDPWD": str(project.parent),
           "SSH_AUTH_SOCK": LOOKALIKES["socket"], "GIT_ASKPASS": "/usr/lib/git-core/askpass"}
    lookalikes = dict(LOOKALIKES, data_dir=f"{project}/data")
    (project / "train.yaml").write_text(
        "train:\n  lr: 0.001\n"
        f"  service:\n    api_key: {S['yaml api key']}\n"
        f"    headers:\n      Authorization: Bearer {S['bearer']}\n"
        f"      X-Api-Key: {S['x-api-key']}\n"
        f"  webhook: {S['slack webhook']}\n"
        f"  notify: {S['discord webhook']}\n"
        f"  deploy_key: |\n    -----BEGIN RSA PRIVATE KEY-----\n    {S['private key body']}\n"
        "    -----END RSA PRIVATE KEY-----\n"
        + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in lookalikes.items()))
    (project / "db.json").write_text(json.dumps({
        "db": {"url": f"postgres://ml:{S['postgres password']}@db.internal:5432/runs",
               "password": S["json password"],
               "mssql": f"Server=db;Database=ml;User Id=sa;Password={S['sql password']};"},
        "storage": {"conn": "DefaultEndpointsProtocol=https;AccountName=acme;"
                            f"AccountKey={S['azure account key']};EndpointSuffix=core.windows.net",
                    "sas": f"https://acme.blob.core.windows.net/c/m.bin?sv=2022&sig={S['sas sig']}"},
        "oauth": {"clientSecret": S["camel secret"], "auth": f"Basic {S['basic']}"},
        "tokens": {"github": S["github fine-grained"], "gitlab": S["gitlab"],
                   "pypi": S["pypi"], "npm": S["npm"]}}))
    (project / "extra.toml").write_text(
        f'[vendor]\nsecret = "{S["toml secret"]}"\nstripe = "{S["stripe"]}"\n'
        f'sendgrid = "{S["sendgrid"]}"\nbatch = 32\n')
    (project / "metrics.json").write_text(json.dumps({"acc": 0.9, "run_token": S["metrics token"]}))
    (project / "model.pkl").write_bytes(b"weights")
    printed = []

    def run(*args: str, code: int = 0) -> None:
        proc = mlsnap(project, *args, env=env, check=code)
        printed.extend([proc.stdout, proc.stderr])

    # Remote URLs and settings holding credentials: refused without --local, never echoed.
    run("init", "--remote", f"https://ml:{S['postgres password']}@dav.example.com/s", code=1)
    run("init", "--remote", f"https://{S['token-only URL']}@git.example.com/store", code=1)
    run("init", "--remote", f"https://x.example.com/s?sig={S['sas sig']}", code=1)
    run("remote", "set", "url", f"https://{S['github classic']}@github.com/acme/m", code=1)
    run("remote", "set", "password", S["sql password"], code=1)
    run("remote", "set", "token", S["slack bot"], code=1)
    run("remote", "set", "url", f"https://{S['token-only URL']}@store.example.com/m",
        "--local")  # accepted: .dvc/config.local is never committed
    run("commit", "model.pkl", "--params", "train.yaml:train", "--params", "db.json",
        "--params", "extra.toml", "--metrics", "metrics.json",
        "-p", f"db.password={S['-p password']}", "-p", f"note=uses {S['openai']}",
        "-p", f"jwt={S['jwt']}", "-p", f"hook={S['slack webhook']}",
        "-p", f"cmd=curl -H 'Authorization: Bearer {S['bearer']}'",
        "-p", f"anthropic={S['anthropic']}", "-p", f"gapi={S['google']}",
        "-M", f"retrained in {project}: password={S['message password']} {S['github classic']}",
        "--no-push")
    run("commit", "model.pkl", "--tag", f"1.0.0+{S['github classic']}", "--no-push", code=1)
    run("commit", "model.pkl", "--tag", "1.0.0", "-M", f"again with {S['slack bot']}",
        "-p", "epoch=2", "--no-push")
    run("tag", "model", f"2.0.0+{S['gitlab']}", code=1)
    for args in (["show"], ["show", "--json"], ["log"], ["log", "--json"], ["diff"],
                 ["diff", "--json"], ["env", "--json"], ["status", "--no-remote"],
                 ["show", "--requirements"]):
        proc = mlsnap(project, *args, env=env, check=None)
        printed.extend([proc.stdout, proc.stderr])

    everything = "\n".join([
        *printed,
        (project / ".mlsnap" / "model.yaml").read_text(),
        git(project, "log", "-p", "--all"),
        git(project, "tag", "-l"),
        git(project, "for-each-ref", "--format=%(refname) %(contents)", "refs/tags"),
        (project / ".dvc" / "config").read_text(),
    ])
    leaked = sorted(label for label, value in SECRETS.items() if value in everything)
    assert leaked == [], leaked
    assert len(SECRETS) >= 25
    assert S["token-only URL"] in (project / ".dvc" / "config.local").read_text()

    params = json.loads(mlsnap(project, "show", "--json", env=env).stdout)["params"]
    kept = {k: params[k] for k in lookalikes if k in params}
    assert kept == lookalikes  # every look-alike recorded exactly as given
    assert params["lr"] == 0.001 and params["vendor"]["batch"] == 32
    assert len(lookalikes) >= 10
    message = json.loads(mlsnap(project, "log", "--json", env=env).stdout)[1]["message"]
    assert message.startswith(f"retrained in {project}: password=***")
    assert git(project, "status", "--porcelain", "--", ".dvc") == ""

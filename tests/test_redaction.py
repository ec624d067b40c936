"""The secret rules on real-looking values, both ways: what is redacted and what is kept."""

from __future__ import annotations

import pytest

from mlsnap import redaction

REDACTED = [
    ("https://user:hunter2@host/x", "https://***@host/x"),
    ("https://" + "ghp_" + "A" * 36 + "@github.com/o/r", "https://***@github.com/o/r"),
    ("https://" + "0123456789abcdef0123@git.example.com/r", "https://***@git.example.com/r"),
    ("redis://:pw123456@cache:6379/0", "redis://***@cache:6379/0"),
    ("Authorization: Bearer abc.def.ghi-123456", "Authorization: Bearer ***"),
    ("curl -H 'Authorization: Basic dXNlcjpwYXNz'", "curl -H 'Authorization: Basic ***'"),
    ("X-Api-Key: 9f8e7d6c5b4a", "X-Api-Key: ***"),
    ("Server=db;User Id=sa;Password=S3cr3t!;", "Server=db;User Id=sa;Password=***;"),
    ("AccountName=a;AccountKey=Zm9vYmFy==;EndpointSuffix=x",
     "AccountName=a;AccountKey=***;EndpointSuffix=x"),
    ("https://a.blob.core.windows.net/c?sv=1&sig=AbC%2Bdef", "https://a.blob.core.windows.net/c?sv=1&sig=***"),
    ("see https://hooks.slack.com/services/T1/B2/abcdef", "see https://hooks.slack.com/services/***"),
    ("https://discord.com/api/webhooks/123/abc-DEF", "https://discord.com/api/webhooks/***"),
    ("key " + "AKIA" + "Z7Q2X9W4V6T1R3P8" + " here", "key *** here"),
    ("sk-ant-api03-" + "a" * 30, "***"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----", "***"),
    ("db_password=hunter2 lr=0.1", "db_password=*** lr=0.1"),
]
KEPT = [
    "data_dir=/home/ada/proj/data", "PWD=/home/ada/proj", "key_dim=64", "num_tokens=512",
    "tokenizer: bpe", "ssh://git@github.com/acme/m.git", "https://alice@example.com/x",
    "checksum d41d8cd98f00b204e9800998ecf8427e", "model@v1.2.0", "bob@example.com",
    "password_file=/run/secrets/db", "auth_url=https://login.example.com", "sort_key=date",
]
SECRET_NAMES = ["api_key", "apiKey", "AccountKey", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID",
                "HF_TOKEN", "db_password", "db_pwd", "client_secret", "passphrase", "id_token",
                "Authorization", "x-api-key", "deploy_key", "sas_sig", "api_keys"]
PLAIN_NAMES = ["OLDPWD", "key_dim", "key", "tokenizer", "num_tokens", "max_tokens",
               "pad_token", "pad_token_id", "password_file", "secret_name", "sort_key", "author",
               "keyboard", "SSH_AUTH_SOCK", "GIT_ASKPASS", "keyfile", "token_type", "monkey"]


@pytest.mark.parametrize(("text", "expected"), REDACTED)
def test_credentials_are_redacted_and_found(text: str, expected: str) -> None:
    assert redaction.redact_text(text) == expected
    assert redaction.find(text) is not None
    assert redaction.redact_text(expected) == expected  # idempotent: the scan passes after


@pytest.mark.parametrize("text", KEPT)
def test_lookalikes_are_kept_verbatim(text: str) -> None:
    assert redaction.redact_text(text) == text and redaction.find(text) is None


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secret_names(name: str) -> None:
    assert redaction.is_secret_name(name)


@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_plain_names(name: str) -> None:
    assert not redaction.is_secret_name(name)


def test_environment_values_paths_and_flags_are_never_secrets() -> None:
    environ = {"PWD": "/home/ada/proj", "OLDPWD": "/home/ada", "SSH_AUTH_SOCK": "/tmp/s/agent",
               "GITHUB_TOKEN": "ghp_" + "b" * 36, "DB_PASSWORD": "hunter2hunter2",
               "USE_AUTH": "true", "API_KEY": "short"}
    assert redaction.env_secrets(environ) == ["ghp_" + "b" * 36, "hunter2hunter2"]
    tree = redaction.redact({"data_dir": "/home/ada/proj/data", "db": {"password": "pw-123456",
                             "password_file": "/run/secrets/pw"}, "auth": True, "key_dim": 64,
                             "note": "made in /home/ada/proj"}, [])
    assert tree == {"data_dir": "/home/ada/proj/data", "db": {"password": "***",
                    "password_file": "/run/secrets/pw"}, "auth": True, "key_dim": 64,
                    "note": "made in /home/ada/proj"}

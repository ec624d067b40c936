"""What counts as a secret, and keeping it out of manifests, commits, tags and output.

Small, tested rules rather than a general detector: each rule names a credential by its
*shape* or by the *name* it is given, never by how random it looks, so an ordinary value
(``$PWD/data``, ``key_dim: 64``, ``tokenizer: bpe``, a path, a hash) is recorded verbatim.

* **Names.** A value is secret when its key (in params, metrics, ``-p``, environment
  variables, ``remote set``, ``name=value`` text) ends with a credential word: ``token``,
  ``secret``, ``password``/``passwd``/``pwd``, ``passphrase``, ``credential(s)``, ``auth``,
  ``authorization``, or ``key`` after a qualifier (``api_key``, ``AccountKey``,
  ``SECRET_ACCESS_KEY``); not ``key`` alone, not ``key_dim``, ``num_tokens``, ``pad_token``,
  ``tokenizer``, ``password_file``. Values that are paths (``/...``, ``~/...``), booleans
  and the words ``true``/``false``/``none`` are never secrets, whatever their name (so
  ``PWD``, ``OLDPWD``, ``SSH_AUTH_SOCK`` and ``GIT_ASKPASS`` keep their values).
* **Shapes**, found anywhere in a string: URL user info (``https://user:pw@``; a bare user
  part of 16+ characters, ``https://TOKEN@``); ``Authorization: Bearer|Basic ...`` and
  ``X-...-Key:``-style headers; ``name=value`` pairs with a credential name (connection strings
  such as ``AccountKey=...;``, query strings such as ``?sig=...``); Slack, Discord and Teams
  webhook URLs; private-key blocks; JWTs; and the token formats of AWS, GitHub, GitLab, Slack,
  OpenAI/Anthropic, Hugging Face, Google, Stripe, npm, PyPI and SendGrid.
* **Values** of secret-named environment variables, wherever they appear.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from mlsnap.errors import SecretFound

REDACTED = "***"
_MIN_SECRET_LEN = 6
_NEVER_SECRET = {"", "true", "false", "yes", "no", "none", "null", "0", "1", REDACTED}

# --------------------------------------------------------------------------- names

_STRONG = ("token", "secret", "secrets", "password", "passwords", "passwd", "passphrase",
           "credential", "credentials", "authorization", "auth", "pwd")
_COMPOUND = ("apikey", "accesskey", "secretkey", "privatekey", "accountkey", "authtoken",
             "accesstoken", "refreshtoken", "sessiontoken", "clienttoken", "bearertoken",
             "clientsecret", "apisecret", "apitoken", "sastoken", "masterkey", "signingkey")
# Words before `token` that make it a vocabulary item or a count, not a credential.
_TOKEN_VOCAB = {"pad", "bos", "eos", "unk", "sep", "cls", "mask", "start", "end", "special",
                "max", "min", "num", "n", "total", "first", "last", "next", "prev", "sos",
                "eot", "begin", "image", "audio", "video", "vision", "per"}
# Words before `key` that make it a data key, not a credential.
_DATA_KEY = {"sort", "primary", "foreign", "partition", "cache", "dict", "hash", "join", "group",
             "lookup", "map", "metric", "monitor", "model", "column", "feature", "query",
             "random", "seed", "input", "output", "target", "label", "index", "dataset", "data",
             "sample", "split", "row", "shard", "batch", "attention", "value", "id", "name",
             "state", "config", "prng", "rng", "sorting", "grouping", "ordering", "image",
             "text", "audio", "video", "track", "music", "musical", "frame", "cluster", "num", "n",
             "max", "min", "total"}
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def words(name: str) -> list[str]:
    """``"AWS_SECRET_ACCESS_KEY"``, ``"apiKey"``, ``"x-api-key"`` -> lower-case words."""
    return [w.lower() for part in _WORD_SPLIT.split(name) for w in _CAMEL.split(part) if w]


def is_secret_name(name: str) -> bool:
    """Whether a key, variable or option called ``name`` holds a credential (see the module
    docstring for the exact rule)."""
    parts = words(name)
    if not parts:
        return False
    if len(parts) >= 3 and parts[-1] == "id" and parts[-2] == "key":
        parts = parts[:-1]  # access_key_id: the key's public half, still not for Git
    last = parts[-1]
    before = parts[-2] if len(parts) > 1 else None
    if last == "token":
        return before not in _TOKEN_VOCAB
    if last == "tokens":  # api_tokens, not num_tokens or a bare count of tokens
        return before is not None and before not in _TOKEN_VOCAB
    if last in ("key", "keys"):
        return before is not None and before not in _DATA_KEY
    if last in _STRONG or last == "sig":  # sig: an Azure SAS signature
        return True
    if last == "signature" and before in ("amz", "goog"):  # X-Amz-Signature, X-Goog-Signature
        return True
    return any(last.endswith(c) for c in _COMPOUND)


def _is_plain_value(value: str) -> bool:
    """Values never taken for secrets, whatever their key: paths, booleans, empty."""
    text = value.strip()
    if text.lower() in _NEVER_SECRET:
        return True
    return text.startswith(("/", "~/", "./", "../")) and not any(c.isspace() for c in text)


# --------------------------------------------------------------------------- shapes

_SHAPES = re.compile(
    r"(?<![A-Za-z0-9])("
    r"(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}"            # AWS access key id
    r"|gh[pousr]_[A-Za-z0-9]{30,}"                      # GitHub tokens
    r"|github_pat_[A-Za-z0-9_]{22,}"
    r"|glpat-[A-Za-z0-9_\-]{20,}"                       # GitLab
    r"|xox[abposr]-[A-Za-z0-9\-]{10,}"                  # Slack
    r"|xapp-\d-[A-Za-z0-9\-]{10,}"
    r"|sk-(?:ant-|proj-)?[A-Za-z0-9_\-]{20,}"           # OpenAI, Anthropic
    r"|hf_[A-Za-z0-9]{30,}"                             # Hugging Face
    r"|AIza[0-9A-Za-z_\-]{35}"                          # Google API key
    r"|ya29\.[0-9A-Za-z_\-]{20,}"                       # Google OAuth access token
    r"|(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,}"        # Stripe
    r"|npm_[A-Za-z0-9]{36}"                             # npm
    r"|pypi-AgE[A-Za-z0-9_\-]{50,}"                     # PyPI
    r"|SG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}"    # SendGrid
    r"|eyJ[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}"  # JWT
    r")(?![A-Za-z0-9])"
)
_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:[\s\S]*?-----END [A-Z0-9 ]*"
                          r"PRIVATE KEY-----)?")
_WEBHOOK = re.compile(
    r"(?i)(https?://(?:hooks\.slack\.com/(?:services|workflows|triggers)/"
    r"|(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/"
    r"|[a-z0-9.\-]+\.webhook\.office\.com/webhookb2/))([^\s\"'<>]+)")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^\s/?#\"'<>]*)@")
_HEADER = re.compile(
    r"(?i)\b((?:proxy-)?authorization|x-[a-z0-9\-]*(?:key|token|secret|auth)[a-z0-9\-]*)"
    r"(\s*[:=]\s*)((?:bearer|basic|token|digest|negotiate|apikey)\s+)?([^\s\"',;]+)")
_BEARER = re.compile(r"(?i)\b(bearer\s+)([A-Za-z0-9\-._~+/]{12,}=*)")
_PAIR = re.compile(r"(?<![\w.\-])([A-Za-z][\w.\-]{0,60})(\s*=\s*)(\"[^\"]*\"|'[^']*'|[^\s;&,\"']+)")


def _userinfo(match: re.Match[str]) -> str:
    info = match.group(2)
    _user, colon, password = info.partition(":")
    secret = (colon and password) or (  # user:***, too: the URL keeps no user either
        not colon and info != REDACTED and (len(info) >= 16 or _SHAPES.search(info)))
    return f"{match.group(1)}{REDACTED}@" if secret else match.group(0)


def _header(match: re.Match[str]) -> str:
    value = match.group(4)
    if value.strip("'\"") == REDACTED:
        return match.group(0)
    return f"{match.group(1)}{match.group(2)}{match.group(3) or ''}{REDACTED}"


def _bearer(match: re.Match[str]) -> str:
    return f"{match.group(1)}{REDACTED}"


def _pair(match: re.Match[str]) -> str:
    name, sep, value = match.groups()
    bare = value.strip("'\"")
    if not is_secret_name(name) or _is_plain_value(bare):
        return match.group(0)
    return f"{name}{sep}{REDACTED}"


def _webhook(match: re.Match[str]) -> str:
    return match.group(0) if match.group(2) == REDACTED else f"{match.group(1)}{REDACTED}"


# (what a finding is called, pattern, replacement): applied in this order.
_RULES: list[tuple[str, re.Pattern[str], Callable[[re.Match[str]], str] | str]] = [
    ("a private key", _PRIVATE_KEY, REDACTED),
    ("a webhook URL", _WEBHOOK, _webhook),
    ("a URL with credentials", _URL_USERINFO, _userinfo),
    ("an authorization header", _HEADER, _header),
    ("a bearer token", _BEARER, _bearer),
    ("a credential (name=value)", _PAIR, _pair),
    ("a credential", _SHAPES, REDACTED),
]


def redact_text(text: str, secrets: list[str] | None = None) -> str:
    """``text`` with every credential replaced by ``***`` (known values first)."""
    for secret in secrets or ():
        text = text.replace(secret, REDACTED)
    for _, pattern, repl in _RULES:
        text = pattern.sub(repl, text)
    return text


def find(text: str, secrets: list[str] | None = None) -> str | None:
    """What kind of credential ``text`` holds (None: none), without quoting it."""
    for secret in secrets or ():
        if secret in text:
            return "the value of a secret environment variable"
    for label, pattern, repl in _RULES:
        if pattern.sub(repl, text) != text:
            if label == "a credential":
                shown = _SHAPES.search(text)
                return f"a credential ({shown.group(0)[:4]}...)" if shown else label
            return label
    return None


def redact(value: Any, secrets: list[str] | None = None, key: str = "") -> Any:
    """A params/metrics tree with secrets out: secret-named keys lose their value (``***``),
    strings are cleaned of credential shapes; everything else is returned as it was."""
    if secrets is None:
        secrets = env_secrets()
    if isinstance(value, dict):
        return {k: redact(v, secrets, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, secrets, key) for v in value]
    if key and value is not None and not isinstance(value, bool) and is_secret_name(key) \
            and not (isinstance(value, str) and _is_plain_value(value)):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value, secrets)
    return value


def secret_values(settings: dict[str, Any]) -> list[str]:
    """Values of the secret-named entries of ``settings`` worth looking for in text: at
    least six characters, not a path or a boolean (longest first)."""
    found = {str(v) for k, v in settings.items()
             if is_secret_name(str(k)) and v is not None and not isinstance(v, bool)}
    return sorted((v for v in found if len(v) >= _MIN_SECRET_LEN and not _is_plain_value(v)),
                  key=len, reverse=True)


def env_secrets(environ: dict[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names say they hold a secret (longest first)."""
    return secret_values(dict(os.environ) if environ is None else environ)


def is_credential_value(key: str, value: str) -> str | None:
    """What makes ``key = value`` a credential (None: it is not): a secret name with a real
    value, or a value holding a credential shape (a URL with a password, a token)."""
    if is_secret_name(key) and not _is_plain_value(value):
        return f"{key!r} names a credential"
    found = find(value)
    return f"the value holds {found}" if found else None


def shown_option(key: str, value: str) -> str:
    """How a remote option just set is echoed: a credential's value hidden, text redacted."""
    if is_secret_name(key) and is_credential_value(key, value):
        return REDACTED
    return redact_text(value)


def scan(text: str, where: str, secrets: list[str] | None = None) -> None:
    """Refuse ``text`` if a secret slipped through redaction (the last gate before writing)."""
    found = find(text, env_secrets() if secrets is None else secrets)
    if found:
        raise SecretFound(f"{where} contains {found}")

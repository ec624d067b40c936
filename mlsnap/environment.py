"""The training environment: capture it, keep secrets out of it (``mlsnap.redaction``),
compare two of them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlsnap.errors import BadInput

# The secret rules live in mlsnap.redaction; these names stay importable from here.
from mlsnap.redaction import REDACTED, env_secrets, redact, redact_text, scan

__all__ = ["REDACTED", "Drift", "Environment", "capture", "drift", "env_secrets", "interpreter",
           "redact", "redact_text", "requirements", "scan", "this_process"]


@dataclass(frozen=True)
class Environment:
    """What a snapshot records about the interpreter that trained (the manifest's
    ``environment:``). It lives here, not beside the YAML reader, so ``mlsnap env`` need not
    import PyYAML."""

    python: str
    implementation: str
    os: str
    machine: str
    packages: dict[str, str] = field(default_factory=dict)
    accelerators: list[dict[str, Any]] = field(default_factory=list)
    # What the training used, for the drift report (all optional: older manifests lack them).
    imported: list[str] | None = None  # distributions the training process imported (API)
    top_level: list[str] | None = None  # distributions no other installed one requires
    tooling: list[str] | None = None  # mlsnap, what it requires, and the installers

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "python": self.python,
            "implementation": self.implementation,
            "os": self.os,
            "machine": self.machine,
            "packages": dict(sorted(self.packages.items())),
            "accelerators": list(self.accelerators),
        }
        for key in ("imported", "top_level", "tooling"):
            if getattr(self, key) is not None:
                doc[key] = list(getattr(self, key))
        return doc

    def used(self) -> list[str] | None:
        """The recorded packages the training used: those it imported when known, else the
        top-level ones; mlsnap's own tooling left out. None when the record cannot tell."""
        chosen = self.imported if self.imported is not None else self.top_level
        if chosen is None:
            return None
        tooling = set(self.tooling or ())
        return sorted(n for n in chosen if n not in tooling and n in self.packages)


def interpreter(python: str | None = None) -> str | None:
    """The interpreter whose environment a snapshot records, or None for this process.

    ``--python PATH`` wins; otherwise the active virtualenv (``VIRTUAL_ENV``) when it is not the
    one mlsnap itself runs in (mlsnap installed with pipx, say, while training ran in a venv).
    """
    if python:
        path = Path(python)
        if not path.exists():
            raise BadInput(python, "no such interpreter; give the python that trained the model")
        return str(path)
    venv = os.environ.get("VIRTUAL_ENV")
    if venv and Path(venv).resolve() != Path(sys.prefix).resolve():
        for candidate in (Path(venv) / "bin" / "python", Path(venv) / "Scripts" / "python.exe"):
            if candidate.exists():
                return str(candidate)
    return None


def this_process() -> Environment:
    """Describe the interpreter running this code."""
    from mlsnap._envprobe import probe

    return _from_probe(probe())


def training_process() -> Environment:
    """``this_process()`` plus the distributions this process has imported: called from the
    training script (the Python API), that is exactly what the training used."""
    import dataclasses

    return dataclasses.replace(this_process(), imported=imported_distributions())


def imported_distributions() -> list[str]:
    """Installed distributions whose top-level modules this process imported."""
    import importlib.metadata

    from mlsnap._envprobe import normalize

    stdlib: frozenset[str] = getattr(sys, "stdlib_module_names", frozenset())
    modules = {m for m in list(sys.modules) if "." not in m and not m.startswith("_")
               and m not in stdlib}
    owners = importlib.metadata.packages_distributions()
    return sorted({normalize(d) for m in modules for d in owners.get(m, [])})


def capture(python: str | None = None, cwd: Path | None = None) -> Environment:
    """Describe the training interpreter (see ``interpreter``), run in ``cwd`` (default: the
    probe's own folder; ``repro`` keeps one that came with a clone in its worktree)."""
    exe = interpreter(python)
    if exe is None:
        return this_process()
    probe_file = Path(__file__).with_name("_envprobe.py")
    proc = subprocess.run([exe, str(probe_file)], capture_output=True, text=True,
                          timeout=120, check=False, cwd=cwd or probe_file.parent)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise BadInput(exe, f"could not describe this interpreter: {tail[0]}")
    try:
        return _from_probe(json.loads(proc.stdout))
    except (ValueError, KeyError, TypeError, AttributeError):
        # Not a Python that ran mlsnap's probe (a repository's own script named python?).
        raise BadInput(exe, "could not describe this interpreter: it did not print the "
                            "description mlsnap's probe prints; is it a Python "
                            "interpreter?") from None


def _from_probe(raw: dict[str, Any]) -> Environment:
    return Environment(
        python=raw["python"], implementation=raw["implementation"],
        os=raw["os"], machine=raw["machine"],
        packages={k: redact_text(v) for k, v in raw["packages"].items()},
        accelerators=raw["accelerators"],
        top_level=raw.get("top_level"),  # an older mlsnap's probe file may not say
        tooling=raw.get("tooling"),
    )


# What pip reads as one plain `name==version` line and nothing else: a recorded name such as
# "numpy==1\n--index-url https://evil/" would otherwise add options to the requirements file.
_REQ_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,200}[A-Za-z0-9])?$")
_REQ_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+!_*-]{0,100}$")


def requirements(env: Environment) -> str:
    """A pip requirements file that rebuilds ``env``'s packages; names or versions that are
    not plain (they arrive with a manifest, so anyone could have written them) are left out,
    and the file says how many."""
    lines = [(f"# python {_one_line(env.python)} ({_one_line(env.implementation)}) on "
              f"{_one_line(env.machine)}")]
    skipped = 0
    for name, version in sorted(env.packages.items()):
        if _REQ_NAME.match(name) and _REQ_VERSION.match(version):
            lines.append(f"{name}=={version}")
        else:
            skipped += 1
    if skipped:
        lines.append(f"# {skipped} package(s) left out: their recorded name or version is not "
                     "a plain PEP 508 name and version")
    return "\n".join(lines) + "\n"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# --------------------------------------------------------------------------- drift


@dataclass(frozen=True)
class Drift:
    """How the current environment differs from a recorded one."""

    python: tuple[str, str] | None = None
    implementation: tuple[str, str] | None = None
    machine: tuple[str, str] | None = None
    changed: dict[str, tuple[str, str]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)
    # From the record: what the training used (None: the record cannot tell) and mlsnap's own.
    used: frozenset[str] | None = None
    tooling: frozenset[str] = frozenset()
    imported: bool = False  # ``used`` is what the training imported (not the top-level guess)

    def __bool__(self) -> bool:
        return bool(self.python or self.implementation or self.machine or self.changed
                    or self.missing or self.extra)

    def to_dict(self) -> dict[str, Any]:
        differ = sorted({*self.changed, *self.missing, *self.extra})
        return {
            "python": list(self.python) if self.python else None,
            "implementation": list(self.implementation) if self.implementation else None,
            "machine": list(self.machine) if self.machine else None,
            "changed": {k: {"recorded": a, "current": b} for k, (a, b) in self.changed.items()},
            "missing": self.missing,
            "extra": self.extra,
            "used": None if self.used is None else [n for n in differ if n in self.used],
            "tooling": [n for n in differ if n in self.tooling],
        }

    def table(self, limit: int = 20) -> str:
        """A compact, aligned table: what, recorded, current.

        The packages the training used come first, then Python and the platform, then one
        line counting the rest (mlsnap's own tooling apart). A record that cannot tell what
        was used (an older manifest) lists every package, platform first.
        """
        platform = [(label, pair[0], pair[1]) for label, pair in (
            ("python", self.python), ("implementation", self.implementation),
            ("machine", self.machine)) if pair]
        packages = [(name, a, b) for name, (a, b) in sorted(self.changed.items())]
        packages += [(name, v, "(missing)") for name, v in sorted(self.missing.items())]
        packages += [(name, "(not recorded)", v) for name, v in sorted(self.extra.items())]
        if not platform and not packages:
            return "environment: matches the snapshot"
        header = (f"environment drift: {len(self.changed)} changed, {len(self.missing)} missing, "
                  f"{len(self.extra)} extra package(s)")
        if self.used is None:
            rows = platform + packages
            shown, rest = rows[:limit], rows[limit:]
            tail = (f"  ... and {len(rest)} more (mlsnap status --json lists all)"
                    if rest else None)
        else:
            used = [r for r in packages if r[0] in self.used]
            others = [r for r in packages if r[0] not in self.used]
            header += (f"; {len(used)} of them imported by the training" if self.imported else
                       f"; {len(used)} of them installed on purpose (no other package "
                       "requires them)")
            shown = used[:limit] + platform
            rest = used[limit:] + others
            tooling = sum(1 for r in rest if r[0] in self.tooling)
            tail = None
            if rest:
                tail = (f"  ... and {len(rest)} more package(s) the training did not import or "
                        "install on purpose" if not tooling else
                        f"  ... and {len(rest)} more package(s): {tooling} of mlsnap's own "
                        f"tooling (DVC and its dependencies), {len(rest) - tooling} other(s)")
                tail += " (mlsnap status --json lists all)"
        lines = [header]
        if shown:
            width = [max(len(r[i]) for r in shown + [("package", "recorded", "current")])
                     for i in range(3)]
            for r in [("package", "recorded", "current"), *shown]:
                lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, width)).rstrip())
        if tail:
            lines.append(tail)
        return "\n".join(lines)


def drift(recorded: Environment, current: Environment) -> Drift:
    rec, cur = recorded.packages, current.packages

    def pair(a: str, b: str) -> tuple[str, str] | None:
        return (a, b) if a != b else None

    used = recorded.used()
    return Drift(
        python=pair(recorded.python, current.python),
        implementation=pair(recorded.implementation, current.implementation),
        machine=pair(recorded.machine, current.machine),
        changed={k: (rec[k], cur[k]) for k in rec if k in cur and rec[k] != cur[k]},
        missing={k: rec[k] for k in rec if k not in cur},
        extra={k: cur[k] for k in cur if k not in rec},
        used=None if used is None else frozenset(used),
        tooling=frozenset(recorded.tooling or ()),
        imported=recorded.imported is not None,
    )

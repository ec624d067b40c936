"""``mlsnap repro --env rebuild``: a fresh virtual environment from a snapshot's packages.

The environment is made by this interpreter (``venv``, without pip: nothing the record lacks
is added) and filled by this interpreter's pip (``pip --python``), every recorded package
pinned (``name==version``) and installed without dependencies: the record is the whole
environment already. mlsnap's own tooling (DVC and its world) and the installers are left out,
as the drift report leaves them out. pip reads its usual settings (``PIP_INDEX_URL``,
``PIP_FIND_LINKS``, ``pip.conf``), so a local index works as it does for ``pip install``.

A package that cannot be installed (not on the index, an editable or local install, a name
that is not a plain requirement) is named, and the re-run goes on without it: the drift table
shows it missing.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mlsnap.environment import Environment, requirements
from mlsnap.errors import MlsnapError

_INSTALLERS = ("pip", "setuptools", "wheel")
_MAX_ONE_BY_ONE = 60  # packages tried one at a time to name those that fail


@dataclass(frozen=True)
class Rebuilt:
    python: str  # the new environment's interpreter
    installed: tuple[str, ...]
    failed: tuple[str, ...]  # "name==version: why"
    seconds: float

    def to_dict(self) -> dict[str, object]:
        return {"installer": "pip", "python": self.python, "installed": len(self.installed),
                "failed": list(self.failed), "seconds": self.seconds}


def wanted(env: Environment) -> dict[str, str]:
    """The recorded packages to install: all of them but mlsnap's tooling and the installers."""
    skip = {*(env.tooling or ()), *_INSTALLERS}
    return {n: v for n, v in sorted(env.packages.items()) if n not in skip}


def _pip(python: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                           "-q", "--no-deps", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, check=False, timeout=1800)


def _why(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return (errors or lines or ["pip failed"])[0].removeprefix("ERROR: ")[:200]


def rebuild(env: Environment, folder: Path) -> Rebuilt:
    """A virtual environment in ``folder`` holding ``env``'s packages (see the module)."""
    clock = time.monotonic()
    made = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)],
                          capture_output=True, text=True, check=False, timeout=300)
    python = folder / "bin" / "python"
    if made.returncode != 0 or not python.exists():
        raise MlsnapError(f"--env rebuild: could not create a virtual environment in {folder} "
                          f"({(made.stderr.strip().splitlines() or ['no output'])[-1]})")
    packages = wanted(env)
    text = requirements(dataclasses.replace(env, packages=packages))
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    failed = [f"{n}=={v}: not a plain name and version" for n, v in packages.items()
              if f"{n}=={v}" not in lines]
    installed: list[str] = []
    if lines:
        req = folder / "requirements.txt"
        req.write_text("\n".join(lines) + "\n")
        proc = _pip(python, ["-r", str(req)])
        if proc.returncode == 0:
            installed = lines
        elif len(lines) <= _MAX_ONE_BY_ONE:
            for line in lines:  # which ones: each on its own
                one = _pip(python, [line])
                if one.returncode == 0:
                    installed.append(line)
                else:
                    failed.append(f"{line}: {_why(one)}")
        else:
            failed.append(f"{len(lines)} packages: {_why(proc)}")
    return Rebuilt(str(python), tuple(installed), tuple(sorted(failed)),
                   round(time.monotonic() - clock, 3))


def command_in(cmd: list[str], python: str | None, rebuilt: Rebuilt) -> tuple[list[str],
                                                                              dict[str, str]]:
    """``cmd`` and the environment variables to run it in the rebuilt environment: its
    ``python`` replaces the recorded interpreter, and its ``bin`` leads ``PATH``."""
    import os

    bin_dir = str(Path(rebuilt.python).parent)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    env["VIRTUAL_ENV"] = str(Path(bin_dir).parent)
    env.pop("PYTHONHOME", None)
    if python is not None or re.fullmatch(r"python(\d+(\.\d+)?)?", Path(cmd[0]).name):
        cmd = [rebuilt.python, *cmd[1:]]
    return cmd, env

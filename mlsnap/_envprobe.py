"""Describe the running interpreter as JSON. Standard library only.

mlsnap imports ``probe()`` to describe its own process, and runs this file with another
interpreter (the active virtualenv's, or ``--python PATH``) to describe that one instead.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
# The installers of a virtualenv: there in every one, never what a training uses.
INSTALLERS = ("pip", "setuptools", "wheel")


def _headers(text: str) -> tuple[str | None, str | None, list[str]]:
    """Name, Version and the required distributions, from the metadata headers alone.

    ``importlib.metadata`` runs the email parser over the whole file, long description
    included, and importing it costs more than this whole scan. The headers end at the first
    blank line; the first Name/Version header wins, as there. Requirements of an extra
    (``; extra == "dev"``) are optional, so they are left out.
    """
    found: dict[str, str] = {}
    requires: list[str] = []
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key in ("name", "version") and key not in found:
            found[key] = value.strip()
        elif sep and key == "requires-dist" and "extra" not in value.partition(";")[2]:
            match = _REQUIREMENT_NAME.match(value)
            if match:
                requires.append(normalize(match.group(1)))
    return found.get("name"), found.get("version"), requires


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _metadata_files() -> Iterator[str]:
    """The metadata of every distribution on sys.path, in the order importlib.metadata finds
    them: path entries in order; in each, ``*.dist-info`` before ``*.egg-info``."""
    for entry in sys.path:
        folder = entry or "."
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue  # zip files and missing folders hold no installed distributions here
        for suffix in (".dist-info", ".egg-info"):
            for name in names:
                if not name.lower().endswith(suffix):
                    continue
                path = os.path.join(folder, name)
                if os.path.isdir(path):
                    yield _read(os.path.join(path, "METADATA")) or _read(
                        os.path.join(path, "PKG-INFO"))
                else:
                    yield _read(path)  # an egg-info file is PKG-INFO itself


def packages() -> dict[str, str]:
    return distributions()[0]


def distributions() -> tuple[dict[str, str], dict[str, list[str]]]:
    """Installed distributions: name -> version, and name -> the distributions it requires."""
    found: dict[str, str] = {}
    requires: dict[str, list[str]] = {}
    for text in _metadata_files():
        name, version, needs = _headers(text)
        if not name or version is None:
            continue
        key = normalize(name)
        if key not in found:  # first on sys.path wins, as at import
            found[key] = version
            requires[key] = needs
    return dict(sorted(found.items())), requires


def top_level(installed: dict[str, str], requires: dict[str, list[str]]) -> list[str]:
    """The distributions no other installed distribution requires: what was installed on
    purpose (``pip install scikit-learn``), not what came with it."""
    required = {r for name, needs in requires.items() for r in needs if r != name}
    return sorted(n for n in installed if n not in required)


def tooling(installed: dict[str, str], requires: dict[str, list[str]]) -> list[str]:
    """mlsnap, everything it requires (DVC and its own world), and the installers."""
    todo = [n for n in ("mlsnap", *INSTALLERS) if n in installed]
    seen = set(todo)
    while todo:
        for need in requires.get(todo.pop(), []):
            if need in installed and need not in seen:
                seen.add(need)
                todo.append(need)
    return sorted(seen)


def accelerators() -> list[dict[str, str]]:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        proc = subprocess.run(
            [smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    found = []
    for line in proc.stdout.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) >= 2 and fields[0]:
            entry = {"name": fields[0], "driver": fields[1]}
            if len(fields) > 2:
                entry["memory"] = fields[2]
            found.append(entry)
    return found


def probe() -> dict[str, Any]:
    installed, requires = distributions()
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "packages": installed,
        "accelerators": accelerators(),
        "top_level": top_level(installed, requires),
        "tooling": tooling(installed, requires),
        "executable": sys.executable,
    }


if __name__ == "__main__":
    json.dump(probe(), sys.stdout)

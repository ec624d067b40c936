"""Describe the running interpreter as JSON. Standard library only.

mlsnap imports ``probe()`` to describe its own process, and runs this file with another
interpreter (the active virtualenv's, or ``--python PATH``) to describe that one instead.
"""

import json
import platform
import re
import shutil
import subprocess
import sys


def _normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _name_version(dist):
    """Name and Version from the metadata headers alone.

    ``dist.metadata`` and ``dist.version`` each run the email parser over the whole file, long
    description included: that was most of the time of ``mlsnap env``, ``commit`` and ``pull``.
    The headers end at the first blank line; the first Name/Version header wins, as there.
    """
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    found = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key in ("name", "version") and key not in found:
            found[key] = value.strip()
    return found.get("name"), found.get("version")


def packages():
    from importlib import metadata

    found = {}
    for dist in metadata.distributions():
        name, version = _name_version(dist)
        if not name:
            continue
        found.setdefault(_normalize(name), version)  # first on sys.path wins, as at import
    return dict(sorted(found.items()))


def accelerators():
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


def probe():
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "packages": packages(),
        "accelerators": accelerators(),
        "executable": sys.executable,
    }


if __name__ == "__main__":
    json.dump(probe(), sys.stdout)

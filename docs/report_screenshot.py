"""Regenerate docs/report.png, the README's picture of `mlsnap report`: a real project (4
snapshots of a model, two of them tagged, and two Checkpointer runs), its real report, drawn in
headless Chromium with the network blocked.

    python docs/report_screenshot.py            # needs mlsnap[report], playwright and chromium
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.browser import missing, open_page  # noqa: E402
from benchmarks.report_case import build_project  # noqa: E402


def main() -> int:
    why = missing()
    if why:
        print(f"cannot take the screenshot: {why}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="mlsnap-shot-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        env = {"HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "Docs",
               "GIT_AUTHOR_EMAIL": "docs@example.com", "GIT_COMMITTER_NAME": "Docs",
               "GIT_COMMITTER_EMAIL": "docs@example.com", "DVC_NO_ANALYTICS": "1",
               "DVC_NO_UPDATER": "1", "CI": "true", "PYTHONPATH": str(HERE.parent)}
        proj = build_project(Path(tmp) / "scene", env)
        out = Path(tmp) / "report.html"
        subprocess.run([sys.executable, "-m", "mlsnap", "report", "-o", str(out)], cwd=proj,
                       env={**os.environ, **env}, check=True)
        found = open_page(out, screenshot=HERE / "report.png", width=1280)["loaded"]
        if found.console_errors or found.requests:
            print(f"the page was not clean: {found.console_errors} {found.requests}",
                  file=sys.stderr)
            return 1
    print(f"wrote {HERE / 'report.png'} ({(HERE / 'report.png').stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

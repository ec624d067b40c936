"""The repro case: ``mlsnap repro`` against running the recorded command by hand.

One snapshot taken with ``mlsnap run`` of a command that reads a 100 MiB input (its size
follows ``Sizes.data`` with ``--quick``) and writes a small model. The overhead of ``repro``
(worktree, verified restore of the input, environment probe, hashing and comparing the
artifact) is the difference of the two medians; the target is <= 1.5 s for 100 MiB.
"""

from __future__ import annotations

import sys

from benchmarks.cases import Bench, _size
from benchmarks.harness import MiB, Row, Side, alternate, median, write_random

TRAIN = """\
import hashlib
digest = hashlib.md5()
with open("data/big.bin", "rb") as f:
    while chunk := f.read(1 << 20):
        digest.update(chunk)
open("model.bin", "w").write(digest.hexdigest() * 1000)
"""


def repro_rows(bench: Bench) -> list[Row]:
    size = min(bench.sizes.data, 100 * MiB)
    repo = bench.mlsnap_repo("repro")
    (repo / "train.py").write_text(TRAIN)
    bench.git(repo, "commit", "-qam", "train on the big input")
    write_random(repo / "data" / "big.bin", size, "repro")
    bench.shell.run([*bench.mlsnap, "run", "-o", "model.bin", "--data", "data/big.bin",
                     "--no-push", "--", sys.executable, "train.py"], repo)
    sides = [
        Side("mlsnap", lambda i: repo, lambda i: [[*bench.mlsnap, "repro"]]),
        Side("by hand", lambda i: repo, lambda i: [[sys.executable, "train.py"]]),
    ]
    res = alternate(bench.shell, sides[0], sides[1], bench.runs)
    times = {k: [t for t, _ in v] for k, v in res.items()}
    mine, peer = median(times["mlsnap"]), median(times["by hand"])
    overhead = mine - peer
    return [Row(f"repro of a run with a {_size(size)} input", mine, peer,
                "the command by hand", "overhead <= 1.5 s", overhead <= 1.5,
                note=f"overhead {overhead:.2f} s (worktree, verified restore of the input, "
                     "environment probe, hash and compare of the artifact)", samples=times)]

"""The gc case: ``mlsnap gc`` over many snapshots against ``dvc gc -w -a -T -c -f``.

One linear history of N snapshots (one model each, written with ``git fast-import``), every
model's bytes in the cache and on a folder remote of its own, put there through DVC's object
databases. Both tools keep only what ``main``'s tip needs (``--keep-last 1`` for mlsnap; the
workspace, every branch and tag for DVC) and delete the N-1 other objects from the cache and
the remote. Before every timed run both stores are restored from a pristine copy by hard links
(untimed), so each run deletes the same objects.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from benchmarks.cases import Bench
from benchmarks.harness import MiB, Row, Side, alternate, median
from mlsnap.environment import Environment
from mlsnap.manifest import Code, Manifest, Output, dump

_ENV = Environment(python="3.11.7", implementation="CPython", os="Linux-6.1.0-x86_64",
                   machine="x86_64", packages={"numpy": "2.1.0"})


def _blob(text: str) -> bytes:
    data = text.encode()
    return b"data %d\n%s\n" % (len(data), data)


def _stream(md5s: list[tuple[str, int]], parent: str, start: int = 1_700_000_000) -> bytes:
    chunks = []
    for i, (md5, size) in enumerate(md5s):
        manifest = Manifest(
            name="model", created="2026-01-01T00:00:00Z", message=f"run {i}",
            code=Code(commit=parent, branch="main", dirty=False), data_hash=None, inputs=(),
            artifacts=(Output("model.bin", md5, size, 1),), params={"run": i},
            metrics={"accuracy": round(i / len(md5s), 6)}, environment=_ENV)
        pointer = f"outs:\n- md5: {md5}\n  size: {size}\n  hash: md5\n  path: model.bin\n"
        chunks += [b"commit refs/heads/main\n",
                   b"committer Bench <bench@example.com> %d +0000\n" % (start + 60 * i),
                   _blob(f"mlsnap: model: run {i}")]
        if i == 0:
            chunks.append(f"from {parent}\n".encode())
        for path, text in ((".mlsnap/model.yaml", dump(manifest)), ("model.bin.dvc", pointer)):
            chunks.append(f"M 100644 inline {path}\n".encode() + _blob(text))
        chunks.append(b"\n")
    return b"".join(chunks)


def _fill(repo: Path, n: int, size: int) -> list[tuple[str, int]]:
    """Put N distinct objects of ``size`` bytes in the cache and on the remote (DVC's API)."""
    from mlsnap import store

    block = os.urandom(size)
    md5s = []
    with store.open_repo(repo) as dvc:
        remote = dvc.cloud.get_remote_odb(None, "bench")
        for i in range(n):
            data = i.to_bytes(8, "big") + block[8:]
            md5 = hashlib.md5(data).hexdigest()
            dvc.cache.local.add_bytes(md5, data)
            remote.add_bytes(md5, data)
            md5s.append((md5, size))
    return md5s


def _restore(pristine: Path, live: Path) -> None:
    shutil.rmtree(live, ignore_errors=True)
    subprocess.run(["cp", "-al", str(pristine), str(live)], check=True)


def gc_rows(bench: Bench) -> list[Row]:
    n, size = bench.sizes.snapshots, bench.sizes.small_model
    repo = bench.mlsnap_repo("gc")
    remote = bench.base / "gc-remote"
    bench.shell.run([*bench.dvc, "remote", "modify", "storage", "url", str(remote)], repo)
    bench.git(repo, "commit", "-qam", "own remote")
    md5s = _fill(repo, n, size)
    parent = bench.git(repo, "rev-parse", "HEAD")
    subprocess.run(["git", "fast-import", "--quiet"], cwd=repo, env=bench.shell.env,
                   input=_stream(md5s, parent), check=True, capture_output=True)
    bench.git(repo, "reset", "-q", "--hard", "main")
    cache = repo / ".dvc" / "cache"
    pristine = bench.base / "gc-pristine"
    pristine.mkdir()
    os.replace(cache, pristine / "cache")
    os.replace(remote, pristine / "remote")

    def prepare(_: int) -> None:
        _restore(pristine / "cache", cache)
        _restore(pristine / "remote", remote)
        shutil.rmtree(repo / ".dvc" / "tmp", ignore_errors=True)  # DVC's index of the remote

    left: dict[str, list[int]] = {"mlsnap": [], "dvc": []}

    def count(label: str) -> None:
        objects = sum(1 for p in (cache / "files" / "md5").glob("??/*"))
        objects += sum(1 for p in (remote / "files" / "md5").glob("??/*"))
        left[label].append(objects)

    sides = [
        Side("mlsnap", lambda i: repo, lambda i: [[*bench.mlsnap, "gc", "--keep-last", "1",
                                                   "--remote", "--yes", "--allow-stale-refs"]],
             prepare, lambda i: count("mlsnap")),
        Side("dvc", lambda i: repo, lambda i: [[*bench.dvc, "gc", "-w", "-a", "-T", "-c", "-f"]],
             prepare, lambda i: count("dvc")),
    ]
    res = alternate(bench.shell, sides[0], sides[1], bench.runs)
    times = {k: [t for t, _ in v] for k, v in res.items()}
    mine, peer = median(times["mlsnap"]), median(times["dvc"])
    deleted = 2 * (n - 1)
    same = set(left["mlsnap"]) == set(left["dvc"]) == {2}
    note = (f"{deleted:,} objects deleted ({n - 1:,} from the cache, {n - 1:,} from the "
            f"remote): mlsnap {deleted / mine:,.0f} objects/s, dvc {deleted / peer:,.0f}/s; "
            + ("both left exactly the tip's object in each store" if same else
               f"objects left: mlsnap {left['mlsnap']}, dvc {left['dvc']}"))
    return [Row(f"gc, {n:,} snapshots x {size // MiB} MiB (cache + folder remote)", mine, peer,
                "dvc gc -w -a -T -c -f", "(context)", None if same else False, note=note,
                samples=times)]

"""Pickle-based files: which ones, what a scanner finds in them, and the manifest's record.

A pickle is a program: loading one may call any importable function (``os.system``,
``builtins.eval``). mlsnap never loads one. It disassembles the opcodes with picklescan (the
scanner the Hugging Face Hub runs; ``pickletools.genops``, nothing is executed) and names the
imports that are known to run code. Torch zips (``.pt``/``.pth``/``.ckpt``/``.bin``) are scanned
member by member, ``.npy`` only when its dtype holds objects. picklescan is imported inside the
functions that scan: ``import mlsnap`` stays light.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlsnap.errors import CheckFailed, ManifestInvalid

# Formats that are (or may hold) pickles; safetensors, ONNX, JSON and others are never scanned.
SUFFIXES = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".ckpt", ".bin", ".npy", ".npz")
CLEAN, DANGEROUS = "clean", "dangerous"
VERDICTS = (CLEAN, DANGEROUS)
# How pickles spell a few modules; shown as users write them (``os.system``, not ``posix``).
_ALIASES = {"posix": "os", "nt": "os", "__builtin__": "builtins"}


def is_pickle_based(path: str) -> bool:
    return path.lower().endswith(SUFFIXES)


@dataclass(frozen=True)
class FileVerdict:
    """What the scan found in one file: ``clean`` (no import known to run code) or
    ``dangerous``, with those imports (``os.system``)."""

    path: str
    verdict: str
    imports: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"path": self.path, "verdict": self.verdict}
        if self.imports:
            doc["imports"] = list(self.imports)
        return doc


@dataclass(frozen=True)
class PickleScan:
    """The manifest's ``pickles:`` record: the scanner and the verdict of each file scanned."""

    scanner: str
    files: tuple[FileVerdict, ...]

    @property
    def dangerous(self) -> tuple[FileVerdict, ...]:
        return tuple(f for f in self.files if f.verdict == DANGEROUS)

    def to_dict(self) -> dict[str, Any]:
        return {"scanner": self.scanner, "files": [f.to_dict() for f in self.files]}


class UnsafePickle(CheckFailed):
    """Files that import code-running functions would be placed: refused (exit 3)."""

    def __init__(self, found: Sequence[FileVerdict], where: str) -> None:
        self.found = list(found)
        named = "; ".join(f"{f.path} imports {', '.join(f.imports)}" for f in self.found)
        super().__init__(
            f"refusing to {where} pickles that run code when loaded: {named}; nothing was "
            "written; if you trust who made them, pass --allow-unsafe-pickle (and still never "
            "load them outside a sandbox)")


def scanner_name() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"picklescan {version('picklescan')}"
    except PackageNotFoundError:
        return "picklescan"


def _picklescan() -> Any:
    try:
        from picklescan import scanner
    except ImportError:
        from mlsnap.errors import MlsnapError

        raise MlsnapError("picklescan is not installed, and mlsnap scans every pickle-based "
                          "file it records or restores; `pip install picklescan`") from None
    log = logging.getLogger("picklescan")  # it warns on stderr about every odd file
    log.handlers = [logging.NullHandler()]
    log.propagate = False
    return scanner


def _spell(module: str, name: str) -> str:
    head, dot, rest = module.partition(".")
    return f"{_ALIASES.get(head, head)}{dot}{rest}.{name}"


def scan_file(file: Path, path: str) -> FileVerdict:
    """Scan the bytes of ``file`` as the format ``path`` names (its suffix), never loading them.

    A file that is no pickle at all (random bytes named ``.bin``) is ``clean``: nothing in it
    can be unpickled. One that breaks off after a dangerous import is still ``dangerous``.
    """
    scanner = _picklescan()
    ext = os.path.splitext(path)[1].lower()
    with open(file, "rb") as stream:  # a file that cannot be opened is the caller's error
        if os.fstat(stream.fileno()).st_size == 0:
            return FileVerdict(path, CLEAN)  # nothing to unpickle
        try:
            result = scanner.scan_bytes(stream, path, ext)
        except Exception as exc:  # noqa: BLE001 - a crafted file may break the scanner itself
            if _stops_before_any_import(file, ext):
                return FileVerdict(path, CLEAN)  # random bytes: the unpickler stops there too
            return FileVerdict(path, DANGEROUS,
                               (f"unreadable by the scanner ({type(exc).__name__})",))
    bad = sorted({_spell(g.module, g.name) for g in result.globals
                  if g.safety == scanner.SafetyLevel.Dangerous})
    return FileVerdict(path, DANGEROUS if bad else CLEAN, tuple(bad))


# Opcodes that can leave a text on the unpickler's stack (a module or a name for
# STACK_GLOBAL): a string push, or a read of the memo, which may hold one.
_TEXT = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
         "BINUNICODE8", "GET", "BINGET", "LONG_BINGET"}


def _stops_before_any_import(file: Path, ext: str) -> bool:
    """Whether a plain (not zip, not NumPy) file the scanner could not read is no pickle at all:
    its opcodes break off before any opcode that could import an object. The unpickler reads
    the same opcodes in the same order and stops at the same place, so nothing could run.
    Imports: GLOBAL/INST of a real dotted name, STACK_GLOBAL once a text may be on the stack.
    An extension code (EXT*) names an object only in a process that registered it with
    copyreg, which Python, NumPy and torch do not. Zips and NumPy files hold pickles inside:
    one that breaks the scanner stays refused."""
    import pickletools
    import zipfile

    if ext in (".npy", ".npz") or zipfile.is_zipfile(file):
        return False
    try:
        with open(file, "rb") as stream:
            texts = 0  # STACK_GLOBAL pops two: a module and a name
            for opcode, arg, _ in pickletools.genops(stream):
                if opcode.name in ("GLOBAL", "INST") and _importable_name(arg):
                    return False
                if opcode.name == "STACK_GLOBAL" and texts >= 2:
                    return False
                if opcode.name == "STOP":
                    return True  # the end, and nothing was imported on the way
                texts += opcode.name in _TEXT
    except Exception:  # noqa: BLE001 - the point where the bytes stop being a pickle
        return True
    return False


def _importable_name(arg: object) -> bool:
    """Whether GLOBAL's "module name" argument could name a real object (dotted identifiers)."""
    parts = str(arg).split(" ")
    return len(parts) == 2 and all(
        piece.isidentifier() for part in parts for piece in part.split("."))


def scan_files(files: Iterable[tuple[Path, str]]) -> list[FileVerdict]:
    """``scan_file`` of each (bytes on disk, recorded path) that is pickle-based."""
    return [scan_file(file, path) for file, path in files if is_pickle_based(path)]


# --------------------------------------------------------------------------- manifest record


def scan_from_doc(doc: Any, source: str) -> PickleScan | None:
    """Validate the optional ``pickles:`` key of a manifest (absent in older manifests)."""
    from mlsnap import pathsafety

    if doc is None:
        return None

    def fail(where: str, reason: str) -> ManifestInvalid:
        return ManifestInvalid(source, f"pickles{where}: {reason}")

    if not isinstance(doc, dict) or not isinstance(doc.get("scanner"), str) \
            or not isinstance(doc.get("files"), list):
        raise fail("", "expected a mapping with 'scanner' (text) and 'files' (a list)")
    files = []
    for i, entry in enumerate(doc["files"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise fail(f".files[{i}]", "expected a mapping with a 'path'")
        reason = pathsafety.problem_in_repo(entry["path"])
        if reason:
            raise fail(f".files[{i}].path", reason)
        if entry.get("verdict") not in VERDICTS:
            raise fail(f".files[{i}].verdict", f"expected one of {', '.join(VERDICTS)}")
        imports = entry.get("imports", [])
        if not isinstance(imports, list) or not all(isinstance(x, str) for x in imports):
            raise fail(f".files[{i}].imports", "expected a list of names")
        files.append(FileVerdict(entry["path"], entry["verdict"], tuple(imports)))
    return PickleScan(doc["scanner"], tuple(files))


def recorded_dangerous(scans: Iterable[PickleScan | None]) -> dict[str, FileVerdict]:
    """Path -> verdict of every file a manifest's own scan recorded as dangerous."""
    return {f.path: f for scan in scans if scan is not None for f in scan.dangerous}


def refused(found: Iterable[FileVerdict], recorded: dict[str, FileVerdict]) -> list[FileVerdict]:
    """The files to refuse: dangerous now, or recorded dangerous when the snapshot was taken
    (a scanner that learnt less since must not let them through); imports of both named."""
    out: dict[str, FileVerdict] = {}
    for f in found:
        old = recorded.get(f.path)
        if f.verdict == DANGEROUS or old is not None:
            names = tuple(sorted({*f.imports, *(old.imports if old else ())}))
            out[f.path] = FileVerdict(f.path, DANGEROUS, names)
    return [out[p] for p in sorted(out)]


# --------------------------------------------------------------------------- what to scan


def files_of(repo: Any, root: Path, tracked: Sequence[tuple[str, str]], *,
             cached: bool) -> list[tuple[Path, str]]:
    """(bytes on disk, recorded path) of every pickle-based file of ``tracked`` ((path, md5)
    pairs), a folder's files included (named by its listing, hashed before it is read): the
    workspace copies (at commit) or the cache objects (before a restore; one the cache lacks
    is left to the restore's own check, which names it missing)."""
    from mlsnap import store

    found: list[tuple[Path, str]] = []
    for path, md5 in tracked:
        if not md5.endswith(".dir"):
            if is_pickle_based(path) and (not cached or store.in_cache(repo, md5)):
                found.append((store.cache_file(repo, md5) if cached else root / path, path))
            continue
        if not store.in_cache(repo, md5):
            continue
        for entry in store.dir_entries(repo, md5, path):
            label = f"{path}/{entry['relpath']}"
            if is_pickle_based(label) and (not cached or store.in_cache(repo, entry["md5"])):
                found.append((store.cache_file(repo, entry["md5"]) if cached else root / label,
                              label))
    return found


def scan_snapshot(repo: Any, root: Path, tracked: Sequence[tuple[str, str]]) -> PickleScan | None:
    """The record ``commit`` writes: every pickle-based file of the snapshot, scanned as it is
    in the workspace; None when there is none."""
    verdicts = scan_files(files_of(repo, root, tracked, cached=False))
    return PickleScan(scanner_name(), tuple(verdicts)) if verdicts else None

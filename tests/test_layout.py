"""The package's layout as the README promises it: imports run one way, one module family talks
to Git and one to DVC, and every module is named in the README's Layout section."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mlsnap"
README = PACKAGE.parent / "README.md"

# What a command does; the low layer below them never imports one of these.
FLOWS = {
    "api", "cli", "initialize", "snapshot", "sources", "restore", "history", "retrieve", "compare",
    "diffview",
    "retention", "gcview", "collected", "checkpoint", "distributed", "adapters", "hooks",
    "hookpush",
    "hookscripts", "demo", "runner", "reproduce", "reprocheck", "reprobuild", "report", "verify",
}
LOW = {
    "gitrepo", "store", "journal", "partials", "writers", "checkpoint_files",
    "checkpoint_index", "rngstate", "manifest",
    "safeyaml", "blobs",
    "pathsafety", "redaction", "textsafe", "environment", "params", "workspace", "config",
    "fsutil", "jsonout", "errors", "interrupts", "runrecord", "runproc", "pickles", "signing",
    "storecheck",
}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _top(path: Path) -> str:
    """The first name under mlsnap/ (``store`` for mlsnap/store/remote.py)."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at its top or inside a function, typing-only included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "mlsnap":  # from mlsnap import store, gitrepo
                found.update(f"mlsnap.{alias.name}" for alias in node.names)
    return found


def _mlsnap_tops(path: Path) -> set[str]:
    return {name.split(".")[1] for name in _imports(path)
            if name.startswith("mlsnap.") and len(name.split(".")) > 1}


def test_the_low_layer_never_imports_a_flow() -> None:
    upward = [f"{p.relative_to(PACKAGE)} imports mlsnap.{top}"
              for p in _modules() if _top(p) in LOW
              for top in sorted(_mlsnap_tops(p) & FLOWS)]
    assert upward == []


def test_only_the_store_package_imports_dvc() -> None:
    outside = [f"{p.relative_to(PACKAGE)}: {name}" for p in _modules() if _top(p) != "store"
               for name in sorted(_imports(p))
               if name.split(".")[0] in {"dvc", "dvc_data", "dvc_objects"}
               and not _typing_only(p, name)]
    assert outside == []


def _typing_only(path: Path, module: str) -> bool:
    """Whether every import of ``module`` in ``path`` sits under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) \
                and node.test.id == "TYPE_CHECKING":
            guarded.update(id(n) for n in ast.walk(node))
    uses = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == module]
    return bool(uses) and all(id(n) in guarded for n in uses)


def test_only_the_gitrepo_package_starts_git() -> None:
    # The demo drives the whole loop as a user would, from the outside: its git calls are the
    # user's, not mlsnap's.
    pattern = re.compile(r"""\[\s*["']git["']""")
    outside = [str(p.relative_to(PACKAGE)) for p in _modules()
               if _top(p) not in {"gitrepo", "demo"} and pattern.search(p.read_text())]
    assert outside == []


def test_every_module_is_in_a_layer_and_named_in_the_readme_layout() -> None:
    text = README.read_text()
    block = text[text.index("## Layout"):]
    block = block[:block.index("```", block.index("```") + 3)]
    tops = {_top(p) for p in _modules()} - {"__init__", "__main__", "_envprobe"}
    assert tops - FLOWS - LOW == set(), "a module in no layer: add it to FLOWS or LOW"
    unnamed = sorted(t for t in tops
                     if not re.search(rf"(?<![\w.]){re.escape(t)}(\.py|/)", block))
    assert unnamed == []


def test_no_module_imports_another_modules_private_names() -> None:
    """``from mlsnap.x import _y`` reaches into x's internals; a package's own modules
    (store/, gitrepo/, report/) may share theirs."""
    reached = []
    for p in _modules():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module \
                    and node.module.startswith("mlsnap."):
                inside = node.module.split(".")[1] == _top(p) and len(p.relative_to(PACKAGE).parts) > 1
                reached += [f"{p.relative_to(PACKAGE)}: {node.module}.{a.name}"
                            for a in node.names if a.name.startswith("_") and not inside]
    assert reached == []

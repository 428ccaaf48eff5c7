"""The package layering: every module imports only from layers below its own (README, Development)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Bottom to top. A package may import itself and any package of a lower layer; packages that
# share a layer are peers and may not import each other (routing is handed its writer).
LAYERS: list[set[str]] = [
    {"vocab", "jsonio"},
    {"config"},
    {"money"},
    {"routing", "log"},
    {"budgets", "ingest"},
    {"analysis"},
    {"sim"},
    {"runtime"},
    {"server", "ui"},
    {"cli", "apikeys"},
]
RANK = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}


def _package_of(module: str) -> str:
    """`sophia.routing.policy` → `routing`; `sophia.vocab` → `vocab`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, absolute module) for every import of a sophia module in a file, top level or local."""
    me = _module_name(path, root)
    here = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "sophia"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(here.split(".")[: len(here.split(".")) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "sophia":
                continue
            if mod == "sophia":  # from sophia import x: each name is a module
                out += [(node.lineno, f"sophia.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, mod))
    return out


def violations(root: Path = ROOT) -> list[str]:
    found = []
    for path in sorted((root / "sophia").rglob("*.py")):
        rel = path.relative_to(root)
        me = _package_of(_module_name(path, root))
        if me == "":
            continue
        if me not in RANK:
            found.append(f"{rel}: package '{me}' has no layer in tests/test_layers.py")
            continue
        for line, mod in imported_modules(path, root):
            other = _package_of(mod)
            if other == me:
                continue
            if other not in RANK:
                found.append(f"{rel}:{line} imports {mod}, which has no layer")
            elif RANK[other] >= RANK[me]:
                way = "a peer" if RANK[other] == RANK[me] else "a higher layer"
                found.append(f"{rel}:{line} imports {mod} ({way}: {other} from {me})")
    return found


def test_every_import_goes_downward():
    assert violations() == []


def test_the_check_catches_an_upward_and_a_sideways_import(tmp_path):
    pkg = tmp_path / "sophia"
    (pkg / "routing").mkdir(parents=True)
    (pkg / "money").mkdir()
    (pkg / "routing" / "router.py").write_text("from sophia.log import writer\n")
    (pkg / "money" / "pricing.py").write_text("from sophia.routing import policy\nfrom ..config import Config\n")
    assert violations(tmp_path) == [
        "sophia/money/pricing.py:1 imports sophia.routing (a higher layer: routing from money)",
        "sophia/routing/router.py:1 imports sophia.log (a peer: log from routing)",
    ]


@pytest.mark.parametrize("name", ["pages", "app.py"])
def test_faces_import_no_private_names(name):
    """Pages use the packages' public functions, never a `_private` one."""
    paths = [ROOT / name] if name.endswith(".py") else sorted((ROOT / name).glob("*.py"))
    bad = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sophia"):
                bad += [f"{path.name}: {a.name}" for a in node.names if a.name.startswith("_")]
    assert bad == []

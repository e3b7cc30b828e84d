"""The package's folders are layers: each imports only what the README's layout table allows.

Every import is read, the lazy ones inside functions included; an import the table does not
allow fails here with the file and the line, so the layout in the README stays true."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "decodemo"

_BASE = {"errors", "settings"}
_MATH = _BASE | {"ops", "metrics", "io", "features"}
_MODELS = _MATH | {"data", "methods", "inference", "evaluation", "ood"}
_SERVING = _MODELS | {"hub", "service", "store"}
#: layer -> the decodemo layers it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "settings": {"errors"},
    "ops": {"errors"},
    "metrics": {"errors"},
    "io": {"errors"},
    "features": {"errors"},
    "ood": {"errors", "features", "data", "inference", "io"},
    "data": {"errors", "io", "ops"},
    "methods": {"errors", "ops", "features"},
    "inference": {"errors", "io"},
    "evaluation": {"errors", "data", "inference", "metrics", "io"},
    "training": _MODELS,
    "hub": {"errors", "settings", "methods", "metrics"},
    "service": {"errors", "settings", "hub", "inference", "evaluation", "io", "methods", "metrics", "ood"},
    "store": {"errors", "settings", "methods", "metrics"},
    "app": _SERVING - {"training"},
    "bench": _SERVING | {"training"},
    "commands": _SERVING | {"training", "bench"},
    "cli": {"errors", "commands"},
    "__main__": {"cli"},
}


def _layer(path: Path) -> str:
    first = path.relative_to(PACKAGE).parts[0]
    return first.removesuffix(".py")


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "decodemo":
                names = [f"decodemo.{a.name}" for a in node.names]
            yield from ((n, node.lineno) for n in names)
        elif isinstance(node, ast.Import):
            yield from ((a.name, node.lineno) for a in node.names)


def test_every_layer_is_in_the_table():
    layers = {_layer(p) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE}
    assert layers - set(ALLOWED) == set(), "a new top-level module or folder: add it to ALLOWED and the README"


def test_only_errors_settings_and_cli_are_modules_at_the_top():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "cli.py", "errors.py", "settings.py"]


def test_no_layer_imports_above_itself():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" in path.parts or path.parent == PACKAGE and path.name == "__init__.py":
            continue
        src = _layer(path)
        for name, line in _imports(path):
            if not name.startswith("decodemo."):
                continue
            dst = name.split(".")[1]
            if dst != src and dst not in ALLOWED[src]:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({src}) imports {name}")
    assert not wrong, "\n".join(wrong)

"""Layers point one way: config -> data -> model -> train / evaluate -> retrieve -> serve, with
artifacts and stats below all of them (beside config) and the applications (api, sim, workflows, cli) on
top. Serving sits on the model layer, not on training: it loads a checkpoint through
``watchnext.model.load``. The rule is checked on the source itself, so it stays true as the code
grows."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "watchnext"

BASE = {"lazy", "config", "artifacts", "stats"}
MODEL = BASE | {"data", "model"}
# each layer and the layers it may import (besides its own package)
ALLOWED = {
    "lazy": set(),  # lazy package namespaces, for __init__ files
    "config": {"lazy"},
    "artifacts": {"lazy", "config"},
    "stats": set(),  # numpy only: the intervals that evaluate, retrieve and sim share
    "data": BASE,
    "model": BASE | {"data"},
    "evaluate": MODEL,
    "train": MODEL | {"evaluate"},
    "retrieve": MODEL,
    "serve": MODEL | {"evaluate", "retrieve"},  # not train: serving loads checkpoints
    "api": MODEL | {"evaluate", "train"},  # not serve: a plain install has no serving extra
    "sim": MODEL | {"evaluate", "train", "retrieve", "api"},  # retrieve: the two-stage system
    "workflows": MODEL | {"evaluate", "train", "retrieve", "serve", "api", "sim"},
    # the CLI: cli.py, every package's ``commands`` module and the ``__main__`` entry points
    "cli": MODEL | {"evaluate", "train", "retrieve", "serve", "api", "sim", "workflows"},
}


def layer(module: str) -> str | None:
    """The layer of ``watchnext.x.y``; None for the package root (a lazy facade, see __init__)."""
    parts = module.split(".")[1:]
    if not parts:
        return None
    if parts[-1] in ("commands", "__main__"):
        return "cli"
    return parts[0]


def module_name(path: Path) -> str:
    return ".".join(("watchnext", *path.relative_to(PACKAGE).with_suffix("").parts))


def imported_modules(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, module) of every watchnext import that runs (TYPE_CHECKING blocks excluded)."""
    tree = ast.parse(path.read_text())
    typing_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                   for stmt in block.body for node in ast.walk(stmt)}
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = module.split(".")[: -node.level]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            if base == "watchnext":  # ``from watchnext import workflows``: a module, maybe
                found += [(node.lineno, f"watchnext.{alias.name}") for alias in node.names
                          if (PACKAGE / f"{alias.name}.py").exists() or (PACKAGE / alias.name).is_dir()]
    return [(line, name) for line, name in found if name.split(".")[0] == "watchnext"]


def violations(path: Path, module: str) -> list[str]:
    mine = layer(module)
    out = []
    for line, name in imported_modules(path, module):
        theirs = layer(name)
        if theirs is not None and theirs != mine and theirs not in ALLOWED[mine]:
            out.append(f"{module}:{line} ({mine}) imports {name} ({theirs})")
    return out


def test_every_module_has_a_layer():
    top = {p.stem for p in PACKAGE.glob("*.py")} | {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert top - {"__init__", "__main__"} <= set(ALLOWED), f"add {top - set(ALLOWED)} to ALLOWED"


def test_no_import_goes_against_the_layers():
    found = [v for path in sorted(PACKAGE.rglob("*.py")) if path != PACKAGE / "__init__.py"
             for v in violations(path, module_name(path))]
    assert not found, "imports against the layers:\n" + "\n".join(found)


def test_the_check_catches_serving_importing_training(tmp_path):
    """The rule can fail: a function-level import of training inside serving is caught."""
    copy = tmp_path / "model_dir.py"
    copy.write_text((PACKAGE / "serve" / "model_dir.py").read_text()
                    + "\n\ndef _x():\n    from ..train.trainer import Trainer\n")
    assert violations(copy, "watchnext.serve.model_dir") == [
        f"watchnext.serve.model_dir:{len(copy.read_text().splitlines())} (serve) imports "
        "watchnext.train.trainer (train)"]

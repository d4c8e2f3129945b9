"""The package layers of docs/architecture.md: every import goes to the same package or a
lower one, so the tree reads as the flow (core at the bottom, the labs and the CLI on top)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "smolmix"
# Lowest first. A package may import itself and any package before it, nothing after it.
LAYERS = ("core", "models", "inference", "grading", "generate", "mix", "train", "evaluate",
          "diagnose", "loop", "report", "lab", "cli")


def _package(module: str) -> str | None:
    """``smolmix.train.data`` → ``train``; ``smolmix.cli`` → ``cli``; others → None."""
    parts = module.split(".")
    return parts[1] if parts[0] == "smolmix" and len(parts) > 1 else None


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every smolmix module ``path`` imports (module level or inside functions), with lines."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: relative import; use smolmix.<...>")
    return [(line, name) for line, name in found if name.split(".")[0] == "smolmix"]


def upward_imports(src: Path = SRC) -> list[str]:
    """``file:line: a imports b`` for each import that goes up the layers."""
    problems = []
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src.parent)
        own = _package(".".join(rel.with_suffix("").parts))
        if own is None or own == "__init__":
            continue
        for line, name in imports_of(path):
            target = _package(name)
            if target is None or target == own:
                continue
            if own not in LAYERS or target not in LAYERS:
                problems.append(f"{rel}:{line}: {own} or {target} is not in a layer")
            elif LAYERS.index(target) > LAYERS.index(own):
                problems.append(f"{rel}:{line}: {own} imports {name} (a higher layer)")
    return problems


def test_every_package_is_in_a_layer():
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages | {"cli"} == set(LAYERS)


def test_imports_only_go_down_the_layers():
    assert upward_imports() == []


def test_the_check_catches_an_upward_import(tmp_path):
    bad = tmp_path / "smolmix" / "core"
    bad.mkdir(parents=True)
    (bad / "oops.py").write_text("from smolmix.train.data import collate\n")
    assert upward_imports(tmp_path / "smolmix") == [
        "smolmix/core/oops.py:1: core imports smolmix.train.data (a higher layer)"]


@pytest.mark.parametrize("package", LAYERS[:-1])
def test_package_has_its_init(package):
    assert (SRC / package / "__init__.py").is_file()

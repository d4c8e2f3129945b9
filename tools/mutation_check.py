"""A short mutation check: do the tests notice when the code is subtly wrong?

For each target module, every place where a small, plausible bug can be planted is listed (a
comparison flipped or loosened, ``+``/``-`` and ``*``/``/`` swapped, ``and``/``or`` swapped,
a ``not`` dropped, a number off by one, ``True``/``False`` swapped); a seeded sample of them is
applied one at a time to a copy of the repository, and the module's tests run against it. A
mutant is *killed* when the tests fail, *survives* when they pass; survivors are printed with
their line so a person can judge each (some are equivalent to the original: no test can see
them).

Usage: python tools/mutation_check.py [--per-module 12] [--seed 0] [--timeout 120]
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {
    "src/smolmix/grading/grade.py": ["tests/test_grading.py"],
    "src/smolmix/mix/strategies.py": ["tests/test_strategies.py", "tests/test_recipe.py"],
    "src/smolmix/diagnose/interference.py": ["tests/test_diagnose_core.py"],
    "src/smolmix/diagnose/retention.py": ["tests/test_diagnose_core.py"],
    "src/smolmix/diagnose/verdicts.py": ["tests/test_verdicts.py"],
}
SWAPS = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
         ast.NotEq: ast.Eq, ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div,
         ast.Div: ast.Mult, ast.And: ast.Or, ast.Or: ast.And}


@dataclass(frozen=True)
class Site:
    """One place to plant a bug: the n-th node (in walk order) and what to do to it."""

    index: int
    line: int
    what: str


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant):
            ids.add(id(body[0].value))
    return ids


def sites(tree: ast.AST) -> list[Site]:
    """Every mutable place, numbered by its position in ``ast.walk`` order."""
    skip = _docstrings(tree)
    found = []
    for i, node in enumerate(ast.walk(tree)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Compare) and type(node.ops[0]) in SWAPS:
            found.append(Site(i, line, f"{type(node.ops[0]).__name__} -> "
                                       f"{SWAPS[type(node.ops[0])].__name__}"))
        elif isinstance(node, (ast.BinOp, ast.BoolOp)) and type(node.op) in SWAPS:
            found.append(Site(i, line, f"{type(node.op).__name__} -> "
                                       f"{SWAPS[type(node.op)].__name__}"))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            found.append(Site(i, line, "drop not"))
        elif isinstance(node, ast.Constant) and id(node) not in skip:
            if isinstance(node.value, bool):
                found.append(Site(i, line, f"{node.value} -> {not node.value}"))
            elif isinstance(node.value, int | float):
                found.append(Site(i, line, f"{node.value!r} -> {node.value + 1!r}"))
    return found


def mutate(source: str, site: Site) -> str:
    """``source`` with the bug of ``site`` planted."""
    tree = ast.parse(source)
    node = list(ast.walk(tree))[site.index]
    if isinstance(node, ast.Compare):
        node.ops[0] = SWAPS[type(node.ops[0])]()
    elif isinstance(node, (ast.BinOp, ast.BoolOp)):
        node.op = SWAPS[type(node.op)]()
    elif isinstance(node, ast.UnaryOp):
        parent = next(p for p in ast.walk(tree) for f, v in ast.iter_fields(p)
                      if v is node or (isinstance(v, list) and any(x is node for x in v)))
        for name, value in ast.iter_fields(parent):
            if value is node:
                setattr(parent, name, node.operand)
            elif isinstance(value, list):
                setattr(parent, name, [node.operand if x is node else x for x in value])
    elif isinstance(node.value, bool):
        node.value = not node.value
    else:
        node.value = node.value + 1
    return ast.unparse(tree)


def run_tests(repo: Path, tests: list[str], timeout: float) -> bool:
    """True when the tests pass (the mutant survives)."""
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p",
                               "no:cacheprovider", *tests], cwd=repo, capture_output=True,
                              timeout=timeout,
                              env={**os.environ, "PYTHONPATH": str(repo / "src"),
                                   "HF_HUB_OFFLINE": "1"})
    except subprocess.TimeoutExpired:
        return False  # a hang is noticed
    return done.returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-module", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(
            ".git", ".venv", "runs", "__pycache__", "*.egg-info"))
        assert run_tests(repo, sorted({t for ts in TARGETS.values() for t in ts}),
                         args.timeout * 3), "the tests fail on the unmutated code"
        totals = {"killed": 0, "survived": 0}
        for module, tests in TARGETS.items():
            source = (ROOT / module).read_text()
            candidates = sites(ast.parse(source))
            chosen = sorted(rng.sample(candidates, min(args.per_module, len(candidates))),
                            key=lambda s: s.index)
            killed = 0
            for site in chosen:
                (repo / module).write_text(mutate(source, site))
                survived = run_tests(repo, tests, args.timeout)
                killed += not survived
                if survived:
                    text = source.splitlines()[site.line - 1].strip()
                    print(f"  SURVIVED {module}:{site.line}: {site.what}   | {text}")
            (repo / module).write_text(source)
            totals["killed"] += killed
            totals["survived"] += len(chosen) - killed
            print(f"{module}: {killed}/{len(chosen)} killed ({len(candidates)} sites)",
                  flush=True)
    total = totals["killed"] + totals["survived"]
    print(f"total: {totals['killed']}/{total} killed, {totals['survived']} survived, "
          f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

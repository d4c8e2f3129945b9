"""Config files: YAML mappings read with ``safe_load``, problems at ``file:line``, pydantic
validation errors as one line at the key they concern, and ``--set key=value`` overrides."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from smolmix.core.errors import SmolmixError
from smolmix.core.inputs import parse_yaml, read_text


def read_yaml(path: Path, kind: str = "recipe") -> tuple[dict, yaml.Node]:
    """A YAML mapping file and its node tree (for line numbers); problems name ``file:line``."""
    path = Path(path)
    if not path.exists():
        raise SmolmixError(f"{kind} file not found", str(path))
    data, root = parse_yaml(read_text(path, kind), str(path))
    if not isinstance(data, dict):
        raise SmolmixError(f"a {kind} must be a YAML mapping", f"{path}:1")
    _check_duplicate_keys(root, path)
    return data, root


@dataclass(frozen=True)
class UnionHelp:
    """How to name a tagged union's members in an error (e.g. a recipe's strategy steps)."""

    noun: str
    tags: tuple[str, ...]
    shape: str


def invalid(exc: ValidationError, root: yaml.Node | None, path: Path | str,
            union: UnionHelp | None = None) -> SmolmixError:
    """pydantic's validation error as one SmolmixError at the YAML line it concerns."""
    if root is None:  # no file to point into: name the dotted key
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        message = ("unknown key" if err["type"] == "extra_forbidden"
                   else "missing" if err["type"] == "missing"
                   else err["msg"][:1].lower() + err["msg"][1:])
        return SmolmixError(_prefixed(loc, message), str(path))
    what, loc = _describe(exc, root, union)
    return SmolmixError(what, f"{path}:{locate(root, loc)[1]}")


def _check_duplicate_keys(root: yaml.Node, path: Path) -> None:
    """No mapping repeats a key (each node visited once, however often aliases repeat it)."""
    stack, seen_nodes = [root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[Any] = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in keys:
                        raise SmolmixError(f"duplicate key {key.value!r}",
                                           f"{path}:{key.start_mark.line + 1}")
                    keys.add(key.value)
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def locate(root: yaml.Node, loc: tuple) -> tuple[tuple, int]:
    """Follow ``loc`` into the YAML tree: the part found and the line it ends on (1-based).

    A key equal to the one before it is skipped: pydantic repeats a step's name (``boost``,
    ``floor``, ``weights``) as the tag and as the field.
    """
    node, line, found = root, root.start_mark.line + 1, []
    for i, key in enumerate(loc):
        nxt = None
        if isinstance(node, yaml.MappingNode) and isinstance(key, str):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == key:
                    nxt, line = v, k.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            if 0 <= key < len(node.value):
                nxt = node.value[key]
                line = nxt.start_mark.line + 1
        if nxt is None:
            if i > 0 and key == loc[i - 1]:
                continue
            break
        node = nxt
        found.append(key)
    return tuple(found), line


def dotted(loc: tuple) -> str:
    out = ""
    for key in loc:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def _prefixed(loc: tuple, message: str) -> str:
    return f"{dotted(loc)}: {message}" if loc else message


_ORDER = {"extra_forbidden": 0, "union_tag_invalid": 1}


def _describe(exc: ValidationError, root: yaml.Node, union: UnionHelp | None
              ) -> tuple[str, tuple]:
    """One line for the most telling of pydantic's errors, and the location it concerns."""
    errors = sorted(exc.errors(), key=lambda e: _ORDER.get(e["type"], 2))
    err = errors[0]
    loc = tuple(err["loc"])
    kind = err["type"]
    parent, _ = locate(root, loc[:-1]) if loc else ((), 0)
    here, _ = locate(root, loc)
    if kind == "extra_forbidden":
        what = _prefixed(parent, f"unknown key {loc[-1]!r}")
    elif kind == "missing":
        what = _prefixed(parent, f"missing {loc[-1]!r}")
    elif kind == "union_tag_invalid" and union is not None:
        what = _prefixed(here, f"unknown {union.noun} {err['ctx']['tag']!r} "
                               f"(expected one of {', '.join(union.tags)})")
    elif kind == "union_tag_not_found" and union is not None:
        what = _prefixed(here, union.shape)
    elif kind == "smolmix":
        what = _prefixed(here, err["msg"])
    else:
        message = err["msg"][:1].lower() + err["msg"][1:]
        if isinstance(err.get("input"), str | int | float | bool | None):
            message += f", got {err['input']!r}"
        what = _prefixed(here, message)
    if len(errors) > 1:
        what += f" (and {len(errors) - 1} more)"
    return what, loc


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` → (["a", "b"], value parsed as YAML)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise SmolmixError(f"expected key=value, got {text!r}", "--set")
    try:
        parsed = parse_yaml(value, "--set")[0] if value.strip() else None
    except SmolmixError as exc:
        if "invalid YAML:" not in exc.what:
            raise
        parsed = value
    return [part.strip() for part in key.split(".")], parsed


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """``data`` with every ``key.path=value`` override set (missing levels created)."""
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[keys[-1]] = value
    return data

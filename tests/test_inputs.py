"""The one input layer (core/inputs.py and the core readers built on it): strict UTF-8 with the
offset named, a BOM accepted, bounded nesting and numbers, and, fuzzed with random bytes and
random structures, no exception but SmolmixError ever escapes a reader."""

import json
import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smolmix.core.config import apply_overrides, read_yaml
from smolmix.core.errors import SmolmixError
from smolmix.core.inputs import (
    MAX_DEPTH,
    MAX_DIGITS,
    decode,
    iter_json_lines,
    iter_json_objects,
    parse_json,
    parse_yaml,
    read_csv_header,
    read_json,
    read_json_object,
    read_text,
)
from smolmix.core.rundir import checkpoint_step, read_manifest

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _error(fn, *args) -> SmolmixError:
    with pytest.raises(SmolmixError) as info:
        fn(*args)
    return info.value


# --- the rules ---------------------------------------------------------------------------------


def test_a_bad_byte_is_named_by_its_offset_in_the_file(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"a": "ok"}\n{"prediction": "caf\xe9", "reference": "1"}\n')
    err = _error(lambda: list(iter_json_lines(path)))
    assert err.what == "not UTF-8 text: byte 0xe9 at offset 31"
    assert err.where == f"{path}:2"
    assert path.read_bytes()[31] == 0xE9


@pytest.mark.parametrize("reader", [read_text, read_json, read_csv_header,
                                    lambda p: list(iter_json_lines(p)),
                                    lambda p: read_yaml(p, "recipe")])
def test_a_byte_order_mark_is_accepted_by_every_reader(tmp_path, reader):
    path = tmp_path / "f"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"a": 1}\n')
    assert reader(path)  # parsed as if the mark were not there


def test_the_byte_order_mark_is_dropped_only_at_the_start():
    assert decode(b"\xef\xbb\xbfx", "f") == "x"
    assert decode(b"x\xef\xbb\xbf", "f") == "x\ufeff"


def test_nesting_is_bounded_with_a_clear_message():
    deep = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    assert parse_json("[" * MAX_DEPTH + "]" * MAX_DEPTH, "f") is not None
    assert "nested more than 64 levels" in _error(parse_json, deep, "f").what
    assert "nested more than 64 levels" in _error(parse_json, "[" * 5000 + "]" * 5000,
                                                  "f").what
    assert "nested more than 64 levels" in _error(parse_yaml, "a: " + deep, "f").what
    assert "nested more than 64 levels" in _error(parse_yaml, "a: " + "[" * 3000, "f").what


def test_integers_are_bounded_in_digits():
    assert parse_json("9" * MAX_DIGITS, "f") == int("9" * MAX_DIGITS)
    assert "5000 digits" in _error(parse_json, "1" * 5000, "f").what
    assert "too large" in _error(parse_yaml, "a: " + "9" * 5000, "f").what


def test_a_yaml_alias_bomb_is_refused():
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        bomb += f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]\n"
    assert "more than 1,000,000 values" in _error(parse_yaml, bomb, "f").what


def test_malformed_json_names_the_line(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_text('{"a": 1}\n\n{"a": \n')
    err = _error(lambda: list(iter_json_lines(path)))
    assert err.where == f"{path}:3" and err.what.startswith("malformed JSON")
    assert _error(lambda: list(iter_json_objects(tmp_path / "nope.jsonl"))).what \
        == "JSONL file not found"
    path.write_text("[1]\n")
    assert _error(lambda: list(iter_json_objects(path))).what == "line is not a JSON object"


def test_files_that_are_folders_or_missing_are_named(tmp_path):
    assert _error(read_text, tmp_path).what == "file is a folder, expected a file"
    assert _error(read_json, tmp_path / "x.json").what == "JSON file not found"
    (tmp_path / "l.json").write_text("[1, 2]")
    assert "must hold a JSON object" in _error(read_json_object, tmp_path / "l.json").what


def test_a_manifest_that_is_not_smolmix_is_one_error(tmp_path):
    for text in (b"", b"\xff\xfe", b"[]", b'{"smolmix": {"kind": 3}}', b'{"smolmix": []}',
                 b"{" * 100):
        (tmp_path / "manifest.json").write_bytes(text)
        assert "not a smolmix run folder" in _error(read_manifest, tmp_path).what


# --- fuzzing: random bytes and random structures ---------------------------------------------

_scalars = (st.none() | st.booleans() | st.integers(-(10**30), 10**30)
            | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
_structures = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=30)


def _only_smolmix_errors(fn) -> None:
    try:
        fn()
    except SmolmixError as exc:
        assert exc.what and "\n" not in str(exc)


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes_never_escape_as_another_exception(tmp_path, data):
    path = tmp_path / "fuzz"
    path.write_bytes(data)
    (tmp_path / "manifest.json").write_bytes(data)
    (tmp_path / "trainer_state.json").write_bytes(data)
    for reader in (lambda: read_text(path), lambda: read_json(path),
                   lambda: list(iter_json_lines(path)), lambda: list(iter_json_objects(path)),
                   lambda: read_yaml(path, "recipe"), lambda: read_csv_header(path),
                   lambda: read_manifest(tmp_path), lambda: checkpoint_step(tmp_path)):
        _only_smolmix_errors(reader)


@FUZZ
@given(data=st.binary(max_size=200))
def test_random_bytes_decode_exactly_when_python_decodes_them(data):
    try:
        expected = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    except UnicodeDecodeError:
        assert "not UTF-8 text" in _error(decode, data, "f").what
    else:
        assert decode(data, "f") == expected


@FUZZ
@given(value=_structures)
def test_json_structures_round_trip_or_are_refused(tmp_path, value):
    path = tmp_path / "v.json"
    path.write_text(json.dumps(value))
    assert read_json(path) == value
    lines = tmp_path / "v.jsonl"
    lines.write_text(json.dumps(value) + "\n\n" + json.dumps(value) + "\n")
    assert [v for _, v in iter_json_lines(lines)] == [value, value]


@FUZZ
@given(value=_structures)
def test_yaml_structures_round_trip(value):
    text = yaml.safe_dump({"v": value})
    data, _ = parse_yaml(text, "f")
    got = data["v"]
    if isinstance(value, float) and math.isnan(value):
        assert math.isnan(got)
    else:
        assert got == value


@FUZZ
@given(text=st.text(max_size=200))
def test_random_yaml_text_is_parsed_or_one_error(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text, encoding="utf-8")
    _only_smolmix_errors(lambda: read_yaml(path, "recipe"))
    _only_smolmix_errors(lambda: apply_overrides({}, [text]))

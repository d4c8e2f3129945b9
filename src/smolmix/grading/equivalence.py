"""The fast path of grading: normalised strings, exact numbers, evaluated expressions, lists.

:func:`compare` decides most pairs in microseconds and returns ``None`` for the rest (which
go to math-verify). Its conventions, those of a careful human grader of GSM8K/MATH answers:

- Ignored: ``$``, ``\\$``, ``\\left``/``\\right``, LaTeX spacing, ``\\text{}`` wrappers, degree
  signs (but not in ``\\sin 30^\\circ``), a trailing ``.``, thousands separators (``1,234`` is
  1234; ``1, 234`` is a list), ``\\dfrac``/``\\tfrac`` (as ``\\frac``) and a leading ``x =``
  when the other side has none.
- Percent: the sign is a unit and is dropped, so ``50\\%`` equals ``50`` (the GSM8K/MATH
  convention) and does **not** equal ``0.5``.
- Units: a word after the number (``5 cm``, ``5 dollars``, ``5\\text{ cm}``) is dropped when
  only one side has one; when both do, they must agree (``5 cm`` is not ``5 m``).
- A whole number before a proper fraction is a mixed number (``1\\frac{1}{2}`` is 3/2).
- Numbers are exact rationals (``0.5 == 1/2 == \\frac{1}{2}``); a decimal is not a rounded
  fraction (``0.33`` is not ``1/3``) unless it has at least 6 decimal places and is within one
  unit of its last place (``0.333333`` is ``1/3``, ``1.414214`` is ``\\sqrt{2}``).
- Expressions of numbers, ``\\frac``, ``\\sqrt``, ``^``, ``\\pi``, ``e``, ``i``,
  ``\\sin``/``\\cos``/``\\tan`` (radians, or degrees with ``^\\circ``), ``\\ln``, ``\\log_b``,
  ``\\binom``, ``n!`` and single-letter variables are evaluated, exactly where rational
  (floats, to 1e-9, where not), at two fixed rational points when they have variables: equal
  values are the same answer (``x^2+2x+1`` is ``(x+1)^2``; the form asked for, e.g. "factor",
  is not checked, as in math-verify). Two numbers in a row (``1 234``, ``\\sqrt11``, which is
  sqrt(1) 1) are left undecided.
- Equations are the same when ``left - right`` of one is a constant multiple of the other's
  (``y = 2x + 1`` is ``y = 1 + 2x`` and ``2y = 4x + 2``; ``x = 2`` is not ``x^2 = 4``);
  one-variable inequalities are intervals (``x \\le 3`` is ``(-\\infty, 3]``).
- Lists: ``2, 3``, ``\\{2, 3\\}``, ``\\pm 2`` (``2, -2``) and unions of intervals are unordered;
  ``(1, 2)``, ``[1, 2)`` and matrices are ordered and their brackets (shapes) must agree
  (``[1, 2)`` is not ``(1, 2]``). A list against one plain value is wrong.
- Words (``\\text{odd}``, ``no solution``) compare without case.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from smolmix.grading.expression import (
    POINTS,
    Unsupported,
    Value,
    has_variables,
    real,
    tokens,
    values,
)

_REPLACE = (
    (re.compile(r"(?<!\\)\\\$|\$|\\displaystyle|\\(?:left|right|[bB]igg?[lr]?)(?![A-Za-z])"), ""),
    (re.compile(r"(?<!\\)\\[,;:!> ]|\\q?quad(?![A-Za-z])|~"), " "),
    (re.compile(r"\\[dt](frac|binom)(?![A-Za-z])"), r"\\\1"),
    (re.compile(r"\u00b0"), r"^\\circ"),
    (re.compile(r"\\%|%"), ""),
    (re.compile(r"\\(?:text|textbf|textit|textrm|textnormal|mathrm|mathbf|mbox)\s*\{([^{}]*)\}"),
     r" \1 "),
    (re.compile(r"\{,\}"), ","),
    (re.compile(r"(?<![\d.])(?<!\d,)(\d{1,3})((?:,\d{3})+)(?!\d|,\d)"),
     lambda m: m[1] + m[2].replace(",", "")),
)
_TRIG = re.compile(r"\\(?:sin|cos|tan|cot|sec|csc)(?![A-Za-z])")
_DEGREES = re.compile(r"\^\s*(?:\\circ|\{\s*\\circ\s*\})")
_UNICODE = str.maketrans({"\u2212": "-", "\u00d7": r"\times ", "\u00b7": r"\cdot ",
                          "\u00f7": r"\div ", "\u03c0": r"\pi ", "\u221e": r"\infty "})
# a unit: words after a number ("5 cm", "5 square feet"), or a listed one-letter unit
_UNIT = re.compile(r"(?<=[\d}.])\s+([A-Za-z]{2,}(?:\s+[A-Za-z]+)*|[mgslLhKNJVW])(?:\^\{?\d\}?)?$")
# whitespace goes, except one space between letters or digits ("\ln x", "\log_2 8", "x y")
_GAP = re.compile(r"(?<![A-Za-z0-9])\s+|\s+(?![A-Za-z0-9])")
_SQRT_BARE = re.compile(r"\\sqrt(?![\[{A-Za-z])(\w)")
_FRAC_BARE = (re.compile(r"\\frac(\w)(\w)"), re.compile(r"\\frac(\w)\{"),
              re.compile(r"\\frac(\{[^{}]*\})(\w)"))
_MIXED = re.compile(r"(?<![\d.}^_])(\d+)\\frac\{(\d+)\}\{(\d+)\}")
_LEADING_DOT = re.compile(r"(?<![\d}])\.(\d)")
_ASSIGN = re.compile(r"^[A-Za-z](?:_\{?\w\}?)?=(?!=)")
_CHOICE = re.compile(r"^\(([A-Z])\)$")
_PLAIN = re.compile(r"^[-+]?\d{1,100}(?:\.\d{0,100})?$")
_DECIMAL = re.compile(r"^-?\d*\.(\d+)$")


def _denoise(answer: str) -> tuple[str, str]:
    """The answer without ``$``, spacing, ``\\text``, percent signs and its unit; the unit."""
    text = answer.translate(_UNICODE)
    for pattern, repl in _REPLACE:
        text = pattern.sub(repl, text)
    if not _TRIG.search(text):  # degrees are a unit, except inside sin 30^\circ
        text = _DEGREES.sub("", text)
    text = text.strip().rstrip(".").rstrip()
    m = _UNIT.search(text)
    if m is None:
        return text, ""
    return text[:m.start()].rstrip(), m.group(1).lower().removesuffix("s")


def canonical(answer: str) -> tuple[str, str]:
    """``(value, unit)``: the answer without whitespace and noise, and its unit ("" if none)."""
    text, unit = _denoise(answer)
    text = _GAP.sub("", text)
    text = _SQRT_BARE.sub(r"\\sqrt{\1}", text)
    text = _FRAC_BARE[0].sub(r"\\frac{\1}{\2}", text)
    text = _FRAC_BARE[1].sub(r"\\frac{\1}{", text)
    text = _FRAC_BARE[2].sub(r"\\frac\1{\2}", text)
    text = _LEADING_DOT.sub(r"0.\1", text)
    text = _MIXED.sub(_mixed, text)
    m = _CHOICE.match(text)
    return (m.group(1) if m else text), unit


def _mixed(m: re.Match) -> str:
    """``1\\frac{1}{2}`` is one and a half (a proper fraction after a whole number)."""
    whole, num, den = m.groups()
    return f"({whole}+\\frac{{{num}}}{{{den}}})" if int(num) < int(den) else m.group()


def clean(answer: str) -> str:
    """The answer as math-verify should see it: no ``$``, units, percent signs or spacing."""
    return " ".join(_denoise(answer)[0].split())


def _same(a: Value, b: Value, a_text: str, b_text: str) -> bool | None:
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        decimal = _DECIMAL.match(a_text) or _DECIMAL.match(b_text)
        if a == b or not decimal or (_DECIMAL.match(a_text) and _DECIMAL.match(b_text)):
            return a == b
        places = len(decimal.group(1))  # a long decimal against a fraction
        return places >= 6 and abs(a - b) <= Fraction(1, 10**places)
    if isinstance(a, complex) or isinstance(b, complex):
        a, b = complex(a), complex(b)
        return all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)
                   for x, y in ((a.real, b.real), (a.imag, b.imag)))
    try:
        fa, fb = float(a), float(b)
    except OverflowError:
        return None
    if math.isinf(fa) or math.isinf(fb):
        return fa == fb
    for text, other in ((a_text, fb), (b_text, fa)):
        decimal = _DECIMAL.match(text)
        if decimal:  # a decimal against an irrational value
            places = len(decimal.group(1))
            return places >= 6 and abs(float(Fraction(text)) - other) <= 10.0**-places
    return math.isclose(fa, fb, rel_tol=1e-9, abs_tol=1e-12)


_FAILURES = (Unsupported, ValueError, TypeError, ZeroDivisionError, OverflowError, RecursionError)


_WORDS = re.compile(r"^[A-Za-z]{2,}(?: [A-Za-z]+)*$")


def _scalar(a: str, b: str) -> tuple[bool, str] | None:
    if _PLAIN.match(a) and _PLAIN.match(b):
        return _same(Fraction(a), Fraction(b), a, b), "number"
    if _WORDS.match(a) and _WORDS.match(b):  # "odd", "Monday", "no solution"
        return a.lower() == b.lower(), "words"
    if a.count("=") == 1 and b.count("=") == 1:
        return _equations(a, b)
    points = POINTS if has_variables(a) or has_variables(b) else 1
    try:
        va, vb = values(a, points), values(b, points)
    except _FAILURES:
        return None
    verdicts = [_same(x, y, a, b) for x, y in zip(va, vb)]
    if None in verdicts:
        return None
    return all(verdicts), "value"


def _equations(a: str, b: str) -> tuple[bool, str] | None:
    """Two equations are the same when one's ``left - right`` is a constant multiple of the
    other's (``y^2 + x^2 = 4`` is ``x^2 + y^2 = 4`` and ``2y = 2x``, not ``x^2 + y^2 = 2``),
    checked at two rational points."""
    if not (has_variables(a) or has_variables(b)):
        return None
    try:
        da = [x - y for x, y in zip(*(values(side, POINTS) for side in a.split("=")))]
        db = [x - y for x, y in zip(*(values(side, POINTS) for side in b.split("=")))]
        if not all(isinstance(v, Fraction) and v for v in da + db):
            return None  # irrational or zero at a point: undecided
    except _FAILURES:
        return None
    return da[0] / db[0] == da[1] / db[1], "value"


# ---------------------------------------------------------------- lists

_OPEN = {"(": ")", "[": "]", r"\{": r"\}"}
_CLOSE = {")", "]", r"\}"}


def split_list(text: str) -> tuple[str, list[str]] | None:
    """``(kind, items)`` for a list of at least two items: kind is ``"{"`` (set), ``""``
    (bare, unordered) or the bracket pair (``"[)"``); ``None`` for a single answer."""
    try:
        toks = tokens(text)
    except Unsupported:
        toks = None
    if not toks:
        return None
    kind, inner = "", toks
    if toks[0] in _OPEN and toks[-1] in _CLOSE:
        depth = 0
        for i, tok in enumerate(toks):
            depth += (tok in _OPEN or tok == "{") - (tok in _CLOSE or tok == "}")
            if depth == 0:
                if i == len(toks) - 1:
                    kind = "{" if toks[0] == r"\{" else toks[0] + toks[-1]
                    inner = toks[1:-1]
                break
    items: list[list[str]] = [[]]
    depth = 0
    for tok in inner:
        depth += (tok in _OPEN or tok == "{") - (tok in _CLOSE or tok == "}")
        if tok == "," and depth == 0:
            items.append([])
        else:
            items[-1].append(tok)
    if len(items) < 2:
        return None
    return kind, ["".join(item) for item in items]


_MAX_PAIRWISE = 64  # larger unordered lists are compared as sorted numbers, or not at all


def _sorted_numbers(items_a: list[str], items_b: list[str]) -> tuple[bool, str] | None:
    if any(has_variables(x) for x in items_a + items_b):
        return None
    try:
        va = sorted(real(values(x, 1)[0]) for x in items_a)
        vb = sorted(real(values(y, 1)[0]) for y in items_b)
    except _FAILURES:
        return None
    same = all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12) for x, y in zip(va, vb))
    return same, "sequence"


def _lists(a: tuple[str, list[str]], b: tuple[str, list[str]],
           depth: int) -> tuple[bool, str] | None:
    (kind_a, items_a), (kind_b, items_b) = a, b
    unordered = {"", "{"}
    if (kind_a in unordered) != (kind_b in unordered):
        return None  # a set against a tuple or interval: math-verify
    if kind_a not in unordered and kind_a != kind_b:
        return False, "sequence"
    if len(items_a) != len(items_b):
        return False, "sequence"
    if kind_a not in unordered:
        for x, y in zip(items_a, items_b):
            same = _compare(x, y, depth + 1)
            if same is None:
                return None
            if not same[0]:
                return False, "sequence"
        return True, "sequence"
    if sorted(items_a) == sorted(items_b):
        return True, "sequence"
    if len(items_a) > _MAX_PAIRWISE:
        return _sorted_numbers(items_a, items_b)
    unused = list(items_b)
    for x in items_a:
        for j, y in enumerate(unused):
            same = _compare(x, y, depth + 1)
            if same is None:
                return None
            if same[0]:
                del unused[j]
                break
        else:
            return False, "sequence"
    return True, "sequence"


# ---------------------------------------------------------------- compare


_MATRIX = re.compile(r"^\\begin\{([pbBvV]?matrix)\}(.*)\\end\{\1\}$")
_RELATION = re.compile(r"^([A-Za-z])(<|>|\\leq?|\\geq?)((?:(?!\\[lg]e)[^<>=])+)$")
_BOUNDS = re.compile(r"^([^<>=]+?)(<|\\leq?)([A-Za-z])(<|\\leq?)([^<>=]+)$")


def _matrix(text: str) -> tuple[str, list[str]] | None:
    """``(kind, cells)`` of a ``pmatrix`` or ``bmatrix`` (kind: its shape), row by row."""
    m = _MATRIX.match(text)
    if m is None:
        return None
    rows = [row.split("&") for row in m.group(2).split("\\\\")]
    if len({len(row) for row in rows}) != 1:
        return None
    return f"matrix {len(rows)}x{len(rows[0])}", [cell for row in rows for cell in row]


def _plus_minus(text: str) -> str:
    """``a\\pm b`` is the list ``a+b,a-b`` (one ``\\pm`` and no list around it)."""
    if text.count(r"\pm") != 1 or "," in text or r"\mp" in text:
        return text
    return text.replace(r"\pm", "+") + "," + text.replace(r"\pm", "-")


def _relation(text: str) -> str | None:
    """The interval a one-variable inequality means (``x\\le3`` is ``(-\\infty,3]``)."""
    m = _RELATION.match(text)
    if m:
        _, op, bound = m.groups()
        closed = op.startswith(("\\le", "\\ge"))
        if op in ("<",) or op.startswith("\\le"):
            return f"(-\\infty,{bound}{']' if closed else ')'}"
        return f"{'[' if closed else '('}{bound},\\infty)"
    m = _BOUNDS.match(text)
    if m:
        low, op_low, _, op_high, high = m.groups()
        return f"{'(' if op_low == '<' else '['}{low},{high}{')' if op_high == '<' else ']'}"
    return None


_EQUATION = re.compile(r"^([A-Za-z](?:\([A-Za-z]\))?)=([^=<>]+)$")


def _equation(text: str) -> tuple[str, str] | None:
    """``(left, right)`` of ``y=...`` or ``f(x)=...`` whose right side has no ``y`` / ``f``."""
    m = _EQUATION.match(text)
    if m is None or re.search(rf"(?<![\\A-Za-z]){m.group(1)[0]}(?![A-Za-z])", m.group(2)):
        return None
    return m.group(1), m.group(2)


def _against_single(single: str) -> tuple[bool, str] | None:
    """A list or union against ``single``: wrong if ``single`` is one plain value."""
    if not single.startswith(("(", "[", r"\{")) and _scalar(single, single) is not None:
        return False, "sequence"
    return None


def _compare(a: str, b: str, depth: int = 0) -> tuple[bool, str] | None:
    """Compare two canonical values; ``None`` when undecided."""
    if a == b:
        return True, "match"
    if depth > 3:
        return None
    if "=" not in b and _ASSIGN.match(a):
        return _compare(_ASSIGN.sub("", a, count=1), b, depth + 1)
    if "=" not in a and _ASSIGN.match(b):
        return _compare(a, _ASSIGN.sub("", b, count=1), depth + 1)
    a, b = _relation(a) or a, _relation(b) or b
    if a == b:
        return True, "match"
    a, b = _plus_minus(a), _plus_minus(b)
    union_a, union_b = a.split(r"\cup"), b.split(r"\cup")
    if len(union_a) > 1 and len(union_b) > 1:  # unions of intervals, in any order
        return _lists(("", union_a), ("", union_b), depth)
    if len(union_a) > 1 or len(union_b) > 1:
        return _against_single(b if len(union_a) > 1 else a)
    matrix_a, matrix_b = _matrix(a), _matrix(b)
    if matrix_a or matrix_b:
        return _lists(matrix_a, matrix_b, depth) if matrix_a and matrix_b else None
    eq_a, eq_b = _equation(a), _equation(b)
    if eq_a and eq_b and eq_a[0] == eq_b[0]:
        return _compare(eq_a[1], eq_b[1], depth + 1)  # y = 2x + 1 against y = 1 + 2x
    list_a, list_b = split_list(a), split_list(b)
    if list_a and list_b:
        return _lists(list_a, list_b, depth)
    if list_a or list_b:
        return _against_single(b if list_a else a)
    return _scalar(a, b)


_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
_SPACED = re.compile(r"[-+]?\d+(?:\.\d+)?(?:\s+[-+]?\d+(?:\.\d+)?)+")


def _spaced_numbers(prediction: str, reference: str) -> tuple[bool, str] | None:
    """Numbers separated by whitespace alone (``9 3 6``: an answer written digit by digit, or
    a bare list) are an ordered sequence, compared item by item; math-verify would read them
    as a product (``4 5`` equal to ``5 4``). Against one number they are its digits; against
    anything else this path does not decide."""
    a, b = prediction.strip(), reference.strip()
    spaced_a, spaced_b = _SPACED.fullmatch(a), _SPACED.fullmatch(b)
    if not (spaced_a or spaced_b):
        return None
    if spaced_a and spaced_b:
        xs, ys = a.split(), b.split()
        return len(xs) == len(ys) and all(Fraction(x) == Fraction(y)
                                          for x, y in zip(xs, ys)), "sequence"
    spaced, other = (a, b) if spaced_a else (b, a)
    if _NUMBER.fullmatch(other):
        return "".join(spaced.split()) == other, "sequence"
    return None


def compare(prediction: str, reference: str) -> tuple[bool, str] | None:
    """``(correct, reason)`` when the fast path can decide, else ``None``."""
    spaced = _spaced_numbers(prediction, reference)
    if spaced is not None:
        return spaced
    (a, unit_a), (b, unit_b) = canonical(prediction), canonical(reference)
    decided = _compare(a, b)
    if decided and decided[0] and unit_a and unit_b and unit_a != unit_b:
        return False, "unit"
    return decided

"""A tiny evaluator for the answers a grader meets: numbers, ``\\frac``, ``\\sqrt``, powers,
``\\pi``, ``e``, ``i``, trigonometric functions, logarithms, ``\\binom``, ``n!`` and one-letter
variables (set to fixed random rationals at :data:`POINTS` points).

Values are exact :class:`~fractions.Fraction` while the arithmetic stays rational, floats (or
complex numbers) otherwise. Anything else, ambiguous LaTeX (``\\sin 2x``, ``\\sqrt11``) and
anything too big (huge powers, deep nesting) raises :class:`Unsupported`, so every call is
fast and bounded.
"""

from __future__ import annotations

import cmath
import math
import random
import re
from fractions import Fraction

Value = Fraction | float | complex


class Unsupported(Exception):
    """The fast path cannot evaluate this answer; math-verify decides."""


_TOKEN = re.compile(r"\d+(?:\.\d*)?|\\[A-Za-z]+|\\[{}]|[A-Za-z]|[-+*/^_(){}\[\],=<>!|:;']")
_FUNCTIONS = {r"\sin": math.sin, r"\cos": math.cos, r"\tan": math.tan, r"\ln": math.log}
_ATOM_START = set("0123456789({") | {r"\frac", r"\sqrt", r"\pi", r"\infty", r"\binom",
                                     r"\log"} | set(_FUNCTIONS)
_MAX_DEPTH = 40
_MAX_BITS = 20_000
POINTS = 2
_rng = random.Random(20240229)
_VARIABLES = {c: [Fraction(_rng.randint(2, 10**6), _rng.randint(2, 10**6)) for _ in range(POINTS)]
              for c in "abcdfghjklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"}  # no e, i


def tokens(text: str) -> list[str]:
    """Split a canonical answer into tokens; anything unrecognised is :class:`Unsupported`."""
    out = []
    pos = 0
    while pos < len(text):
        if text[pos] == " ":
            pos += 1
            continue
        m = _TOKEN.match(text, pos)
        if m is None:
            raise Unsupported(text[pos])
        out.append(m.group())
        pos = m.end()
    return out


class _Parser:
    """Recursive descent over tokens into a tiny expression tree (nested tuples)."""

    def __init__(self, toks: list[str]) -> None:
        self.toks = toks
        self.pos = 0
        self.depth = 0

    def peek(self) -> str | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise Unsupported(f"expected {expected!r}")
        self.pos += 1
        return tok

    def parse(self) -> tuple:
        tree = self.expr()
        if self.pos != len(self.toks):
            raise Unsupported(self.toks[self.pos])
        return tree

    def expr(self) -> tuple:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise Unsupported("too deep")
        tree = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            tree = ("add" if op == "+" else "sub", tree, self.term())
        self.depth -= 1
        return tree

    def term(self) -> tuple:
        tree = self.unary()
        while True:
            tok = self.peek()
            if tok in ("*", r"\cdot", r"\times"):
                self.take()
                tree = ("mul", tree, self.unary())
            elif tok in ("/", r"\div"):
                self.take()
                tree = ("div", tree, self.unary())
            elif tok is not None and (tok in _ATOM_START or tok.isalpha()):
                if tok[0].isdigit():
                    raise Unsupported("two numbers in a row")  # "1 234", "x 2"
                tree = ("mul", tree, self.power())  # implicit: 2\sqrt{3}, 3x, 2(x+1)
            else:
                return tree

    def unary(self) -> tuple:
        if self.peek() == "-":
            self.take()
            return ("neg", self.unary())
        if self.peek() == "+":
            self.take()
        return self.power()

    def power(self) -> tuple:
        base = self.atom()
        while self.peek() == "!":
            self.take()
            base = ("fact", base)
        if self.peek() == "^":
            self.take()
            if self.peek() == r"\circ":
                self.take()
                return ("deg", base)
            if self.toks[self.pos:self.pos + 3] == ["{", r"\circ", "}"]:
                self.pos += 3
                return ("deg", base)
            exponent = self.argument()
            return ("pow", base, exponent)
        return base

    def group(self) -> tuple:
        self.take("{")
        tree = self.expr()
        self.take("}")
        return tree

    def argument(self) -> tuple:
        """A command's argument: ``{...}`` or one token (``\\sqrt x``)."""
        return self.group() if self.peek() == "{" else self.single()

    def single(self) -> tuple:
        """A one-token argument, as in ``x^2``."""
        tok = self.take()
        if tok.isdigit() and len(tok) == 1:  # x^23 is x^2 * 3 in LaTeX: left to math-verify
            return ("num", Fraction(tok))
        if tok in ("e", "i"):
            return (tok,)
        if tok.isalpha() and len(tok) == 1:
            return self._var(tok)
        if tok == r"\pi":
            return ("pi",)
        raise Unsupported(tok)

    def _function_argument(self) -> tuple:
        if self.peek() == "^":
            raise Unsupported("power of a function")  # \sin^2 x
        argument = self.power()
        after = self.peek()
        if after is not None and (after in _ATOM_START or after.isalpha()):
            raise Unsupported("ambiguous argument")  # \sin 2x: sin(2x) or sin(2) x?
        return argument

    @staticmethod
    def _var(tok: str) -> tuple:
        if tok not in _VARIABLES:
            raise Unsupported(tok)
        return ("var", tok)

    def atom(self) -> tuple:
        tok = self.take()
        if tok[0].isdigit():
            if len(tok) > 100:
                raise Unsupported("long number")
            return ("num", Fraction(tok))
        if tok in ("(", "["):
            if tok == "[":
                raise Unsupported("[")
            tree = self.expr()
            self.take(")")
            return tree
        if tok == "{":
            tree = self.expr()
            self.take("}")
            return tree
        if tok == r"\frac":
            return ("div", self.argument(), self.argument())
        if tok == r"\sqrt":
            index = None
            if self.peek() == "[":
                self.take()
                index = self.expr()
                self.take("]")
            return ("root", self.argument(), index)
        if tok == r"\binom":
            return ("binom", self.group(), self.group())
        if tok in _FUNCTIONS:
            return ("fn", tok, self._function_argument())
        if tok == r"\log":
            if self.peek() != "_":
                raise Unsupported("log without a base")
            self.take()
            base = self.argument()
            return ("div", ("fn", r"\ln", self._function_argument()), ("fn", r"\ln", base))
        if tok == r"\pi":
            return ("pi",)
        if tok == r"\infty":
            return ("inf",)
        if tok.isalpha() and len(tok) == 1:
            if self.peek() is not None and self.peek().isalpha() and len(self.peek()) == 1 \
                    and self.pos + 1 < len(self.toks) and self.toks[self.pos + 1].isalpha() \
                    and len(self.toks[self.pos + 1]) == 1:
                raise Unsupported("word")  # three letters in a row: a word, not a product
            return (tok,) if tok in ("e", "i") else self._var(tok)
        raise Unsupported(tok)


def _pow(base: Value, exponent: Value) -> Value:
    if isinstance(base, complex) or isinstance(exponent, complex):
        if isinstance(exponent, Fraction) and exponent.denominator == 1 and abs(exponent) <= 64:
            return base ** int(exponent)  # i^2
        raise Unsupported("complex power")
    if isinstance(exponent, Fraction) and exponent.denominator == 1:
        n = int(exponent)
        if isinstance(base, Fraction):
            bits = base.numerator.bit_length() + base.denominator.bit_length()
            if abs(n) > 10_000 or bits * abs(n) > _MAX_BITS or (base == 0 and n < 0):
                raise Unsupported("power")
            return base ** n
    try:
        result = float(base) ** float(exponent)
    except (OverflowError, ZeroDivisionError):
        raise Unsupported("power") from None
    if isinstance(result, complex):
        raise Unsupported("complex")
    return result


def _root(value: Value, index: Value | None) -> Value:
    if isinstance(value, complex) or isinstance(index, complex):
        raise Unsupported("complex root")
    n = Fraction(2) if index is None else index
    if not (isinstance(n, Fraction) and n.denominator == 1 and 2 <= n <= 100):
        raise Unsupported("root index")
    n = int(n)
    if value < 0:
        if n % 2 == 0 or not isinstance(value, Fraction):
            raise Unsupported("root of a negative")
        return -_root(-value, Fraction(n))
    if isinstance(value, Fraction):
        num = round(value.numerator ** (1 / n)) if value.numerator < 2**1000 else -1
        den = round(value.denominator ** (1 / n)) if value.denominator < 2**1000 else -1
        if num >= 0 and den > 0 and num**n == value.numerator and den**n == value.denominator:
            return Fraction(num, den)
    return float(value) ** (1 / n)


def real(value: Value) -> float:
    """``value`` as a float; a complex value is :class:`Unsupported`."""
    if isinstance(value, complex):
        raise Unsupported("complex argument")
    return float(value)


def _integer(value: Value, limit: int) -> int:
    if not (isinstance(value, Fraction) and value.denominator == 1 and 0 <= value <= limit):
        raise Unsupported("not a small whole number")
    return int(value)


_CONSTANTS = {"pi": math.pi, "e": math.e, "i": 1j, "inf": math.inf}


def evaluate(tree: tuple, point: int) -> Value:
    """The value of an expression tree, variables set to their values at ``point``."""
    kind = tree[0]
    if kind == "num":
        return tree[1]
    if kind == "var":
        return _VARIABLES[tree[1]][point]
    if kind in _CONSTANTS:
        return _CONSTANTS[kind]
    if kind == "fn":
        x = real(evaluate(tree[2], point))
        if tree[1] == r"\ln" and x <= 0:
            raise Unsupported("log of a non-positive number")
        return _FUNCTIONS[tree[1]](x)
    a = evaluate(tree[1], point)
    if kind == "neg":
        return -a
    if kind == "deg":
        return real(a) * math.pi / 180
    if kind == "fact":
        return Fraction(math.factorial(_integer(a, 170)))
    if kind == "root":
        return _root(a, None if tree[2] is None else evaluate(tree[2], point))
    b = evaluate(tree[2], point)
    try:
        if kind == "add":
            return a + b
        if kind == "sub":
            return a - b
        if kind == "mul":
            return a * b
        if kind == "div":
            return a / b
        if kind == "binom":
            return Fraction(math.comb(_integer(a, 10_000), _integer(b, 10_000)))
    except (ZeroDivisionError, OverflowError):
        raise Unsupported("arithmetic") from None
    return _pow(a, b)


_VARIABLE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]")  # a letter that is not part of a command


def has_variables(text: str) -> bool:
    """Whether a canonical answer has a one-letter variable (or ``e``/``i``)."""
    return _VARIABLE.search(text) is not None


def values(text: str, points: int) -> list[Value]:
    """The value of a canonical answer at each of ``points`` points."""
    tree = _Parser(tokens(text)).parse()
    out = [evaluate(tree, p) for p in range(points)]
    if any(isinstance(v, (float, complex)) and cmath.isnan(v) for v in out):
        raise Unsupported("nan")
    return out

"""Does ``smolmix`` grade at least 2,000 answers/s, faster than plain math-verify, and agree?

Grades one fixed, seeded set of (generation, reference) pairs two ways, each repeat in fresh
processes (so neither side's caches carry over), and prints answers/s, the ratio and the
agreement:

- data (``--pairs``, default 5,000; seed 0): 60 % GSM8K-style chain-of-thought generations
  whose answer follows ``####``, "The answer is", a box or just comes last (thousands
  separators, ``$``, units, decimals; a few give no answer) against an integer or decimal
  reference; 30 % MATH-style generations ending in ``\\boxed{...}`` against a LaTeX reference
  (integers, fractions, ``\\sqrt``, ``\\pi``; equal answers written another way: ``\\dfrac``,
  ``a/b``, decimals, unreduced fractions, ``\\sqrt{12}`` for ``2\\sqrt{3}``...); 10 % harder
  LaTeX (intervals, sets, several boxes, polynomials, equations in one and two variables,
  inequalities, vectors, ``e``, ``\\binom``, trigonometric values, ``\\log_2``, ``\\pm``,
  unions, complex numbers, words, ``\\arctan`` and ``|x|``).
  About 60 % of the answers are correct; wrong ones are near misses (12 for 120, a sign, a
  flipped bracket, another fraction).
- ``baseline``: the plain way, ``math_verify.verify(parse("$" + reference + "$"),
  parse(generation))`` for every pair, in the main thread (math-verify's own timeouts on).
- ``smolmix``: ``grade_many(generations, references, "auto")``: answer extraction, the fast
  path, and math-verify worker processes (started inside the timed call) for the rest.

Time is the grading call alone (imports excluded on both sides); the speed is the median
over ``--repeats`` runs. Agreement is the fraction of pairs with the same verdict; a few
disagreements are printed for a human to judge.

``--adversarial`` instead times ``grade`` on each of the test suite's adversarial inputs
(``ADVERSARIAL`` in tests/test_grading.py: 1 MB of brackets, digits, boxes...) in every answer
format, and prints the slowest and the median (the claim: each in under a second).

Usage: python benchmarks/grading.py [--pairs 5000] [--repeats 3] [--show 12]
       python benchmarks/grading.py --only smolmix          (one side)
       python benchmarks/grading.py --adversarial
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from fractions import Fraction
from math import gcd
from pathlib import Path

SEED = 0
SHARES = (("gsm8k", 0.6), ("boxed", 0.3), ("hard", 0.1))
P_CORRECT = 0.6

# ---------------------------------------------------------------- data

NAMES = ("Natalia", "Weng", "Betty", "Julie", "James", "Mark", "Albert", "Ken", "Alexis", "Tina")
ITEMS = ("clips", "apples", "pages", "cookies", "dollars", "miles", "tickets", "eggs")


def _near_miss(rng: random.Random, value: Fraction) -> Fraction:
    """A wrong answer a model might give."""
    style = rng.randrange(5)
    if style == 0 and value:
        return -value
    if style == 1:
        return value * 10
    if style == 2 and value.denominator == 1 and abs(value) >= 10:
        return Fraction(int(value) // 10)
    if style == 3:
        return value + rng.choice((-2, -1, 1, 2))
    return Fraction(rng.randint(1, 500))


def _number(value: Fraction, rng: random.Random, plain: bool = False) -> str:
    """A decimal number as a model writes it (sometimes with thousands separators)."""
    if value.denominator == 1:
        n = int(value)
        return f"{n:,}" if not plain and abs(n) >= 1000 and rng.random() < 0.5 else str(n)
    return f"{float(value):.2f}"


def _gsm8k(rng: random.Random) -> tuple[str, str]:
    a, b, c = rng.randint(2, 60), rng.randint(2, 60), rng.randint(2, 30)
    total = Fraction(rng.choice(((a + b) * c, a * b + c, a * c - b, (a + b) * c * 25)))
    if rng.random() < 0.08:
        total = Fraction(rng.randint(101, 9999), 4)  # a decimal answer, e.g. 12.25
    reference = _number(total, rng, plain=True)
    answer = total if rng.random() < P_CORRECT else _near_miss(rng, total)
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    steps = (f"{name} has {a} {item} and gets {b} more, so {name} has {a} + {b} = {a + b} "
             f"{item}.\nEach of the {c} boxes holds that many, and {a + b} * {c} = "
             f"{(a + b) * c}.\n")
    shown = _number(answer, rng)
    style = rng.random()
    if style < 0.35:
        end = f"#### {shown}"
    elif style < 0.60:
        end = f"The answer is {shown}."
    elif style < 0.75:
        end = f"So {name} has {shown} {item} in total."
    elif style < 0.85:
        end = f"Therefore the answer is $\\boxed{{{shown}}}$."
    elif style < 0.90:
        end = f"The answer is ${shown}."
    elif style < 0.95:
        end = f"#### {shown} {item}"
    else:
        end = "I am not sure how to finish this problem."
    return steps + end, reference


def _fraction_forms(value: Fraction, rng: random.Random) -> list[str]:
    p, q = value.numerator, value.denominator
    sign = "-" if p < 0 else ""
    p = abs(p)
    forms = [f"{sign}\\frac{{{p}}}{{{q}}}", f"{sign}\\dfrac{{{p}}}{{{q}}}", f"{sign}{p}/{q}"]
    k = rng.randint(2, 5)
    forms.append(f"{sign}\\frac{{{p * k}}}{{{q * k}}}")
    if 10**6 % q == 0:
        forms.append(f"{float(value):g}")
    return forms


def _math_value(rng: random.Random) -> tuple[str, list[str], callable]:
    """A reference, ways of writing the same answer, and a maker of wrong ones."""
    kind = rng.randrange(5)
    if kind == 0:
        n = rng.randint(-50, 500)
        return str(n), [str(n), f"{n}.0" if rng.random() < 0.2 else str(n)], \
            lambda: _number(_near_miss(rng, Fraction(n)), rng, plain=True)
    if kind == 1:
        q = rng.randint(2, 40)
        p = rng.choice([x for x in range(1, 3 * q) if gcd(x, q) == 1])
        value = Fraction(p, q) * rng.choice((1, 1, 1, -1))
        wrong = lambda: rng.choice(_fraction_forms(1 / value if abs(value.numerator) > 1  # noqa: E731
                                                   else value + 1, rng))
        return f"\\frac{{{abs(value.numerator)}}}{{{q}}}".join(("-", "") if value < 0
                                                                else ("", "")), \
            _fraction_forms(value, rng), wrong
    if kind == 2:
        k, n = rng.randint(2, 9), rng.choice((2, 3, 5, 6, 7, 10, 11))
        bare = f"{k} \\sqrt{n}" if n < 10 else f"{k} \\sqrt {{{n}}}"  # \sqrt11 is sqrt(1)*1
        forms = [f"{k}\\sqrt{{{n}}}", f"\\sqrt{{{k * k * n}}}", bare, f"{k}\\sqrt{{{n}}}"]
        return f"{k}\\sqrt{{{n}}}", forms, lambda: f"{k + 1}\\sqrt{{{n}}}"
    if kind == 3:
        n, m = rng.choice((2, 3, 5)), rng.randint(2, 6)
        forms = [f"\\frac{{\\sqrt{{{n}}}}}{{{m}}}", f"\\sqrt{{{n}}}/{m}",
                 f"\\frac{{1}}{{{m}}}\\sqrt{{{n}}}", f"\\frac{{{n}}}{{{m}\\sqrt{{{n}}}}}"]
        return f"\\frac{{\\sqrt{{{n}}}}}{{{m}}}", forms, \
            lambda: f"\\frac{{\\sqrt{{{n}}}}}{{{m + 1}}}"
    k, m = rng.randint(1, 9), rng.choice((2, 3, 4, 6))
    forms = [f"\\frac{{{k}\\pi}}{{{m}}}", f"\\frac{{{k}}}{{{m}}}\\pi", f"{k}\\pi/{m}"]
    return f"\\frac{{{k}\\pi}}{{{m}}}", forms, lambda: f"\\frac{{{k + 1}\\pi}}{{{m}}}"


def _boxed(rng: random.Random) -> tuple[str, str]:
    reference, forms, wrong = _math_value(rng)
    answer = rng.choice(forms) if rng.random() < P_CORRECT else wrong()
    steps = ("We simplify the expression step by step. Multiplying both sides by the "
             "denominator and collecting terms gives the value below.\n")
    end = rng.choice((f"Therefore, the final answer is $\\boxed{{{answer}}}$.",
                      f"$$\\boxed{{{answer}}}$$", f"So the answer is \\boxed{{{answer}}}."))
    return steps + end, reference


def _hard(rng: random.Random) -> tuple[str, str]:
    a, b = sorted(rng.sample(range(-9, 10), 2))
    p, q = rng.randint(1, 6), rng.randint(1, 6)
    kind = rng.randrange(17)
    ok = rng.random() < P_CORRECT
    if kind == 0:  # interval
        ref = f"[{a}, {b})"
        pred = rng.choice((f"[{a},{b})", f"\\left[{a}, {b}\\right)")) if ok else f"({a}, {b}]"
    elif kind == 1:  # half-line, sometimes as an inequality
        ref = f"(-\\infty, {a}]"
        pred = rng.choice((f"(-\\infty,{a}]", f"x \\le {a}")) if ok else f"(-\\infty, {a})"
    elif kind == 2:  # a set
        ref = f"\\{{{a}, {b}\\}}"
        pred = f"\\{{{b}, {a}\\}}" if ok else f"\\{{{a}, {b + 1}\\}}"
    elif kind == 3:  # several boxes
        ref = f"{a}, {b}"
        boxes = (b, a) if ok else (a, b + 1)
        return (f"The solutions are $x = \\boxed{{{boxes[0]}}}$ and $x = \\boxed{{{boxes[1]}}}$.",
                ref)
    elif kind == 4:  # a polynomial, factored or expanded
        ref = f"x^2 + {p + q}x + {p * q}"
        pred = f"(x+{p})(x+{q})" if ok else f"(x+{p})(x-{q})"
    elif kind == 5:  # an equation
        ref = f"y = {p}x + {q}"
        pred = f"y = {q} + {p}x" if ok else f"y = {q}x + {p}" if p != q else f"y = {p}x - {q}"
    elif kind == 6:  # a vector
        ref = f"\\begin{{pmatrix}} {a} \\\\ {b} \\end{{pmatrix}}"
        pred = f"\\begin{{pmatrix}}{a}\\\\{b}\\end{{pmatrix}}" if ok else \
            f"\\begin{{pmatrix}} {b} \\\\ {a} \\end{{pmatrix}}"
    elif kind == 7:  # e and logarithms
        ref = f"e^{{{p}}}"
        pred = rng.choice((f"e^{p}", f"e^{{{p}}}")) if ok else f"e^{{{p + 1}}}"
    elif kind == 8:  # binomials and factorials
        n = rng.randint(4, 9)
        from math import comb
        ref = str(comb(n, 2))
        pred = f"\\binom{{{n}}}{{2}}" if ok else f"\\binom{{{n}}}{{3}}"
    elif kind == 9:  # trigonometric values
        ref = "\\frac{\\sqrt{3}}{2}"
        pred = rng.choice(("\\cos\\frac{\\pi}{6}", "\\sin 60^\\circ")) if ok else \
            "\\cos\\frac{\\pi}{3}"
    elif kind == 10:  # logarithms to a base
        ref = str(p)
        pred = f"\\log_2 {2**p}" if ok else f"\\log_2 {2**(p + 1)}"
    elif kind == 11:  # plus or minus
        ref = f"{p}, -{p}"
        pred = f"\\pm {p}" if ok else f"\\pm {p + 1}"
    elif kind == 12:  # a union of intervals
        ref = f"(-\\infty, {a}) \\cup ({b}, \\infty)"
        pred = f"(-\\infty,{a})\\cup({b},\\infty)" if ok else \
            f"(-\\infty, {a}] \\cup [{b}, \\infty)"
    elif kind == 13:  # an equation in two variables
        ref = f"x^2 + y^2 = {p * p}"
        pred = f"y^2 + x^2 = {p * p}" if ok else f"x^2 + y^2 = {p}"
    elif kind == 14:  # words
        ref = rng.choice(("\\text{odd}", "\\text{Monday}", "\\text{no solution}"))
        pred = ref.replace("\\text{o", "\\text{O") if ok else "\\text{even}"
    elif kind == 15:  # other functions: left to math-verify
        ref = "\\frac{\\pi}{4}" if p % 2 else f"{p}"
        pred = ("\\arctan 1" if ok else "\\arctan 2") if p % 2 else \
            (f"|{-p}|" if ok else f"|{p + 1}|")
    else:  # complex numbers
        ref = f"{p} + {q}i"
        pred = f"{q}i + {p}" if ok else f"{q} + {p}i" if p != q else f"{p} - {q}i"
    return f"Putting it together, the answer is $\\boxed{{{pred}}}$.", ref


def make_pairs(count: int, seed: int = SEED) -> list[tuple[str, str, str]]:
    """``(generation, reference, kind)`` for ``count`` pairs, the same for a given seed."""
    rng = random.Random(seed)
    makers = {"gsm8k": _gsm8k, "boxed": _boxed, "hard": _hard}
    kinds = [kind for kind, share in SHARES for _ in range(round(count * share))][:count]
    kinds += ["gsm8k"] * (count - len(kinds))
    rng.shuffle(kinds)
    return [(*makers[kind](rng), kind) for kind in kinds]


# ---------------------------------------------------------------- the two sides


def run_side(side: str, count: int) -> dict:
    """Body of a side's process: grade every pair, report the time and the verdicts."""
    pairs = make_pairs(count)
    generations = [p[0] for p in pairs]
    references = [p[1] for p in pairs]
    if side == "baseline":
        import logging

        from math_verify import parse, verify

        logging.disable(logging.WARNING)
        start = time.perf_counter()
        verdicts = [bool(verify(parse(f"${ref}$"), parse(gen)))
                    for gen, ref in zip(generations, references)]
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "verdicts": verdicts}
    from smolmix.grading.grade import grade_many

    start = time.perf_counter()
    graded = grade_many(generations, references, "auto")
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "verdicts": [v.correct for v in graded],
            "reasons": [v.reason for v in graded], "answers": [v.answer for v in graded]}


def _child(side: str, count: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--side", side, "--pairs", str(count)],
                          text=True, stdout=subprocess.PIPE)
    if done.returncode != 0:
        raise SystemExit(f"{side} failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def adversarial() -> None:
    """Seconds to grade each adversarial input of tests/test_grading.py, per answer format."""
    from smolmix.grading.extract import ANSWER_FORMATS
    from smolmix.grading.grade import grade

    path = Path(__file__).resolve().parents[1] / "tests" / "test_grading.py"
    spec = importlib.util.spec_from_file_location("test_grading", path)
    cases = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cases)
    grade("1", "1", "auto")  # start-up (workers, lazy imports) outside the timings
    times = []
    for fmt in ANSWER_FORMATS:
        for text in cases.ADVERSARIAL:
            start = time.perf_counter()
            grade(text, "72", fmt)
            times.append((time.perf_counter() - start, fmt, text[:24]))
    worst = max(times)
    print(f"{len(times)} adversarial gradings ({len(cases.ADVERSARIAL)} inputs x "
          f"{len(ANSWER_FORMATS)} formats): median {statistics.median(t for t, _, _ in times):.4f}"
          f" s, slowest {worst[0]:.3f} s ({worst[1]}, {worst[2]!r}...) (claim: each < 1 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--show", type=int, default=12, help="disagreements to print")
    parser.add_argument("--only", choices=("baseline", "smolmix"), help="run one side")
    parser.add_argument("--side", choices=("baseline", "smolmix"),
                        help=argparse.SUPPRESS)  # internal: the body of one child process
    parser.add_argument("--adversarial", action="store_true",
                        help="time the adversarial inputs of the tests instead")
    args = parser.parse_args()
    if args.adversarial:
        adversarial()
        return
    if args.side:
        print(json.dumps(run_side(args.side, args.pairs)))
        return
    from importlib.metadata import version

    pairs = make_pairs(args.pairs)
    print(f"{len(pairs)} pairs (seed {SEED}): "
          + ", ".join(f"{k} {sum(p[2] == k for p in pairs)}" for k, _ in SHARES)
          + f"; {len(set(pairs))} distinct")
    print(f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"math-verify {version('math-verify')}")
    sides = [args.only] if args.only else ["baseline", "smolmix"]
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    for _ in range(args.repeats):
        for side in sides:
            runs[side].append(_child(side, args.pairs))
    speed = {}
    for side in sides:
        rates = [len(pairs) / r["seconds"] for r in runs[side]]
        speed[side] = statistics.median(rates)
        print(f"{side:9s} {speed[side]:9.0f} answers/s (median of {len(rates)}: "
              + ", ".join(f"{r:.0f}" for r in rates) + ")")
    ours = runs.get("smolmix", [None])[0]
    if ours:
        reasons = {r: ours["reasons"].count(r) for r in sorted(set(ours["reasons"]))}
        print(f"smolmix verdicts by reason (math-verify: the pairs its fast path left to "
              f"math-verify): {reasons}; accuracy "
              f"{sum(ours['verdicts']) / len(pairs):.3f}")
    if len(sides) < 2:
        return
    print(f"smolmix vs baseline: {speed['smolmix'] / speed['baseline']:.1f}x answers/s "
          f"(target: smolmix >= 2000 answers/s)")
    base = runs["baseline"][0]["verdicts"]
    differ = [i for i, (x, y) in enumerate(zip(ours["verdicts"], base)) if x != y]
    print(f"agreement {1 - len(differ) / len(pairs):.4f}: {len(differ)} disagreements "
          f"(smolmix correct / math-verify wrong: "
          f"{sum(ours['verdicts'][i] for i in differ)}; the reverse: "
          f"{sum(base[i] for i in differ)}); baseline accuracy {sum(base) / len(pairs):.3f}")
    by_kind: dict[str, int] = {}
    for i in differ:
        by_kind[pairs[i][2]] = by_kind.get(pairs[i][2], 0) + 1
    print(f"disagreements by kind: {by_kind}")
    rng = random.Random(1)
    for i in sorted(rng.sample(differ, min(args.show, len(differ)))):
        gen, ref, kind = pairs[i]
        tail = gen[-90:].replace("\n", " | ")
        print(f"  [{i} {kind}] reference {ref!r}; generation ...{tail!r}\n"
              f"      smolmix {ours['verdicts'][i]} ({ours['reasons'][i]}, answer "
              f"{ours['answers'][i]!r}); math-verify {base[i]}")


if __name__ == "__main__":
    main()

"""Per-task verdicts from curves and controls."""

from __future__ import annotations

from smolmix.diagnose.verdicts import (
    LEARNED,
    NEVER,
    NOT_EXPRESSIBLE,
    OVERWRITTEN,
    Curve,
    curves_from_rows,
    judge,
)


def test_each_verdict_from_its_curve_and_control():
    steps = [0, 100, 200, 300]
    assert judge("a", Curve(steps, [0, 0.5, 0.95, 0.97])).verdict == LEARNED
    overwritten = judge("b", Curve(steps, [0, 0.93, 0.6, 0.2]), share=0.004, min_share=0.1)
    assert overwritten.verdict == OVERWRITTEN
    assert "10%" in overwritten.remedy and "boost sweep" in overwritten.remedy
    assert overwritten.numbers["peak_step"] == 100
    never = judge("c", Curve(steps, [0, 0.1, 0.2, 0.3]), isolation=1.0, share=0.004)
    assert never.verdict == NEVER and "rule of thumb" in never.remedy  # no measured curve
    assert judge("d", Curve(steps, [0, 0.1, 0.2, 0.3]), isolation=0.4).verdict == NOT_EXPRESSIBLE


def test_evidence_names_the_numbers():
    v = judge("t", Curve([0, 10], [0.0, 0.2]), isolation=0.95, share=0.01,
              mechanism={"interference_from_others": -0.25})
    text = " ".join(v.evidence)
    assert "0.20" in text and "1.00%" in text and "0.95" in text and "-0.25" in text


def test_curves_from_rows_sorts_steps():
    rows = [{"step": 200, "task": "x", "exact_match": 0.5}, {"step": 0, "task": "x",
                                                             "exact_match": 0.0}]
    assert curves_from_rows(rows)["x"] == Curve([0, 200], [0.0, 0.5])


def test_reaching_the_threshold_exactly_counts_as_learned():
    steps = [0, 100, 200]
    assert judge("a", Curve(steps, [0.0, 0.5, 0.9]), threshold=0.9).verdict == LEARNED
    assert judge("b", Curve(steps, [0.0, 0.9, 0.5]), threshold=0.9).verdict == OVERWRITTEN
    assert judge("c", Curve(steps, [0.0, 0.5, 0.89]), threshold=0.9).verdict == NEVER


def test_rule_of_thumb_remedies_and_the_isolation_boundary():
    steps, flat = [0, 100], [0.0, 0.1]
    big = judge("a", Curve(steps, flat), share=0.2)
    assert big.verdict == NEVER and "already has 20%" in big.remedy
    capped = judge("b", Curve(steps, flat), share=0.05)  # 10x would be 50%: capped at 30%
    assert "about 30%" in capped.remedy and "rule of thumb" in capped.remedy
    tiny = judge("c", Curve(steps, flat), share=0.0004)  # 10x would be 0.4%: at least 1%
    assert "about 1%" in tiny.remedy
    # a control that reaches the threshold exactly says the task is expressible
    assert judge("d", Curve(steps, flat), isolation=0.9, threshold=0.9).verdict == NEVER

"""The loop's policies and limits on hand-made scores: each policy's share update, the
per-stage bound and the repetition caps, and ODM's EXP3 update against a hand-computed case."""

from __future__ import annotations

import math

import pytest

import smolmix.loop.policies  # noqa: F401  (registers the policies)
from smolmix.core.errors import SmolmixError
from smolmix.diagnose.verdicts import LEARNED, NEVER, NOT_EXPRESSIBLE, OVERWRITTEN
from smolmix.loop.limits import cap_share, fit_shares, stage_bounds
from smolmix.loop.policies.base import TaskState, get_policy


def _tasks():
    return [
        TaskState("copy", 0.70, 0.70, (0.95, 0.99), LEARNED),
        TaskState("sort", 0.10, 0.10, (0.97,), LEARNED),
        TaskState("lookup", 0.10, 0.10, (0.10, 0.12), NOT_EXPRESSIBLE),
        TaskState("running_max", 0.05, 0.05, (0.05, 0.10), NEVER, min_share=0.10),
        TaskState("swap", 0.05, 0.05, (0.95, 0.40), OVERWRITTEN),
    ]


def _next(policy, tasks, max_factor=2.0, caps=None):
    proposal = policy.propose(tasks, 1, {})
    bounds = stage_bounds({t.name: t.share for t in tasks}, caps or {}, max_factor,
                          {n: p.ceiling for n, p in proposal.items() if p.ceiling is not None})
    return fit_shares({n: p.weight for n, p in proposal.items()}, bounds), proposal


def test_verdict_raises_what_is_not_learned_lowers_what_is_stable_and_leaves_the_rest():
    tasks = _tasks()
    shares, proposal = _next(get_policy("verdict"), tasks)
    old = {t.name: t.share for t in tasks}
    assert shares["running_max"] > old["running_max"]  # never learned: toward min-share
    assert shares["swap"] > old["swap"]  # overwritten, no min-share: raised
    assert shares["copy"] < old["copy"]  # learned and stable: lowered
    assert shares["lookup"] <= old["lookup"] + 1e-9  # not expressible: never raised
    assert "not expressible" in proposal["lookup"].reason
    assert "min-share 10.00%" in proposal["running_max"].reason
    assert "0.95, 0.99" in proposal["copy"].reason  # the triggering numbers, in words
    assert proposal["running_max"].numbers["min_share"] == 0.10
    assert sum(shares.values()) == pytest.approx(1)


def test_a_task_learned_once_is_kept_until_it_is_stable():
    (sort,) = [t for t in _tasks() if t.name == "sort"]
    proposal = get_policy("verdict").propose([sort], 1, {})["sort"]
    assert proposal.weight == sort.share and "not yet stable" in proposal.reason


def test_verdict_moves_nothing_while_no_task_is_learned():
    tasks = [TaskState("copy", 0.8, 0.8, (0.3,), NEVER), TaskState("sort", 0.2, 0.2, (0.0,), NEVER)]
    proposal = get_policy("verdict").propose(tasks, 1, {})
    assert {n: p.weight for n, p in proposal.items()} == {"copy": 0.8, "sort": 0.2}
    assert "no task learned yet (best accuracy 0.30" in proposal["sort"].reason


def test_verdict_floors_hold_against_the_others_raises():
    """The raises of two never-learned tasks are paid for by what the policy frees (the stable
    learned task, halved at most) and not by the task it keeps (never learned at ≥ 20%)."""
    from smolmix.loop.decisions import decide

    tasks = [TaskState("copy", 0.50, 0.5, (0.99, 0.99), LEARNED),
             TaskState("reverse", 0.30, 0.3, (0.2, 0.4), NEVER),
             TaskState("sort", 0.10, 0.1, (0.0, 0.0), NEVER),
             TaskState("max", 0.10, 0.1, (0.0, 0.1), NEVER)]
    rows = {r["task"]: r for r in decide(get_policy("verdict"), tasks, 2, {}, {}, 4.0)}
    assert rows["reverse"]["new_share"] == pytest.approx(0.30)
    assert rows["copy"]["new_share"] == pytest.approx(0.25)
    assert rows["copy"]["limited_by"] == "floor" and "floor" in rows["copy"]["text"]
    assert rows["sort"]["new_share"] == pytest.approx(0.225)
    assert rows["max"]["new_share"] == pytest.approx(0.225)


def test_odm_counts_rounds_in_training_steps():
    """After 500 steps, round 501: ε = sqrt(ln 2 / (2 · 501)), ε_prev = sqrt(ln 2 / 1000)."""
    tasks = [TaskState("a", 0.5, 0.5, train_loss=2.0, steps=500),
             TaskState("b", 0.5, 0.5, train_loss=1.0, steps=500)]
    proposal = get_policy("odm").propose(tasks, 1, {})
    eps, prev = math.sqrt(math.log(2) / 1002), math.sqrt(math.log(2) / 1000)
    soft = math.exp(prev * 0.4) / (math.exp(prev * 0.4) + math.exp(prev * 0.2))
    assert proposal["a"].weight == pytest.approx((1 - 2 * eps) * soft + eps)
    staged = get_policy("odm", {"rounds": "stages"}).propose(tasks, 1, {})
    assert staged["a"].weight == pytest.approx(0.504183, abs=1e-6)


def test_every_change_stays_inside_the_per_stage_bound():
    tasks = _tasks()
    for name in ("verdict", "uniform", "temperature"):
        shares, _ = _next(get_policy(name), tasks, max_factor=1.5)
        for t in tasks:
            assert t.share / 1.5 - 1e-9 <= shares[t.name] <= t.share * 1.5 + 1e-9, (name, t.name)
        assert sum(shares.values()) == pytest.approx(1)


def test_a_repetition_cap_holds_and_the_others_take_the_rest():
    # running_max's source has 500 examples, 1,500 already trained on: 4 epochs leave 500
    # for a 10,000-example stage, a 5% cap under a proposal 10x that.
    cap = cap_share(available=500, used=1500, max_epochs=4, budget=10_000)
    assert cap == pytest.approx(0.05)
    tasks = _tasks()
    shares, _ = _next(get_policy("verdict"), tasks, max_factor=4, caps={"running_max": cap})
    assert shares["running_max"] == pytest.approx(0.05)
    assert sum(shares.values()) == pytest.approx(1)


def test_a_stage_the_caps_cannot_fill_names_the_source():
    old = {"a": 0.5, "b": 0.5}
    bounds = stage_bounds(old, {"a": 0.3, "b": 0.2}, 2.0)
    with pytest.raises(SmolmixError, match="'b'"):
        fit_shares(old, bounds)


def test_static_and_uniform_and_temperature():
    tasks = _tasks()
    static = get_policy("static").propose(tasks, 1, {})
    assert {n: p.weight for n, p in static.items()} == {t.name: t.natural for t in tasks}
    assert {p.weight for p in get_policy("uniform").propose(tasks, 1, {}).values()} == {0.2}
    temp = get_policy("temperature", {"temperature": 2}).propose(tasks, 1, {})
    assert temp["copy"].weight == pytest.approx(math.sqrt(0.7))
    with pytest.raises(SmolmixError, match="temperature"):
        get_policy("temperature", {"temperature": 0.5})


def test_odm_matches_a_hand_computed_exp3_update():
    """Two tasks at 50% each, training losses 2.0 and 1.0, α = 0.9, after stage 1:
    R = 0.1 * L / 0.5 = (0.4, 0.2); round 2: ε = sqrt(ln 2 / 4) = 0.416277, ε_prev = 1/2;
    π_a = (1 - 2ε) e^{0.2} / (e^{0.2} + e^{0.1}) + ε = 0.504183."""
    tasks = [TaskState("a", 0.5, 0.5, train_loss=2.0), TaskState("b", 0.5, 0.5, train_loss=1.0)]
    state: dict = {}
    proposal = get_policy("odm").propose(tasks, 1, state)
    assert state["rewards"] == pytest.approx({"a": 0.4, "b": 0.2})
    eps = math.sqrt(math.log(2) / 4)
    soft = math.exp(0.2) / (math.exp(0.2) + math.exp(0.1))
    assert proposal["a"].weight == pytest.approx((1 - 2 * eps) * soft + eps)
    assert proposal["a"].weight == pytest.approx(0.504183, abs=1e-6)
    assert proposal["a"].weight + proposal["b"].weight == pytest.approx(1)
    # the state carries over: a second stage with equal losses keeps a ahead
    again = get_policy("odm").propose(
        [TaskState("a", 0.504, 0.5, train_loss=1.0), TaskState("b", 0.496, 0.5, train_loss=1.0)],
        2, state)
    assert again["a"].weight > again["b"].weight


def test_excess_loss_moves_weight_to_the_task_furthest_above_its_reference():
    tasks = [TaskState("a", 0.5, 0.5, heldout_loss=2.0, reference_loss=1.0),
             TaskState("b", 0.5, 0.5, heldout_loss=1.0, reference_loss=1.5)]
    proposal = get_policy("excess-loss").propose(tasks, 1, {})
    e = math.exp(1.0)
    expected = (1 - 1e-3) * e / (e + 1) + 1e-3 / 2
    assert proposal["a"].weight == pytest.approx(expected)
    assert proposal["b"].numbers["excess"] == 0


def test_an_unknown_policy_is_a_user_error():
    with pytest.raises(SmolmixError, match="policy"):
        get_policy("magic")


# --- the decision log ----------------------------------------------------------------------


def test_the_decision_log_says_what_changed_and_names_the_triggering_numbers(tmp_path):
    import json

    from smolmix.loop.decisions import DECISIONS_FILE, decide, write_decisions

    tasks = _tasks()
    cap = {"running_max": 0.06}
    rows = decide(get_policy("verdict"), tasks, 2, {}, cap, max_factor=2.0)
    by_task = {r["task"]: r for r in rows}
    rm = by_task["running_max"]
    assert rm["old_share"] == 0.05 and rm["new_share"] == pytest.approx(0.06)
    assert rm["limited_by"] == "cap"
    assert rm["text"].startswith("stage 2: running_max raised 5.00% → 6.00%: never learned")
    assert "accuracy 0.10 (threshold 0.90)" in rm["text"] and "min-share 10.00%" in rm["text"]
    assert "held by its repetition cap" in rm["text"]
    assert by_task["lookup"]["new_share"] == pytest.approx(0.10)
    assert "not expressible" in by_task["lookup"]["text"]
    assert by_task["copy"]["text"].startswith("stage 2: copy lowered 70.00% →")
    assert sum(r["new_share"] for r in rows) == pytest.approx(1)
    write_decisions(tmp_path / DECISIONS_FILE, rows)
    logged = [json.loads(line) for line in (tmp_path / DECISIONS_FILE).read_text().splitlines()]
    assert [r["task"] for r in logged] == [t.name for t in tasks]

"""The learnability-gap study (``smolmix lab learnability-gap``): its summary's numbers on
hand-made verdicts, the mixtures its recipes build, a smoke run end to end through the user's
commands (``smolmix gap`` agrees with the lab on its eval runs), and bad input."""

from __future__ import annotations

import json
import random
import statistics

import pytest
import yaml
from helpers import clean_error

from smolmix.cli import main
from smolmix.evaluate.gap import run_gap
from smolmix.lab.learnability.arms import arm_name
from smolmix.lab.learnability.preset import PRESETS, customize, get_preset
from smolmix.lab.learnability.study import Cell, cell_recipe, plan_cells, write_sources
from smolmix.lab.learnability.summary import summarize
from smolmix.mix.command import build_mixture
from smolmix.train.data import load_mixture

# --- the summary on hand-made verdicts --------------------------------------------------------


def _cells(preset, accuracy, n=400):
    """Cells whose verdicts have exactly ``accuracy(size, arm, seed)`` right answers (the
    right ones in a seeded random order)."""
    cells = []
    for cell in plan_cells(preset):
        k = round(accuracy(cell.size, cell.arm, cell.seed) * n)
        verdicts = [1.0] * k + [0.0] * (n - k)
        random.Random(cell.id).shuffle(verdicts)
        cells.append({"id": cell.id, "arm": cell.arm, "axis": cell.axis, "ratio": cell.ratio,
                      "size": cell.size, "seed": cell.seed, "target_tokens": 1000,
                      "verdicts": {"add-2": verdicts[: n // 2], "add-3": verdicts[n // 2:]}})
    return cells


def _preset():
    return customize(get_preset("quick"), sizes=["xs", "s"], seeds=[0, 1],
                     tasks=["add:2", "add:3"])


def test_the_summary_computes_gaps_best_ratios_and_mix_gains_from_the_verdicts():
    preset = _preset()
    # xs: long 0.2 below short 0.4 (gap -0.2), the 0.2 mix best (0.5); s: long above short.
    table = {("xs", "short"): 0.4, ("xs", "long"): 0.2, ("xs", "mix-long-0.2"): 0.5,
             ("s", "short"): 0.5, ("s", "long"): 0.7, ("s", "mix-long-0.6"): 0.6,
             ("xs", "small"): 0.3, ("xs", "large"): 0.35, ("s", "small"): 0.6,
             ("s", "large"): 0.6}
    offset = {0: -0.05, 1: 0.05}  # seeds differ, their mean is the table's value

    def accuracy(size, arm, seed):
        return max(0.0, table.get((size, arm), 0.1) + (offset[seed] if arm != "base" else 0))

    s = summarize(preset, _cells(preset, accuracy), {"xs": 10, "s": 20})
    assert s["long_gap_by_size"] == pytest.approx([-0.2, 0.2], abs=1e-9)
    assert s["large_gap_by_size"] == pytest.approx([0.05, 0.0], abs=1e-9)
    xs_gap = s["long_gap_detail_by_size"][0]
    assert xs_gap["low"] < -0.2 < xs_gap["high"] < 0  # 400 paired problems: excludes 0
    assert xs_gap["by_seed"] == pytest.approx([-0.2, -0.2], abs=1e-9)
    assert s["best_long_ratio_by_size"] == [0.2, 1.0]
    assert s["best_mix_long_gain_by_size"] == pytest.approx([0.1, -0.1], abs=1e-9)
    assert s["best_mix_long_gain_detail_by_size"][0]["best_single"] == "short"
    assert s["acc_by_arm"]["short"] == pytest.approx([0.4, 0.5])
    assert s["acc_detail_by_arm"]["short"][0]["by_seed"] == pytest.approx([0.35, 0.45])
    assert s["long_gap_direction"] == {
        "sizes": ["xs", "s"], "negative_at_smallest": True, "significant_at_smallest": True,
        "rises_ends": True, "rises_monotonic": True, "sign_flips": True}
    assert s["learned_any_by_size"] == [True, True]
    assert s["long_gap_detail_by_size"][0]["relative"] == pytest.approx(0.5)


def test_the_direction_is_read_over_the_sizes_that_learned_something():
    """xs learns nothing from any arm (gap 0); s and m do: the direction starts at s."""
    preset = customize(_preset(), sizes=["xs", "s", "m"])
    table = {("s", "short"): 0.5, ("s", "long"): 0.2, ("m", "short"): 0.6, ("m", "long"): 0.7}
    s = summarize(preset, _cells(preset, lambda size, arm, seed: table.get((size, arm), 0.0)),
                  {"xs": 1, "s": 2, "m": 3})
    assert s["learned_any_by_size"] == [False, True, True]
    assert s["long_gap_direction"]["sizes"] == ["s", "m"]
    assert s["long_gap_direction"]["sign_flips"] is True


def test_a_gap_interval_is_paired_over_the_same_problems():
    """The long arm right exactly where the short arm is, plus 10 more of 400: the paired
    interval is narrow around +2.5 points (an unpaired one would span about ±7)."""
    preset = _preset()
    cells = _cells(preset, lambda size, arm, seed: 0.0)
    base = [1.0] * 200 + [0.0] * 200
    for c in cells:
        if c["arm"] in ("short", "long"):
            v = list(base)
            if c["arm"] == "long":
                v[200:210] = [1.0] * 10
            c["verdicts"] = {"add-2": v[:200], "add-3": v[200:]}
    gap = summarize(preset, cells, {"xs": 10, "s": 20})["long_gap_detail_by_size"][0]
    assert gap["gap"] == pytest.approx(0.025)
    assert 0 < gap["low"] and gap["high"] < 0.05


# --- mixtures: matched examples, the mix's ratio ----------------------------------------------


def test_every_arm_trains_on_as_many_examples_and_a_mix_has_its_ratio(tmp_path):
    preset = customize(get_preset("smoke"), seeds=[0], long_ratios=[0, 0.2, 1])
    held = {"add-2": []}
    write_sources(preset, tmp_path / "data", held)
    counts = {}
    for ratio in (0, 0.2, 1):
        cell = Cell("xs", 0, "long", ratio)
        recipe = tmp_path / "recipes" / f"{cell.id}.yaml"
        recipe.parent.mkdir(exist_ok=True)
        recipe.write_text(yaml.safe_dump(cell_recipe(preset, cell, tmp_path / "data")))
        build_mixture(recipe, tmp_path / "mixtures" / cell.id, quiet=True)
        records = load_mixture(str(tmp_path / "mixtures" / cell.id))
        counts[ratio] = (len(records),
                         sum(r.tags.get("cot") == "long" for r in records) / len(records))
    assert {n for n, _ in counts.values()} == {preset.examples}
    assert counts[0][1] == 0 and counts[1][1] == 1
    assert counts[0.2][1] == pytest.approx(0.2, abs=1 / preset.examples)


def test_each_style_draws_its_own_problems_from_the_same_distribution(tmp_path):
    preset = customize(get_preset("smoke"), seeds=[0], steps=100)
    write_sources(preset, tmp_path, {"add-2": []})
    prompts = {style: [json.loads(line)["prompt"] for line in
                       (tmp_path / "s0" / f"{style}.jsonl").read_text().splitlines()]
               for style in preset.styles}
    assert {len(p) for p in prompts.values()} == {preset.examples}
    assert prompts["short"] != prompts["long"]  # independent streams
    # same distribution: the first operand's mean agrees within sampling error
    means = [statistics.fmean(int("".join(p.split()[:2])) for p in ps)
             for ps in prompts.values()]
    assert max(means) - min(means) < 6


# --- a smoke run through the user's commands --------------------------------------------------


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lab") / "gap"
    assert main(["lab", "learnability-gap", "--preset", "smoke", "--out", str(out),
                 "--quiet", "--jobs", "1"]) == 0
    return out, json.loads((out / "results.json").read_text())


def test_the_smoke_run_writes_the_summary_the_report_and_every_cell(smoke_run):
    out, results = smoke_run
    s = results["summary"]
    for key in ("sizes", "long_gap_by_size", "large_gap_by_size", "best_long_ratio_by_size",
                "best_mix_long_gain_by_size", "wall_seconds"):
        assert key in s, key
    assert len(s["sizes"]) == len(s["long_gap_by_size"]) == 2
    preset = PRESETS["smoke"]
    assert len(results["cells"]) == len(plan_cells(preset))
    assert (out / "report.html").is_file() and (out / "gaps.png").is_file()
    html = (out / "report.html").read_text()
    assert "Long-CoT gap" in html and "Example traces" in html
    # matched optimisation: every trained cell the same steps and examples, none truncated
    manifests = [json.loads((out / "cells" / c["id"] / "manifest.json").read_text())
                 for c in results["cells"] if c["arm"] != "base"]
    assert {(m["steps"], m["examples"], m["truncated"]) for m in manifests} == {
        (preset.steps, preset.examples, 0)}
    long_tokens = s["tokens_by_arm"]["long"] / s["tokens_by_arm"]["short"]
    assert 2 < long_tokens < 4


def test_smolmix_report_opens_the_lab_run(smoke_run, tmp_path):
    out, _ = smoke_run
    assert main(["report", str(out), "--out", str(tmp_path / "page")]) == 0
    html = (tmp_path / "page" / "report.html").read_text()
    assert "learnability gap" in html and "Large-teacher gap" in html


def test_smolmix_gap_on_the_labs_eval_runs_gives_the_labs_per_seed_gap(smoke_run, tmp_path):
    out, results = smoke_run
    size = results["summary"]["size_names"][0]
    runs = [out / "evals" / f"{arm}-{size}-s0" for arm in ("long", "short")]
    rows = run_gap(runs)
    (row,) = [r for r in rows if r["gap"] == "long_cot"]
    detail = results["summary"]["long_gap_detail_by_size"][0]
    assert row["diff"] == pytest.approx(detail["by_seed"][0], abs=1e-4)


# --- bad input ------------------------------------------------------------------------------


def _lab(tmp_path, *flags):
    return ["lab", "learnability-gap", "--preset", "smoke", "--out", tmp_path / "lab",
            "--quiet", *flags]


@pytest.mark.parametrize("flags, names", [
    (("--long-ratios", "0,1.5"), "--long-ratios"),
    (("--large-ratios=-0.1,1",), "--large-ratios"),
    (("--long-ratios", "0,nan"), "--long-ratios"),
    (("--long-ratios", "0,x"), "--long-ratios"),
    (("--sizes", "xs,huge"), "--sizes"),
    (("--styles", "short,verbose"), "--styles"),
    (("--styles", "short,large"), "--styles"),
    (("--tasks", "add,division"), "--tasks"),
    (("--tasks", "add:9"), "--tasks"),
    (("--steps", "0"), "--steps"),
    (("--seeds", "-1"), "--seeds"),
    (("--preset", "huge"), "--preset"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capfd, flags, names):
    line = clean_error(_lab(tmp_path, *flags), tmp_path, capfd)
    assert names in line


def test_arm_names():
    assert [arm_name("long", r) for r in (0, 0.2, 1)] == ["short", "mix-long-0.2", "long"]
    assert [arm_name("large", r) for r in (0, 1)] == ["small", "large"]


# --- the long arm's habits -------------------------------------------------------------------


def test_every_long_training_trace_reads_as_a_fixed_slip():
    from smolmix.lab.learnability.habits import wait_outcome
    from smolmix.lab.learnability.problems import TASKS, draw
    from smolmix.lab.learnability.traces import trace

    outcomes = {wait_outcome(trace(p, "long")) for t, spec in TASKS.items()
                for d in spec.difficulties for p in draw(t, d, 100, 5)}
    assert outcomes == {"fixed a slip"}


@pytest.mark.parametrize("generation, outcome", [
    ("3 + 4 = 8 . wait , 3 + 4 = 7 , not 8 . write 7 .", "fixed a slip"),
    ("3 + 4 = 7 . wait , 3 + 4 = 8 , not 7 . write 8 .", "broke a right step"),
    ("3 + 4 = 7 . wait , 3 + 4 = 7 , not 7 .", "restated a right value"),
    ("3 + 4 = 6 . wait , 3 + 4 = 9 , not 6 .", "both wrong"),
    ("1 2 * 3 + 1 = 3 7 . wait , 1 2 * 3 + 1 = 3 7 , not 3 8 .", "fixed a slip"),
    ("7 + 9 = 1 6 . #### ( 1 , 6 )", "no wait"),
    ("wait , wait , correct", "unreadable"),
])
def test_the_wait_step_is_classified_by_recomputing_it(generation, outcome):
    from smolmix.lab.learnability.habits import wait_outcome

    assert wait_outcome(generation) == outcome


def test_the_summary_gives_the_long_arms_wait_outcomes_as_shares_of_its_answers():
    preset = _preset()
    cells = _cells(preset, lambda size, arm, seed: 0.5)
    for c in cells:
        if c["arm"] == "long":
            c["wait"] = {"no wait": [0, 0], "fixed a slip": [150, 50],
                         "broke a right step": [0, 150 if c["seed"] == 0 else 50],
                         "restated a right value": [50, 0], "both wrong": [0, 0 if c["seed"] == 0
                                                                        else 100],
                         "unreadable": [0, 0]}
    waits = summarize(preset, cells, {"xs": 1, "s": 2})["long_wait_by_size"]
    assert waits[0]["wrong after breaking a right step"] == pytest.approx(200 / 800)
    assert waits[0]["broke a right step"] == pytest.approx(200 / 800)
    assert waits[0]["fixed a slip"] == pytest.approx(400 / 800)

"""The rare-tasks report: plots, HTML page, terminal table and the generated reading."""

import copy
import json
import statistics
from types import SimpleNamespace

import pytest
from markupsafe import escape

from smolmix.core.rundir import write_manifest
from smolmix.lab.rare_tasks.mechanism import summarize_mechanism
from smolmix.lab.rare_tasks.plots import write_plots
from smolmix.lab.rare_tasks.report import lab_sections, reading, summary_table, write_report
from smolmix.report.command import report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TASKS = [("copy", 0.6, "frequent"), ("reverse", 0.25, "middle"),
         ("rotate", 0.1, "rare"), ("running_max", 0.05, "rare")]
SIZES = {"xs": 7680, "s": 363000}
RARE = ["rotate", "running_max"]
FREQUENT = ["copy"]
TARGET = "running_max"
NATURAL = {"xs": {"copy": 1.0, "reverse": 0.9, "rotate": 0.1, "running_max": 0.0},
           "s": {"copy": 1.0, "reverse": 1.0, "rotate": 0.9, "running_max": 0.8}}
ISOLATION = {"xs": {"rotate": 1.0, "running_max": 0.95}, "s": {"rotate": 1.0, "running_max": 1.0}}
BOOST = {"xs": {0.1: 0.5, 0.3: 0.95}}
# each natural cell's mechanism values (seed 1's are 10% larger): update strength and neuron
# share go the paper's way, interference and retention do not, the head share was measured at
# one size only
MECHANISM = {
    "xs": {"frequent_update_strength": 0.8, "frequent_update_norm": 4.0,
           "rare_interference": 0.004, "rare_others_over_self": 2.0,
           "rare_sgd_others_over_self": 5.0, "retention_half_life": 12.0, "retention_end": 0.2,
           "retention_censored": 0.0, "rare_neuron_share": 0.05, "rare_head_share": 0.2},
    "s": {"frequent_update_strength": 0.3, "frequent_update_norm": 2.0,
          "rare_interference": 0.006, "rare_others_over_self": 1.5,
          "rare_sgd_others_over_self": 4.0, "retention_half_life": 3.0, "retention_end": 0.1,
          "retention_censored": 0.25, "rare_neuron_share": 0.12, "rare_head_share": None},
}


def _cell(kind, size, seed, accs, boost_share=None):
    jitter = 0.04 if seed % 2 else -0.04
    final = {t: min(1.0, max(0.0, accs.get(t, 0.0) + jitter)) for t, _, _ in TASKS}
    share = "" if boost_share is None else f"-{boost_share:g}"
    return {
        "id": f"{kind}{share}-{size}-s{seed}", "kind": kind, "size": size, "seed": seed,
        "boost_share": boost_share, "shares": {t: s for t, s, _ in TASKS}, "steps": 100,
        "learning_rate": 3e-3,
        "final": {t: {"exact_match": a, "loss": 1.0 - a, "count": 10} for t, a in final.items()},
        "curves": {t: {"step": [0, 50, 100], "exact_match": [0.0, a / 2, a], "loss": [3, 2, 1]}
                   for t, a in final.items()},
        "mechanism": _mechanism(size, seed) if kind == "natural" else None,
        "train_seconds": 1.0,
    }


def _mechanism(size, seed):
    """A natural cell's condensed mechanism, as ``mechanism.cell_mechanism`` writes it."""
    values = {k: None if v is None else round(v * (1 + 0.1 * seed), 8)
              for k, v in MECHANISM[size].items()}
    strength, interference = values["frequent_update_strength"], values["rare_interference"]
    series = {"steps": [0, 50, 100], "lr": [3e-3, 1.5e-3, 0.0],
              "frequent_grad_norm": [2 * strength, strength, strength / 2],
              "frequent_update_norm": [values["frequent_update_norm"]] * 3,
              "rare_delta_others": [interference, interference / 2, 0.0],
              "rare_delta_self": [-0.01, -0.005, 0.0]}
    return {"values": values, "series": series, "retention_steps": [25, 50, 75],
            "retention_defined": 6}


def _mean_std(values):
    return statistics.fmean(values), statistics.pstdev(values)


def _summary(sizes, seeds, cells, boost):
    def acc(kind, size, tasks):
        return _mean_std([statistics.fmean(c["final"][t]["exact_match"] for t in tasks)
                          for c in cells if c["kind"] == kind and c["size"] == size])

    summary = {"size_names": sizes, "sizes": [SIZES[s] for s in sizes],
               "rare_tasks": RARE, "frequent_tasks": FREQUENT, "boost_target": TARGET,
               "learn_threshold": 0.9, "wall_seconds": 301.2,
               "isolation_task_acc_by_size": {t: [acc("isolation", s, [t])[0] for s in sizes]
                                              for t in RARE},
               "boost_acc": {}, "boost_acc_std": {}, "min_share_to_learn": {}}
    for key, kind, tasks in (("rare", "natural", RARE), ("frequent", "natural", FREQUENT),
                             ("isolation", "isolation", RARE)):
        pairs = [acc(kind, s, tasks) for s in sizes]
        summary[f"{key}_acc_by_size"] = [m for m, _ in pairs]
        summary[f"{key}_acc_std_by_size"] = [d for _, d in pairs]
    for size in (s for s in sizes if s in boost):
        points = {share: _mean_std([c["final"][TARGET]["exact_match"] for c in cells
                                    if c["kind"] == "boost" and c["size"] == size
                                    and c["boost_share"] == share]) for share in boost[size]}
        summary["boost_acc"][size] = {str(k): m for k, (m, _) in points.items()}
        summary["boost_acc_std"][size] = {str(k): d for k, (_, d) in points.items()}
        learned = [k for k, (m, _) in sorted(points.items()) if m >= 0.9]
        summary["min_share_to_learn"][size] = learned[0] if learned else None
    summary["mechanism"] = summarize_mechanism(SimpleNamespace(sizes=sizes, seeds=seeds), cells)
    summary["diagnosis"] = {"verdicts": [], "agreement_same_seed": 0.75,
                            "agreement_other_seed": 0.5,
                            "agreement_counts": {"same_seed": [3, 4], "other_seed": [2, 4]}}
    return summary


def make_results(sizes=("xs", "s"), seeds=(0, 1), boost=BOOST):
    sizes = list(sizes)
    cells = []
    for seed in seeds:
        for size in sizes:
            cells.append(_cell("natural", size, seed, NATURAL[size]))
            cells.append(_cell("isolation", size, seed, ISOLATION[size]))
            for share, a in boost.get(size, {}).items():
                cells.append(_cell("boost", size, seed, {**NATURAL[size], TARGET: a}, share))
    return {
        "smolmix": {"version": "0.1.0", "kind": "lab.rare-tasks"},
        "preset": {"name": "test", "steps": 100, "batch_size": 8, "zipf_exponent": 2.0,
                   "boost_target": TARGET, "boost_shares": [0.1, 0.3], "seeds": list(seeds),
                   "note": "<script>alert(1)</script>"},
        "tasks": [{"name": t, "share": s, "group": g} for t, s, g in TASKS],
        "sizes": [{"name": s, "params": SIZES[s]} for s in sizes],
        "cells": cells,
        "summary": _summary(sizes, list(seeds), cells, boost),
    }


@pytest.fixture(scope="module")
def results():
    return make_results()


@pytest.fixture(scope="module")
def run_dir(results, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    plots = write_plots(results, out)
    write_report(results, out)  # draws the same plots again
    return out, plots


def _pct(x):
    return f"{round(x * 100)}"


def test_plots_are_valid_pngs(run_dir):
    out, plots = run_dir
    assert plots == {k: f"{k}.png"
                     for k in ("heatmap", "curves", "boost", "rare_vs_size", "mechanism")}
    for name in plots.values():
        assert (out / name).read_bytes()[:8] == PNG_MAGIC


def test_plots_are_deterministic(results, run_dir, tmp_path):
    out, plots = run_dir
    write_plots(results, tmp_path)
    for name in plots.values():
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name


def test_report_shows_plots_numbers_and_files(results, run_dir):
    out, plots = run_dir
    page = (out / "report.html").read_text(encoding="utf-8")
    for name in plots.values():
        assert f'src="{name}"' in page
    s = results["summary"]
    for i, size in enumerate(s["size_names"]):
        assert f"<td>{size}</td>" in page
        assert f"{_pct(s['rare_acc_by_size'][i])} ± {_pct(s['rare_acc_std_by_size'][i])}%" in page
        assert f"{_pct(s['isolation_acc_by_size'][i])} ± " in page
    assert "363k" in page and "7.7k" in page
    assert "Mechanism against the paper" in page and "<td class=\"num\">4.20 ± 0.2</td>" in page
    for name in ("results.json", "curves.jsonl", "model/", "manifest.json",
                 "AutoModelForCausalLM"):
        assert name in page
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_summary_table_lists_every_size(results):
    table = summary_table(results)
    for size in results["summary"]["size_names"]:
        assert size in table
    assert "min share to learn running_max" in table
    assert "30%" in table  # xs learns running_max from the 0.3 boost share
    assert "wall time: 301 s" in table


def test_reading_names_a_large_gap(results):
    text = " ".join(reading(results))
    assert "a gap of" in text
    assert "can express them" in text
    assert "xs learns it from a 30% share" in text


def test_reading_says_when_there_is_no_gap(results):
    small = copy.deepcopy(results)
    small["summary"]["rare_acc_by_size"] = [0.42, 0.45]
    first, again = reading(results)[0], reading(small)[0]
    assert first != again
    assert "no real gap (+3 points)" in again and "a gap of" not in again


def test_reading_says_when_isolation_also_fails(results):
    weak = copy.deepcopy(results)
    weak["summary"]["isolation_acc_by_size"] = [0.2, 0.9]
    weak["summary"]["isolation_task_acc_by_size"] = {"rotate": [0.3, 1.0],
                                                     "running_max": [0.1, 0.8]}
    text = " ".join(reading(weak))
    assert "does not rule out a capacity limit" in text
    assert "can express them" not in text


def test_one_seed_without_boost(tmp_path):
    results = make_results(seeds=(0,), boost={})
    plots = write_plots(results, tmp_path)
    assert set(plots) == {"heatmap", "curves", "rare_vs_size", "mechanism"}
    assert not (tmp_path / "boost.png").exists()
    for name in plots.values():
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC
    page = write_report(results, tmp_path).read_text(encoding="utf-8")
    assert "boost.png" not in page
    assert "±" not in summary_table(results)
    assert "No boost sweep was run." in reading(results)


def test_single_size(tmp_path):
    results = make_results(sizes=("xs",), seeds=(0,), boost={})
    plots = write_plots(results, tmp_path)
    assert set(plots) == {"heatmap", "curves", "rare_vs_size", "mechanism"}
    assert reading(results)[0].startswith("Only one model size was trained")
    assert "measured it at fewer than two sizes, so it cannot tell" in " ".join(reading(results))


def test_report_command_on_a_lab_run(results, run_dir, tmp_path):
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "results.json").write_text(json.dumps(results))
    write_manifest(lab, "lab.rare-tasks", {}, seed=0)
    out = tmp_path / "out"
    page = report([lab], out, quiet=True).read_text(encoding="utf-8")
    _, plots = run_dir
    for name in plots.values():  # the lab's plots, drawn anew beside the page
        assert f'src="{name}"' in page
        assert (out / name).read_bytes() == (run_dir[0] / name).read_bytes()
    for sentence in reading(results):
        assert str(escape(sentence)) in page
    assert "<td>xs</td>" in page and "lab.rare-tasks" in page


def _mechanism_table(results):
    """The mechanism table of the lab's page: measure column -> row."""
    (section,) = [s for s in lab_sections(results, {}) if s.title == "Mechanism against the paper"]
    (table,) = section.blocks
    return list(table.header), {row[0].split(" (")[0]: row for row in table.rows}


def test_mechanism_table_shows_the_measures_and_the_flags(results):
    header, rows = _mechanism_table(results)
    assert header == ["measure", "xs (7.7k)", "s (363k)", "paper", "monotonic", "ends agree",
                      "seeds agree"]
    # a row's values share its largest one's three significant digits, the spread one digit
    assert rows["frequent-task update strength"][1:] == [
        "0.840 ± 0.04", "0.315 ± 0.01", "falls", "yes", "yes", "yes"]
    assert rows["interference on the rare tasks"][0].startswith(
        "interference on the rare tasks (×10⁻³ nats per step")
    assert rows["interference on the rare tasks"][1:] == [
        "4.20 ± 0.2", "6.30 ± 0.3", "falls", "no", "no", "no"]
    assert rows["rare tasks' share of attention heads"][1:] == [
        "0.210 ± 0.01", "—", "rises", "no", "no", "no"]
    assert rows["frequent tasks' Adam update"][-4:] == ["—"] * 4  # no direction in the paper
    text = " ".join(reading(results))
    assert "follows that direction for 2 at every step up the ladder" in text
    assert ("Interference on the rare tasks (paper: falls with size): 0.0042 at xs, 0.0063 at s "
            "— this run does not agree") in text
    assert "(26% at s)" in text  # about a quarter of s's half-lives outlasted the probe
    assert "in 3 of 4 rare-task cases on the same seed and 2 of 4" in text
    flipped = copy.deepcopy(results)
    entry = flipped["summary"]["mechanism"]["measures"]["rare_interference"]
    entry.update(monotonic=False, ends_agree=True, seeds_agree=True)
    assert _mechanism_table(flipped)[1]["interference on the rare tasks"][-3:] == [
        "no", "yes", "yes"]
    text = " ".join(reading(flipped))
    assert "this run agrees only between the ends, it is lower at the largest size" in text
    assert "in each of the 2 seeds it is lower at the largest size" in text
    assert "2 at every step up the ladder, 1 only between" in text


def test_no_mechanism_no_figure_table_or_sentences(tmp_path):
    results = make_results(seeds=(0,), boost={})
    del results["summary"]["mechanism"]
    assert "mechanism" not in write_plots(results, tmp_path)
    assert all(s.title != "Mechanism against the paper" for s in lab_sections(results, {}))
    assert "paper:" not in " ".join(reading(results))

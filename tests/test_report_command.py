"""``smolmix report`` on every kind of run folder, runs side by side, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import one_line_error as _error

from smolmix.cli import main
from smolmix.core.figures import new_figure
from smolmix.core.rundir import write_manifest
from smolmix.report.assets import Assets
from smolmix.report.command import build_page, report
from smolmix.report.page import Details, Image, Page, Section, Table, Text
from smolmix.report.plots import small_multiples
from smolmix.report.registry import register_sections
from smolmix.report.views import read_runs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(report_runs):
    return report_runs


def _manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def page_of(folders: list[Path], tmp_path: Path) -> Page:
    return build_page(read_runs(folders), Assets(tmp_path))


def table(page: Page, column: str, caption: str = "") -> dict[str, str]:
    """Row name -> cell under ``column`` in the page's table with that column and caption."""
    for section in page.sections:
        for block in section.blocks:
            if isinstance(block, Table) and column in block.header and block.caption == caption:
                k = list(block.header).index(column)
                return {row[0]: row[k] for row in block.rows}
    raise AssertionError(f"no table with a column {column!r} and caption {caption!r}")


def images(page: Page) -> list[str]:
    return [b.src for s in page.sections for b in s.blocks if isinstance(b, Image)]


# ---------------------------------------------------------------- each kind


def test_cli_writes_a_page_with_its_images(runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(runs / "train-natural"), "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out / 'report.html'}"
    page = (out / "report.html").read_text(encoding="utf-8")
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["train-exact_match.png", "train-loss.png"]
    for name in pngs:
        assert f'src="{name}"' in page
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    assert not out.with_name("report.partial").exists()


def test_train_runs_side_by_side(runs, tmp_path):
    folders = [runs / "train-natural", runs / "train-boosted"]
    page = page_of(folders, tmp_path)
    for folder in folders:  # final scores: a column per run
        final = _manifest(folder)["final"]
        assert table(page, folder.name, "exact match") == {
            t: f"{m['exact_match']:.3f}" for t, m in final.items()}
        assert table(page, folder.name, "loss") == {t: f"{m['loss']:.4f}"
                                                    for t, m in final.items()}
    shares = table(page, "train-boosted", "share of the mixture")
    assert shares["sort"] == "45%"  # the boosted mixture's share, read from its manifest
    assert images(page) == ["train-exact_match.png", "train-loss.png"]  # one plot per metric
    assert page.title.endswith("(2 runs side by side)")


def test_overlaid_curves_have_a_panel_per_task_and_a_line_per_run():
    panels = {"copy": {"run-a": ([0, 4, 8], [0.0, 0.5, 1.0]), "run-b": ([0, 4, 8], [0, 0, 0.2])},
              "sort": {"run-a": ([0, 4, 8], [0.1, 0.1, 0.1]), "run-b": ([0, 8], [0.0, 0.3])}}
    fig = small_multiples(panels, "exact match", ylim=(0, 1))
    shown = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in shown] == ["copy", "sort"]
    for ax, lines in zip(shown, panels.values()):
        assert [line.get_label() for line in ax.get_lines()] == list(lines)
        assert [list(line.get_ydata()) for line in ax.get_lines()] == [
            list(y) for _, y in lines.values()]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["run-a", "run-b"]


def test_train_run_with_its_diagnosis(runs, tmp_path):
    page = page_of([runs / "train-natural", runs / "train-boosted", runs / "diagnosis"],
                   tmp_path)
    verdicts = json.loads((runs / "diagnosis" / "diagnosis.json").read_text())["verdicts"]
    assert table(page, "verdict") == {v["task"]: v["verdict"] for v in verdicts}
    (of,) = [b.text for s in page.sections if s.title == "Verdicts" for b in s.blocks
             if isinstance(b, Text)]
    assert f"diagnosis of the train run {runs / 'train-natural'}" in of
    assert "diagnosis-interference.png" in images(page)
    assert page.title.endswith("and diagnosis")


def test_diagnoses_side_by_side_carry_their_train_runs_labels(runs, tmp_path):
    second = tmp_path / "diagnosis-copy"
    shutil.copytree(runs / "diagnosis", second)
    manifest = _manifest(second)
    manifest["arguments"]["run"] = str(runs / "train-boosted")  # as if it diagnosed that run
    (second / "manifest.json").write_text(json.dumps(manifest))
    page = page_of([runs / "train-natural", runs / "train-boosted", runs / "diagnosis",
                    second], tmp_path / "page")
    verdicts = json.loads((runs / "diagnosis" / "diagnosis.json").read_text())["verdicts"]
    for label in ("train-natural", "train-boosted"):  # a verdict column per train run
        assert table(page, label, "verdict") == {v["task"]: v["verdict"] for v in verdicts}


def test_diagnosis_alone(runs, tmp_path):
    page = page_of([runs / "diagnosis"], tmp_path)
    report_ = json.loads((runs / "diagnosis" / "diagnosis.json").read_text())
    assert table(page, "verdict") == {v["task"]: v["verdict"] for v in report_["verdicts"]}
    assert table(page, "neurons") == {k: str(v) for k, v in report_["neurons"].items()}
    evidence = [b for s in page.sections for b in s.blocks if isinstance(b, Details)]
    assert len(evidence) == 1


def test_mixtures_side_by_side(runs, tmp_path):
    folders = [runs / "mix-natural", runs / "mix-boosted"]
    page = page_of(folders, tmp_path)
    for folder in folders:
        stats = _manifest(folder)["by_task"]["main"]
        assert table(page, folder.name, "selected") == {t: str(s["selected"])
                                                         for t, s in stats.items()}
    assert table(page, "mix-boosted", "achieved share (requested)")["sort"] == "45% (45%)"
    assert images(page) == ["mixture-shares-main.png"]


def test_eval_runs_side_by_side_with_a_needle_probe(runs, tmp_path):
    folders = [runs / "eval-natural", runs / "eval-boosted", runs / "needle"]
    page = page_of(folders, tmp_path)
    for folder in folders[:2]:
        s = json.loads((folder / "scores.json").read_text())["tasks"]["copy"]
        assert table(page, folder.name, "accuracy [95% interval]")["copy"] == (
            f"{s['mean']:.3f} [{s['low']:.3f}, {s['high']:.3f}]")
    needle = json.loads((runs / "needle" / "needle.json").read_text())
    grid = table(page, "100%")  # the needle grid: length rows, depth columns
    assert grid == {f"{n:,}": f"{acc[1]:.2f}" for n, acc in zip(needle["lengths"],
                                                                needle["accuracy"])}
    assert images(page) == ["eval-accuracy.png", "needle-needle.png"]
    assert (tmp_path / "needle-needle.png").read_bytes() == (
        runs / "needle" / "needle.png").read_bytes()


def test_gap_run(runs, tmp_path):
    page = page_of([runs / "gap"], tmp_path)
    (row,) = json.loads((runs / "gap" / "gaps.json").read_text())
    assert table(page, "difference") == {row["student"]: f"{row['diff']:+.3f}"}
    assert images(page) == ["gaps-gap.png"]


def test_a_lab_registers_its_own_sections(tmp_path):
    def sections(runs, assets):
        fig = new_figure(2, 2)
        fig.add_subplot().plot([0, 1], [1, 0])
        return [Section("From the lab", [Text(f"{len(runs)} run of {runs[0].kind}"),
                                         Image(assets.figure(fig, "lab-plot"), "a plot")])]

    register_sections("lab.test-sections", sections, title="a test lab")
    run = tmp_path / "run"
    run.mkdir()
    write_manifest(run, "lab.test-sections", {}, seed=0)
    page = report([run], tmp_path / "out", quiet=True).read_text(encoding="utf-8")
    assert "<title>a test lab</title>" in page
    assert "1 run of lab.test-sections" in page and 'src="lab-plot.png"' in page
    assert (tmp_path / "out" / "lab-plot.png").read_bytes()[:8] == PNG_MAGIC


def test_run_values_are_escaped(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_manifest(run, "mixture", {}, seed=0, extra={
        "recipe": "<script>alert(1)</script>", "stages": [], "by_task": {}})
    page = report([run], tmp_path / "out", quiet=True).read_text(encoding="utf-8")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/" in page


# ---------------------------------------------------------------- bad input


def _refused(args: list[str], out: Path, capsys) -> str:
    """Run the CLI, expect exit 2 with one line, and nothing written."""
    assert main(["report", *args, "--out", str(out), "--quiet"]) == 2
    line = _error(capsys)
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()
    return line


def test_a_folder_that_is_not_a_run(runs, tmp_path, capsys):
    plain = tmp_path / "plain"
    plain.mkdir()
    line = _refused([str(runs / "train-natural"), str(plain)], tmp_path / "out", capsys)
    assert "not a smolmix run folder" in line and str(plain) in line


def test_runs_that_cannot_be_side_by_side(runs, tmp_path, capsys):
    line = _refused([str(runs / "mix-natural"), str(runs / "eval-natural")], tmp_path / "out",
                    capsys)
    assert "cannot put this eval run beside mixture runs" in line
    assert str(runs / "eval-natural") in line


def test_two_lab_runs_are_refused(tmp_path, capsys):
    labs = []
    for name in ("a", "b"):
        labs.append(tmp_path / name)
        labs[-1].mkdir()
        write_manifest(labs[-1], "lab.rare-tasks", {}, seed=0)
    line = _refused(list(map(str, labs)), tmp_path / "out", capsys)
    assert "cannot be put side by side" in line and str(labs[1]) in line


def test_an_unknown_kind(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    write_manifest(run, "lab.nobody-registered-this", {}, seed=0)
    line = _refused([str(run)], tmp_path / "out", capsys)
    assert "no report for runs of kind 'lab.nobody-registered-this'" in line


def test_a_diagnosis_of_another_run(runs, tmp_path, capsys):
    line = _refused([str(runs / "train-boosted"), str(runs / "diagnosis")], tmp_path / "out",
                    capsys)
    assert "not one of the train runs given" in line and str(runs / "diagnosis") in line


def test_the_same_run_twice(runs, tmp_path, capsys):
    line = _refused([str(runs / "gap"), str(runs / "gap")], tmp_path / "out", capsys)
    assert "given twice" in line


def test_an_existing_output_path(runs, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["report", str(runs / "gap"), "--out", str(out), "--quiet"]) == 2
    line = _error(capsys)
    assert "already exists" in line and str(out) in line
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_a_run_missing_a_file_leaves_nothing(runs, tmp_path, capsys):
    broken = tmp_path / "eval"
    shutil.copytree(runs / "eval-natural", broken)
    (broken / "scores.json").unlink()
    line = _refused([str(broken)], tmp_path / "out", capsys)
    assert "scores.json" in line and str(broken) in line

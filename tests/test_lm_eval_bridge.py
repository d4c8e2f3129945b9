"""lm-evaluation-harness as a way into ``smolmix eval``: its tasks run through its Python API
(``--tasks lm_eval:NAME``), and its own ``--log_samples`` output read back
(``--from-lm-eval``), both into the normal eval run format; offline, on task YAMLs over a
local JSONL file and the tiny local checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import one_line_error

from smolmix.cli import main
from smolmix.evaluate.lm_eval_bridge import convert_task

DOCS = [  # words of the lab tokenizer's vocabulary, so the tiny model reads them
    {"question": "copy 1 2 3 =", "answer": "1 2 3", "choices": ["1 2 3", "3 2 1"], "label": 0},
    {"question": "reverse 1 2 3 =", "answer": "3 2 1", "choices": ["1 2 3", "3 2 1"], "label": 1},
    {"question": "sort 3 1 2 =", "answer": "1 2 3", "choices": ["1 2 3", "2 1 3"], "label": 0},
    {"question": "copy 4 5 =", "answer": "4 5", "choices": ["5 4", "4 5"], "label": 1},
    {"question": "increment 4 =", "answer": "5", "choices": ["5", "6"], "label": 0},
    {"question": "sort 9 7 =", "answer": "7 9", "choices": ["9 7", "7 9"], "label": 1},
]
GEN, MC = "copy", "smx_choice"  # "copy" is also a task of the lab mixture (a bucket)
SAMPLE_FIELDS = {"task", "index", "prompt", "generation", "extracted", "reference", "correct",
                 "reason"}


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory) -> Path:
    """A folder of two lm-eval task YAMLs over a local JSONL file: a generate_until task
    scored by exact_match and a multiple-choice (loglikelihood) task scored by acc."""
    root = tmp_path_factory.mktemp("lm_eval_tasks")
    data = root / "docs.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    source = (f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
              "test_split: test\ndoc_to_text: '{{question}}'\n")
    (root / "gen.yaml").write_text(
        f"task: {GEN}\n{source}output_type: generate_until\ndoc_to_target: '{{{{answer}}}}'\n"
        "generation_kwargs:\n  until: ['\\n']\n  max_gen_toks: 6\n  do_sample: false\n"
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n"
        "    higher_is_better: true\n")
    (root / "choice.yaml").write_text(
        f"task: {MC}\n{source}output_type: multiple_choice\ndoc_to_choice: '{{{{choices}}}}'\n"
        "doc_to_target: label\nmetric_list:\n  - metric: acc\n    aggregation: mean\n"
        "    higher_is_better: true\n")
    return root


@pytest.fixture(scope="module")
def direct_run(tmp_path_factory, task_dir, tiny_checkpoint, lab_mixture) -> Path:
    out = tmp_path_factory.mktemp("direct") / "ev"
    assert main(["eval", str(tiny_checkpoint), "--tasks", f"lm_eval:{GEN},lm_eval:{MC}",
                 "--lm-eval-include", str(task_dir), "--out", str(out), "--batch-size", "4",
                 "--mixture", str(lab_mixture), "--tag", "student=s", "--tag", "cot=long",
                 "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def lm_eval_output(tmp_path_factory, task_dir, tiny_checkpoint) -> Path:
    """What lm-eval's own CLI writes with --output_path and --log_samples."""
    root = tmp_path_factory.mktemp("lm_eval_cli")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    subprocess.run([sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args",
                    f"pretrained={tiny_checkpoint}", "--tasks", f"{GEN},{MC}",
                    "--include_path", str(task_dir), "--output_path", str(root / "out"),
                    "--log_samples", "--device", "cpu", "--batch_size", "4"],
                   cwd=root, env=env, check=True, capture_output=True, timeout=600)
    return root / "out"


def _json(path: Path):
    return json.loads(path.read_text())


def _samples(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]


def test_direct_run_scores_as_lm_eval_reports(direct_run):
    scores = _json(direct_run / "scores.json")
    lm_results = _json(direct_run / "lm_eval_results.json")["results"]
    manifest = _json(direct_run / "manifest.json")
    for task, metric in ((GEN, "exact_match"), (MC, "acc")):
        assert manifest["lm_eval"][task]["metric"] == metric
        assert scores["tasks"][task]["n"] == len(DOCS)
        assert scores["tasks"][task]["mean"] == pytest.approx(lm_results[task][f"{metric},none"])
        assert manifest["lm_eval"][task]["lm_eval_value"] == lm_results[task][f"{metric},none"]
    samples = _samples(direct_run)
    assert len(samples) == 2 * len(DOCS) and all(set(s) == SAMPLE_FIELDS for s in samples)
    assert [s["index"] for s in samples if s["task"] == MC] == list(range(len(DOCS)))
    choice = next(s for s in samples if s["task"] == MC)
    assert choice["prompt"] == DOCS[0]["question"] and choice["reference"] == "1 2 3"
    assert choice["extracted"] in DOCS[0]["choices"]
    assert scores["tasks"][GEN]["bucket"] == "frequent"  # a third of the lab mixture
    assert scores["tasks"][MC]["bucket"] == "unknown"
    assert manifest["smolmix"]["kind"] == "eval"
    assert manifest["tags"] == {"student": "s", "cot": "long"}
    assert manifest["scores"] == scores and manifest["model"]


def test_from_lm_eval_gives_the_direct_scores(tmp_path, direct_run, lm_eval_output, capsys):
    # lm-eval writes into a model-name folder under --output_path; both levels are accepted.
    inner = next(p for p in lm_eval_output.iterdir() if p.is_dir())
    for i, folder in enumerate((lm_eval_output, inner)):
        out = tmp_path / f"ingested{i}"
        assert main(["eval", "--from-lm-eval", str(folder), "--out", str(out), "--tag",
                     "student=s", "--tag", "cot=short"]) == 0
        scores, direct = _json(out / "scores.json"), _json(direct_run / "scores.json")
        assert {t: (s["n"], s["mean"]) for t, s in scores["tasks"].items()} == \
            {t: (s["n"], s["mean"]) for t, s in direct["tasks"].items()}
        assert _samples(out) == _samples(direct_run)
        manifest = _json(out / "manifest.json")
        assert manifest["smolmix"]["kind"] == "eval" and manifest["tags"]["cot"] == "short"
        lm_results = _json(out / "lm_eval_results.json")["results"]
        assert scores["tasks"][MC]["mean"] == pytest.approx(lm_results[MC]["acc,none"])
    assert "wrote" in capsys.readouterr().out


def test_gap_and_report_read_lm_eval_runs(tmp_path, direct_run, lm_eval_output):
    ingested = tmp_path / "ingested"
    assert main(["eval", "--from-lm-eval", str(lm_eval_output), "--out", str(ingested),
                 "--tag", "student=s", "--tag", "cot=short"]) == 0
    assert main(["gap", str(direct_run), str(ingested), "--out", str(tmp_path / "gap")]) == 0
    (row,) = _json(tmp_path / "gap" / "gaps.json")
    # the same model both ways: the same answers, so no gap, item by item
    assert row["high_tag"] == "cot=long" and row["paired"] and row["diff"] == 0
    assert main(["report", str(direct_run), str(ingested), "--out", str(tmp_path / "report"),
                 "--quiet"]) == 0
    page = (tmp_path / "report" / "report.html").read_text()
    assert GEN in page and MC in page


def test_a_task_yaml_path_runs_without_include(tmp_path, task_dir, tiny_checkpoint):
    out = tmp_path / "ev"
    assert main(["eval", str(tiny_checkpoint), "--tasks", f"lm_eval:{task_dir / 'gen.yaml'}",
                 "--out", str(out), "--quiet"]) == 0
    assert _json(out / "scores.json")["tasks"][GEN]["n"] == len(DOCS)


def _refused(capsys, out: Path, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()
    return one_line_error(capsys)


def test_lm_eval_tasks_without_the_extra(tmp_path, monkeypatch, capsys, tiny_checkpoint):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # as if not installed
    out = tmp_path / "ev"
    err = _refused(capsys, out, ["eval", str(tiny_checkpoint), "--tasks", "lm_eval:gsm8k",
                                 "--out", str(out)])
    assert "pip install 'smolmix[lm-eval]'" in err


def test_bad_lm_eval_input_is_one_line(tmp_path, capsys, tiny_checkpoint, task_dir):
    out = tmp_path / "ev"
    model = str(tiny_checkpoint)
    err = _refused(capsys, out, ["eval", model, "--tasks", "lm_eval:no_such_task_zz",
                                 "--lm-eval-include", str(task_dir), "--out", str(out)])
    assert "unknown lm-eval task 'no_such_task_zz'" in err
    err = _refused(capsys, out, ["eval", model, "--tasks", "lm_eval:copy,lab:copy",
                                 "--out", str(out)])
    assert "cannot be mixed" in err
    err = _refused(capsys, out, ["eval", model, "--tasks", f"lm_eval:{tmp_path / 'x.yaml'}",
                                 "--out", str(out)])
    assert "does not exist" in err
    err = _refused(capsys, out, ["eval", model, "--tasks", "lm_eval:copy", "--lm-eval-include",
                                 str(tmp_path / "missing"), "--out", str(out)])
    assert "--lm-eval-include" in err
    assert "a model is required" in _refused(capsys, out, ["eval", "--tasks", "lab:copy",
                                                           "--out", str(out)])
    # one of lm-eval's own tasks whose data set is on the hub, offline
    err = _refused(capsys, out, ["eval", model, "--tasks", "lm_eval:arc_easy", "--out",
                                 str(out), "--quiet"])
    assert "lm-eval could not run arc_easy" in err and "Hub" in err


def test_bad_lm_eval_folders_are_one_line(tmp_path, capsys, lm_eval_output, tiny_checkpoint):
    out = tmp_path / "ev"
    empty = tmp_path / "empty"
    (empty / "model").mkdir(parents=True)
    (empty / "model" / "results_2026-01-01T00-00-00.000000.json").write_text("{}")
    err = _refused(capsys, out, ["eval", "--from-lm-eval", str(empty), "--out", str(out)])
    assert "no lm-eval samples files" in err
    two = tmp_path / "two"
    inner = next(p for p in lm_eval_output.iterdir() if p.is_dir())
    for name in ("a", "b"):
        shutil.copytree(inner, two / name)
    err = _refused(capsys, out, ["eval", "--from-lm-eval", str(two), "--out", str(out)])
    assert "several models" in err
    err = _refused(capsys, out, ["eval", str(tiny_checkpoint), "--from-lm-eval",
                                 str(lm_eval_output), "--out", str(out)])
    assert "takes no model" in err


def _logged(doc_id: int, **fields) -> dict:
    return {"doc_id": doc_id, "target": "7", "filter": "none", "metrics": ["exact_match"],
            "arguments": {"gen_args_0": {"arg_0": f"q{doc_id}", "arg_1": {"until": ["\n"]}}},
            "resps": [["raw 7"]], "filtered_resps": ["7"], "exact_match": 1.0, **fields}


def test_convert_takes_the_first_filter_and_a_per_sample_metric():
    logged = [_logged(1, exact_match=0.0), _logged(0),
              _logged(0, filter="flexible", exact_match=0.0),
              _logged(1, filter="flexible", exact_match=1.0)]
    rows, info = convert_task("t", logged, {"output_type": "generate_until"},
                              {"exact_match,none": 0.5, "exact_match,flexible": 0.5})
    assert [(r["index"], r["correct"], r["prompt"]) for r in rows] == \
        [(0, True, "q0"), (1, False, "q1")]
    assert rows[0]["generation"] == "raw 7" and rows[0]["extracted"] == "7"
    assert info == {"metric": "exact_match", "filter": "none", "output_type": "generate_until",
                    "lm_eval_value": 0.5, "n": 2}
    rows, _ = convert_task("t", [_logged(0, metrics=["f1"], f1=0.25)])
    assert rows[0]["correct"] == 0.25 and rows[0]["reason"] == "lm-eval f1"
    with pytest.raises(Exception, match="no per-sample score"):
        convert_task("t", [_logged(0, metrics=["bleu"], bleu=["ref", "pred"])])

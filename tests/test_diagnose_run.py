"""``smolmix diagnose`` on a real (tiny) training run."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from helpers import one_line_error as _error

from smolmix.cli import main


@pytest.fixture(scope="module")
def train_run(tmp_path_factory, tiny_checkpoint, lab_mixture):
    root = tmp_path_factory.mktemp("diag")
    (root / "train.yaml").write_text(yaml.safe_dump({
        "model": str(tiny_checkpoint), "mixture": str(lab_mixture), "steps": 8,
        "batch_size": 8, "learning_rate": 0.003,
        "eval": {"holdout_per_task": 20, "every": 4}}))
    assert main(["train", str(root / "train.yaml"), "--out", str(root / "run"), "--quiet"]) == 0
    return root / "run"


def test_diagnose_a_train_run(tmp_path, train_run, capsys):
    iso = tmp_path / "iso.json"
    iso.write_text(json.dumps({"sort": 0.2}))
    out = tmp_path / "diag"
    assert main(["diagnose", str(train_run), "--batch-size", "10", "--max-batches", "2",
                 "--retention-steps", "3", "--isolation", str(iso), "--out", str(out),
                 "--quiet"]) == 0
    report = json.loads((out / "diagnosis.json").read_text())
    assert report["tasks"] == ["copy", "reverse", "sort"]
    assert len(report["interference_over_checkpoints"]["steps"]) == 2  # checkpoints 4 and 8
    assert sum(report["neurons"].values()) > 0
    verdicts = {v["task"]: v["verdict"] for v in report["verdicts"]}
    assert verdicts["sort"] == "not expressible at this size"  # its control failed
    # copy has no control, and 8 steps never bring it near the threshold: never learned
    copy_curve = [r["exact_match"] for r in map(json.loads, (train_run / "curves.jsonl")
                  .read_text().splitlines()) if r["task"] == "copy"]
    assert len(copy_curve) == 3 and max(copy_curve) < 0.9
    assert verdicts["copy"] == "never learned"
    assert "verdict" in capsys.readouterr().out


def test_bad_diagnose_inputs(tmp_path, train_run, capsys):
    cases = [
        (["--tasks", "nope"], "unknown task 'nope'"),
        (["--batch-size", "64"], "fewer than one batch"),
    ]
    for extra, message in cases:
        assert main(["diagnose", str(train_run), *extra, "--quiet"]) == 2
        assert message in _error(capsys)
    assert main(["diagnose", str(tmp_path), "--quiet"]) == 2
    assert "not a smolmix train run" in _error(capsys)
    bare = tmp_path / "bare"
    shutil.copytree(train_run, bare)
    shutil.rmtree(bare / "model")
    shutil.rmtree(bare / "checkpoints")
    assert main(["diagnose", str(bare), "--quiet"]) == 2
    assert "no checkpoints" in _error(capsys)
    no_data = tmp_path / "no-data"
    shutil.copytree(train_run, no_data)
    config = yaml.safe_load((no_data / "train_config.yaml").read_text())
    config["eval"] = {"holdout_per_task": 0}
    (no_data / "train_config.yaml").write_text(yaml.safe_dump(config))
    assert main(["diagnose", str(no_data), "--quiet"]) == 2
    assert "no held-out data" in _error(capsys)


def test_logit_objective_attributes_every_neuron(tiny_checkpoint):
    from smolmix.core.errors import SmolmixError
    from smolmix.diagnose import neuron_allocation
    from smolmix.diagnose.command import batches
    from smolmix.lab.tasks import get_task, make_eval_set
    from smolmix.models.loading import load_checkpoint

    model, tokenizer = load_checkpoint(tiny_checkpoint)
    held = {t: batches(tokenizer, make_eval_set(get_task(t), 20, 0), 20)
            for t in ("copy", "sort")}
    neurons = neuron_allocation(model, held, objective="logit")
    assert sum(neurons.counts().values()) == sum(neurons.sizes) > 0
    with pytest.raises(SmolmixError, match="objective"):
        neuron_allocation(model, held, objective="nope")

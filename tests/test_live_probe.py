"""The mechanism probe taken during training (smolmix.diagnose.live) on a real lab cell."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from smolmix.core.rundir import read_manifest
from smolmix.diagnose.command import DiagnoseSettings, diagnose
from smolmix.diagnose.live import MECHANISM_FILE, MechanismProbe, as_rows, read_mechanism
from smolmix.lab.rare_tasks import study
from smolmix.lab.tasks import vocabulary
from smolmix.mix.command import build_mixture
from smolmix.mix.shares import mixture_shares
from smolmix.models.ladder import LADDER, build_tokenizer, scaled_learning_rate
from smolmix.train.command import train
from smolmix.train.data import load_mixture


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    """A natural xxs cell of the smoke preset, prepared (models, pools, mixture)."""
    root = tmp_path_factory.mktemp("probe")
    preset = replace(study.get_preset("smoke"), sizes=("xxs",), steps=24, probe_every=6,
                     retention_n=4)
    cells = study.plan_cells(preset)
    natural = next(c for c in cells if c.kind == "natural")
    study.prepare(preset, [natural], root)
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(study.cell_recipe(preset, natural, root / "data")))
    build_mixture(recipe, root / "mixtures" / natural.id, quiet=True)
    return preset, natural, root


def test_the_probe_does_not_change_training_and_writes_its_rows(cell):
    preset, natural, root = cell
    config = study.cell_config(preset, natural, root)
    probe = study.mechanism_probe(preset, natural, config, build_tokenizer(vocabulary()),
                                  study.eval_sets(preset))
    train(config, root / "with", quiet=True, callbacks=[probe])
    train(config, root / "without", quiet=True)
    for name in ("curves.jsonl", "train_log.jsonl"):
        assert (root / "with" / name).read_text() == (root / "without" / name).read_text()
    a = load_file(root / "with" / "model" / "model.safetensors")
    b = load_file(root / "without" / "model" / "model.safetensors")
    assert all((a[k] == b[k]).all() for k in a)
    rows = read_mechanism(root / "with" / MECHANISM_FILE)
    plan = study.probe_plan(preset, natural.steps)
    assert [r["step"] for r in rows if r["measure"] == "update"] == [6, 12, 18, 24]
    assert sorted({r["step"] for r in rows if r["measure"] == "retention"}) == \
        list(plan.retention_at) == [6, 12, 18]
    for r in rows:
        if r["measure"] == "update":
            u = r["update"]
            for t in u["tasks"]:
                parts = sum(u[k][t] for k in ("delta_self", "delta_others", "delta_history",
                                              "delta_decay"))
                assert parts == pytest.approx(u["delta_total"][t], rel=1e-9, abs=1e-15)
            assert r["groups"]["frequent"]["grad_norm"] > 0
        elif r["measure"] == "retention":
            assert set(r["curves"]) == set(preset.rare_tasks)
            for curve in r["curves"].values():
                assert curve["points"] == [0, 1, 2, 4]
        else:
            shares = r["neurons"]["soft_share"]
            assert sum(shares.values()) == pytest.approx(1.0)
            assert sum(r["heads"]["soft_share"].values()) == pytest.approx(1.0)
    summary = study.mechanism.cell_mechanism(rows, preset.rare_tasks, natural.steps)
    assert summary["retention_steps"] == [6, 12, 18]
    assert json.dumps(summary)  # JSON-ready


def test_learning_rates_follow_the_documented_width_rule(cell):
    """lr(width) = 3e-3 * 48 / width: the table in docs/lab-rare-tasks-design.md."""
    preset, natural, root = cell
    documented = {"xs": 1.2e-2, "s": 6e-3, "m": 3e-3, "l": 1.5e-3, "xl": 1e-3}
    quick = study.get_preset("quick")
    for size, rate in documented.items():
        assert quick.size_learning_rate(size) == pytest.approx(rate)
        assert scaled_learning_rate(LADDER[size], 3e-3) == pytest.approx(rate)
        c = study.Cell("natural", size, 0, 10, {"copy": 1.0})
        assert study.cell_config(quick, c, root).learning_rate == pytest.approx(rate)
    assert {LADDER[s].layers for s in documented} == {2}
    widths = [LADDER[s].hidden for s in quick.sizes]
    assert widths == sorted(widths) and widths[-1] / widths[0] >= 10


def test_diagnose_takes_the_same_measures_from_checkpoints(cell, tmp_path):
    """``smolmix diagnose`` on a run's checkpoints (weights + optimizer.pt) gives the update
    interference the live probe measured at those steps, and the same unit shares."""
    preset, natural, root = cell
    config = study.cell_config(preset, natural, root).model_copy(
        update={"save_checkpoints": True, "save_every": 6, "save_total_limit": None})
    tokenizer = build_tokenizer(vocabulary())
    mixture = Path(config.mixture)
    shares = mixture_shares(read_manifest(mixture).data)
    held = {t: study.batches(tokenizer, recs, len(recs))
            for t, recs in study.eval_sets(preset).items()}
    plan = study.probe_plan(preset, natural.steps)
    size = preset.batch_size
    probe = MechanismProbe(plan, held, shares,
                           {t: study.batches(tokenizer, study.fresh_examples(preset, t, 7, size),
                                             size) for t in preset.rare_tasks},
                           study.batches(tokenizer, load_mixture(mixture)[:4 * size], size),
                           config.max_grad_norm)
    train(config, tmp_path / "run", quiet=True, callbacks=[probe])
    live = {r["step"]: r for r in as_rows(read_mechanism(tmp_path / "run" / MECHANISM_FILE))}
    report = diagnose(tmp_path / "run", settings=DiagnoseSettings(
        batch_size=preset.eval_examples, max_batches=1, probe_steps=4), quiet=True)
    rows = report["over_training"]["rows"]
    assert [r["step"] for r in rows] == [6, 12, 18, 24]
    for row in rows:
        mine = live[row["step"]]
        assert row["lr"] == pytest.approx(mine["lr"], rel=1e-6)
        for key in ("delta_self", "delta_others", "delta_history", "delta_total"):
            for task, value in mine["update"][key].items():
                assert row["update"][key][task] == pytest.approx(value, rel=1e-4, abs=1e-9)
        if "units" in mine:
            for kind in ("neurons", "heads"):
                for task, value in mine["units"][kind]["soft_share"].items():
                    assert row["units"][kind]["soft_share"][task] == pytest.approx(value,
                                                                                   rel=1e-4)
    summary = report["over_training"]["summary"]["tasks"]
    assert set(summary) == set(held)
    # the rare bucket (share < 1%) of the realised mixture: the three rare tasks and pair_sum
    assert report["over_training"]["probed"] == [t for t in sorted(held) if shares[t] < 0.01]
    assert set(preset.rare_tasks) <= set(report["over_training"]["probed"])

"""Shared fixtures: everything offline, one thread, tiny models built locally."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tokenizer():
    from smolmix.lab.tasks import vocabulary
    from smolmix.models.ladder import build_tokenizer

    return build_tokenizer(vocabulary())


FLOW_TASKS = ("copy", "reverse", "sort")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tokenizer):
    """A saved Llama-style model (hidden 32, 2 layers) with the lab tokenizer: a local stand-in
    for a user model."""
    from helpers import user_model_size

    from smolmix.models.ladder import build_model, save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "model"
    save_checkpoint(build_model(user_model_size(), tokenizer, seed=0, max_positions=64),
                    tokenizer, path)
    return path


@pytest.fixture(scope="session")
def lab_mixture(tmp_path_factory):
    """A mixture folder built by ``smolmix mix`` from three lab tasks (600 examples)."""
    from smolmix.core.records import write_jsonl
    from smolmix.lab.tasks import TrainStream, get_task
    from smolmix.mix.command import build_mixture

    root = tmp_path_factory.mktemp("mix")
    (root / "data").mkdir()
    for task in FLOW_TASKS:
        stream = TrainStream(get_task(task), 0, set())
        write_jsonl((stream.draw() for _ in range(300)), root / "data" / f"{task}.jsonl")
    sources = "\n".join(f"  - {{name: {t}, path: data/{t}.jsonl}}" for t in FLOW_TASKS)
    (root / "recipe.yaml").write_text(f"seed: 0\nbudget: {{examples: 600}}\nsources:\n{sources}\n"
                                      "strategy: [natural]\n")
    build_mixture(root / "recipe.yaml", root / "mixture", quiet=True)
    return root / "mixture"


@pytest.fixture(scope="session")
def partly_trained_copy(tmp_path_factory, tokenizer):
    """A ladder model ("s") trained briefly on ``copy`` of 3 digits: it gets some of its 40
    held-out examples right and some wrong, so a score of it can be wrong in both directions.
    Returns the saved checkpoint and the held-out records."""
    import random

    from helpers import fit_in_memory

    from smolmix.lab.tasks import TASKS, make_eval_set
    from smolmix.models.ladder import build_model, get_size, save_checkpoint

    task = TASKS["copy"]
    held_out = make_eval_set(task, 40, seed=0, n=3)
    rng = random.Random(1)
    records = [task.make(rng, 3) for _ in range(60 * 16)]
    model = build_model(get_size("s"), tokenizer, seed=0)
    root = tmp_path_factory.mktemp("copy3")
    fit_in_memory(model, tokenizer, records, {}, root / "run", steps=60, every=60,
                  batch_size=16, learning_rate=1e-2, warmup_steps=5)
    save_checkpoint(model, tokenizer, root / "model")
    return root / "model", held_out


@pytest.fixture(scope="session")
def report_runs(tmp_path_factory, tiny_checkpoint, lab_mixture):
    """Tiny real runs: two mixtures, a train run on each, a diagnosis of the first, an eval of
    each train run (tagged cot=long / cot=short), their gap, and a needle probe."""
    import shutil

    import yaml

    from smolmix.cli import main

    root = tmp_path_factory.mktemp("runs")
    data = lab_mixture.parent / "data"
    sources = "\n".join(f"  - {{name: {t}, path: {data / t}.jsonl}}"
                        for t in ("copy", "reverse", "sort"))
    (root / "boosted.yaml").write_text(f"seed: 0\nbudget: {{examples: 600}}\nsources:\n"
                                       f"{sources}\nstrategy: [natural, "
                                       "{boost: {sort: 0.45}}]\n")
    assert main(["mix", str(root / "boosted.yaml"), "--out", str(root / "mix-boosted"),
                 "--quiet"]) == 0
    shutil.copytree(lab_mixture, root / "mix-natural")
    for name, cot in (("natural", "long"), ("boosted", "short")):
        (root / f"{name}.yaml").write_text(yaml.safe_dump({
            "model": str(tiny_checkpoint), "mixture": str(root / f"mix-{name}"), "steps": 8,
            "batch_size": 8, "learning_rate": 0.003,
            "eval": {"holdout_per_task": 20, "every": 4}}))
        assert main(["train", str(root / f"{name}.yaml"), "--out", str(root / f"train-{name}"),
                     "--quiet"]) == 0
        assert main(["eval", str(root / f"train-{name}" / "model"), "--tasks", "lab:copy",
                     "--out", str(root / f"eval-{name}"), "--tag", "student=s",
                     "--tag", f"cot={cot}", "--quiet"]) == 0
    assert main(["diagnose", str(root / "train-natural"), "--batch-size", "10",
                 "--max-batches", "1", "--retention-steps", "2", "--out",
                 str(root / "diagnosis"), "--quiet"]) == 0
    assert main(["gap", str(root / "eval-natural"), str(root / "eval-boosted"), "--out",
                 str(root / "gap")]) == 0
    assert main(["eval", str(tiny_checkpoint), "--probe", "needle", "--lengths", "16,32",
                 "--depths", "0,1", "--trials", "1", "--out", str(root / "needle"),
                 "--quiet"]) == 0
    return root

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
    from smolmix.models import build_tokenizer

    return build_tokenizer(vocabulary())


FLOW_TASKS = ("copy", "reverse", "sort")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tokenizer):
    """A saved ladder model ("s") with the lab tokenizer: a local stand-in for a user model."""
    from smolmix.models import build_model, get_size, save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "model"
    save_checkpoint(build_model(get_size("s"), tokenizer, seed=0, max_positions=64), tokenizer,
                    path)
    return path


@pytest.fixture(scope="session")
def lab_mixture(tmp_path_factory):
    """A mixture folder built by ``smolmix mix`` from three lab tasks (600 examples)."""
    from smolmix.lab.tasks import TrainStream, get_task
    from smolmix.mix.build import build_mixture
    from smolmix.records import write_jsonl

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

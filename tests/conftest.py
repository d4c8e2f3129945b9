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

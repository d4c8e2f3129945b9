"""A training run whose loss or weights stop being finite ends with a one-line error instead
of saving NaN weights and exiting 0.

transformers' ``logging_nan_inf_filter`` (on by default) keeps NaN and inf losses out of the
logged average, so :class:`FiniteGuard` also looks at the logged gradient norm (NaN once any
gradient is) and, when training ends, at the weights themselves, before the final model is
saved.
"""

from __future__ import annotations

import math

import torch
from transformers import TrainerCallback

from smolmix.core.errors import SmolmixError

WATCHED = ("loss", "grad_norm", "train_loss")


class NonFiniteTraining(SmolmixError):
    """Training diverged: a loss, gradient norm or weight is NaN or infinite."""


def first_non_finite(model: torch.nn.Module) -> str | None:
    """The name of the first parameter holding a NaN or infinite value (None if none); a
    sharded parameter is checked on this process's shard."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            local = getattr(param, "_local_tensor", param)  # a DTensor's shard
            if local.numel() and local.device.type != "meta" \
                    and not bool(torch.isfinite(local).all()):
                return name
    return None


class FiniteGuard(TrainerCallback):
    """Raises :class:`NonFiniteTraining` at the first log with a non-finite loss or gradient
    norm, and at the end of training when a weight is not finite."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in WATCHED:
            value = (logs or {}).get(key)
            if isinstance(value, int | float) and not math.isfinite(value):
                raise NonFiniteTraining(
                    f"training diverged: {key} is {value} at step {state.global_step} (lower "
                    "learning_rate, check the data and the model's weights)", "train config")

    def on_train_end(self, args, state, control, model=None, **kwargs):
        name = first_non_finite(model) if model is not None else None
        if name is not None:
            raise NonFiniteTraining(
                f"training diverged: weight {name} is not finite after step "
                f"{state.global_step} (lower learning_rate, check the data and the model's "
                "weights)", "train config")

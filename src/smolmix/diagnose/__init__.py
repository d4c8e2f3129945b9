"""Why a task is not learned: gradient interference, retention, neuron allocation.

Every measure works on any Hugging Face causal LM (``model(**batch).loss`` with ``input_ids``,
``attention_mask`` and ``labels``, -100 masking the prompt) and per-task held-out batches
(task name -> list of batches, e.g. from :func:`smolmix.train.curves.pad_batch`).
"""

from smolmix.diagnose.interference import (
    Interference,
    InterferenceCurve,
    interference,
    interference_over_checkpoints,
    task_gradients,
)
from smolmix.diagnose.neurons import Neurons, down_projections, neuron_allocation
from smolmix.diagnose.retention import Retention, held_out_loss, retention

__all__ = [
    "Interference", "InterferenceCurve", "Neurons", "Retention", "down_projections",
    "held_out_loss", "interference", "interference_over_checkpoints", "neuron_allocation",
    "retention", "task_gradients",
]

"""LoRA adapters (PEFT) on any causal LM."""

from __future__ import annotations

import warnings

from peft import LoraConfig, get_peft_model
from transformers import PreTrainedModel

from smolmix.core.errors import SmolmixError
from smolmix.train.config import LoraSpec


def apply_lora(model: PreTrainedModel, spec: LoraSpec):
    """Wrap ``model`` with LoRA adapters; target modules that match nothing are an error."""
    targets = spec.target_modules
    if targets != "all-linear":
        names = [name for name, _ in model.named_modules()]
        for target in targets:
            if not any(name == target or name.endswith("." + target) for name in names):
                raise SmolmixError(f"LoRA target module {target!r} matches no module of the "
                                   "model", "lora.target_modules")
    config = LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                        target_modules=targets, task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # PEFT reads transformers' deprecated alias; not ours to fix
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated",
                                FutureWarning)
        return get_peft_model(model, config)

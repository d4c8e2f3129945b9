"""The loop's plan file: the sources, the held-out evaluation, the model and training settings,
the stages and their budgets, the schedule across them, and the policy.

```yaml
model: models/start              # the checkpoint stage 1 starts from
sources:                         # as in a smolmix mix recipe
  - {name: copy, path: data/copy.jsonl}
heldout: data/heldout.jsonl      # per-task held-out records (prompt, completion, task)
train: {batch_size: 32, learning_rate: 3.0e-3}   # smolmix train keys; the loop sets the rest
stages: {count: 3, examples: 64000}              # or examples: [32000, 64000, 64000]
schedule: {kind: wsd, warmup_steps: 50, decay_fraction: 0.2}   # one schedule over all stages
policy: {name: verdict, max_change: 2.0, max_epochs: 4, options: {raise_factor: 10}}
seed: 0
```

Paths are relative to the plan's folder. Every problem is one error at ``plan.yaml:<line>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

import smolmix.loop.policies  # noqa: F401  (registers the policies)
from smolmix.core.config import invalid, locate, read_yaml
from smolmix.core.errors import SmolmixError
from smolmix.loop.policies.base import get_policy
from smolmix.mix.recipe import SourceSpec
from smolmix.train.config import MAX_SEED, MAX_STEPS

LOOP_KEYS = ("model", "mixture", "steps", "epochs", "lr_scheduler", "warmup_steps", "seed")
MAX_STAGES = 100


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Stages(_Model):
    count: int = Field(gt=0, le=MAX_STAGES, description=f"1 to {MAX_STAGES}")
    examples: int | list[int] = Field(description="per stage: one number for all, or a list")

    @model_validator(mode="after")
    def _budgets(self) -> Stages:
        budgets = self.budgets
        if len(budgets) != self.count:
            raise ValueError(f"examples lists {len(budgets)} budgets for {self.count} stages")
        if not all(0 < b <= MAX_STEPS * 1024 for b in budgets):
            raise ValueError("every stage's examples must be positive")
        return self

    @property
    def budgets(self) -> list[int]:
        return list(self.examples) if isinstance(self.examples, list) \
            else [self.examples] * self.count


class Schedule(_Model):
    """One learning-rate schedule over every stage's steps: warmup, then ``wsd`` holds the
    rate and decays it over the last ``decay_fraction`` of all steps (SmolLM2's
    warmup-stable-decay), ``cosine`` / ``linear`` decay over all of them, ``constant`` holds."""

    kind: Literal["wsd", "cosine", "linear", "constant"] = "wsd"
    warmup_steps: int = Field(0, ge=0, le=MAX_STEPS)
    decay_fraction: float = Field(0.2, ge=0, le=1)


class PolicySpec(_Model):
    name: str = "verdict"
    options: dict[str, Any] = {}
    max_change: float = Field(2.0, ge=1, le=1000, description="largest factor a share may "
                              "move by from one stage to the next")
    max_epochs: float = Field(4.0, gt=0, le=1000, description="no source repeated beyond this")


class Plan(_Model):
    model: str
    sources: list[SourceSpec] = Field(min_length=1)
    heldout: str
    train: dict[str, Any] = {}
    stages: Stages
    schedule: Schedule = Schedule()
    policy: PolicySpec = PolicySpec()
    seed: int = Field(0, ge=0, le=MAX_SEED)
    base_dir: Path = Field(Path("."), exclude=True)

    def path(self, relative: str) -> Path:
        return self.base_dir / Path(relative).expanduser()


def load_plan(path: Path) -> Plan:
    """Read and check a plan; any problem is one SmolmixError naming ``file:line``."""
    path = Path(path)
    data, root = read_yaml(path, "plan")
    try:
        plan = Plan(**data, base_dir=path.parent)
    except ValidationError as exc:
        raise invalid(exc, root, path) from None
    except TypeError as exc:
        raise SmolmixError(str(exc), str(path)) from None

    def where(*loc: object) -> str:
        return f"{path}:{locate(root, tuple(loc))[1]}"

    taken = sorted(set(plan.train) & set(LOOP_KEYS))
    if taken:
        raise SmolmixError(f"train.{taken[0]} is set by the loop (model, mixture, steps and "
                           "the schedule come from the plan's stages)", where("train", taken[0]))
    try:
        get_policy(plan.policy.name, plan.policy.options)
    except SmolmixError as exc:
        raise SmolmixError(exc.what, where("policy", "name")) from None
    except TypeError:
        raise SmolmixError(f"unknown option for policy {plan.policy.name!r}: "
                           f"{', '.join(sorted(plan.policy.options))}",
                           where("policy", "options")) from None
    for key in ("model", "heldout"):
        if not plan.path(getattr(plan, key)).exists():
            raise SmolmixError(f"{key}: {getattr(plan, key)!r} does not exist", where(key))
    for i, spec in enumerate(plan.sources):
        found = spec.location(plan.base_dir)
        if found is not None and not found.exists():
            raise SmolmixError(f"sources.{i}.path: {spec.path!r} does not exist",
                               where("sources", i, "path"))
    return plan

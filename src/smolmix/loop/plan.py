"""The loop's plan file: the sources, the held-out evaluation, the model and training settings,
the stages and their budgets, the schedule across them, and the policy.

```yaml
model: models/start              # the checkpoint stage 1 starts from
sources:                         # as in a smolmix mix recipe
  - {name: copy, path: data/copy.jsonl}
heldout: data/heldout.jsonl      # per-task held-out records (prompt, completion, task)
start: natural                   # stage 1's shares: natural (by example counts) or {task: w}
train: {batch_size: 32, learning_rate: 3.0e-3}   # smolmix train keys; the loop sets the rest
stages: {count: 3, examples: 64000}              # or examples: [32000, 64000, 64000]
schedule: {kind: wsd, warmup_steps: 50, decay_fraction: 0.2}   # one schedule over all stages
policy: {name: verdict, max_change: 2.0, max_epochs: 4, options: {raise_factor: 10}}
eval: {answer_format: exact, max_new_tokens: 32, batch_size: 64}   # each stage's eval run
                                 # (answer_formats: {task: last_number} where one differs)
controls: controls.json          # optional: {isolation: {task: acc}, min_share: {task: share}}
reference: models/reference      # excess-loss only: the reference model
probe: {isolation_steps: 100, anneal_steps: 0}   # optional short runs from the checkpoint
seed: 0
```

Paths are relative to the plan's folder. Every problem is one error at ``plan.yaml:<line>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

import smolmix.loop.policies  # noqa: F401  (registers the policies)
from smolmix.core.config import invalid, locate, read_yaml
from smolmix.core.errors import SmolmixError
from smolmix.grading.extract import EXTRACTORS
from smolmix.loop.policies.base import get_policy
from smolmix.mix.recipe import SourceSpec
from smolmix.train.config import MAX_SEED, MAX_STEPS, TrainConfig, check_passthrough

MAX_NEW_TOKENS = 2**16

LOOP_KEYS = ("model", "mixture", "steps", "epochs", "lr_scheduler", "warmup_steps", "seed",
             "continue_from", "schedule_steps", "eval", "save_checkpoints", "save_every",
             "save_total_limit", "lr_scheduler_kwargs")
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


class EvalSettings(_Model):
    """Each stage's eval run: greedy answers to the held-out prompts, graded."""

    answer_format: str = Field("exact", description="how answers are extracted and compared "
                               "(smolmix grade's formats)")
    answer_formats: dict[str, str] = Field({}, description="per task, where it differs")
    max_new_tokens: int = Field(64, gt=0, le=MAX_NEW_TOKENS)
    batch_size: int = Field(64, gt=0, le=1024, description="generation and the held-out "
                            "losses")


class Probes(_Model):
    """Short runs from a stage's checkpoint (their compute is counted with the loop's).

    ``isolation_steps``: a task never learned and with no isolation control is trained alone
    for this many steps; if it stays below the threshold it is judged not expressible at this
    size. ``anneal_steps``: SmolLM2's screening; the proposed shares and the current ones are
    each trained this many steps, and the proposal is kept only if its mean held-out accuracy
    does not fall below the current shares'."""

    isolation_steps: int = Field(0, ge=0, le=MAX_STEPS)
    anneal_steps: int = Field(0, ge=0, le=MAX_STEPS)


class Plan(_Model):
    model: str
    sources: list[SourceSpec] = Field(min_length=1)
    heldout: str
    start: Literal["natural"] | dict[str, float] = "natural"
    train: dict[str, Any] = {}
    stages: Stages
    schedule: Schedule = Schedule()
    policy: PolicySpec = PolicySpec()
    eval: EvalSettings = EvalSettings()
    controls: str | None = None
    reference: str | None = None
    probe: Probes = Probes()
    seed: int = Field(0, ge=0, le=MAX_SEED)
    base_dir: Path = Field(Path("."), exclude=True)
    _file: Path = PrivateAttr(Path("plan.yaml"))
    _root: Any = PrivateAttr(None)

    def path(self, relative: str) -> Path:
        return self.base_dir / Path(relative).expanduser()

    def where(self, *loc: object) -> str:
        """``plan.yaml:<line>`` of a key (the file alone when it is not known)."""
        if self._root is None:
            return str(self._file)
        return f"{self._file}:{locate(self._root, tuple(loc))[1]}"

    @property
    def examples_per_step(self) -> int:
        return int(self.train.get("batch_size", 8)) * int(self.train.get("grad_accum", 1))

    @property
    def steps_per_stage(self) -> list[int]:
        """Each stage's optimizer steps: its examples over the examples per step."""
        return [max(1, -(-b // self.examples_per_step)) for b in self.stages.budgets]


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

    plan._file, plan._root = path, root
    where = plan.where
    taken = sorted(set(plan.train) & set(LOOP_KEYS))
    if taken:
        raise SmolmixError(f"train.{taken[0]} is set by the loop (model, mixture, steps and "
                           "the schedule come from the plan's stages)", where("train", taken[0]))
    base_config(plan)
    for key, fmt in [("answer_format", plan.eval.answer_format),
                     *((("answer_formats", t), f) for t, f in plan.eval.answer_formats.items())]:
        if fmt not in EXTRACTORS:
            loc = ("eval", *key) if isinstance(key, tuple) else ("eval", key)
            raise SmolmixError(f"unknown answer format {fmt!r} (known: "
                               f"{', '.join(EXTRACTORS)})", where(*loc))
    try:
        get_policy(plan.policy.name, plan.policy.options)
    except SmolmixError as exc:
        raise SmolmixError(exc.what, where("policy", "name")) from None
    except TypeError:
        raise SmolmixError(f"unknown option for policy {plan.policy.name!r}: "
                           f"{', '.join(sorted(plan.policy.options))}",
                           where("policy", "options")) from None
    weights = plan.start.values() if isinstance(plan.start, dict) else [1.0]
    if sum(weights) <= 0 or any(not 0 <= w < float("inf") for w in weights):
        raise SmolmixError("start: weights must be finite, not negative and not all 0",
                           where("start"))
    if plan.policy.name == "excess-loss" and plan.reference is None:
        raise SmolmixError("policy excess-loss needs a reference model (reference: PATH)",
                           where("policy", "name"))
    for key in ("model", "heldout", "controls", "reference"):
        if getattr(plan, key) is not None and not plan.path(getattr(plan, key)).exists():
            raise SmolmixError(f"{key}: {getattr(plan, key)!r} does not exist", where(key))
    for i, spec in enumerate(plan.sources):
        found = spec.location(plan.base_dir)
        if found is not None and not found.exists():
            raise SmolmixError(f"sources.{i}.path: {spec.path!r} does not exist",
                               where("sources", i, "path"))
    return plan


def base_config(plan: Plan) -> TrainConfig:
    """The plan's ``train`` keys as a train config (model and mixture filled in by each stage);
    a bad key is an error at its line."""
    try:
        config = TrainConfig(**plan.train, model=plan.model, mixture=".", seed=plan.seed)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = first["loc"][0] if first["loc"] else None
        where = plan.where("train", key) if key in plan.train else plan.where("train")
        raise SmolmixError(f"train.{'.'.join(map(str, first['loc']))}: {first['msg']}",
                           where) from None
    check_passthrough(config, plan.where("train"))
    return config

"""The rebalance lab's presets: every policy of ``smolmix loop`` on the rare-task lab's tasks
and ladder, at equal steps and examples.

Seed 0 is the tuning seed: the policies' settings below were chosen on it alone
(docs/lab-rebalance-design.md); ``quick`` and ``full`` report on other seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from smolmix.core.errors import SmolmixError, lookup
from smolmix.lab.grid import check_seeds, check_sizes, check_steps
from smolmix.lab.rare_tasks.study import DEFAULT_COMPLEXITY, DEFAULT_TASKS
from smolmix.lab.tasks import FrequencyOrder
from smolmix.loop.policies.base import POLICIES
from smolmix.mix.shares import zipf_shares
from smolmix.models.ladder import get_size, scaled_learning_rate

POLICY_ORDER = ("static", "uniform", "temperature", "odm", "excess-loss", "verdict")
TUNING_SEED = 0


@dataclass(frozen=True)
class Preset(FrequencyOrder):
    """Everything that defines one run of the lab."""

    name: str
    sizes: tuple[str, ...]
    seeds: tuple[int, ...]
    steps: int  # the whole loop's, split evenly over the stages
    scale_sizes: tuple[str, ...] = ()  # larger sizes trained on the natural mixture only
    stages: int = 4
    policies: tuple[str, ...] = POLICY_ORDER
    tasks: tuple[str, ...] = DEFAULT_TASKS
    complexity: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_COMPLEXITY),
                                       hash=False)
    zipf_exponent: float = 2.5
    rare_count: int = 3
    frequent_count: int = 3
    batch_size: int = 32
    learning_rate: float = 3e-3  # at width BASE_WIDTH, scaled by width as in the rare-task lab
    warmup_steps: int = 50
    decay_fraction: float = 0.2
    pool_share: float = 0.2  # each task's examples: this share of the loop's, times max_epochs
    max_epochs: float = 4.0
    max_change: float = 4.0
    isolation_fraction: float = 0.25  # each rare task alone: this share of a loop's steps
    temperature: float = 3.0
    eval_examples: int = 100
    max_new_tokens: int = 12

    @property
    def all_sizes(self) -> tuple[str, ...]:
        return self.sizes + tuple(s for s in self.scale_sizes if s not in self.sizes)

    def size_policies(self, size: str) -> tuple[str, ...]:
        """Every policy at the preset's sizes; the natural mixture alone at the scale sizes."""
        return self.policies if size in self.sizes else \
            tuple(p for p in self.policies if p == "static")

    @property
    def isolation_steps(self) -> int:
        """The isolation control's steps (the rare-task lab's: a quarter of the steps)."""
        return max(1, round(self.steps * self.isolation_fraction))

    @property
    def examples(self) -> int:
        return self.steps * self.batch_size

    def start_shares(self) -> dict[str, float]:
        """The mixture every loop starts from: the rare-task lab's natural (Zipf) one."""
        return zipf_shares(self.tasks, self.zipf_exponent)

    def pool_size(self, task: str) -> int:
        """Each task's examples: enough, within the epoch cap, for its start share over the
        whole loop, for ``pool_share`` of it, and for its isolation control."""
        need = max(self.start_shares()[task], self.pool_share) * self.examples
        return int(max(need, self.isolation_steps * self.batch_size) / self.max_epochs) + 1

    def size_learning_rate(self, size: str) -> float:
        return scaled_learning_rate(get_size(size), self.learning_rate)

    def policy_options(self, policy: str) -> dict:
        return {"temperature": self.temperature} if policy == "temperature" else {}


PRESETS: dict[str, Preset] = {
    "quick": Preset("quick", sizes=("m", "l"), scale_sizes=("xl",), seeds=(1, 2), steps=2000),
    "full": Preset("full", sizes=("s", "m", "l"), scale_sizes=("xl", "xxl"),
                   seeds=(1, 2, 3), steps=6000, stages=6),
    "smoke": Preset("smoke", sizes=("xxs",), seeds=(1,), steps=24, stages=2, warmup_steps=2,
                    eval_examples=8, batch_size=8),
}


def get_preset(name: str) -> Preset:
    return lookup(PRESETS, name, "preset", "--preset")


def customize(preset: Preset, sizes: list[str] | None = None, seeds: list[int] | None = None,
              steps: int | None = None, policies: list[str] | None = None,
              stages: int | None = None, scale_sizes: list[str] | None = None) -> Preset:
    """The preset with the CLI's overrides applied and checked."""
    check_steps(steps)
    sizes = check_sizes(sizes)
    scale_sizes = check_sizes(scale_sizes) if scale_sizes else scale_sizes
    seeds = check_seeds(seeds)
    if policies is not None:
        for name in policies:
            lookup(POLICIES, name, "policy", "--policies")
        if len(set(policies)) != len(policies):
            raise SmolmixError(f"policies must be distinct, got {policies}", "--policies")
        if "excess-loss" in policies and "static" not in policies:
            raise SmolmixError("excess-loss needs static (its reference model is the static "
                               "loop's)", "--policies")
    if stages is not None and not 2 <= stages <= 100:
        raise SmolmixError(f"must be between 2 and 100, got {stages}", "--stages")
    new = replace(preset,
                  sizes=tuple(sizes) if sizes is not None else preset.sizes,
                  scale_sizes=tuple(scale_sizes) if scale_sizes is not None
                  else preset.scale_sizes,
                  seeds=tuple(seeds) if seeds is not None else preset.seeds,
                  steps=steps if steps is not None else preset.steps,
                  policies=tuple(p for p in POLICY_ORDER if p in policies)
                  if policies is not None else preset.policies,
                  stages=stages if stages is not None else preset.stages)
    if new.steps < new.stages:
        raise SmolmixError(f"steps {new.steps} cannot be split over {new.stages} stages",
                           "--steps")
    return new

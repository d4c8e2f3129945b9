"""The learnability-gap study's presets and the CLI's overrides of them, validated."""

from __future__ import annotations

from dataclasses import dataclass, replace

from smolmix.core.errors import SmolmixError, lookup
from smolmix.lab.grid import check_seeds, check_sizes, check_steps
from smolmix.lab.learnability.arms import AXES
from smolmix.lab.learnability.problems import TASKS
from smolmix.lab.learnability.traces import STYLES
from smolmix.models.ladder import get_size, scaled_learning_rate

DEFAULT_RATIOS = (0.0, 0.1, 0.2, 0.4, 0.6, 1.0)


@dataclass(frozen=True)
class Preset:
    """Everything that defines one run of the study."""

    name: str
    sizes: tuple[str, ...]
    seeds: tuple[int, ...]
    steps: int
    levels: dict[str, tuple[int, ...]]  # task -> difficulty levels trained and evaluated
    ratios: dict[str, tuple[float, ...]]  # axis -> shares of its high style
    batch_size: int = 32
    learning_rate: float = 3e-3  # at the ladder's base width, scaled by width
    warmup_steps: int = 30
    eval_per_level: int = 200

    @property
    def groups(self) -> list[tuple[str, int]]:
        """The (task, difficulty) pairs, each one held-out set."""
        return [(t, d) for t, levels in self.levels.items() for d in levels]

    @property
    def examples(self) -> int:
        """Training examples of every cell (steps x batch size)."""
        return self.steps * self.batch_size

    @property
    def styles(self) -> tuple[str, ...]:
        return tuple(s for axis in self.ratios for s in AXES[axis][1:])

    def size_learning_rate(self, size: str) -> float:
        return scaled_learning_rate(get_size(size), self.learning_rate)


ALL_RATIOS = {"long": DEFAULT_RATIOS, "large": DEFAULT_RATIOS}
PRESETS: dict[str, Preset] = {
    # Decided from the cost of a step and a pilot on a pooled arm (all four styles, not one
    # of the arms): docs/lab-learnability-gap-design.md, "The study".
    "quick": Preset("quick", sizes=("xs", "s", "m", "l"), seeds=(0, 1), steps=400,
                    levels={"add": (2,)}, ratios=ALL_RATIOS),
    "full": Preset("full", sizes=("s", "m", "l", "xl"), seeds=(0, 1, 2), steps=2000,
                   levels={"add": (2, 3), "mul": (2, 3)}, ratios=ALL_RATIOS,
                   eval_per_level=300),
    "smoke": Preset("smoke", sizes=("xxs", "xs"), seeds=(0,), steps=8,
                    levels={"add": (2,)}, ratios={"long": (0.0, 0.5, 1.0), "large": (0.0, 1.0)},
                    batch_size=8, warmup_steps=2, eval_per_level=8),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name is a user error listing the known ones."""
    return lookup(PRESETS, name, "preset", "--preset")


def parse_levels(items: list[str]) -> dict[str, tuple[int, ...]]:
    """``["add", "mul:2"]`` → ``{"add": (2, 3, 4), "mul": (2,)}``, every name and level
    checked (``--tasks``)."""
    levels: dict[str, list[int]] = {}
    for item in items:
        name, _, level = item.partition(":")
        task = lookup(TASKS, name, "task", "--tasks")
        if not level:
            chosen = list(task.difficulties)
        else:
            try:
                chosen = [int(level)]
            except ValueError:
                raise SmolmixError(f"difficulty must be an integer, got {level!r}",
                                   "--tasks") from None
            if chosen[0] not in task.difficulties:
                known = ", ".join(map(str, task.difficulties))
                raise SmolmixError(f"task {name!r} has no difficulty {level}; known: {known}",
                                   "--tasks")
        levels.setdefault(name, [])
        levels[name] += [d for d in chosen if d not in levels[name]]
    if not levels:
        raise SmolmixError("no tasks given", "--tasks")
    return {t: tuple(sorted(ds)) for t, ds in levels.items()}


def check_ratios(ratios: list[float], flag: str) -> tuple[float, ...]:
    """Distinct shares in [0, 1], sorted."""
    for r in ratios:
        if not 0 <= r <= 1:
            raise SmolmixError(f"mix ratios must be in [0, 1], got {r:g}", flag)
    if not ratios or len(set(ratios)) != len(ratios):
        raise SmolmixError(f"mix ratios must be distinct and non-empty, got {ratios}", flag)
    return tuple(sorted(ratios))


def customize(preset: Preset, sizes: list[str] | None = None, seeds: list[int] | None = None,
              steps: int | None = None, tasks: list[str] | None = None,
              styles: list[str] | None = None, long_ratios: list[float] | None = None,
              large_ratios: list[float] | None = None) -> Preset:
    """The preset with the CLI's overrides applied and validated. ``styles`` picks the axes:
    both styles of an axis must be given for it to run."""
    check_steps(steps)
    sizes = check_sizes(sizes)
    seeds = check_seeds(seeds)
    ratios = dict(preset.ratios)
    if long_ratios is not None:
        ratios["long"] = check_ratios(long_ratios, "--long-ratios")
    if large_ratios is not None:
        ratios["large"] = check_ratios(large_ratios, "--large-ratios")
    if styles is not None:
        for name in styles:
            lookup(STYLES, name, "style", "--styles")
        ratios = {axis: r for axis, r in ratios.items()
                  if all(s in styles for s in AXES[axis][1:])}
        if not ratios:
            raise SmolmixError("give both styles of an axis: short,long and/or small,large, "
                               f"got {','.join(styles)}", "--styles")
    return replace(
        preset,
        sizes=tuple(sizes) if sizes is not None else preset.sizes,
        seeds=tuple(seeds) if seeds is not None else preset.seeds,
        steps=steps if steps is not None else preset.steps,
        levels=parse_levels(tasks) if tasks is not None else preset.levels,
        ratios=ratios,
    )

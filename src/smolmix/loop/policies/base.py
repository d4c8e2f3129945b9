"""What a policy sees after a stage, what it returns, and the registry of policies.

A policy proposes weights for the next stage, one per task, each with a reason in plain words
and the numbers behind it; :mod:`smolmix.loop.limits` then holds the proposal to the per-stage
bound and the repetition caps. Policies that learn across stages (``odm``, ``excess-loss``)
keep their state in a JSON-able dict the loop saves with each stage, so a resumed loop
continues with the same state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from smolmix.core.errors import lookup


@dataclass(frozen=True)
class TaskState:
    """One task after a stage."""

    name: str
    share: float  # its share of the stage just trained
    natural: float  # its share by example counts
    accuracy: tuple[float, ...] = ()  # held-out accuracy after each finished stage
    verdict: str | None = None  # smolmix.diagnose.verdicts
    min_share: float | None = None  # measured: a boost curve or a probe
    train_loss: float | None = None  # mean training loss on the task in the last stage
    heldout_loss: float | None = None
    reference_loss: float | None = None  # a reference model's held-out loss on the task
    steps: int | None = None  # the training steps behind these scores (the loop's so far)


@dataclass(frozen=True)
class Proposal:
    """A policy's weight for one task, why, and the numbers that triggered it."""

    weight: float
    reason: str
    numbers: dict = field(default_factory=dict)
    ceiling: float | None = None  # the share the task must not exceed next stage
    floor: float | None = None  # the share the task must not fall below next stage


class Policy(Protocol):
    name: str

    def propose(self, tasks: Sequence[TaskState], stage: int,
                state: dict) -> dict[str, Proposal]:
        """The next stage's weights (any positive scale); ``state`` is the policy's own,
        updated in place."""
        ...


POLICIES: dict[str, Callable[..., Policy]] = {}


def register(name: str) -> Callable:
    def add(factory: Callable[..., Policy]) -> Callable[..., Policy]:
        POLICIES[name] = factory
        return factory
    return add


def get_policy(name: str, options: Mapping | None = None) -> Policy:
    """The policy called ``name`` with its options; an unknown name is a user error."""
    return lookup(POLICIES, name, "policy", "policy.name")(**dict(options or {}))

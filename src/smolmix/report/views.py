"""Run folders as the report reads them: a :class:`Run` (manifest and label) for any kind, and a
typed view for each kind smolmix writes (mixture, train, eval, diagnose, gap).

A file a view needs that is missing or unreadable is a user error naming the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smolmix.core.errors import SmolmixError
from smolmix.core.inputs import iter_json_objects, read_json
from smolmix.core.rundir import MANIFEST, Manifest, read_manifest
from smolmix.diagnose.command import CONTROLS_FILE, DIAGNOSIS_FILE
from smolmix.evaluate.command import NEEDLE_FILE, NEEDLE_PLOT, SAMPLES_FILE, SCORES_FILE
from smolmix.evaluate.gap import GAPS_FILE, GAPS_PLOT
from smolmix.mix.shares import mixture_shares
from smolmix.train.config import CONFIG_FILE, TrainConfig, load_train_config
from smolmix.train.curves import CURVES_FILE, final_scores, read_curves


@dataclass(frozen=True)
class Run:
    """A smolmix run folder, its manifest, and the short label that names it in the report."""

    folder: Path
    manifest: Manifest
    label: str

    @property
    def kind(self) -> str:
        return self.manifest.kind

    def json(self, name: str, kind: type = object) -> Any:
        """A JSON file of the run, read through the one input layer (strict UTF-8, bounded
        values); ``kind`` (dict or list) is the top-level type it must have."""
        path = self.folder / name
        if not path.is_file():
            raise SmolmixError(f"the {self.kind} run has no readable {name}", str(path))
        data = read_json(path, f"the {self.kind} run's {name}")
        if kind is not object and not isinstance(data, kind):
            noun = {dict: "an object", list: "a list"}[kind]
            raise SmolmixError(f"{name} must hold {noun}, not {type(data).__name__}",
                               str(path))
        return data

    def jsonl(self, name: str) -> list[dict]:
        """The objects of a JSONL file of the run (none when the file is absent)."""
        path = self.folder / name
        if not path.is_file():
            return []
        return [row for _, row in iter_json_objects(path, f"the {self.kind} run's {name}")]


def labels(folders: Sequence[Path]) -> list[str]:
    """Short distinct names for ``folders``: their names, or as many trailing path parts as
    it takes to tell them apart."""
    parts = [Path(f).resolve().parts for f in folders]
    for n in range(1, max(map(len, parts), default=1) + 1):
        names = ["/".join(p[-n:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(f) for f in folders]


def read_runs(folders: Sequence[Path]) -> list[Run]:
    """The runs in ``folders`` (each must hold a smolmix manifest; none given twice)."""
    folders = [Path(f) for f in folders]
    seen: dict[Path, Path] = {}
    for folder in folders:
        key = folder.resolve()
        if key in seen:
            raise SmolmixError("the same run folder is given twice", str(folder))
        seen[key] = folder
    manifests = [read_manifest(f) for f in folders]
    return [Run(f, m, label) for f, m, label in zip(folders, manifests, labels(folders))]


# ---------------------------------------------------------------- one view per kind


@dataclass(frozen=True)
class MixtureView:
    """A ``smolmix mix`` folder: per stage and task the requested and achieved shares."""

    run: Run
    stages: list[dict]
    by_task: dict[str, dict[str, dict]]  # stage -> task -> stats
    hygiene: dict[str, dict]  # task -> available and removed counts

    @classmethod
    def read(cls, run: Run) -> MixtureView:
        m = run.manifest
        where = str(run.folder / MANIFEST)
        stages = _shaped(m.get("stages") or [], "stages", list, where)
        for stage in stages:
            _shaped(stage, "stages[]", dict, where)
            if not isinstance(stage.get("name"), str) or not _number(stage.get("examples")):
                raise SmolmixError("manifest stages must each have a name and a number of "
                                   "examples", where)
        by_task = _shaped(m.get("by_task") or {}, "by_task", dict, where)
        for stage, tasks in by_task.items():
            for task, stats in _shaped(tasks, f"by_task.{stage}", dict, where).items():
                _shaped(stats, f"by_task.{stage}.{task}", dict, where)
                if not all(_number(stats.get(k)) for k in STAT_KEYS):
                    raise SmolmixError(f"manifest by_task.{stage}.{task} lacks one of "
                                       f"{', '.join(STAT_KEYS)}", where)
        hygiene = _shaped(m.get("hygiene") or {}, "hygiene", dict, where)
        by_hygiene = _shaped(hygiene.get("by_task") or {}, "hygiene.by_task", dict, where)
        for task, stats in by_hygiene.items():
            if not all(_number(v) for v in _shaped(stats, f"hygiene.by_task.{task}", dict,
                                                   where).values()):
                raise SmolmixError(f"manifest hygiene.by_task.{task} must hold numbers",
                                   where)
        return cls(run, stages, by_task, by_hygiene)


STAT_KEYS = ("requested_share", "achieved_share", "selected", "repetitions")


def _shaped(value: Any, key: str, kind: type, where: str) -> Any:
    """``value`` when it is a ``kind`` (a hand-edited manifest may hold anything)."""
    if not isinstance(value, kind):
        noun = {dict: "an object", list: "a list"}[kind]
        raise SmolmixError(f"manifest {key} must be {noun}, not {type(value).__name__}", where)
    return value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class TrainView:
    """A ``smolmix train`` run: its resolved config, per-task curves and final scores."""

    run: Run
    config: TrainConfig
    curves: list[dict]
    final: dict[str, dict]  # task -> metric -> value at the last evaluated step
    controls: dict = field(default_factory=dict)  # controls.json: isolation, min_share
    shares: dict[str, float] = field(default_factory=dict)  # the mixture's, when readable

    @classmethod
    def read(cls, run: Run) -> TrainView:
        config = load_train_config(run.folder / CONFIG_FILE)
        curves = read_curves(run.folder / CURVES_FILE)
        final = run.manifest.get("final") or final_scores(curves)
        controls = run.json(CONTROLS_FILE, dict) \
            if (run.folder / CONTROLS_FILE).is_file() else {}
        return cls(run, config, curves, final, controls, _mixture_shares(config.mixture))

    def metrics(self) -> list[str]:
        """The numeric metrics in the curves, in the order they first appear."""
        found: dict[str, None] = {}
        for row in self.curves:
            for key, value in row.items():
                if key not in ("step", "task", "count") and isinstance(value, (int, float)):
                    found.setdefault(key)
        return list(found)

    def curve(self, task: str, metric: str) -> tuple[list[int], list[float]]:
        """Steps and values of one task's metric over training."""
        rows = sorted((r for r in self.curves if r["task"] == task and r.get(metric) is not None),
                      key=lambda r: r["step"])
        return [r["step"] for r in rows], [r[metric] for r in rows]


def _mixture_shares(mixture: str) -> dict[str, float]:
    """Each task's share of a training mixture; empty when the folder is gone."""
    try:
        return mixture_shares(read_manifest(Path(mixture), kinds=("mixture",)).data)
    except SmolmixError:
        return {}


@dataclass(frozen=True)
class EvalView:
    """A ``smolmix eval`` run: scores with intervals and the graded samples, or a needle
    probe's accuracy grid."""

    run: Run
    model: str
    tags: dict[str, str]
    scores: dict | None = None  # scores.json: tasks, buckets, overall
    samples: list[dict] = field(default_factory=list)
    needle: dict | None = None  # needle.json

    @property
    def needle_plot(self) -> Path | None:
        path = self.run.folder / NEEDLE_PLOT
        return path if self.needle is not None and path.is_file() else None

    @classmethod
    def read(cls, run: Run) -> EvalView:
        m = run.manifest
        model, tags = str(m.get("model", "")), dict(m.get("tags") or {})
        if m.get("probe") == "needle":
            return cls(run, model, tags, needle=run.json(NEEDLE_FILE, dict))
        return cls(run, model, tags, run.json(SCORES_FILE, dict), run.jsonl(SAMPLES_FILE))


@dataclass(frozen=True)
class DiagnosisView:
    """A ``smolmix diagnose --out`` folder: verdicts, interference, retention, neurons."""

    run: Run
    report: dict

    @property
    def diagnosed(self) -> Path | None:
        """The train run this diagnosis is of, as its command named it."""
        named = self.run.manifest.arguments.get("run") or self.report.get("run")
        return Path(named) if named else None

    @classmethod
    def read(cls, run: Run) -> DiagnosisView:
        return cls(run, run.json(DIAGNOSIS_FILE, dict))


@dataclass(frozen=True)
class GapView:
    """A ``smolmix gap --out`` folder: one row per student and gap."""

    run: Run
    rows: list[dict]

    @property
    def plot(self) -> Path | None:
        path = self.run.folder / GAPS_PLOT
        return path if path.is_file() else None

    @classmethod
    def read(cls, run: Run) -> GapView:
        return cls(run, run.json(GAPS_FILE, list))

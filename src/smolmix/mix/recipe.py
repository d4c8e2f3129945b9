"""The mixture recipe: a validated schema and its YAML loading.

A recipe names its sources, a budget and a strategy (or several stages, each with its own), the
hygiene to apply and the formats to export. :func:`load_recipe` reads it with ``yaml.safe_load``
and validates it; every problem is one :class:`SmolmixError` whose ``where`` is ``<file>:<line>``
of the offending key. Paths in a recipe are relative to the recipe's folder.
"""

from __future__ import annotations

import hashlib
import json
import operator
from functools import reduce
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    StrictFloat,
    StrictInt,
    Tag,
    ValidationError,
    create_model,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from smolmix.core.config import UnionHelp, dotted, invalid, locate, read_yaml
from smolmix.core.errors import SmolmixError

# Limits on the numbers a recipe may give (stated in the schema, checked before any work):
# beyond them a number is a typo, or asks for more than any machine can hold.
MAX_BUDGET = 10**12  # examples or tokens per stage
MAX_SEED = 2**32 - 1
MAX_REPEATS = 10**6
MAX_ALPHA = 100.0
MAX_WEIGHT = 1e12
MAX_NUM_PERM = 4096
MAX_NGRAM = 1000

# ints are accepted and stored as floats (stable hash); NaN and infinity are refused
Number = Annotated[StrictFloat, Field(allow_inf_nan=False)]
Count = Annotated[StrictInt, Field(gt=0, le=MAX_BUDGET)]
Name = Annotated[str, Field(min_length=1)]


def _problem(message: str) -> PydanticCustomError:
    """A validation error whose message is shown as is (no pydantic prefix)."""
    return PydanticCustomError("smolmix", "{message}", {"message": message})


def _scalar_text(value: Any) -> Any:
    """YAML scalars as tag text: ``true`` -> ``"true"``, ``3`` -> ``"3"``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


Text = Annotated[str, BeforeValidator(_scalar_text)]
Share = Annotated[Number, Field(json_schema_extra={"exclusiveMinimum": 0, "exclusiveMaximum": 1},
                                description="a share of the mixture, in (0, 1)")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- strategy steps -------------------------------------------------------------------------


class _Step(_Model):
    """One strategy step; ``model_dump`` gives back its YAML form."""

    kind: ClassVar[str]
    base: ClassVar[bool] = False

    @model_serializer(mode="plain")
    def _dump(self) -> Any:
        return self.yaml()

    def yaml(self) -> Any:
        return self.kind


class Natural(_Step):
    """Task shares proportional to the available examples."""

    kind: ClassVar[str] = "natural"
    base: ClassVar[bool] = True


class Uniform(_Step):
    """Equal share for every task."""

    kind: ClassVar[str] = "uniform"
    base: ClassVar[bool] = True


class Temperature(_Step):
    """Task share proportional to ``count ** alpha`` (1: natural, 0: uniform)."""

    kind: ClassVar[str] = "temperature"
    base: ClassVar[bool] = True
    alpha: Annotated[Number, Field(
        ge=0, le=MAX_ALPHA, description=f"the exponent, a finite number in [0, {MAX_ALPHA:g}] "
        "(1: natural, 0: uniform)")]

    def yaml(self) -> Any:
        return {"temperature": {"alpha": self.alpha}}


class Weights(_Step):
    """Manual task weights (normalised by the builder)."""

    kind: ClassVar[str] = "weights"
    base: ClassVar[bool] = True
    weights: Annotated[dict[str, Number], Field(
        description=f"task -> weight, each a finite number in [0, {MAX_WEIGHT:g}], not all 0")]

    @field_validator("weights")
    @classmethod
    def _check(cls, weights: dict[str, float]) -> dict[str, float]:
        for task, weight in weights.items():
            if weight < 0:
                raise _problem(f"weight for {task!r} must not be negative, got {weight}")
            if weight > MAX_WEIGHT:
                raise _problem(f"weight for {task!r} must be at most {MAX_WEIGHT:g}, got "
                               f"{weight:g}")
        if not weights or sum(weights.values()) <= 0:
            raise _problem("weights are all zero")
        return weights

    def yaml(self) -> Any:
        return {"weights": dict(self.weights)}


class Boost(_Step):
    """Set the named tasks to these shares; the other tasks keep their ratios."""

    model_config = ConfigDict(validate_by_name=True)
    kind: ClassVar[str] = "boost"
    shares: Annotated[dict[str, Share], Field(alias="boost", min_length=1)]

    @field_validator("shares")
    @classmethod
    def _check(cls, shares: dict[str, float]) -> dict[str, float]:
        for task, share in shares.items():
            if not 0 < share < 1:
                raise _problem(f"boost share for {task!r} must be in (0, 1), got {share}")
        total = sum(shares.values())
        if total > 1 + 1e-12:
            raise _problem(f"boost shares sum to {total:g}, above 1")
        return shares

    def yaml(self) -> Any:
        return {"boost": dict(self.shares)}


class Floor(_Step):
    """Raise every task to at least ``share``."""

    model_config = ConfigDict(validate_by_name=True)
    kind: ClassVar[str] = "floor"
    share: Annotated[Share, Field(alias="floor")]

    @field_validator("share")
    @classmethod
    def _check(cls, share: float) -> float:
        if not 0 < share < 1:
            raise _problem(f"floor share must be in (0, 1), got {share}")
        return share

    def yaml(self) -> Any:
        return {"floor": self.share}


def _open_unit(name: str):
    def check(value: float) -> float:
        if not 0 < value < 1:
            raise _problem(f"{name} must be in (0, 1), got {value}")
        return value
    return check


class MixLong(_Step):
    """Within ``tasks`` (default: every task with both), ``long`` of the examples have
    ``cot: long`` and the rest ``cot: short``."""

    kind: ClassVar[str] = "mix_long"
    long: Annotated[Share, AfterValidator(_open_unit("long"))] = 0.2
    tasks: tuple[Name, ...] | None = None

    def yaml(self) -> Any:
        return {"mix_long": {"long": self.long, "tasks": _list_or_none(self.tasks)}}


class MixLarge(_Step):
    """Within ``tasks`` (default: every task with both), ``large`` of the examples have
    ``teacher: large`` and the rest ``teacher: small``."""

    kind: ClassVar[str] = "mix_large"
    large: Annotated[Share, AfterValidator(_open_unit("large"))] = 0.2
    tasks: tuple[Name, ...] | None = None

    def yaml(self) -> Any:
        return {"mix_large": {"large": self.large, "tasks": _list_or_none(self.tasks)}}


def _list_or_none(items: tuple[str, ...] | None) -> list[str] | None:
    return None if items is None else list(items)


STEPS: tuple[type[_Step], ...] = (
    Natural, Uniform, Temperature, Weights, Boost, Floor, MixLong, MixLarge)
# Steps written as {name: {args}} whose arguments are the model's fields.
_NESTED = (Temperature, MixLong, MixLarge)


def _step_kind(value: Any) -> str | None:
    if isinstance(value, _Step):
        return value.kind
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        return key if isinstance(key, str) else None
    return None


def _unwrap(cls: type[_Step]):
    """Turn the YAML form of a step into its model's input."""
    def unwrap(value: Any) -> Any:
        if isinstance(value, _Step):
            return value
        if isinstance(value, str):  # a bare name: every argument takes its default
            if cls in (Weights, Boost, Floor):
                raise _problem(f"strategy step {cls.kind!r} needs a value")
            return {}
        if cls in _NESTED or cls in (Natural, Uniform):
            inner = value[cls.kind]
            return {} if inner is None else inner
        return value
    return unwrap


def _input_schema(cls: type[_Step]) -> Any:
    """What a step looks like in YAML, for the JSON schema."""
    if cls in (Natural, Uniform):
        return Literal[cls.kind]  # type: ignore[valid-type]
    if cls in _NESTED:
        wrapper = create_model(f"{cls.__name__}Step", __config__=ConfigDict(extra="forbid"),
                               **{cls.kind: (cls, ...)})
        if cls is Temperature:  # alpha has no default
            return wrapper
        return Literal[cls.kind] | wrapper  # type: ignore[valid-type]
    return cls


def _member(cls: type[_Step]) -> Any:
    unwrap = BeforeValidator(_unwrap(cls), json_schema_input_type=_input_schema(cls))
    return Annotated[cls, unwrap, Tag(cls.kind)]


Step = Annotated[
    reduce(operator.or_, [_member(cls) for cls in STEPS]),  # type: ignore[valid-type]
    Discriminator(_step_kind),
]


STEP_HELP = UnionHelp(
    "strategy step", tuple(s.kind for s in STEPS),
    "a strategy step is a name (natural) or a one-key mapping ({temperature: {alpha: 0.5}})")


def _check_bases(steps: list[_Step]) -> list[_Step]:
    bases = [(i, s) for i, s in enumerate(steps) if s.base]
    if len(bases) > 1:
        names = ", ".join(s.kind for _, s in bases)
        raise _problem(f"only one of natural/uniform/temperature/weights may appear, got {names}")
    if bases and bases[0][0] != 0:
        raise _problem(f"base step {bases[0][1].kind!r} must come first")
    return steps


Strategy = Annotated[list[Step], AfterValidator(_check_bases)]


def _base_first(steps: list[_Step]) -> list[_Step]:
    """The strategy as the builder applies it: a base step first (``natural`` when none)."""
    _check_bases(steps)
    return list(steps) if steps and steps[0].base else [Natural(), *steps]


# --- recipe parts ---------------------------------------------------------------------------


class Budget(_Model):
    """How much to sample: a number of examples or of tokens (exactly one)."""

    examples: Annotated[Count | None, Field(
        description=f"examples to draw, an integer in [1, {MAX_BUDGET:.0e}]")] = None
    tokens: Annotated[Count | None, Field(
        description=f"tokens to draw (needs tokenizer), an integer in [1, {MAX_BUDGET:.0e}]")] \
        = None

    @model_validator(mode="after")
    def _one(self) -> Budget:
        if (self.examples is None) == (self.tokens is None):
            raise _problem("exactly one of examples/tokens")
        return self


class FieldMap(_Model):
    """Which source column holds each canonical field (default: the column of the same name)."""

    task: Name | None = None
    prompt: Name | None = None
    messages: Name | None = None
    completion: Name | None = None
    answer: Name | None = None

    @model_validator(mode="after")
    def _one_text(self) -> FieldMap:
        if self.prompt is not None and self.messages is not None:
            raise _problem("map prompt or messages, not both")
        return self


class SourceSpec(_Model):
    """One data source: a local file or folder (``path``) or a Hub dataset (``hub``)."""

    name: Name
    path: Name | None = None
    hub: Name | None = None
    config: Name | None = None
    split: Name = "train"
    fields: FieldMap = FieldMap()
    format: Literal["auto", "sharegpt", "alpaca"] = Field(
        "auto", description="sharegpt: conversations of {from, value}; alpaca: instruction "
        "(+ input) as the prompt, output as the completion")
    task: Name | None = None
    tags: dict[str, Text] = {}
    tag_fields: dict[str, Name] = {}

    @model_validator(mode="after")
    def _consistent(self) -> SourceSpec:
        if (self.path is None) == (self.hub is None):
            raise _problem("exactly one of path/hub")
        if self.config is not None and self.hub is None:
            raise _problem("config is only for hub sources")
        if self.task is not None and self.fields.task is not None:
            raise _problem("give task or fields.task, not both")
        both = sorted(set(self.tags) & set(self.tag_fields))
        if both:
            raise _problem(f"tag {both[0]!r} is in both tags and tag_fields")
        return self

    def location(self, base_dir: Path) -> Path | None:
        """The source's file or folder (None for hub sources)."""
        return None if self.path is None else Path(base_dir) / Path(self.path).expanduser()


class Stage(_Model):
    """One training stage: a budget, the sources it draws from and its strategy."""

    name: Name
    budget: Budget
    sources: list[Name] | None = None
    strategy: Annotated[Strategy, BeforeValidator(lambda v: [] if v is None else v)] = [Natural()]


class NearDedup(_Model):
    """MinHash near-duplicate settings."""

    threshold: Annotated[Number, Field(gt=0, le=1, description="Jaccard similarity in (0, 1]")] \
        = 0.85
    num_perm: Annotated[StrictInt, Field(
        ge=2, le=MAX_NUM_PERM, description=f"MinHash permutations, in [2, {MAX_NUM_PERM}]")] = 128
    ngram: Annotated[StrictInt, Field(
        ge=1, le=MAX_NGRAM, description=f"words per shingle, in [1, {MAX_NGRAM}]")] = 5


class Hygiene(_Model):
    """Deduplication and decontamination against evaluation sets."""

    dedup: Literal["exact", "near", "none"] = "exact"
    near: NearDedup = NearDedup()
    decontaminate: list[SourceSpec] = []
    ngram: Annotated[StrictInt, Field(
        ge=1, le=MAX_NGRAM, description=f"decontamination n-gram (words), in [1, {MAX_NGRAM}]")] \
        = 13


class Recipe(_Model):
    """A validated recipe. Build one with :func:`load_recipe` (or :meth:`from_data`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="smolmix recipe")

    seed: Annotated[StrictInt, Field(
        ge=0, le=MAX_SEED, description=f"every random choice flows from it; in [0, {MAX_SEED}]")] \
        = 0
    budget: Budget | None = None
    tokenizer: Name | None = None
    max_repeats: Annotated[StrictInt, Field(
        ge=1, le=MAX_REPEATS, description="the most times one example may be drawn, in "
        f"[1, {MAX_REPEATS:.0e}]; the plan must also fit in this machine's memory")] = 1
    sources: Annotated[list[SourceSpec], Field(min_length=1)]
    strategy: Strategy | None = None
    stage_list: Annotated[list[Stage] | None, Field(alias="stages", min_length=1)] = None
    hygiene: Hygiene = Hygiene()
    export: list[Literal["jsonl", "parquet"]] = []

    _path: Path | None = PrivateAttr(default=None)
    _root: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _cross_checks(self) -> Recipe:
        _check_unique([s.name for s in self.sources], ("sources",), "source")
        _check_unique([s.name for s in self.hygiene.decontaminate],
                      ("hygiene", "decontaminate"), "evaluation set")
        if len(set(self.export)) != len(self.export):
            raise _Misplaced("export: formats repeat", ("export",))
        if self.stage_list is None:
            if self.budget is None:
                raise _Misplaced("budget: required (or give stages)", ())
            return self
        for key in ("budget", "strategy"):
            if getattr(self, key) is not None:
                raise _Misplaced(f"{key}: not allowed with stages (give it per stage)", (key,))
        _check_unique([s.name for s in self.stage_list], ("stages",), "stage")
        known = {s.name for s in self.sources}
        for i, stage in enumerate(self.stage_list):
            for j, name in enumerate(stage.sources or []):
                if name not in known:
                    raise _Misplaced(f"stages[{i}].sources: unknown source {name!r}",
                                     ("stages", i, "sources", j))
        return self

    @classmethod
    def from_data(cls, data: Any, path: Path | None = None) -> Recipe:
        """Validate parsed YAML; ``path`` (the recipe file) anchors relative paths."""
        recipe = cls.model_validate(data)
        recipe._path = None if path is None else Path(path)
        return recipe

    @property
    def path(self) -> Path | None:
        """The recipe file (None when built from data without one)."""
        return self._path

    @property
    def base_dir(self) -> Path:
        """The folder that relative paths in the recipe are resolved against."""
        return self._path.parent if self._path is not None else Path(".")

    def stages(self) -> list[Stage]:
        """The stages to build, sources resolved and each strategy led by its base step.

        Without ``stages:`` there is one stage, ``main``, from the top-level budget and strategy.
        """
        everything = [s.name for s in self.sources]
        given = self.stage_list
        if given is None:
            given = [Stage(name="main", budget=self.budget, strategy=self.strategy or [])]
        return [s.model_copy(update={"sources": list(s.sources or everything),
                                     "strategy": _base_first(s.strategy)})
                for s in given]

    def uses_tokens(self) -> bool:
        """True when some stage's budget counts tokens (a tokenizer is then required)."""
        return any(s.budget.tokens is not None for s in self.stages())

    def tokenizer_path(self) -> Path | None:
        """The tokenizer folder, resolved; None when not given and not required."""
        if self.tokenizer is None:
            if self.uses_tokens():
                raise SmolmixError("tokenizer: required when a budget counts tokens",
                                   self.where("budget") if self.budget else self.where("stages"))
            return None
        path = self.base_dir / Path(self.tokenizer).expanduser()
        if not path.exists():
            raise SmolmixError(f"tokenizer path {str(path)!r} does not exist",
                               self.where("tokenizer"))
        return path

    def where(self, *loc: str | int) -> str:
        """``<file>:<line>`` of a key in the recipe, e.g. ``where("stages", 0, "strategy")``."""
        if self._path is None:
            return "recipe"
        if self._root is None:
            return str(self._path)
        return f"{self._path}:{locate(self._root, loc)[1]}"

    def hash(self) -> str:
        """sha256 of the validated recipe's canonical JSON (key order and layout do not count)."""
        text = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True,
                          separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


class _Misplaced(SmolmixError):
    """A cross-field problem found after validation, with the recipe location it concerns."""

    def __init__(self, what: str, loc: tuple[str | int, ...]) -> None:
        super().__init__(what, "recipe")
        self.loc = loc


def _check_unique(names: list[str], loc: tuple[str | int, ...], kind: str) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise _Misplaced(f"{dotted(loc)}[{i}].name: duplicate {kind} name {name!r}",
                             (*loc, i, "name"))
        seen.add(name)


def recipe_json_schema() -> dict:
    """The JSON Schema (draft 2020-12) of a recipe file."""
    schema = Recipe.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


# --- loading --------------------------------------------------------------------------------


def load_recipe(path: Path) -> Recipe:
    """Read and validate a recipe file; any problem is a SmolmixError at ``<file>:<line>``."""
    path = Path(path)
    data, root = read_yaml(path)
    try:
        recipe = Recipe.from_data(data, path)
    except ValidationError as exc:
        raise invalid(exc, root, path, STEP_HELP) from None
    except _Misplaced as exc:
        raise SmolmixError(exc.what, f"{path}:{locate(root, exc.loc)[1]}") from None
    recipe._root = root
    _check_paths(recipe)
    recipe.tokenizer_path()
    return recipe


def _check_paths(recipe: Recipe) -> None:
    groups = (("sources",), ("hygiene", "decontaminate"))
    for group, specs in zip(groups, (recipe.sources, recipe.hygiene.decontaminate)):
        for i, spec in enumerate(specs):
            where = spec.location(recipe.base_dir)
            if where is not None and not where.exists():
                raise SmolmixError(f"{dotted((*group, i))}.path: {str(where)!r} does not exist",
                                   recipe.where(*group, i, "path"))

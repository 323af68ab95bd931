"""params.yaml -> typed, validated, frozen objects (pydantic models).

params.yaml is the only home of a value: the models here declare types, bounds, choices and
cross-field checks, and no defaults. Every key must be given (DVC tracks the values actually
used), and every problem is reported in one line naming the dotted key and what is allowed:

    params.yaml: world.colours[2]: unknown colour 'teal'; allowed: red, green, ...

Two sections are plug-ins: `world:` is the model of the world named by `world.kind`
(showo_turbo/worlds), and each `distill.<method>` section is the model of that distillation
method (showo_turbo/methods), checked only when a stage of `distill.stages` uses the method.
"""

from __future__ import annotations

import math
import typing
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr,
                      ValidationError, model_validator)
from pydantic_core import PydanticCustomError

from .errors import ShowoError

# Forward-pass precisions (model.showo.resolve_precision; a literal here, so that params imports no torch).
PRECISIONS = ("auto", "bf16", "fp32")
MODEL_PRESETS = ("micro", "small", "base", "showo-256", "showo-512")


class ParamsError(ShowoError, ValueError):
    """A params file is malformed; the message names the file and the dotted key."""


INPUTS = "inputs"  # the folder of a real world's input files: a DVC dependency of the stages that read them (dvc.yaml)


def outside_inputs(path: str) -> str | None:
    """Why `path` cannot be a real world's input in a params file (None when it can): it must lie under
    inputs/, so that DVC reruns the stages that read it when it changes. (The library's functions take
    any path.)"""
    parts = Path(path).parts
    if len(parts) < 2 or parts[0] != INPUTS or ".." in parts:
        return (f"must lie under {INPUTS}/ (a DVC dependency, so that editing it reruns what reads it; "
                f"copy or `cp -rs` the folder there: DVC does not look inside a symlinked folder), got {path!r}")
    return None


# --------------------------------------------------------------------------------------------
# Field types: strict scalars (no bool for a number, no string for either), finite numbers,
# choices and non-empty lists without duplicates, each failing with the project's wording.


def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise PydanticCustomError("number", "expected a number, got {got}", {"got": repr(v)})
    if not math.isfinite(v):
        raise PydanticCustomError("number", "must be a finite number, got {got}", {"got": repr(v)})
    return float(v)


Number = Annotated[float, BeforeValidator(_number)]


def Choice(*values: str, what: str = "value"):  # noqa: N802 (a type factory)
    """A string that must be one of `values` ('unknown <what> ...; allowed: ...')."""
    def check(v: str) -> str:
        if v not in values:
            raise PydanticCustomError("choice", "unknown {what} {got}; allowed: {allowed}",
                                      {"what": what, "got": repr(v), "allowed": ", ".join(values)})
        return v
    return Annotated[StrictStr, AfterValidator(check)]


def _no_duplicates(v: tuple) -> tuple:
    dup = sorted({x for x in v if v.count(x) > 1}, key=str)
    if dup:
        raise PydanticCustomError("duplicates", "duplicate entries {dup}", {"dup": str(dup)})
    return v


def _list(v: Any) -> Any:
    if not isinstance(v, list) or not v:
        raise PydanticCustomError("list", "expected a non-empty list, got {got}", {"got": repr(v)})
    return v


def ListOf(item):  # noqa: N802 (a type factory)
    """A non-empty YAML list of `item`, without duplicates, held as a tuple."""
    return Annotated[tuple[item, ...], BeforeValidator(_list), AfterValidator(_no_duplicates)]


def _mapping(v: Any) -> Any:
    if not isinstance(v, dict) or not v:
        raise PydanticCustomError("mapping", "expected a non-empty mapping, got {got}", {"got": repr(v)})
    return v


def MappingOf(key, value):  # noqa: N802 (a type factory)
    """A non-empty YAML mapping."""
    return Annotated[dict[key, value], BeforeValidator(_mapping)]


Precision = Choice(*PRECISIONS)
Sample = Choice("multinomial", "argmax")  # the sampler's draw per position
NonNegInt = Annotated[StrictInt, Field(ge=0)]
PosInt = Annotated[StrictInt, Field(ge=1)]
NonNeg = Annotated[Number, Field(ge=0.0)]


class Section(BaseModel):
    """A params.yaml mapping: frozen, every key required, no key unknown. `check` returns the
    cross-field problems as (key, message)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _every_key_given(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise PydanticCustomError("mapping", "expected a mapping, got {got}", {"got": repr(data)})
        for k in data:
            if k not in cls.model_fields and k not in cls.plugin_sections():
                raise PydanticCustomError("key", "unknown key; allowed: {allowed}",
                                          {"key": k, "allowed": ", ".join(cls.model_fields)})
        for k in cls.model_fields:
            if k not in data:
                raise PydanticCustomError("key", "missing (every key must be given so that DVC tracks it)", {"key": k})
        return data

    @model_validator(mode="after")
    def _cross_checks(self):
        for key, msg in self.check():
            raise PydanticCustomError("key", "{msg}", {"key": key, "msg": msg})
        return self

    @classmethod
    def plugin_sections(cls) -> tuple[str, ...]:
        """Keys allowed besides the fields: sections whose models are plug-ins' (validated by the section)."""
        return ()

    def input_paths(self) -> dict[str, str]:
        """Key -> the file or folder of a real world that this section reads (in a params file it must lie
        under inputs/: `outside_inputs`)."""
        return {}

    def check(self) -> list[tuple[str, str]]:
        return []


# --------------------------------------------------------------------------------------------
# The stages' sections.


class TeacherTrainParams(Section):
    """The from-scratch recipe (Show-o's objective at Shapes scale). The shipped teacher was trained with these."""

    preset: Choice(*MODEL_PRESETS)
    steps: PosInt
    batch_t2i: PosInt
    batch_mmu: PosInt
    lr: NonNeg
    warmup_steps: NonNegInt
    min_lr_ratio: Annotated[Number, Field(ge=0.0, le=1.0)]
    weight_decay: NonNeg
    grad_clip: NonNeg
    cond_dropout: Annotated[Number, Field(ge=0.0, le=1.0)]
    weight_t2i: NonNeg
    weight_mmu: NonNeg
    weight_lm: NonNeg
    seed: NonNegInt
    checkpoint_every: PosInt
    log_every: PosInt
    precision: Precision


class TeacherEvalParams(Section):
    steps: ListOf(PosInt)
    cfg_scales: ListOf(NonNeg)
    sample: Sample
    temperature: NonNeg
    prompts_per_category: PosInt
    images_per_prompt: PosInt
    precision: Precision
    batch_size: PosInt
    seed: NonNegInt


class TeacherParams(Section):
    """Stage `teacher`: where the teacher comes from, how to train it from scratch, how to score it."""

    source: Choice("shipped", "scratch", "showo")
    shipped_dir: StrictStr
    showo_dir: StrictStr
    showo_llm_dir: StrictStr
    train: TeacherTrainParams
    eval: TeacherEvalParams

    def input_paths(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in ("showo_dir", "showo_llm_dir")} if self.source == "showo" else {}

    def check(self) -> list[tuple[str, str]]:
        if self.source == "showo" and not self.showo_dir:
            return [("showo_dir", "must name a local Show-o checkpoint folder when source is 'showo'")]
        return []


class TrajectoryParams(Section):
    """Stage `trajectories`: the teacher decodes training prompts; the store feeds distillation."""

    captions: PosInt
    samples_per_caption: PosInt
    decoding: Choice("deterministic", "stochastic")
    steps: PosInt
    cfg_scale: NonNeg
    temperature: NonNeg
    top_k: PosInt
    mmu_questions: NonNegInt
    block_size: PosInt
    init: Choice("prompt", "random", "pad")
    batch_size: PosInt
    shard_rows: PosInt
    precision: Precision
    seed: NonNegInt

    def check(self) -> list[tuple[str, str]]:
        if self.samples_per_caption > 1 and self.decoding == "deterministic":
            return [("samples_per_caption", "deterministic decoding gives one trajectory per caption; "
                                            "use 1, or decoding: stochastic")]
        return []


TopK = MappingOf(StrictInt, NonNegInt)  # sampler top-k per step count (0 = off)


class ArmParams(Section):
    """A distilled stage scored as its own arm `turbo_<stage>` by the evaluate stage: its sampler."""

    top_k: TopK
    temperature: NonNeg


def _method_names() -> tuple[str, ...]:
    from ..methods import METHODS
    return tuple(METHODS)


class StageEntry(Section):
    """One distillation stage: its method, the segments of its trajectories, the student it starts
    from and, for a stage scored as its own arm, that arm's sampler (`arm: null` for none)."""

    method: Annotated[StrictStr, AfterValidator(lambda v: _choice(v, _method_names()))]
    segments: PosInt
    init_dir: StrictStr
    arm: ArmParams | None


def _choice(v: str, allowed: tuple[str, ...]) -> str:
    if v not in allowed:
        raise PydanticCustomError("choice", "unknown value {got}; allowed: {allowed}",
                                  {"got": repr(v), "allowed": ", ".join(allowed)})
    return v


def _stage_names(v: Any) -> Any:
    _mapping(v)
    for k in v:
        if not (isinstance(k, str) and k.replace("_", "").replace("-", "").isalnum()):
            raise PydanticCustomError("mapping", "entry name {got} must be letters, digits, '-' or '_'", {"got": repr(k)})
    return v


class DistillParams(Section):
    """Distillation: one DVC stage `distill@<name>` per entry of `stages`. The keys at this level are
    shared by every method (text losses, schedule, logging); `distill.<method>` is each method's own
    section (a plug-in's Params), required where a stage uses that method."""

    model_config = ConfigDict(frozen=True, extra="allow")  # the methods' sections

    stages: Annotated[dict[str, StageEntry], BeforeValidator(_stage_names)]
    batch_mmu: PosInt
    warmup_steps: NonNegInt
    weight_decay: NonNeg
    grad_clip: NonNeg
    weight_image: NonNeg
    weight_lm: NonNeg
    weight_text: NonNeg
    ar_multiplier: NonNeg
    precision: Precision
    seed: NonNegInt
    checkpoint_every: PosInt
    log_every: PosInt
    eval_steps: ListOf(PosInt)

    @classmethod
    def plugin_sections(cls) -> tuple[str, ...]:
        return _method_names()  # `distill.<method>`

    @model_validator(mode="after")
    def _method_sections(self):
        """Each used method's section, validated by the method's own model (unused ones are ignored)."""
        from ..methods import method_params_class
        for name in dict.fromkeys(st.method for st in self.stages.values()):
            raw = (self.__pydantic_extra__ or {}).get(name)
            if raw is None:
                raise PydanticCustomError("key", "missing: stages with method {name} need this section",
                                          {"key": name, "name": name})
            self.__pydantic_extra__[name] = _validate_nested(method_params_class(name), raw, name)
        return self

    def method(self, name: str) -> Section:
        """The section of method `name` (`distill.<name>`)."""
        return (self.__pydantic_extra__ or {})[name]

    def check(self) -> list[tuple[str, str]]:
        seen = ["data/teacher"]
        for name, st in self.stages.items():
            if st.init_dir not in seen:
                return [(f"stages.{name}.init_dir", f"must be one of {', '.join(seen)} (the teacher or an earlier "
                                                     f"stage's student), got {st.init_dir!r}")]
            seen.append(f"data/students/{name}")
        return []


class EvaluateParams(Section):
    """Stage `evaluate`: teacher with and without CFG, the curriculum's student (`turbo`) and every
    stage with an `arm`, T2I and MMU, on held-out prompts and questions (the paper's Tables 1-2)."""

    student: StrictStr
    steps: ListOf(PosInt)
    teacher_cfg_scale: NonNeg
    student_top_k: TopK
    prompts_per_category: PosInt
    images_per_prompt: PosInt
    sample: Sample
    temperature: NonNeg
    block_size: PosInt
    precision: Precision
    batch_size: PosInt
    timing_batch: PosInt
    timing_repeats: PosInt
    bootstrap: NonNegInt
    seed: NonNegInt

    def check(self) -> list[tuple[str, str]]:
        missing = [t for t in self.steps if t not in self.student_top_k]
        if missing:
            return [("student_top_k", f"needs an entry for every step count in steps; missing {missing}")]
        return []


class Params(Section):
    world: Any  # the world plug-in's model (world.kind), validated in parse_params
    teacher: TeacherParams
    trajectories: TrajectoryParams
    distill: DistillParams
    evaluate: EvaluateParams

    def arms(self) -> dict[str, StageEntry]:
        """The stages scored as arms of their own (`turbo_<stage>`), in curriculum order."""
        return {n: st for n, st in self.distill.stages.items() if st.arm is not None}

    def check(self) -> list[tuple[str, str]]:
        stages = self.distill.stages
        for name, st in stages.items():
            if st.segments > self.trajectories.steps:
                return [(f"distill.stages.{name}.segments",
                         f"{st.segments} segments do not fit trajectories.steps ({self.trajectories.steps})")]
        consistency = [n for n, st in stages.items() if st.method == "consistency"]
        if self.evaluate.student not in consistency:
            return [("evaluate.student", f"must be one of the distill.stages with method consistency "
                                         f"({', '.join(consistency) or 'none'}), got {self.evaluate.student!r}")]
        for name, st in self.arms().items():
            if name == self.evaluate.student:
                return [(f"distill.stages.{name}.arm", "must be null for evaluate.student (scored as `turbo` "
                                                       "with evaluate's sampler)")]
            missing = [t for t in self.evaluate.steps if t not in st.arm.top_k]
            if missing:
                return [(f"distill.stages.{name}.arm.top_k", f"needs an entry for every step count in "
                                                             f"evaluate.steps; missing {missing}")]
        return []


# --------------------------------------------------------------------------------------------
# Validation errors as one line.


def _field_type(tp: Any, key: Any) -> Any:
    """The annotation reached from `tp` by one step of an error location."""
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        f = tp.model_fields.get(key) if isinstance(key, str) else None
        return f.annotation if f is not None else Any
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    origin = typing.get_origin(tp)
    if origin in (dict, tuple):
        return args[-1] if args and args[-1] is not Ellipsis else args[0]
    if len(args) == 1:  # X | None
        return _field_type(args[0], key)
    return Any


def _dotted(cls: type, loc: list) -> str:
    out, tp = "", cls
    loc = [p for i, p in enumerate(loc) if not (i + 1 < len(loc) and loc[i + 1] == "[key]")]  # the bad key itself
    for part in loc:
        while typing.get_origin(tp) is Annotated:
            tp = typing.get_args(tp)[0]
        if part == "[key]":
            out += " (a key)"
            continue
        in_list = typing.get_origin(tp) is tuple
        out += f"[{part}]" if in_list else (f".{part}" if out else str(part))
        tp = _field_type(tp, part)
    return out


def _validate_nested(cls: type[BaseModel], data: Any, prefix: str) -> BaseModel:
    """`cls.model_validate(data)` inside a validator: a failure becomes one error whose message names
    `prefix`.<key> (`_one_line` puts the outer location in front)."""
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise PydanticCustomError("nested", "{msg}", {"msg": f"{prefix}.{_one_line(cls, e)}"}) from None


def _one_line(cls: type, e: ValidationError) -> str:
    err = e.errors(include_url=False)[0]
    loc, ctx = list(err["loc"]), err.get("ctx") or {}
    if err["type"] == "nested":
        where = _dotted(cls, loc)
        return f"{where}.{ctx['msg']}" if where else ctx["msg"]
    if "key" in ctx:
        loc.append(ctx["key"])
    where = _dotted(cls, loc) or "top level"
    got = repr(err.get("input"))
    if err["type"] in ("int_type", "int_parsing", "int_from_float"):
        msg = f"expected an integer, got {got}"
    elif err["type"] in ("string_type",):
        msg = f"expected a string, got {got}"
    elif err["type"] == "greater_than_equal":
        msg = f"must be >= {ctx['ge']}, got {got}"
    elif err["type"] == "less_than_equal":
        msg = f"must be <= {ctx['le']}, got {got}"
    elif err["type"] in ("model_type", "model_attributes_type", "dict_type"):
        msg = f"expected a mapping, got {got}"
    else:
        msg = err["msg"]
    return f"{where}: {msg}"


def _world_model(data: Any) -> type:
    from ..worlds import WORLD_KINDS, params_class

    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in WORLD_KINDS:
        raise ParamsError(f"world.kind: must be one of {', '.join(WORLD_KINDS)}, got {kind!r}")
    return params_class(kind)


def validate_section(cls: type[BaseModel], data: Any, prefix: str = "") -> BaseModel:
    """`data` as a `cls`, or a ParamsError naming `prefix` + the dotted key."""
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ParamsError(prefix + _one_line(cls, e)) from None


def parse_params(data: Any, source: str = "params") -> Params:
    try:
        if not isinstance(data, dict):
            raise ParamsError(f"top level: expected a mapping, got {data!r}")
        world = validate_section(_world_model(data.get("world")), data.get("world"), "world.") if "world" in data else None
        params = validate_section(Params, data)
        for prefix, section in (("world", world), ("teacher", params.teacher)):  # a real world's files: DVC must see them
            for key, path in section.input_paths().items():
                if outside_inputs(path):
                    raise ParamsError(f"{prefix}.{key}: {outside_inputs(path)}")
        return params.model_copy(update={"world": world})
    except ParamsError as e:
        raise ParamsError(f"{source}: {e}") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ParamsError(f"{path}: not valid YAML{where}") from None
    return parse_params(data, str(path))


def replace(section: BaseModel, **changes: Any) -> BaseModel:
    """A copy of `section` with `changes`, validated again as params.yaml would be (a ParamsError
    names the key)."""
    data = to_dict(section)
    data.update({k: to_dict(v) if isinstance(v, (BaseModel, tuple, dict)) else v for k, v in changes.items()})
    return parse_params(data) if isinstance(section, Params) else validate_section(type(section), data)


def to_dict(params: Any) -> dict:
    """A params model as a plain dict (lists, not tuples), as written in params.yaml."""
    def conv(x):
        if isinstance(x, BaseModel):
            return conv({**dict(x), **(x.__pydantic_extra__ or {})})
        if isinstance(x, tuple):
            return [conv(v) for v in x]
        if isinstance(x, dict):
            return {k: conv(v) for k, v in x.items()}
        return x
    return conv(params)


def main(argv: list[str] | None = None) -> int:
    """`python -m showo_turbo.pipeline.params [PATH]`: check a params file (scripts/repro.sh runs it
    before `dvc repro`, which would otherwise delete a stage's outputs before the stage sees a typo)."""
    import argparse

    ap = argparse.ArgumentParser(description="Check a params file; one line naming the key when it is not valid.")
    ap.add_argument("path", nargs="?", default="params.yaml")
    load_params(ap.parse_args(argv).path)
    return 0


if __name__ == "__main__":
    import sys

    from .errors import run_cli
    sys.exit(run_cli(main, "showo_turbo.pipeline.params"))

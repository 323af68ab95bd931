"""params.yaml -> typed, validated objects.

params.yaml is grouped by pipeline stage (`world:`, ...), as DVC's examples are. Every key is
required (DVC tracks the values actually used, so nothing may come from a hidden default), and
every problem is reported in one line naming the dotted key and what is allowed:

    params.yaml: world.colours[2]: unknown colour 'teal'; allowed: red, green, ...
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ShowoError

# Forward-pass precisions (model.resolve_precision; a literal here, so that params imports no torch).
PRECISIONS = ("auto", "bf16", "fp32")


class ParamsError(ShowoError, ValueError):
    """A params file is malformed; the message names the file and the dotted key."""


def param(default: Any, *, min: float | None = None, max: float | None = None, choices: tuple | None = None,
          doc: str = "") -> Any:
    """A params field: its default, bounds or allowed values and a one-line doc (messages use them)."""
    meta = {"min": min, "max": max, "choices": choices, "doc": doc}
    return field(default=default, metadata=meta)


MODEL_PRESETS = ("micro", "small", "base", "showo-256", "showo-512")


@dataclass(frozen=True)
class TeacherTrainParams:
    """The from-scratch recipe (Show-o's objective at Shapes scale). The shipped teacher was trained with these."""

    preset: str = param("base", choices=MODEL_PRESETS, doc="backbone size (model.PRESETS)")
    steps: int = param(2_000, min=1)
    batch_t2i: int = param(256, min=1)
    batch_mmu: int = param(64, min=1)
    lr: float = param(1e-3, min=0.0)
    warmup_steps: int = param(200, min=0)
    min_lr_ratio: float = param(0.1, min=0.0, max=1.0)
    weight_decay: float = param(0.01, min=0.0)
    grad_clip: float = param(1.0, min=0.0)
    cond_dropout: float = param(0.1, min=0.0, max=1.0, doc="caption dropped for CFG")
    weight_t2i: float = param(1.0, min=0.0)
    weight_mmu: float = param(1.0, min=0.0)
    weight_lm: float = param(0.1, min=0.0)
    seed: int = param(0, min=0)
    checkpoint_every: int = param(1000, min=1)
    log_every: int = param(100, min=1)
    precision: str = param("auto", choices=PRECISIONS, doc="auto: bf16 where native (GPU, AVX512-BF16/AMX CPU), else fp32")


@dataclass(frozen=True)
class TeacherEvalParams:
    steps: tuple[int, ...] = param((1, 2, 4, 8, 16), min=1)
    cfg_scales: tuple[float, ...] = param((2.0, 5.0), min=0.0, doc="besides 0 (no CFG), which is always run")
    sample: str = param("multinomial", choices=("multinomial", "argmax"))
    temperature: float = param(4.5, min=0.0, doc="Gumbel re-masking temperature")
    prompts_per_category: int = param(50, min=1, doc="at most world.eval_prompts_per_category")
    images_per_prompt: int = param(2, min=1, doc="images per prompt, image i with seed `seed + i` (as evaluate's)")
    precision: str = param("auto", choices=PRECISIONS, doc="forward passes while sampling (auto: bf16 where native)")
    batch_size: int = param(64, min=1, doc="prompts per sampling batch")
    seed: int = param(0, min=0)


@dataclass(frozen=True)
class TeacherParams:
    """Stage `teacher`: where the teacher comes from, how to train it from scratch, how to score it."""

    source: str = param("shipped", choices=("shipped", "scratch", "showo"))
    shipped_dir: str = param("teacher/shapes-base", doc="folder with model.safetensors + card.json (in git)")
    showo_dir: str = param("", doc="local official Show-o checkpoint folder, for source: showo")
    showo_llm_dir: str = param("", doc="local phi-1_5 folder whose config.json gives the backbone sizes "
                                       "(source: showo; empty: Phi-1.5's published sizes)")
    train: TeacherTrainParams = field(default_factory=TeacherTrainParams)
    eval: TeacherEvalParams = field(default_factory=TeacherEvalParams)

    def check(self) -> list[tuple[str, str]]:
        if self.source == "showo" and not self.showo_dir:
            return [("showo_dir", "must name a local Show-o checkpoint folder when source is 'showo'")]
        return []


@dataclass(frozen=True)
class TrajectoryParams:
    """Stage `trajectories`: the teacher decodes training prompts; the store feeds distillation."""

    captions: int = param(2000, min=1, doc="distinct training captions decoded (at most the world's)")
    samples_per_caption: int = param(1, min=1, doc="seeded trajectories per caption (> 1 needs decoding: stochastic)")
    decoding: str = param("deterministic", choices=("deterministic", "stochastic"),
                       doc="argmax codes (the paper) or seeded multinomial sampling")
    steps: int = param(16, min=1, doc="teacher MaskGIT steps T")
    cfg_scale: float = param(2.0, min=0.0)
    temperature: float = param(4.5, min=0.0, doc="Gumbel re-masking temperature of stochastic decoding")
    order_temperature: float = param(0.0, min=0.0, doc="Gumbel re-masking temperature of deterministic decoding: 0 commits "
                                                       "the argmax codes in confidence order (the paper), > 0 in a seeded, "
                                                       "noise-perturbed order (the codes stay argmax)")
    top_k: int = param(16, min=1, doc="teacher distribution kept per masked position (top-k probabilities)")
    mmu_questions: int = param(2000, min=0, doc="training questions decoded with Jacobi")
    block_size: int = param(16, min=1, doc="Jacobi block n")
    init: str = param("prompt", choices=("prompt", "random", "pad"), doc="Jacobi initial guess")
    batch_size: int = param(64, min=1)
    shard_rows: int = param(512, min=1, doc="rows per shard (a resumed run restarts at the last complete shard)")
    precision: str = param("auto", choices=PRECISIONS, doc="teacher forward passes while decoding (auto: bf16 where native)")
    seed: int = param(0, min=0)

    def check(self) -> list[tuple[str, str]]:
        if self.order_temperature > 0 and self.decoding == "stochastic":
            return [("order_temperature", "applies to decoding: deterministic only (stochastic decoding uses temperature); "
                                          "set it to 0")]
        if self.samples_per_caption > 1 and self.decoding == "deterministic":
            return [("samples_per_caption", "deterministic decoding gives one trajectory per caption; "
                                            "use 1, or decoding: stochastic")]
        return []


DISTILL_METHODS = ("consistency", "dm")


@dataclass(frozen=True)
class CurriculumStage:
    """One distillation stage: its method, segment count and the student it starts from."""

    method: str = param("consistency", choices=DISTILL_METHODS,
                     doc="consistency (Show-o Turbo's segmented consistency distillation) | dm (noise-input "
                         "distribution matching for images, distill.dm; text keeps the consistency losses)")
    segments: int = param(4, min=1, doc="segments the T2I (consistency only) and text trajectories are cut into")
    init_dir: str = param("data/teacher", doc="data/teacher, or data/students/<an earlier stage>")


def _default_stages() -> dict:
    return {"seg4": CurriculumStage("consistency", 4, "data/teacher"),
            "seg2": CurriculumStage("consistency", 2, "data/students/seg4"),
            "seg1": CurriculumStage("consistency", 1, "data/students/seg2"),
            "dm": CurriculumStage("dm", 1, "data/teacher")}


DM_AUX_INITS = ("teacher", "student")
DM_SURROGATE_NORMS = ("sum", "mean")
DM_IMAGE_LOSSES = ("dm", "matched", "dm_matched")
DM_PAIRINGS = ("student", "teacher")


@dataclass(frozen=True)
class ConsistencyParams:
    """`method: consistency` stages (consistency.py, the paper's curriculum): their budget, batch and lr.
    A section of its own so that a stage depends only on its method's keys (dvc.yaml's `distill.${item.method}`)."""

    steps: int = param(600, min=1, doc="optimizer steps per consistency stage (the distillation budget)")
    batch_t2i: int = param(32, min=1, doc="T2I trajectory states per step and process")
    lr: float = param(1e-4, min=0.0)


@dataclass(frozen=True)
class DistributionMatchingParams:
    """`method: dm` stages (distribution_matching.py): a one-pass generator from a noisy start,
    trained on its own samples against the teacher with CFG through an auxiliary model (Di[M]O)."""

    steps: int = param(150, min=1, doc="generator updates per dm stage (the budget)")
    batch_t2i: int = param(32, min=1, doc="generator samples per step and process")
    lr: float = param(1e-4, min=0.0, doc="generator (student) Adam lr")
    aux_lr: float = param(3e-4, min=0.0, doc="auxiliary model Adam lr")
    aux_updates: int = param(2, min=1, doc="auxiliary updates per generator update (its tracking of the generator)")
    mask_ratio: float = param(0.6, min=0.0, max=1.0, doc="fraction of [MASK] in the generator's initial state (rest random codes)")
    embed_noise: float = param(0.0, min=0.0, max=1.0, doc="Gaussian noise mixed into the initial state's embeddings")
    teacher_cfg_scale: float = param(2.0, min=0.0, doc="guidance of the teacher's target distributions")
    jeffreys_beta: float = param(0.0, min=0.0, max=1.0, doc="0 = forward KL gradient, 1 = reverse KL, between = a Jeffreys mix")
    label_smoothing: float = param(0.1, min=0.0, max=0.5, doc="of the auxiliary model's cross-entropy")
    ema_decay: float = param(0.0, min=0.0, max=1.0, doc="EMA of the generator's weights, saved as the student (0 = off)")
    train_steps: tuple[int, ...] = param((2, 4), min=1, doc="the generator's step counts in training, one drawn per sample "
                                      "batch (1 = Di[M]O's one pass; more trains the later passes on its own states)")
    rollout_temperature: float = param(4.5, min=0.0, doc="Gumbel re-masking temperature of a training rollout (> 1 step)")
    aux_init: str = param("teacher", choices=DM_AUX_INITS, doc="the auxiliary model's start: teacher (Di[M]O) | "
                          "student (the stage's init_dir, i.e. the generator's own start)")
    surrogate_norm: str = param("mean", choices=DM_SURROGATE_NORMS, doc="the image surrogate per sample: sum over "
                                "positions (Di[M]O) | mean over its masked positions (the consistency loss's scale)")
    image_loss: str = param("dm", choices=DM_IMAGE_LOSSES, doc="dm (distribution matching through the auxiliary "
                            "model) | matched (cross-entropy to teacher samples paired with the noisy starts by a "
                            "per-caption assignment, matched_samples.py) | dm_matched (dm + matched_weight x matched)")
    pool_captions: int = param(512, min=1, doc="image_loss matched: training captions in the teacher-sample pool")
    pool_samples: int = param(8, min=1, doc="image_loss matched: teacher samples per caption (the assignment's size; "
                              "batch_t2i must be a multiple)")
    pool_steps: int = param(16, min=1, doc="image_loss matched: the pool teacher's MaskGIT steps (CFG teacher_cfg_scale)")
    pool_temperature: float = param(4.5, min=0.0, doc="image_loss matched: the pool teacher's Gumbel re-masking temperature")
    pairing: str = param("student", choices=DM_PAIRINGS, doc="image_loss matched: whose one-pass likelihood pairs "
                         "starts and samples: student (its own, all positions) | teacher (frozen, masked positions)")
    matched_weight: float = param(0.1, min=0.0, doc="image_loss dm_matched: weight of the matched cross-entropy "
                                  "beside the dm surrogate")
    remask_weight: float = param(1.0, min=0.0, doc="image_loss matched: weight of the later passes' loss (re-masked "
                                 "pool samples) beside the first pass's")

    def check(self) -> list[tuple[str, str]]:
        if self.image_loss != "dm" and self.batch_t2i % self.pool_samples:
            return [("batch_t2i", f"must be a multiple of distill.dm.pool_samples ({self.pool_samples}) with "
                                  f"image_loss {self.image_loss}, got {self.batch_t2i}")]
        return []


@dataclass(frozen=True)
class DistillParams:
    """Distillation: one DVC stage `distill@<name>` per entry of `stages`. The keys at this level are
    shared by both methods (text losses, schedule, logging); `consistency` and `dm` are each method's own."""

    stages: dict[str, CurriculumStage] = field(default_factory=_default_stages)
    consistency: ConsistencyParams = field(default_factory=ConsistencyParams)
    batch_mmu: int = param(16, min=1, doc="Jacobi states per step and process")
    warmup_steps: int = param(20, min=0)
    weight_decay: float = param(0.0, min=0.0)
    grad_clip: float = param(1.0, min=0.0)
    weight_image: float = param(1.0, min=0.0, doc="image consistency loss")
    weight_lm: float = param(0.1, min=0.0, doc="LM loss on the captions")
    weight_text: float = param(0.5, min=0.0, doc="text loss = consistency + ar_multiplier * AR")
    ar_multiplier: float = param(10.0, min=0.0, doc="AR loss on the teacher's fixed point, inside the text loss")
    precision: str = param("auto", choices=PRECISIONS, doc="auto: bf16 where native, else fp32")
    seed: int = param(0, min=0)
    checkpoint_every: int = param(50, min=1)
    log_every: int = param(10, min=1)
    eval_steps: tuple[int, ...] = param((2, 4), min=1, doc="student T2I step counts scored after each stage (no CFG)")
    dm: DistributionMatchingParams = field(default_factory=DistributionMatchingParams)

    def method(self, name: str) -> ConsistencyParams | DistributionMatchingParams:
        """The section of a stage's `method`: `consistency` or `dm`."""
        return getattr(self, name)

    def check(self) -> list[tuple[str, str]]:
        seen = ["data/teacher"]
        for name, st in self.stages.items():
            if st.init_dir not in seen:
                return [(f"stages.{name}.init_dir", f"must be one of {', '.join(seen)} (the teacher or an earlier "
                                                     f"stage's student), got {st.init_dir!r}")]
            seen.append(f"data/students/{name}")
        return []


@dataclass(frozen=True)
class DMArmParams:
    """The `turbo_dm` arm: a `method: dm` student with its own sampler settings."""

    student: str = param("dm", doc="a distill.stages entry with method dm")
    mask_ratio: float = param(0.6, min=0.0, max=1.0, doc="[MASK] fraction of its initial state (as trained)")
    embed_noise: float = param(0.0, min=0.0, max=1.0, doc="noise on its initial state's embeddings (as trained)")
    top_k: dict[int, int] = field(default_factory=lambda: {1: 0, 2: 0, 4: 0, 8: 0, 16: 0},
                                  metadata={"min": 0, "doc": "sampler top-k per step count (0 = off)"})
    temperature: float = param(4.5, min=0.0, doc="its Gumbel re-masking temperature (steps after the first)")


@dataclass(frozen=True)
class EvaluateParams:
    """Stage `evaluate`: teacher with and without CFG and the final student, T2I and MMU, on held-out
    prompts and questions (the paper's Tables 1-2)."""

    student: str = param("seg1", doc="the distill.stages entry scored as `turbo` (normally the last)")
    steps: tuple[int, ...] = param((1, 2, 4, 8, 16), min=1, doc="T2I step counts of every arm")
    teacher_cfg_scale: float = param(2.0, min=0.0, doc="guidance scale of the teacher_cfg arm")
    student_top_k: dict[int, int] = field(default_factory=lambda: {1: 0, 2: 0, 4: 0, 8: 0, 16: 0},
                                          metadata={"min": 0, "doc": "student sampler top-k per step count (0 = off)"})
    prompts_per_category: int = param(50, min=1, doc="held-out prompts per ShapesEval category")
    images_per_prompt: int = param(2, min=1, doc="images per prompt, each with its own seed")
    sample: str = param("multinomial", choices=("multinomial", "argmax"))
    temperature: float = param(4.5, min=0.0, doc="Gumbel re-masking temperature")
    block_size: int = param(16, min=1, doc="Jacobi block n of the MMU arms")
    precision: str = param("auto", choices=PRECISIONS, doc="forward passes while sampling (auto: bf16 where native)")
    batch_size: int = param(64, min=1, doc="prompts per sampling batch")
    timing_batch: int = param(16, min=1, doc="images per timed batch (seconds per image)")
    timing_repeats: int = param(5, min=1, doc="rounds timing one batch per arm and step count, arms interleaved, after a warm-up (median)")
    bootstrap: int = param(1000, min=0)
    seed: int = param(0, min=0)
    turbo_dm: DMArmParams = field(default_factory=DMArmParams)

    def check(self) -> list[tuple[str, str]]:
        for key, top_k in (("student_top_k", self.student_top_k), ("turbo_dm.top_k", self.turbo_dm.top_k)):
            missing = [t for t in self.steps if t not in top_k]
            if missing:
                return [(key, f"needs an entry for every step count in steps; missing {missing}")]
        return []


@dataclass(frozen=True)
class Params:
    world: Any = field(default=None, metadata={"plugin": "world"})  # the world plug-in's Params (world.kind)
    teacher: TeacherParams = field(default_factory=TeacherParams)
    trajectories: TrajectoryParams = field(default_factory=TrajectoryParams)
    distill: DistillParams = field(default_factory=DistillParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)

    def check(self) -> list[tuple[str, str]]:
        for name, st in self.distill.stages.items():
            if st.segments > self.trajectories.steps:
                return [(f"distill.stages.{name}.segments",
                         f"{st.segments} segments do not fit trajectories.steps ({self.trajectories.steps})")]
        stages = self.distill.stages
        consistency = [n for n, st in stages.items() if st.method == "consistency"]
        dm = [n for n, st in stages.items() if st.method == "dm"]
        if self.evaluate.student not in consistency:
            return [("evaluate.student", f"must be one of the distill.stages with method consistency "
                                         f"({', '.join(consistency) or 'none'}), got {self.evaluate.student!r}")]
        if self.evaluate.turbo_dm.student not in dm:
            return [("evaluate.turbo_dm.student", f"must be one of the distill.stages with method dm "
                                                  f"({', '.join(dm) or 'none'}), got {self.evaluate.turbo_dm.student!r}")]
        return []


# --------------------------------------------------------------------------------------------


def _describe_type(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is tuple:
        return f"a list of {typing.get_args(tp)[0].__name__}"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(tp, str(tp))


def _check_scalar(value: Any, tp, key: str, meta: dict) -> Any:
    ok = {int: isinstance(value, int) and not isinstance(value, bool),
          float: isinstance(value, (int, float)) and not isinstance(value, bool),
          bool: isinstance(value, bool),
          str: isinstance(value, str)}[tp]
    if not ok:
        raise ParamsError(f"{key}: expected {_describe_type(tp)}, got {value!r}")
    if tp is float and not math.isfinite(value):
        raise ParamsError(f"{key}: must be a finite number, got {value!r}")
    if meta.get("choices") is not None and value not in meta["choices"]:
        what = {"colours": "colour", "shapes": "shape"}.get(key.split(".")[-1].split("[")[0], "value")
        raise ParamsError(f"{key}: unknown {what} {value!r}; allowed: {', '.join(map(str, meta['choices']))}")
    if meta.get("min") is not None and value < meta["min"]:
        raise ParamsError(f"{key}: must be >= {meta['min']}, got {value!r}")
    if meta.get("max") is not None and value > meta["max"]:
        raise ParamsError(f"{key}: must be <= {meta['max']}, got {value!r}")
    return float(value) if tp is float else value


def _world_params_class(data: Any, key: str) -> type:
    from .worlds import WORLD_KINDS, params_class

    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in WORLD_KINDS:
        raise ParamsError(f"{key}.kind: must be one of {', '.join(WORLD_KINDS)}, got {kind!r}")
    return params_class(kind)


def build_dataclass(cls, data: Any, prefix: str = ""):
    """Validate `data` against dataclass `cls`; `prefix` is the dotted key for messages."""
    if not isinstance(data, dict):
        raise ParamsError(f"{prefix or 'top level'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for k in data:
        if k not in fields:
            raise ParamsError(f"{prefix}{k}: unknown key; allowed: {', '.join(fields)}")
    values = {}
    for name, f in fields.items():
        key = f"{prefix}{name}"
        if name not in data:
            raise ParamsError(f"{key}: missing (every key must be given so that DVC tracks it)")
        tp, v = hints[name], data[name]
        if f.metadata.get("plugin") == "world":  # the section's dataclass is the named world plug-in's
            tp = _world_params_class(v, key)
        if dataclasses.is_dataclass(tp):
            values[name] = build_dataclass(tp, v, key + ".")
        elif typing.get_origin(tp) is dict and not dataclasses.is_dataclass(typing.get_args(tp)[1]):
            if not isinstance(v, dict) or not v:  # scalar values by scalar keys, e.g. top-k per step count
                raise ParamsError(f"{key}: expected a non-empty mapping, got {v!r}")
            kt, vt = typing.get_args(tp)
            values[name] = {_check_scalar(k, kt, f"{key} (a key)", {}): _check_scalar(x, vt, f"{key}.{k}", f.metadata)
                            for k, x in v.items()}
        elif typing.get_origin(tp) is dict:  # named entries of one dataclass, e.g. the curriculum's stages
            if not isinstance(v, dict) or not v:
                raise ParamsError(f"{key}: expected a non-empty mapping of names to entries, got {v!r}")
            elem = typing.get_args(tp)[1]
            for k in v:
                if not (isinstance(k, str) and k.replace("_", "").replace("-", "").isalnum()):
                    raise ParamsError(f"{key}: entry name {k!r} must be letters, digits, '-' or '_'")
            values[name] = {k: build_dataclass(elem, x, f"{key}.{k}.") for k, x in v.items()}
        elif typing.get_origin(tp) is tuple:
            if not isinstance(v, list) or not v:
                raise ParamsError(f"{key}: expected a non-empty list, got {v!r}")
            elem = typing.get_args(tp)[0]
            values[name] = tuple(_check_scalar(x, elem, f"{key}[{i}]", f.metadata) for i, x in enumerate(v))
            dup = sorted({x for x in values[name] if values[name].count(x) > 1}, key=str)
            if dup:
                raise ParamsError(f"{key}: duplicate entries {dup}")
        else:
            values[name] = _check_scalar(v, tp, key, f.metadata)
    obj = cls(**values)
    if hasattr(obj, "check"):
        for k, msg in obj.check():
            raise ParamsError(f"{prefix}{k}: {msg}")
    return obj


def parse_params(data: Any, source: str = "params") -> Params:
    try:
        return build_dataclass(Params, data, "")
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


def to_dict(params: Any) -> dict:
    """A params dataclass as a plain dict (lists, not tuples), as written in params.yaml."""
    def conv(x):
        if isinstance(x, tuple):
            return [conv(v) for v in x]
        if isinstance(x, dict):
            return {k: conv(v) for k, v in x.items()}
        return x
    return conv(dataclasses.asdict(params))

"""Worlds: where prompts, questions, tokenizers and the scorer come from.

The method (model, samplers, trajectories, distillation, evaluation harness) sees a world only
through the `World` protocol below. Each world is a plug-in package under `showo_turbo.worlds`
(`shapes`: the embedded synthetic default; `showo`: real Show-o from local folders and prompt
files) with the same module-level interface:

    Params                      the frozen dataclass of its `world:` section in params.yaml
    FORMAT                      the `format` its built folder's world.json carries
    build_world(params, out)    stage `world`: write the world folder, return the loaded world
    load_world(root)            the world of a built folder
    world_metrics / check_world_metrics   the stage's sanity figures and the checks they must pass
    summary_tables(world), metrics_table(metrics)   the world stage's report tables
    preview(world)              (images, captions) to show in the world stage's report

`world.kind` in params.yaml names the plug-in; the DVC stages are the same for every world.
Plug-ins are imported by name on first use (`world_module`), so importing this package never
imports a particular world.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from ..pipeline.errors import ShowoError
from ..pipeline.plugins import plugin_module
from ..model.tokenization import ImageTokenizer, VocabLayout

WORLD_KINDS: dict[str, str] = {"shapes": "showo_turbo.worlds.shapes", "showo": "showo_turbo.worlds.showo"}


class WorldFileError(ShowoError, ValueError):
    """A world file is missing, corrupt or was built by something else."""


# --------------------------------------------------------------------------------------------
# What the method needs from a world.


class EvalPrompt(Protocol):
    text: str       # the caption
    category: str   # one of the world's `categories`


class EvalQuestion(Protocol):
    kind: str       # question type (accuracy and passes per token are also reported per type)
    question: str
    answer: str     # the reference answer (exact match)
    # optional: `references`, reference captions; a type whose items all have them is scored by CIDEr-D too


class TextTokenizer(Protocol):
    sot_id: int
    eot_id: int

    def encode(self, text: str) -> list[int]: ...

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]: ...

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str: ...


class Scorer(Protocol):
    def score(self, images: np.ndarray, prompts: Sequence[EvalPrompt], bootstrap: int = 1000, seed: int = 0) -> Any:
        """A result whose `to_dict()` holds at least `score`, `ci_low`, `ci_high` and one entry per category."""

    def check(self, image: np.ndarray, prompt: EvalPrompt) -> bool:
        """Whether one image satisfies its prompt."""


@runtime_checkable
class World(Protocol):
    root: Path
    text: TextTokenizer
    vq: ImageTokenizer
    layout: VocabLayout

    @property
    def caption_tokens(self) -> int:
        """Caption length (tokens) of the model's T2I prompts."""

    @property
    def answer_tokens(self) -> int:
        """Longest reference answer (tokens), <|eot|> not counted."""

    @property
    def categories(self) -> tuple[str, ...]:
        """T2I evaluation categories, in report order."""

    def eval_t2i(self) -> tuple[list[EvalPrompt], list]:
        """Held-out T2I prompts and, per prompt, the world's reference (or None)."""

    def eval_mmu(self) -> tuple[list[EvalQuestion], list]:
        """Held-out questions and their images, in the form `images_of` takes."""

    def images_of(self, items: Sequence) -> np.ndarray:
        """uint8 [B, H, W, 3] pixels of the images that `eval_mmu` lists."""

    def scorer(self) -> Scorer | None:
        """The world's T2I scorer; None where scoring runs outside the workbench (then no score is
        reported, and a world may offer `export_images(images, prompts, images_per_prompt, out_dir)`)."""

    def question_ids(self, question: str) -> list[int]:
        """The text after the image in the model's MMU prompt."""

    def t2i_train(self) -> dict:
        """A T2I token dataset (codes, caption, caption_len) for a world that trains its own teacher."""

    def mmu_train(self) -> dict:
        """An MMU token dataset (codes, question, question_len, answer, answer_len, qtype)."""

    def token_names(self, ids: Sequence[int]) -> list[str]:
        """Readable names of unified-vocabulary ids (the explorer's table)."""

    def prompts_by_text(self) -> dict[str, EvalPrompt]:
        """Every caption the world knows -> its prompt (the explorer's verdicts)."""

    def fingerprint(self) -> dict:
        """What a teacher trained on this world depends on (its card records it)."""


# --------------------------------------------------------------------------------------------
# The plug-in registry.


def world_module(kind: str) -> ModuleType:
    """The plug-in package of world `kind`."""
    return plugin_module(WORLD_KINDS, kind, "world kind", WorldFileError)


def params_class(kind: str) -> type:
    """The model of world `kind`'s params section."""
    return world_module(kind).Params


def build_world(params, out_dir: str | Path) -> World:
    """Stage `world`: build the world that `params` (a plug-in's Params) describe into `out_dir`."""
    return world_module(params.kind).build_world(params, out_dir)


def load_world(root: str | Path) -> World:
    """The world of a built folder, by the `format` of its world.json."""
    from ..pipeline.io import load_json

    path = Path(root) / "world.json"
    if not path.is_file():
        raise WorldFileError(f"{path}: not found (run `dvc repro world`)")
    fmt = load_json(path).get("format")
    for kind in WORLD_KINDS:
        module = world_module(kind)
        if fmt == module.FORMAT:
            return module.load_world(root)
    known = ", ".join(f"{world_module(k).FORMAT!r} ({k})" for k in WORLD_KINDS)
    raise WorldFileError(f"{path}: format {fmt!r} is no known world's; known: {known}")

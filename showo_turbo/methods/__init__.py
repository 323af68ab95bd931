"""Distillation methods as plug-ins, one file each (the stage loop, training/distill.py, knows none).

A method is a module `showo_turbo.methods.<name>` named by a stage's `method:` in params.yaml. It offers:

    Params                  the model of its section `distill.<name>` (a pipeline.params.Section with
                            at least `steps`, the stage's budget of optimizer updates)
    USES_TEACHER            True when its losses query the teacher while training (its checkpoints
                            are then bound to the teacher's weights too)
    Training(acc, stage, dp, trajectories_dir, teacher_dir, resume)
                            the stage's training state on an `accelerate.Accelerator`, from
                            `stage.init_dir`'s student or from a checkpoint folder `resume`:
        .step(step, generator) -> dict[str, Tensor]   one update; 'total' is the loss it minimised,
                                                      every entry is logged
        .save(folder)                                 its checkpoint files (model.safetensors first)
        .student() -> ShowoModel                      the student the stage saves and scores
    sampler_start(section) -> dict
                            `t2i_generate`'s start for its student (`{}`: all-[MASK]; the dm method's
                            noisy start otherwise); its arm and its scores after the stage use it
    scored_steps(eval_steps) -> list[int]
                            the step counts its student is scored at after the stage

The paper's method is `consistency`; `dm` (noise-input distribution matching) and `mixture` (a
Di4C latent and mixture likelihood) are added by the presets params/dm.yaml and params/mixture.yaml.
A new method is a new file here plus a line in METHODS (or, for a method living elsewhere,
`register_method`), and a test.
"""

from __future__ import annotations

from types import ModuleType

from ..pipeline.plugins import plugin_module

METHODS: dict[str, str] = {"consistency": "showo_turbo.methods.consistency", "dm": "showo_turbo.methods.dm",
                           "mixture": "showo_turbo.methods.mixture"}


def register_method(name: str, module: str) -> None:
    """Make method `name` (module path `module`) known to params.yaml and the stage loop."""
    METHODS[name] = module


def method_module(name: str) -> ModuleType:
    """The plug-in module of method `name`."""
    return plugin_module(METHODS, name, "distillation method")


def method_params_class(name: str) -> type:
    """The model of method `name`'s params section (`distill.<name>`)."""
    return method_module(name).Params

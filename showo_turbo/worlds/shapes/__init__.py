"""The Shapes world (the embedded default): seeded scenes of flat coloured shapes, captions in
GenEval's six categories, questions about the scenes, a word-level text tokenizer, an exact patch
VQ, the programmatic scorer ShapesEval, and the training sets its own teacher learns from.

    scenes.py    scenes, captions, questions, rendering
    params.py    its `world:` section of params.yaml
    patch_vq.py  its image tokenizer
    scorer.py    ShapesEval (GenEval's rules on detected objects)
    world.py     stage `world`: build and load the world folder
"""

from .params import WorldParams as Params
from .scorer import ShapesEval
from .world import WORLD_FORMAT as FORMAT
from .world import (ShapesWorld, build_world, check_world_metrics, load_world, metrics_table, preview,
                    summary_tables, world_metrics)

__all__ = ["FORMAT", "Params", "ShapesEval", "ShapesWorld", "build_world", "check_world_metrics", "load_world",
           "metrics_table", "preview", "summary_tables", "world_metrics"]

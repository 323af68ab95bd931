"""Real Show-o's world: its tokenizers from local folders (phi-1_5's BPE with Show-o's tokens,
MAGVIT-v2), T2I prompts and MMU questions from files, and no scorer inside the workbench: T2I
images are exported in GenEval's layout for GenEval's own evaluator (a CUDA GPU with its
detector), MMU answers are scored by exact match here.

    params.py    its `world:` section (`kind: showo`)
    files.py     prompt and question files (GenEval's JSONL, one caption per line, MMU JSONL)
    geneval.py   the GenEval export layout
    world.py     stage `world`: tokenise and encode into the world folder; load it
"""

from .geneval import export_geneval
from .params import ShowoWorldParams as Params
from .world import WORLD_FORMAT as FORMAT
from .world import (ShowoWorld, build_world, check_world_metrics, load_world, metrics_table, preview,
                    summary_tables, world_metrics)

__all__ = ["FORMAT", "Params", "ShowoWorld", "build_world", "check_world_metrics", "export_geneval", "load_world",
           "metrics_table", "preview", "summary_tables", "world_metrics"]

import os
from pathlib import Path

import pytest

from showo_turbo.params import load_params

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TQDM_DISABLE", "1")  # quiet progress bars in test logs


@pytest.fixture(scope="session")
def micro_params():
    return load_params(ROOT / "params" / "micro.yaml")


@pytest.fixture(scope="session")
def micro_world(micro_params, tmp_path_factory):
    from showo_turbo.world import build_world
    return build_world(micro_params.world, tmp_path_factory.mktemp("world"))

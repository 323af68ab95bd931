import os
from pathlib import Path

import pytest

from showo_turbo.pipeline.params import load_params

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TQDM_DISABLE", "1")  # quiet progress bars in test logs


@pytest.fixture(scope="session")
def micro_params():
    return load_params(ROOT / "params" / "micro.yaml")


@pytest.fixture(scope="session")
def micro_world(micro_params, tmp_path_factory):
    from showo_turbo.worlds.shapes import build_world
    return build_world(micro_params.world, tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="session")
def make_distill_workdir(micro_world, micro_params, tmp_path_factory):
    """A factory of folders laid out like the pipeline's: data/teacher (a random micro teacher drawn
    with `seed`) and data/trajectories collected from it with the micro params."""
    import torch

    from showo_turbo.model.showo import ShowoModel, save_model
    from showo_turbo.training.teacher import model_config_for
    from showo_turbo.training.trajectories import collect_mmu, collect_t2i

    def make(name: str, seed: int) -> Path:
        root = tmp_path_factory.mktemp(name)
        torch.manual_seed(seed)
        teacher = ShowoModel(model_config_for(micro_world, "micro")).eval()
        (root / "data" / "teacher").mkdir(parents=True)
        save_model(teacher, root / "data" / "teacher" / "model.safetensors")
        tp = micro_params.trajectories
        collect_t2i(teacher, micro_world, tp, root / "data" / "trajectories" / "t2i", progress=False)
        collect_mmu(teacher, micro_world, tp, root / "data" / "trajectories" / "mmu", progress=False)
        return root
    return make


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium driven by selenium (Debian `chromium` + `chromium-driver`; scripts/test.sh installs them)."""
    import shutil

    chromium, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_bin):
        pytest.fail("chromium and chromedriver are needed (Debian packages chromium, chromium-driver; "
                    "scripts/test.sh installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    opts = Options()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,1400"):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service(driver_bin), options=opts)
    yield drv
    drv.quit()

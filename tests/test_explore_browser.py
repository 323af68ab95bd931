"""The static explorer export in a real browser: headless Chromium (Debian `chromium` +
`chromium-driver`, installed by scripts/test.sh), driven by selenium. Moving a figure's slider must
change the rendered picture, and neither picture may be blank."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

pytestmark = pytest.mark.slow  # a browser or a whole pipeline (minutes)

from showo_turbo.evaluation import explorer as Wd
from showo_turbo.evaluation.harness import mmu_prompts
from showo_turbo.model.showo import ShowoModel
from showo_turbo.training.teacher import model_config_for


@pytest.fixture(scope="module")
def page(micro_world, tmp_path_factory):
    torch.manual_seed(0)
    model = ShowoModel(model_config_for(micro_world, "micro")).eval()
    prompts, _ = micro_world.eval_t2i()
    lookup = Wd.prompt_lookup(micro_world)
    t2i = [Wd.sampled_t2i_trace(model, micro_world, prompts[0].text, 8, "teacher", cfg_scale=2.0, prompt=lookup[prompts[0].text])]
    questions, scenes = micro_world.eval_mmu()
    mmu = mmu_prompts(micro_world, questions[:1], scenes[:1], model.config)
    jac = Wd.sampled_jacobi_traces(model, micro_world, mmu[0], "teacher", 8, 4)
    return Wd.export_html(t2i, jac, tmp_path_factory.mktemp("export") / "explore.html")


def shot(element) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(element.screenshot_as_png)).convert("RGB"), dtype=np.int16)


def test_moving_the_slider_changes_the_picture(page, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    browser.get(page.as_uri())
    WebDriverWait(browser, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".slider-rail-rect")) >= 2)
    fig = browser.find_elements(By.CSS_SELECTOR, ".plotly-graph-div")[0]
    before = shot(fig)
    assert browser.execute_script("return arguments[0].layout.sliders[0].active", fig) == 8  # opens at the final image
    rail = fig.find_element(By.CSS_SELECTOR, ".slider-rail-rect")
    width = rail.rect["width"]
    ActionChains(browser).move_to_element_with_offset(rail, -width / 2 + 3, 0).click().perform()  # the left end: step 0
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return arguments[0].layout.sliders[0].active", fig) == 0)
    after = shot(fig)
    assert before.shape == after.shape
    for picture in (before, after):  # not blank: many distinct colours and real contrast
        assert picture.std() > 20 and len(np.unique(picture.reshape(-1, 3), axis=0)) > 20
    changed = np.abs(before - after).sum(-1) > 30
    assert changed.mean() > 0.01, "the picture did not change when the slider moved"
    # Step 0 shows every token masked: the image panel turns grey (Wd.MASK_RGB) where the final image had colour.
    grey = (np.abs(after - np.array(Wd.MASK_RGB)).sum(-1) < 12).sum()
    assert grey > (np.abs(before - np.array(Wd.MASK_RGB)).sum(-1) < 12).sum() + 1000

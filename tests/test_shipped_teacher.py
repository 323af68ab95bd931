"""The shipped teachers: they fit the default world, and on the default one greedy Jacobi == greedy AR
token for token.

The default world's tokenizers depend only on its first `codebook_fit_images` training scenes, so a
slim copy of the default world (few training examples) has exactly the shipped teacher's
vocabulary and codebook, and builds in seconds.
"""

from showo_turbo.pipeline import params as P
from pathlib import Path

import pytest
import torch

from showo_turbo.evaluation.harness import mmu_prompts
from showo_turbo.model.showo import PRESETS, load_model
from showo_turbo.pipeline.params import load_params
from showo_turbo.model.sampling import ar_generate, jacobi_generate
from showo_turbo.training.teacher import check_card_fits_world, read_card
from showo_turbo.worlds.shapes import build_world

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / load_params(ROOT / "params.yaml").teacher.shipped_dir


@pytest.fixture(scope="module")
def default_world(tmp_path_factory):
    wp = load_params(ROOT / "params.yaml").world
    slim = P.replace(wp, train_t2i=wp.codebook_fit_images, train_mmu=100)
    return build_world(slim, tmp_path_factory.mktemp("default_world"))


@pytest.fixture(scope="module")
def teacher():
    return load_model(SHIPPED / "model.safetensors")


@pytest.fixture(scope="module")
def prompts(default_world, teacher):
    questions, scenes = default_world.eval_mmu()
    return mmu_prompts(default_world, questions[:200], scenes[:200], teacher.config)


def test_default_teacher_was_trained_with_the_params_recipe(teacher, default_world):
    assert read_card(SHIPPED)["train_params"] == P.to_dict(load_params(ROOT / "params.yaml").teacher.train)
    assert teacher.config.vocab_size == default_world.layout.vocab_size


@pytest.mark.parametrize("folder", sorted(p.name for p in (ROOT / "teacher").iterdir() if p.is_dir()))
def test_every_shipped_teacher_fits_the_default_world(default_world, folder):
    card = read_card(ROOT / "teacher" / folder)
    check_card_fits_world(card, default_world, f"teacher/{folder}")
    model = load_model(ROOT / "teacher" / folder / "model.safetensors")
    assert model.config.vocab_size == default_world.layout.vocab_size
    preset = PRESETS[card["train_params"]["preset"]]  # the weights are the size the card says
    assert (model.config.hidden_size, model.config.num_layers) == (preset["hidden_size"], preset["num_layers"])


@pytest.mark.slow  # the trained base teacher decodes 200 prompts per case (seconds each)
@pytest.mark.parametrize("block", [4, 16])
def test_jacobi_equals_ar_with_the_trained_teacher(teacher, prompts, block):
    ar = ar_generate(teacher, prompts, max_new_tokens=20)
    jac = jacobi_generate(teacher, prompts, max_new_tokens=20, block_size=block, generator=torch.Generator().manual_seed(0))
    assert len(ar.tokens) == 200 and jac.tokens == ar.tokens


@pytest.mark.slow
def test_jacobi_stopping_at_eot_is_exact_and_needs_fewer_passes(teacher, prompts):
    """stop="eot" ends a block once everything up to <|eot|> is fixed: the answers stay greedy AR's,
    no row needs more passes than with stop="block", and the junk after <|eot|> no longer costs any."""
    ar = ar_generate(teacher, prompts, max_new_tokens=20)
    kw = dict(max_new_tokens=20, block_size=16)
    block = jacobi_generate(teacher, prompts, generator=torch.Generator().manual_seed(0), **kw)
    eot = jacobi_generate(teacher, prompts, generator=torch.Generator().manual_seed(0), stop="eot", **kw)
    assert eot.tokens == ar.tokens
    assert all(e <= b for e, b in zip(eot.stats["row_forwards"], block.stats["row_forwards"]))
    assert sum(eot.stats["row_forwards"]) < sum(block.stats["row_forwards"])
    assert eot.forwards < block.forwards  # the batch stops waiting for junk too
    # An answer of L <= 16 tokens (its <|eot|> included) fits one block: after pass k at least the
    # first k tokens are right, and one more pass confirms, so a row needs at most L + 1 passes (the
    # first of them in the prefill's forward).
    assert all(f <= len(t) + 1 for f, t in zip(eot.stats["row_forwards"], eot.tokens) if len(t) <= 16)


def test_trained_teacher_batched_equals_unbatched(teacher, prompts, default_world):
    pad = default_world.layout.pad_id
    batched = jacobi_generate(teacher, prompts[:12], max_new_tokens=20, block_size=8).tokens
    for i in range(12):
        row = prompts[i][prompts[i] != pad].view(1, -1)  # the same prompt without left padding
        assert jacobi_generate(teacher, row, max_new_tokens=20, block_size=8).tokens[0] == batched[i]
        assert ar_generate(teacher, row, max_new_tokens=20).tokens[0] == batched[i]

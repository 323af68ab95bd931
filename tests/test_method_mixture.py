"""The mixture student (`method: mixture`, Di4C): its likelihood terms against direct products, its
gradient against the responsibility-weighted per-draw gradient, a two-mode toy that only the mixture
can learn, the latent through the sampler and checkpoints, resume, and two processes."""

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from showo_turbo.methods.mixture import MixtureObjective, joint_weight, mixture_terms, with_latent
from showo_turbo.model.sampling import t2i_generate
from showo_turbo.model.showo import (ShowoConfig, ShowoModel, image_state_ids, load_model, save_model,
                                     t2i_sequences)
from showo_turbo.pipeline.params import StageEntry, parse_params
from showo_turbo.training.distill import distill_stage
from showo_turbo.training.teacher import model_config_for
from two_processes import distill_two_processes

MIX = StageEntry(method="mixture", segments=1, init_dir="data/teacher", arm=None)
SECTION = {"steps": 6, "batch_t2i": 4, "lr": 0.0001, "draws": 3, "weight_joint": 0.1}


def random_case(B=3, M=4, N=5, C=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, M, N, C, generator=g, dtype=torch.float64)
    target = torch.randint(0, C, (B, N), generator=g)
    masked = torch.rand(B, N, generator=g) < 0.6
    masked[:, 0] = True
    return logits, target, masked


def test_mixture_terms_equal_the_direct_products():
    logits, target, masked = random_case()
    joint, marginal = mixture_terms(logits.log_softmax(-1), target, masked)
    p = logits.softmax(-1)
    for b in range(len(target)):
        d = torch.nonzero(masked[b]).flatten()
        p_x = p[b][:, d, target[b, d]]  # [M, |d|]
        assert math.isclose(joint[b].item(), math.log(p_x.prod(-1).mean().item()), rel_tol=1e-9)
        assert math.isclose(marginal[b].item(), p_x.mean(0).log().sum().item(), rel_tol=1e-9)


def test_the_joint_survives_where_probabilities_underflow():
    """3,000 positions at p = 1/50: the product is 1e-5097 (0 in float32 and float64); the log is not."""
    M, N, C = 4, 3000, 50
    log_probs = torch.full((1, M, N, C), -math.log(C))
    joint, marginal = mixture_terms(log_probs, torch.zeros(1, N, dtype=torch.long), torch.ones(1, N, dtype=torch.bool))
    assert torch.isfinite(joint).all() and math.isclose(joint.item(), -N * math.log(C), rel_tol=1e-5)
    assert math.isclose(marginal.item(), -N * math.log(C), rel_tol=1e-5)


def test_gradient_of_the_mixture_likelihood_is_the_responsibility_weighted_per_draw_gradient():
    """d/dtheta log mean_m exp(l_m) = sum_m w_m dl_m/dtheta with w = softmax(l): each draw is pulled
    towards the target in proportion to how well it already explains it."""
    logits, target, masked = random_case(seed=1)
    a = logits.clone().requires_grad_(True)
    joint, _ = mixture_terms(a.log_softmax(-1), target, masked)
    (-joint.sum()).backward()
    b = logits.clone().requires_grad_(True)
    ll = b.log_softmax(-1).gather(-1, target[:, None, :, None].expand(-1, b.shape[1], -1, 1)).squeeze(-1)
    per_draw = (ll * masked[:, None]).sum(-1)                      # l_m [B, M]
    w = per_draw.softmax(-1).detach()
    (-(w * per_draw).sum()).backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-12)
    assert not torch.allclose(w, torch.full_like(w, 1 / w.shape[1]))  # the weights are not uniform here


def test_joint_weight_is_di4cs_alpha():
    masked = torch.tensor([[True] * 4, [True, True, False, False], [False] * 4])
    r = torch.cos(math.pi / 2 * torch.tensor([1.0, 0.5, 0.0]))
    assert torch.allclose(joint_weight(masked, 0.1), 0.1 * torch.sigmoid(20 * (0.5 - r)))
    assert joint_weight(masked, 1.0)[0] > 0.99 and joint_weight(masked, 1.0)[2] < 1e-4  # all masked counts, clean does not


# --------------------------------------------------------------------------------------------
# The two-mode toy: two image positions, codes A (0) and B (1), half the targets AA and half BB.

def toy_model(seed: int) -> ShowoModel:
    torch.manual_seed(seed)
    cfg = ShowoConfig(text_size=16, codebook_size=2, num_image_tokens=2, max_caption_tokens=4, sot_id=14, eot_id=15,
                      hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position_embeddings=32)
    return with_latent(ShowoModel(cfg), seed)


def zero_latent(model: ShowoModel) -> None:
    torch.nn.init.zeros_(model.latent.mlp[-1].weight)
    torch.nn.init.zeros_(model.latent.mlp[-1].bias)


def toy_batch(model: ShowoModel, final: torch.Tensor, latent: torch.Tensor) -> dict:
    """All-[MASK] states of the toy caption, the data's marginal (1/2 each) as the target, `final` [B, 2]."""
    B = len(final)
    caption, length = torch.tensor([[3, 4, 5, 6]]).expand(B, -1), torch.full((B,), 4)
    ids = t2i_sequences(caption, length, image_state_ids(torch.full((B, 2), -1), model.config), model.config)
    return {"t2i_ids": ids, "t2i_masked": torch.ones(B, 2, dtype=torch.bool), "t2i_probs": torch.full((B, 2, 2), 0.5),
            "t2i_index": torch.tensor([0, 1]).expand(B, 2, 2), "t2i_final": final, "latent": latent}


def train_toy(draws: int, steps: int = 300, B: int = 32, seed: int = 0, zero: bool = False) -> ShowoModel:
    """The mixture objective's image losses from an all-[MASK] state; the target marginal is the
    data's (A or B at 1/2 each), so marginal + joint terms are the mixture's likelihood of the data."""
    model = toy_model(seed).train()
    if zero:
        zero_latent(model)
    objective = MixtureObjective(model, None, SimpleNamespace(draws=draws, weight_joint=1.0))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        mode = torch.randint(0, 2, (B, 1), generator=g)
        loss = objective.image_losses(toy_batch(model, mode.expand(B, 2), torch.rand(B * draws, generator=g)))["image"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def toy_samples(model: ShowoModel, n: int = 400) -> torch.Tensor:
    caption = torch.tensor([[3, 4, 5, 6]]).expand(n, -1)
    return t2i_generate(model, caption, torch.full((n,), 4), steps=1, temperature=0.0,
                        generator=torch.Generator().manual_seed(1)).codes


@pytest.mark.slow  # training runs
def test_the_mixture_learns_a_two_mode_joint_that_the_product_cannot():
    """One pass from all-[MASK]. The product student (one draw: the latent cannot matter) can at best
    put 1/2 on A and B at each position, so half its images mix A and B; the mixture's lambdas split
    into an AA half and a BB half. Its residue (1.0-1.75% mixed at seeds 0-2) comes from lambdas at
    the border between the halves."""
    product, mixture = toy_samples(train_toy(draws=1)), toy_samples(train_toy(draws=8))
    mixed = lambda x: (x[:, 0] != x[:, 1]).float().mean().item()  # noqa: E731
    assert mixed(product) > 0.4
    assert mixed(mixture) < 0.03
    assert 0.35 < mixture[:, 0].float().mean().item() < 0.65  # both modes, not one


@pytest.mark.slow  # training runs
def test_a_zero_latent_is_a_saddle_of_the_mixture_terms():
    """Why the latent's last layer keeps PyTorch's initialisation: with zero weights every lambda gives
    the same output, the correlated term's gradient vanishes, and the toy never leaves the product."""
    model = toy_model(0)
    zero_latent(model)
    objective = MixtureObjective(model, None, SimpleNamespace(draws=4, weight_joint=1.0))
    batch = toy_batch(model, torch.tensor([[0, 0], [1, 1]]).repeat(4, 1),
                      torch.rand(32, generator=torch.Generator().manual_seed(0)))
    objective.image_losses(batch)["joint"].backward()
    assert all(p.grad is None or p.grad.abs().max() < 1e-6 for p in model.parameters())
    x = toy_samples(train_toy(draws=8, steps=100, zero=True))
    assert (x[:, 0] != x[:, 1]).float().mean() > 0.4


# --------------------------------------------------------------------------------------------
# The latent through the model, the sampler and checkpoints.


def test_latent_is_added_to_image_positions_only_and_survives_a_checkpoint(micro_world, tmp_path):
    torch.manual_seed(0)
    plain = ShowoModel(model_config_for(micro_world, "micro")).eval()
    model = with_latent(ShowoModel(model_config_for(micro_world, "micro")).eval(), seed=3)
    model.load_state_dict(plain.state_dict(), strict=False)
    cfg = model.config
    B, N = 4, cfg.num_image_tokens
    state = torch.randint(-1, cfg.codebook_size, (B, N))
    ids = t2i_sequences(torch.randint(0, 10, (B, 5)), torch.full((B,), 5), image_state_ids(state, cfg), cfg)
    lam = torch.rand(B)
    emb = model.embed(ids, lam) - plain.showo.model.embed_tokens(ids)
    image = (ids >= cfg.layout.code_offset) & (ids <= cfg.layout.mask_id)
    assert torch.equal(emb[~image], torch.zeros_like(emb[~image])) and (emb[image].abs().sum(-1) > 0).all()
    with torch.no_grad():
        a, b = model.image_logits(ids, latent=lam), model.image_logits(ids, latent=1 - lam)
    assert not torch.allclose(a, b)
    save_model(model, tmp_path / "m.safetensors")
    again = load_model(tmp_path / "m.safetensors")
    with torch.no_grad():
        assert again.config.mixture_latent and torch.equal(again.image_logits(ids, latent=lam), a)
    with pytest.raises(ValueError, match="no mixture latent"):
        plain.image_logits(ids, latent=lam)


def test_sampler_draws_lambdas_from_its_generator(micro_world):
    torch.manual_seed(0)
    model = with_latent(ShowoModel(model_config_for(micro_world, "micro")).eval(), seed=1)
    caps, lens = torch.randint(0, 10, (6, 5)), torch.full((6,), 5)
    run = lambda seed, cache=True: t2i_generate(model, caps, lens, steps=2, temperature=1.0, prompt_cache=cache,  # noqa: E731
                                                generator=torch.Generator().manual_seed(seed)).codes
    assert torch.equal(run(3), run(3)) and torch.equal(run(3), run(3, cache=False))  # the cache sees the latent too
    assert not torch.equal(run(3), run(4))


# --------------------------------------------------------------------------------------------
# The stage: trained, resumed bit-identically, and in two processes.


def mixture_params(micro_params_path: Path) -> dict:
    data = yaml.safe_load(micro_params_path.read_text())
    data["distill"]["stages"]["mix"] = {"method": "mixture", "segments": 1, "init_dir": "data/teacher",
                                        "arm": {"top_k": {t: 0 for t in data["evaluate"]["steps"]}, "temperature": 4.5}}
    data["distill"]["mixture"] = dict(SECTION)
    return data


MICRO = Path(__file__).resolve().parents[1] / "params" / "micro.yaml"


@pytest.fixture(scope="module")
def workdir(make_distill_workdir):
    return make_distill_workdir("mixture", seed=4)


@pytest.mark.slow  # training runs
def test_mixture_stage_resumes_bit_identically(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    dp = parse_params(mixture_params(MICRO)).distill
    full = distill_stage(MIX, dp, "data/trajectories", workdir / "full", cpu=True, progress=False)
    assert full["step"] == SECTION["steps"]
    assert {"marginal", "joint", "image", "lm", "consistency", "ar", "total"} == set(full["losses"]["process_0"])
    part = distill_stage(MIX, dp, "data/trajectories", workdir / "part", cpu=True, progress=False, max_steps=3)
    resumed = distill_stage(MIX, dp, "data/trajectories", workdir / "part", cpu=True, progress=False)
    assert part["step"] == 3 and resumed["resumed_from"] == 3 and resumed["step"] == SECTION["steps"]
    a = load_model(workdir / "full" / "model.safetensors")
    b = load_model(workdir / "part" / "model.safetensors")
    assert a.config.mixture_latent and all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    teacher = load_model(workdir / "data" / "teacher" / "model.safetensors").state_dict()
    assert any(not torch.equal(teacher[k], a.state_dict()[k]) for k in teacher)


@pytest.mark.slow
def test_mixture_stage_two_processes_stay_in_sync(workdir):
    params = workdir / "mixture.yaml"
    params.write_text(yaml.safe_dump(mixture_params(MICRO), sort_keys=False))  # stage order matters
    r = distill_two_processes(workdir, params, "mix", "two_mix")
    assert r["processes"] == 2 and r["step"] == SECTION["steps"]
    assert r["losses"]["process_0"] != r["losses"]["process_1"]  # own batches ...
    assert r["weight_checksums"][0] == r["weight_checksums"][1]  # ... one set of weights, latent included
    assert load_model(workdir / "two_mix" / "model.safetensors").config.mixture_latent

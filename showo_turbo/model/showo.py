"""The unified Show-o model: a Phi backbone (qk-layernorm on) over one vocabulary of text, Show-o's
special tokens, image codes and [MASK]; prompt builders; omni-attention masks; training losses.

Sequences (docs/method.md, section 1):
    T2I  [PAD..][<|t2i|>][<|sot|>] caption [<|eot|>][<|soi|>] image x N [<|eoi|>]   (caption left-padded)
    MMU  [<|mmu|>][<|soi|>] image x N [<|eoi|>][<|sot|>] question answer [<|eot|>]

Parameter names equal an official Show-o checkpoint's: the Phi model is held as `self.showo`.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PhiConfig, PhiForCausalLM

from ..pipeline.errors import ShowoError
from ..pipeline.io import read_safetensors, write_safetensors
from ..pipeline.params import PRECISIONS
from .tokenization import VocabLayout

NEG_INF = torch.finfo(torch.float32).min


@dataclass(frozen=True)
class ShowoConfig:
    """One config object for the model: vocabulary layout, sequence sizes, backbone and mask quirks."""

    text_size: int                    # text vocabulary (incl. <|sot|>, <|eot|>); Show-o's specials follow
    codebook_size: int                # image codes
    num_image_tokens: int             # N image tokens per image
    max_caption_tokens: int           # caption words; T2I text part is this + 3 tokens
    sot_id: int                       # the text tokenizer's bos (<|sot|>) and eos (<|eot|>)
    eot_id: int
    hidden_size: int = 192
    num_layers: int = 4
    num_heads: int = 6
    intermediate_size: int = 768
    max_position_embeddings: int = 256
    partial_rotary_factor: float = 0.5  # Phi-1.5's
    rope_theta: float = 10000.0
    layer_norm_eps: float = 1e-5
    attn_implementation: str = "eager"  # ~10% faster than sdpa on 2 CPU cores (TRIALS.md)
    # Phi's gelu_new (the tanh approximation) as PyTorch's one fused kernel: the same function (at most
    # 2.4e-7 apart in fp32) and a training step 14-20% faster on this CPU than the five-op gelu_new.
    hidden_act: str = "gelu_pytorch_tanh"
    # Omni-attention quirks (Show-o's `rm_pad_in_image=True`: both on).
    hide_pads_from_image: bool = True
    hide_pads_from_text: bool = True
    # A Di4C latent input (methods/mixture.py): image positions also see an embedding of a scalar lambda.
    mixture_latent: bool = False

    @property
    def layout(self) -> VocabLayout:
        return VocabLayout(self.text_size, self.codebook_size)

    @property
    def vocab_size(self) -> int:
        return self.layout.vocab_size

    @property
    def t2i_length(self) -> int:
        return self.max_caption_tokens + 3 + self.num_image_tokens + 2

    def phi_config(self) -> PhiConfig:
        return PhiConfig(vocab_size=self.vocab_size, hidden_size=self.hidden_size, num_hidden_layers=self.num_layers,
                         num_attention_heads=self.num_heads, intermediate_size=self.intermediate_size,
                         max_position_embeddings=self.max_position_embeddings, partial_rotary_factor=self.partial_rotary_factor,
                         rope_theta=self.rope_theta, layer_norm_eps=self.layer_norm_eps, qk_layernorm=True,
                         resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0, tie_word_embeddings=False,
                         hidden_act=self.hidden_act, attn_implementation=self.attn_implementation)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ShowoConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}")
        return cls(**d)


# Backbone sizes. `showo-256` / `showo-512` equal Show-o's (Phi-1.5: vocab 58498, hidden 2048, 24 layers).
PRESETS: dict[str, dict] = {
    "micro": dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64),
    "small": dict(hidden_size=192, num_layers=4, num_heads=6, intermediate_size=768),
    "base": dict(hidden_size=256, num_layers=6, num_heads=8, intermediate_size=1024),
    "showo-256": dict(text_size=50295, codebook_size=8192, num_image_tokens=256, max_caption_tokens=125, sot_id=50256, eot_id=50256,
                      hidden_size=2048, num_layers=24, num_heads=32, intermediate_size=8192, max_position_embeddings=2048),
    "showo-512": dict(text_size=50295, codebook_size=8192, num_image_tokens=1024, max_caption_tokens=125, sot_id=50256, eot_id=50256,
                      hidden_size=2048, num_layers=24, num_heads=32, intermediate_size=8192, max_position_embeddings=2048),
}


def preset_config(preset: str, **world) -> ShowoConfig:
    """`preset` backbone on a world's vocabulary and lengths (ignored for the showo-* presets)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; known: {', '.join(PRESETS)}")
    values = {**world, **PRESETS[preset]}
    return ShowoConfig(**values)


# --------------------------------------------------------------------------------------------
# Prompts.


def t2i_sequences(captions: torch.Tensor, caption_len: torch.Tensor, image_tokens: torch.Tensor, cfg: ShowoConfig) -> torch.Tensor:
    """[B, t2i_length] ids. `captions` [B, Lc] are right-padded text ids of length `caption_len`
    (0 = the unconditional, empty caption); `image_tokens` [B, N] are vocabulary ids."""
    lay, Lc = cfg.layout, cfg.max_caption_tokens
    B = image_tokens.shape[0]
    n = caption_len.long().view(B, 1)
    j = torch.arange(Lc + 3).view(1, -1)
    start = Lc - n  # position of <|t2i|>
    k = (j - start - 2).clamp(0, max(captions.shape[1] - 1, 0))
    words = captions.long().gather(1, k.expand(B, -1)) if captions.shape[1] else torch.zeros(B, Lc + 3, dtype=torch.long)
    text = torch.full((B, Lc + 3), lay.pad_id, dtype=torch.long)
    text = torch.where(j == start, lay.special_id("<|t2i|>"), text)
    text = torch.where(j == start + 1, cfg.sot_id, text)
    text = torch.where((j >= start + 2) & (j < Lc + 2), words, text)
    text[:, -1] = cfg.eot_id
    soi = torch.full((B, 1), lay.special_id("<|soi|>"), dtype=torch.long)
    eoi = torch.full((B, 1), lay.special_id("<|eoi|>"), dtype=torch.long)
    return torch.cat([text, soi, image_tokens.long(), eoi], dim=1)


def image_state_ids(state: torch.Tensor, cfg: ShowoConfig) -> torch.Tensor:
    """Image codes with -1 = masked (the samplers' and trajectories' states) -> vocabulary ids."""
    return torch.where(state < 0, cfg.layout.mask_id, state + cfg.layout.code_offset)


def image_slice(cfg: ShowoConfig) -> slice:
    """Positions of the N image tokens inside a T2I sequence."""
    start = cfg.max_caption_tokens + 3 + 1
    return slice(start, start + cfg.num_image_tokens)


def mmu_prefix(image_tokens: torch.Tensor, cfg: ShowoConfig) -> torch.Tensor:
    """[B, N + 4]: `[<|mmu|>][<|soi|>] image [<|eoi|>][<|sot|>]`."""
    lay, B = cfg.layout, image_tokens.shape[0]
    head = torch.tensor([lay.special_id("<|mmu|>"), lay.special_id("<|soi|>")]).expand(B, 2)
    tail = torch.tensor([lay.special_id("<|eoi|>"), cfg.sot_id]).expand(B, 2)
    return torch.cat([head, image_tokens.long(), tail], dim=1)


def mmu_sequences(image_tokens: torch.Tensor, question: torch.Tensor, question_len: torch.Tensor, answer: torch.Tensor,
                  answer_len: torch.Tensor, cfg: ShowoConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Training sequences `prefix question answer <|eot|>`, right-padded with PAD, and a bool mask of
    the positions whose next token is part of the answer (incl. <|eot|>): the MMU loss targets."""
    B, Lq, La = image_tokens.shape[0], question.shape[1], answer.shape[1]
    prefix = mmu_prefix(image_tokens, cfg)
    P = prefix.shape[1]
    body = torch.full((B, Lq + La + 1), cfg.layout.pad_id, dtype=torch.long)
    target = torch.zeros(B, P + Lq + La + 1, dtype=torch.bool)
    for i in range(B):
        q, a = int(question_len[i]), int(answer_len[i])
        body[i, :q] = question[i, :q]
        body[i, q:q + a] = answer[i, :a]
        body[i, q + a] = cfg.eot_id
        target[i, P + q - 1:P + q + a] = True  # predicts answer[0..a-1] and <|eot|>
    return torch.cat([prefix, body], dim=1), target


# --------------------------------------------------------------------------------------------
# Attention masks (additive, [B, 1, L, L]: 0 = may attend, dtype-min = blocked).


def additive(allowed: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min).unsqueeze(1)


def omni_attention_mask(ids: torch.Tensor, cfg: ShowoConfig) -> torch.Tensor:
    """Show-o's T2I mask: text rows causal; rows from <|soi|> to <|eoi|> see the whole sequence in
    both directions; pads hidden from image rows and from the text rows after them (configurable)."""
    lay = cfg.layout
    B, L = ids.shape
    is_pad = ids == lay.pad_id
    soi, eoi = ids == lay.special_id("<|soi|>"), ids == lay.special_id("<|eoi|>")
    in_image = (soi.cumsum(1) > eoi.cumsum(1)) | soi | eoi
    causal = torch.ones(L, L, dtype=torch.bool, device=ids.device).tril()
    allowed = causal.expand(B, L, L).clone()
    allowed[in_image.unsqueeze(2).expand(B, L, L)] = True
    if cfg.hide_pads_from_text:
        after_pads = ~is_pad & ~in_image
        allowed &= ~(after_pads.unsqueeze(2) & is_pad.unsqueeze(1))
    if cfg.hide_pads_from_image:
        allowed &= ~(in_image.unsqueeze(2) & is_pad.unsqueeze(1))
    return additive(allowed)


def mmu_attention_mask(ids: torch.Tensor, cfg: ShowoConfig, prefix_len: int | None = None) -> torch.Tensor:
    """Causal, plus the `[<|mmu|>][<|soi|>] image [<|eoi|>]` prefix bidirectional; left pads hidden."""
    return additive(mmu_allowed(ids, cfg))


def mmu_allowed(ids: torch.Tensor, cfg: ShowoConfig) -> torch.Tensor:
    """`mmu_attention_mask` as booleans [B, L, L] (True = may attend), for callers that refine it."""
    B, L = ids.shape
    is_pad = ids == cfg.layout.pad_id
    eoi_pos = (ids == cfg.layout.special_id("<|eoi|>")).long().argmax(1)  # first <|eoi|> per row
    j = torch.arange(L, device=ids.device)
    in_prefix = j.view(1, L) <= eoi_pos.view(B, 1)
    allowed = torch.ones(L, L, dtype=torch.bool, device=ids.device).tril().expand(B, L, L).clone()
    allowed |= in_prefix.unsqueeze(2) & in_prefix.unsqueeze(1)
    allowed &= ~is_pad.unsqueeze(1) | torch.eye(L, dtype=torch.bool, device=ids.device)  # a pad row still sees itself
    return allowed


def mmu_position_ids(ids: torch.Tensor, cfg: ShowoConfig) -> torch.Tensor:
    """Positions that skip left pads, so a left-padded prompt has the same positions as an unpadded one."""
    real = (ids != cfg.layout.pad_id).long()
    lead = (real.cumsum(1) == 0).sum(1, keepdim=True)  # number of leading pads
    return (torch.arange(ids.shape[1], device=ids.device).view(1, -1) - lead).clamp(min=0)


# --------------------------------------------------------------------------------------------
# The model.


class MixtureLatent(nn.Module):
    """Di4C's latent input (Hayakawa et al., arXiv 2410.08709; sony/di4c): lambda in [0, 1) as a
    sinusoidal embedding of 1000 lambda (128 features) through Linear-GELU-Linear to the hidden size.
    Di4C appends it as one extra token; here it is added to the input embedding of every image
    position (a code or [MASK]), so that the omni-attention masks and the caption cache stay as they
    are. PyTorch's default initialisation, as Di4C's: with a zero last layer every lambda gives the
    same output, a saddle where the mixture terms' gradient vanishes (the two-mode toy of
    tests/test_method_mixture.py then learns nothing), so the student starts slightly off its init."""

    FEATURES = 128

    def __init__(self, hidden_size: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(self.FEATURES, 4 * self.FEATURES), nn.GELU(),
                                 nn.Linear(4 * self.FEATURES, hidden_size))

    def forward(self, lam: torch.Tensor) -> torch.Tensor:
        """[B] lambdas -> [B, hidden]."""
        half = self.FEATURES // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=lam.device) / half)
        angles = 1000.0 * lam.float().view(-1, 1) * freqs
        return self.mlp(torch.cat([angles.sin(), angles.cos()], dim=-1).to(self.mlp[0].weight.dtype))


class ShowoModel(nn.Module):
    def __init__(self, cfg: ShowoConfig):
        super().__init__()
        self.config = cfg
        self.showo = PhiForCausalLM(cfg.phi_config())
        self.latent = MixtureLatent(cfg.hidden_size) if cfg.mixture_latent else None

    def embed(self, ids: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """Input embeddings of `ids` with the latent `latent` [B] added at the image positions."""
        if self.latent is None:
            raise ValueError("this model has no mixture latent (config.mixture_latent is False)")
        lay = self.config.layout
        emb = self.showo.model.embed_tokens(ids)
        image = ((ids >= lay.code_offset) & (ids <= lay.mask_id)).unsqueeze(-1)
        return emb + image * self.latent(latent.to(ids.device)).unsqueeze(1).to(emb.dtype)

    def hidden(self, ids: torch.Tensor, mask: torch.Tensor, position_ids: torch.Tensor | None = None,
               latent: torch.Tensor | None = None, **cache) -> torch.Tensor:
        """Last hidden states; `latent` [B]: a mixture latent per row (models with one only)."""
        inputs = {"input_ids": ids} if latent is None else {"inputs_embeds": self.embed(ids, latent)}
        return self.showo.model(**inputs, attention_mask=mask, position_ids=position_ids, **cache).last_hidden_state

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.showo.lm_head(hidden)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.logits(self.hidden(ids, mask, position_ids))

    def image_logits(self, ids: torch.Tensor, mask: torch.Tensor | None = None,
                     latent: torch.Tensor | None = None) -> torch.Tensor:
        """[B, N, codebook] logits over image codes only at the image positions of T2I sequences."""
        cfg = self.config
        mask = omni_attention_mask(ids, cfg) if mask is None else mask
        return self.code_logits(self.hidden(ids, mask, latent=latent)[:, image_slice(cfg)])

    def code_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The LM head restricted to the image codes' rows: [.., d] -> [.., codebook]."""
        cfg = self.config
        w, b = self.showo.lm_head.weight, self.showo.lm_head.bias
        lo, hi = cfg.layout.code_offset, cfg.layout.code_offset + cfg.codebook_size
        return F.linear(hidden, w[lo:hi], b[lo:hi])

    @property
    def device(self) -> torch.device:
        return self.showo.lm_head.weight.device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class CaptionCache:
    """Keys and values of the caption part of T2I sequences (the first max_caption_tokens + 3
    positions), computed once per prompt and reused at every MaskGIT step. Under omni-attention the
    caption rows are causal and never see the image, so their keys and values are the same at every
    step; each step then runs only `<|soi|> image <|eoi|>` against them. Same logits as the full
    pass up to float rounding (the attention sums are split differently)."""

    def __init__(self, model: ShowoModel, caption_ids: torch.Tensor):
        from transformers import DynamicCache

        self.model, self.length = model, caption_ids.shape[1]
        self.cache = DynamicCache(config=model.showo.config)
        self.block_mask = self.block_positions = None  # set at the first step (see image_logits)
        caption_ids = caption_ids.to(model.device)
        model.showo.model(input_ids=caption_ids, attention_mask=omni_attention_mask(caption_ids, model.config),
                          cache=self.cache, use_cache=True)

    def image_logits(self, ids: torch.Tensor, latent: torch.Tensor | None = None) -> torch.Tensor:
        """`ShowoModel.image_logits` of whole T2I sequences `ids` whose caption part is this cache's."""
        m, cfg, P = self.model, self.model.config, self.length
        ids = ids.to(m.device)
        if self.block_mask is None:
            # The image block's mask rows (every key) and positions depend only on where the caption's
            # pads are, not on the image codes (no pads, one <|soi|> and <|eoi|>): the same every step.
            self.block_mask = omni_attention_mask(ids, cfg)[:, :, P:, :]
            self.block_positions = torch.arange(P, ids.shape[1], device=ids.device).expand(len(ids), -1)
        block = ids[:, P:]
        img = slice(image_slice(cfg).start - P, image_slice(cfg).stop - P)
        try:
            h = m.hidden(block, self.block_mask, self.block_positions, latent, cache=self.cache, use_cache=True)[:, img]
        finally:
            self.cache.crop(P - self.cache.get_seq_length())  # back to the caption alone (a negative crop)
        return m.code_logits(h)


def default_device() -> str:
    """Where the stages train and sample: the GPU when there is one."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def has_fast_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether bf16 runs natively on `device`: a CUDA GPU that supports it, or a CPU with AVX512-BF16
    or AMX. Elsewhere bf16 is emulated: on a 2-core AVX512 CPU without AVX512-BF16, sampling the
    base teacher in bf16 was 2.6x *slower* than fp32 (studies/2026-12-01-dm-student); on one with
    AVX512-BF16 an earlier probe found it ~2.8x faster."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def hardware() -> dict:
    """What a run ran on: the CPU model, torch's threads, the GPU (None without one), torch, the platform."""
    import platform

    cpu = ""
    with contextlib.suppress(OSError):
        cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    return {"cpu": cpu, "cpu_threads": torch.get_num_threads(), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch": torch.__version__, "platform": platform.platform()}


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> str:
    """`auto` -> bf16 where it is native on `device` (has_fast_bf16), else fp32; bf16 / fp32 as given."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if has_fast_bf16(device) else "fp32"
    return precision


def autocast(precision: str, device: str | torch.device = "cpu"):
    """bf16 autocast on `device`'s type (cpu or cuda), or nothing for fp32; `auto` as resolve_precision."""
    if resolve_precision(precision, device) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


# --------------------------------------------------------------------------------------------
# Training losses of the base model.


def cosine_schedule(t: float | torch.Tensor) -> float | torch.Tensor:
    """Show-o's mask schedule: the fraction of image tokens masked at progress t in [0, 1], cos(t pi/2)
    (a float or a tensor of them): the training corruption's ratio and the sampler's re-masking."""
    return torch.cos(t * math.pi / 2) if isinstance(t, torch.Tensor) else math.cos(t * math.pi / 2)


def random_mask(n_mask: torch.Tensor, num_tokens: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """[B, N] bool: `n_mask[b]` uniformly random positions of row b (the rank of a uniform draw)."""
    rank = torch.rand(len(n_mask), num_tokens, generator=generator).argsort(-1).argsort(-1)
    return rank < n_mask.view(-1, 1)


def mask_image_tokens(codes: torch.Tensor, cfg: ShowoConfig, generator: torch.Generator | None = None,
                      min_ratio: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Show-o's training corruption: ratio cos(u*pi/2), u~U(0,1); round(N*ratio) (>= 1) random
    positions become [MASK]. Returns (vocabulary ids, bool mask of masked positions)."""
    B, N = codes.shape
    ratio = cosine_schedule(torch.rand(B, generator=generator)).clamp(min=min_ratio)
    masked = random_mask((N * ratio).round().clamp(min=1), N, generator)
    ids = torch.where(masked, cfg.layout.mask_id, codes.long() + cfg.layout.code_offset)
    return ids, masked


def t2i_loss(model: ShowoModel, ids: torch.Tensor, masked: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Cross-entropy at masked image positions, no shift (position i predicts token i), over the full vocabulary."""
    cfg = model.config
    h = model.hidden(ids, omni_attention_mask(ids, cfg))[:, image_slice(cfg)]
    logits = model.logits(h[masked])
    return F.cross_entropy(logits.float(), codes.long()[masked] + cfg.layout.code_offset)


def mmu_loss(model: ShowoModel, ids: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy on the answer (and its <|eot|>) only."""
    cfg = model.config
    return next_token_loss(model, model.hidden(ids, mmu_attention_mask(ids, cfg)), ids, target)


def next_token_loss(model: ShowoModel, hidden: torch.Tensor, ids: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy at the positions marked in `target` [B, L] (position q predicts
    ids[q + 1]), from the hidden states of `ids`."""
    predicts = target[:, :-1]
    return F.cross_entropy(model.logits(hidden[:, :-1][predicts]).float(), ids[:, 1:][predicts])


def lm_loss(model: ShowoModel, captions: torch.Tensor, caption_len: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy on `<|sot|> caption <|eot|>` as plain causal text."""
    cfg = model.config
    B, Lc = captions.shape
    dev = captions.device
    ids = torch.full((B, Lc + 2), cfg.layout.pad_id, dtype=torch.long, device=dev)
    ids[:, 0] = cfg.sot_id
    j = torch.arange(Lc + 2, device=dev).view(1, -1)
    n = caption_len.long().view(B, 1)
    ids[:, 1:Lc + 1] = torch.where(j[:, 1:Lc + 1] <= n, captions.long(), cfg.layout.pad_id)
    ids = torch.where(j == n + 1, cfg.eot_id, ids)
    valid = j[:, 1:] <= n + 1  # targets: caption words and <|eot|>
    causal = additive(torch.ones(Lc + 2, Lc + 2, dtype=torch.bool, device=dev).tril().expand(B, -1, -1))
    logits = model(ids, causal)[:, :-1][valid]
    return F.cross_entropy(logits.float(), ids[:, 1:][valid])


# --------------------------------------------------------------------------------------------
# Checkpoints: safetensors weights + the config in the header.

CHECKPOINT_FORMAT = "showo-turbo/model/1"


class CheckpointError(ShowoError, ValueError):
    """A checkpoint is missing, corrupt, or does not fit the expected model."""


def save_model(model: ShowoModel, path: str | Path, extra: dict | None = None) -> None:
    meta = {"format": CHECKPOINT_FORMAT, "config": json.dumps(model.config.to_dict()), **(extra or {})}
    write_safetensors({k: v.detach().cpu() for k, v in model.state_dict().items()}, path, meta)


def read_checkpoint(path: str | Path) -> tuple[ShowoConfig, dict[str, torch.Tensor], dict]:
    state, meta = read_safetensors(path, CheckpointError)
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a showo-turbo model checkpoint (format {meta.get('format')!r})")
    return ShowoConfig.from_dict(json.loads(meta["config"])), state, meta


def load_model(path: str | Path) -> ShowoModel:
    cfg, state, _ = read_checkpoint(path)
    model = ShowoModel(cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: parameters do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval()


# Phi-1.5's published backbone (microsoft/phi-1_5 config.json), for a Show-o folder without a local Phi config.
PHI_15 = dict(hidden_size=2048, num_layers=24, num_heads=32, intermediate_size=8192, max_position_embeddings=2048,
              partial_rotary_factor=0.5, rope_theta=10000.0, layer_norm_eps=1e-5)
PHI_KEYS = {"hidden_size": "hidden_size", "num_hidden_layers": "num_layers", "num_attention_heads": "num_heads",
            "intermediate_size": "intermediate_size", "max_position_embeddings": "max_position_embeddings",
            "partial_rotary_factor": "partial_rotary_factor", "rope_theta": "rope_theta", "layer_norm_eps": "layer_norm_eps"}


def _json_file(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not a readable JSON file ({e})") from None


def official_showo_config(folder: str | Path, llm_dir: str | Path | None, max_caption_tokens: int, sot_id: int,
                          eot_id: int) -> ShowoConfig:
    """The config of an official Show-o folder: vocabulary and image sizes from its `config.json`
    (`llm_vocab_size`, `codebook_size`, `num_vq_tokens`), the backbone from the `config.json` of a
    local phi-1_5 folder `llm_dir` (Show-o's own names a hub id, which is never fetched; without one,
    Phi-1.5's published sizes), the caption length and <|sot|> / <|eot|> from the world."""
    folder = Path(folder)
    conf_path = folder / "config.json"
    if not conf_path.is_file():
        raise CheckpointError(f"{conf_path}: not found (expected an official Show-o folder: config.json + pytorch_model.safetensors)")
    conf = _json_file(conf_path)
    backbone = dict(PHI_15)
    if llm_dir:
        phi_path = Path(llm_dir) / "config.json"
        if not phi_path.is_file():
            raise CheckpointError(f"{phi_path}: not found (the phi-1_5 folder's config.json gives the backbone sizes)")
        phi = _json_file(phi_path)
        backbone.update({ours: phi[theirs] for theirs, ours in PHI_KEYS.items() if theirs in phi})
        act = phi.get("hidden_act", "gelu_new")
        backbone["hidden_act"] = "gelu_pytorch_tanh" if act == "gelu_new" else act  # the same function, fused
    return ShowoConfig(text_size=int(conf.get("llm_vocab_size", 50295)), codebook_size=int(conf.get("codebook_size", 8192)),
                       num_image_tokens=int(conf.get("num_vq_tokens", 256)), max_caption_tokens=max_caption_tokens,
                       sot_id=sot_id, eot_id=eot_id, **backbone)


def load_official_showo(folder: str | Path, cfg: ShowoConfig | None = None) -> ShowoModel:
    """An official Show-o checkpoint folder: `config.json` + `pytorch_model.safetensors`, names `showo.*`."""
    folder = Path(folder)
    weights = folder / "pytorch_model.safetensors"
    if cfg is None:
        conf = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
        n_img = int(conf.get("num_vq_tokens", 256))
        cfg = preset_config("showo-512" if n_img == 1024 else "showo-256")
    state, _ = read_safetensors(weights, CheckpointError, " (expected an official Show-o checkpoint folder)")
    state = {k: v for k, v in state.items() if k.startswith("showo.")}  # e.g. skip a vision projector
    model = ShowoModel(cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{weights}: not Show-o's parameters (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval()

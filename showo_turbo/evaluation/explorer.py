"""Trajectory explorer: watch the teacher and the student denoise.

T2I: the image before each MaskGIT step (still-masked patches in grey), the step at which each token
was committed and the probability of the chosen token at that step; teacher and student side by
side, each with its own step count, and the world scorer's verdict of each final image. Jacobi: a text
block across iterations as a token grid, tokens that changed in that pass coloured, fast-forwarded
(») and stationary (•) tokens marked, teacher vs student iteration counts.

Traces come from the `trajectories` store (`stored_t2i_trace`, `stored_jacobi_traces`) or from live
sampling (`sampled_t2i_trace`, `sampled_jacobi_traces`). `T2IExplorer` / `JacobiExplorer` are
ipywidgets with plotly FigureWidgets; `export_html` writes both as one self-contained page whose
plotly sliders need no kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from .harness import encode_captions
from ..pipeline.io import atomic_path
from ..model.showo import ShowoModel, autocast
from ..model.sampling import jacobi_generate, t2i_generate
from ..worlds import EvalPrompt
from ..training.trajectories import decode_states

MASK_RGB = (96, 96, 96)  # not a palette colour, so a still-masked patch is unmistakable


# --------------------------------------------------------------------------------------------
# T2I traces.


@dataclass(frozen=True)
class T2ITrace:
    """One MaskGIT trajectory, ready to show."""

    label: str
    caption: str
    frames: np.ndarray       # [T+1, H, W, 3] uint8: the image before each step, then the final one
    commit: np.ndarray       # [gh, gw] step at which each token was committed
    confidence: np.ndarray   # [gh, gw] probability of the final token at its commit step (0 if outside the stored top-k)
    verdict: bool | None     # the world's scorer on the final image (None: no prompt to check against)

    @property
    def steps(self) -> int:
        return len(self.frames) - 1


def chosen_confidence(codes: torch.Tensor, commit: torch.Tensor, top_probs: torch.Tensor, top_index: torch.Tensor) -> torch.Tensor:
    """[N] probability the sampler gave each final token at the step it was committed, from the
    step-wise top-k distributions `[T, N, k]`."""
    n = torch.arange(len(codes))
    probs, index = top_probs[commit.long(), n].float(), top_index[commit.long(), n].long()  # [N, k]
    return (probs * (index == codes.long().view(-1, 1))).sum(-1)


def t2i_trace(world, label: str, caption: str, codes: torch.Tensor, commit: torch.Tensor, top_probs: torch.Tensor,
              top_index: torch.Tensor, prompt: EvalPrompt | None = None, start: torch.Tensor | None = None) -> T2ITrace:
    """`start`: a noise-input student's initial state, shown as the frame before the first step."""
    steps = top_probs.shape[0]
    gh, gw = world.vq.grid_shape
    frames = decode_states(world, codes, commit, steps, mask_rgb=MASK_RGB, start=start)
    conf = chosen_confidence(codes, commit, top_probs, top_index).view(gh, gw).numpy()
    scorer = world.scorer()
    verdict = scorer.check(frames[-1], prompt) if prompt is not None and scorer is not None else None
    return T2ITrace(label, caption, frames, commit.view(gh, gw).numpy().astype(int), conf, verdict)


def prompt_lookup(world) -> dict[str, EvalPrompt]:
    """Every caption of the world (train and held out) -> its prompt, for the scorer's verdicts."""
    return world.prompts_by_text()


def stored_caption(world, store: dict[str, torch.Tensor], row: int) -> str:
    return world.text.decode(store["caption"][row, :int(store["caption_len"][row])].tolist())


def stored_t2i_trace(world, store: dict[str, torch.Tensor], row: int, label: str = "teacher",
                     prompts: dict[str, EvalPrompt] | None = None) -> T2ITrace:
    """Row `row` of a loaded T2I trajectory store (`trajectories.load_store(..., "t2i")`)."""
    caption = stored_caption(world, store, row)
    prompts = prompt_lookup(world) if prompts is None else prompts
    return t2i_trace(world, label, caption, store["codes"][row], store["commit_step"][row], store["probs"][row],
                     store["index"][row], prompts.get(caption))


@torch.no_grad()
def sampled_t2i_trace(model: ShowoModel, world, caption: str, steps: int, label: str, cfg_scale: float = 0.0,
                      sample: str = "multinomial", temperature: float = 4.5, top_k: int | None = None, seed: int = 0,
                      precision: str = "fp32", prompt: EvalPrompt | None = None, init_mask_ratio: float | None = None) -> T2ITrace:
    """A live MaskGIT trajectory of `model` for one caption (from a noisy start with `init_mask_ratio`,
    which is then its first frame)."""
    caps, lens = encode_captions(world, [caption])
    with autocast(precision, model.device):
        r = t2i_generate(model, caps, lens, steps=steps, cfg_scale=cfg_scale, sample=sample, temperature=temperature,
                         top_k=top_k, generator=torch.Generator().manual_seed(seed), return_trajectory=True,
                         trajectory_top_k=world.vq.codebook_size, init_mask_ratio=init_mask_ratio)
    tr = r.trajectory
    start = tr.states[0, 0] if init_mask_ratio is not None else None
    # min_remask=1 may re-mask at the last step; such positions keep their last sample, committed then.
    return t2i_trace(world, label, caption, r.codes[0], tr.commit_step[0], tr.top_probs[:, 0], tr.top_indices[:, 0], prompt,
                     start)


def masked_after(grid: np.ndarray, commit: np.ndarray, step: int) -> np.ndarray:
    """`grid` as floats with the tokens not yet committed before `step` blanked (NaN)."""
    return np.where(commit < step, grid, np.nan).astype(float)


def t2i_panels(trace: T2ITrace, step: int) -> list[dict]:
    """The three panels' data at `step` (0 = before the first step, T = final image)."""
    return [{"z": trace.frames[step]},
            {"z": masked_after(trace.commit, trace.commit, step)},
            {"z": masked_after(trace.confidence, trace.commit, step)}]


def t2i_title(trace: T2ITrace, step: int) -> str:
    verdict = "" if trace.verdict is None else (" · scorer: pass" if trace.verdict else " · scorer: fail")
    return f"{trace.label}: step {step}/{trace.steps}{verdict}<br><sub>{trace.caption}</sub>"


def t2i_figure(trace: T2ITrace, step: int | None = None) -> go.Figure:
    """Image at `step` | commit step per token | confidence of the chosen token (committed tokens only)."""
    step = trace.steps if step is None else step
    fig = make_subplots(1, 3, subplot_titles=("image (grey = masked)", "committed at step", "p(chosen token)"),
                        horizontal_spacing=0.08)
    img, com, conf = t2i_panels(trace, step)
    fig.add_trace(go.Image(z=img["z"], name="image"), 1, 1)
    fig.add_trace(go.Heatmap(z=com["z"], zmin=0, zmax=max(trace.steps - 1, 1), colorscale="Viridis", name="commit",
                             colorbar=dict(x=0.63, len=0.8, thickness=10)), 1, 2)
    fig.add_trace(go.Heatmap(z=conf["z"], zmin=0, zmax=1, colorscale="Magma", name="confidence",
                             colorbar=dict(x=1.0, len=0.8, thickness=10)), 1, 3)
    for c in (2, 3):
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{c}", row=1, col=c)
    fig.update_layout(title=dict(text=t2i_title(trace, step), y=0.97, yanchor="top"), height=350, width=900,
                      margin=dict(t=120, b=20, l=20, r=20))
    return fig


# --------------------------------------------------------------------------------------------
# Jacobi traces.


@dataclass(frozen=True)
class JacobiTrace:
    """One block's Jacobi states: the initial guess, then one state per pass, the last the fixed point."""

    label: str
    question: str
    block: int
    states: np.ndarray      # [S, n] token ids
    names: list[list[str]]  # [S][n] readable tokens

    @property
    def passes(self) -> int:
        return len(self.states) - 1

    @classmethod
    def of(cls, world, label: str, question: str, block: int, states: np.ndarray) -> "JacobiTrace":
        return cls(label, question, block, states, [world.token_names(x) for x in states])


def jacobi_marks(states: np.ndarray) -> dict[str, np.ndarray]:
    """Per state and position (bool [S, n]): `changed` (differs from the previous state), `fixed`
    (already the fixed point's token), `fast_forwarded` (joined the correct prefix in this pass
    behind the first token that did) and `stationary` (took its final value in this state while a
    token before it was still wrong). Summed over a block they equal `sampling._block_stats`'
    fast-forwarded and stationary counts."""
    final = states[-1]
    fixed = states == final
    prefix = np.cumprod(fixed, axis=1).sum(1)  # correct prefix length per state
    S, n = states.shape
    changed = np.zeros_like(fixed)
    changed[1:] = states[1:] != states[:-1]
    j = np.arange(n)[None, :]
    prev = np.concatenate([[0], prefix[:-1]])[:, None]
    fast = (j > prev) & (j < prefix[:, None])
    fast[0] = False
    last_change = np.where(np.vstack([np.ones((1, n), bool), changed[1:]]), np.arange(S)[:, None], 0).max(0)
    stationary = (np.arange(S)[:, None] == last_change[None, :]) & (j >= prefix[:, None])
    return {"changed": changed, "fixed": fixed, "fast_forwarded": fast, "stationary": stationary}


def _block_states(traj: torch.Tensor, row: int) -> np.ndarray:
    """A row's states of one block from a `[S, B, n]` trajectory: up to its own fixed point."""
    t = traj[:, row]
    same = (t == t[-1]).all(-1)
    return t[:int(same.long().argmax()) + 1].numpy()


def mmu_question(world, prompt: torch.Tensor, num_image_tokens: int) -> str:
    """The question text of an MMU prompt `[mmu][soi] image [eoi][sot] question` (pads skipped)."""
    ids = [int(i) for i in prompt.tolist() if int(i) != world.layout.pad_id]
    return world.text.decode(ids[num_image_tokens + 4:])


def stored_jacobi_traces(world, store: dict[str, torch.Tensor], row: int, num_image_tokens: int,
                         label: str = "teacher") -> list[JacobiTrace]:
    """Every block the question at `row` of a loaded MMU store needed."""
    q = mmu_question(world, store["prompt"][row], num_image_tokens)
    out = []
    for b, s in enumerate(store["n_states"][row].tolist()):
        if s:
            out.append(JacobiTrace.of(world, label, q, b, store["states"][row, b, :s].long().numpy()))
    return out


@torch.no_grad()
def sampled_jacobi_traces(model: ShowoModel, world, prompt: torch.Tensor, label: str, max_new_tokens: int,
                          block_size: int, precision: str = "fp32") -> list[JacobiTrace]:
    """Live greedy Jacobi decoding of one MMU prompt `[L]`, one trace per block."""
    with autocast(precision, model.device):
        r = jacobi_generate(model, prompt.view(1, -1), max_new_tokens=max_new_tokens, block_size=block_size,
                            return_trajectories=True)
    q = mmu_question(world, prompt, model.config.num_image_tokens)
    out = []
    for b, traj in enumerate(r.trajectories):
        if r.stats["iterations"][b][0]:
            out.append(JacobiTrace.of(world, label, q, b, _block_states(traj, 0)))
    return out


def jacobi_cells(trace: JacobiTrace, upto: int) -> dict:
    """Heat-map data of the states 0..`upto`: colour 0 = unchanged, 1 = changed in that pass,
    2 = unchanged and already final; text = token, with » (fast-forwarded) or • (stationary)."""
    m = jacobi_marks(trace.states)
    z = np.where(m["changed"], 1.0, np.where(m["fixed"], 2.0, 0.0))
    text = [[name + ("»" if m["fast_forwarded"][s, j] else "•" if m["stationary"][s, j] else "")
             for j, name in enumerate(row)] for s, row in enumerate(trace.names)]
    rows = len(trace.states)
    z = np.where(np.arange(rows)[:, None] <= upto, z, np.nan)
    text = [t if s <= upto else [""] * len(t) for s, t in enumerate(text)]
    return {"z": z, "text": text}


JACOBI_COLOURS = [[0.0, "#d9d9d9"], [0.33, "#d9d9d9"], [0.34, "#f28e2b"], [0.66, "#f28e2b"], [0.67, "#59a14f"],
                  [1.0, "#59a14f"]]  # unchanged (grey) · changed (orange) · final (green)


def jacobi_title(trace: JacobiTrace, upto: int) -> str:
    return (f"{trace.label}: block {trace.block}, pass {upto}/{trace.passes} ({trace.passes} passes to the fixed point)"
            f"<br><sub>{trace.question}</sub>")


def jacobi_figure(trace: JacobiTrace, upto: int | None = None) -> go.Figure:
    upto = trace.passes if upto is None else upto
    cells = jacobi_cells(trace, upto)
    fig = go.Figure(go.Heatmap(z=cells["z"], text=cells["text"], texttemplate="%{text}", zmin=0, zmax=2,
                               colorscale=JACOBI_COLOURS, showscale=False, xgap=2, ygap=2,
                               hovertemplate="state %{y}, position %{x}: %{text}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title="state (0 = guess)", dtick=1)
    fig.update_xaxes(title="position in block", dtick=1)
    fig.update_layout(title=jacobi_title(trace, upto), height=120 + 32 * len(trace.states),
                      width=max(600, 70 * trace.states.shape[1]), margin=dict(t=80, b=40, l=60, r=20))
    return fig


# --------------------------------------------------------------------------------------------
# Interactive explorers (ipywidgets + FigureWidget).


class _TraceRows:
    """A slider and a FigureWidget per trace; moving a slider updates that figure in place."""

    def __init__(self, make_figure, panels, title, last):
        self.make_figure, self.panels, self.title, self.last = make_figure, panels, title, last
        self.traces, self.sliders, self.figures = [], [], []

    def build(self, traces: Sequence) -> list:
        import ipywidgets as W
        self.traces = list(traces)
        self.sliders = [W.IntSlider(value=self.last(t), min=0, max=self.last(t), description="step",
                                    continuous_update=False) for t in self.traces]
        self.figures = [go.FigureWidget(self.make_figure(t)) for t in self.traces]
        for i, s in enumerate(self.sliders):
            s.observe(lambda change, i=i: self.show(i, change["new"]), names="value")
        return [W.VBox([s, f]) for s, f in zip(self.sliders, self.figures)]

    def show(self, i: int, step: int) -> None:
        fig, trace = self.figures[i], self.traces[i]
        with fig.batch_update():
            for data, values in zip(fig.data, self.panels(trace, step)):
                data.update(values)
            fig.layout.title.text = self.title(trace, step)


class _Explorer:
    """Shared by the explorers: `widget` (what a notebook shows), and the per-trace `sliders` and
    `figures` (what a test drives)."""

    rows: _TraceRows
    widget: object

    @property
    def sliders(self):
        return self.rows.sliders

    @property
    def figures(self):
        return self.rows.figures

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)


class T2IExplorer(_Explorer):
    """Pick a prompt; each trace (teacher, student, ...) gets its own step slider and panels."""

    def __init__(self, traces_for: Callable[[str], Sequence[T2ITrace]], captions: Sequence[str]):
        import ipywidgets as W
        self.traces_for = traces_for
        self.prompt = W.Dropdown(options=list(captions), description="prompt", layout=W.Layout(width="600px"))
        self.rows = _TraceRows(t2i_figure, t2i_panels, t2i_title, lambda t: t.steps)
        self.box = W.HBox()
        self.widget = W.VBox([self.prompt, self.box])
        self.prompt.observe(lambda change: self.load(change["new"]), names="value")
        self.load(self.prompt.value)

    def load(self, caption: str) -> None:
        self.box.children = self.rows.build(self.traces_for(caption))


class JacobiExplorer(_Explorer):
    """Pick a question and a block; each trace (teacher, student) gets a pass slider and a token grid."""

    def __init__(self, traces_for: Callable[[int], dict[str, list[JacobiTrace]]], questions: Sequence[str]):
        import ipywidgets as W
        self.traces_for = traces_for
        self.question = W.Dropdown(options=[(q, i) for i, q in enumerate(questions)], description="question",
                                   layout=W.Layout(width="600px"))
        self.block = W.Dropdown(options=[0], description="block")
        self.rows = _TraceRows(jacobi_figure, lambda t, s: [jacobi_cells(t, s)], jacobi_title, lambda t: t.passes)
        self.box = W.VBox()
        self.widget = W.VBox([W.HBox([self.question, self.block]), self.box])
        self.by_label: dict[str, list[JacobiTrace]] = {}
        self.question.observe(lambda change: self.load(change["new"]), names="value")
        self.block.observe(lambda change: self.show_block(change["new"]), names="value")
        self.load(self.question.value)

    def load(self, index: int) -> None:
        self.by_label = self.traces_for(index)
        blocks = sorted({t.block for ts in self.by_label.values() for t in ts})
        self.block.options = blocks
        self.show_block(blocks[0])

    def show_block(self, block: int | None) -> None:
        if block is None:
            return
        self.box.children = self.rows.build([t for ts in self.by_label.values() for t in ts if t.block == block])


# --------------------------------------------------------------------------------------------
# Static export: one self-contained page, a plotly slider per figure.


def with_slider(fig: go.Figure, frames: Sequence[list[dict]], titles: Sequence[str], label: str) -> go.Figure:
    """Add a slider whose position k restyles the figure's traces with `frames[k]` (one dict per trace)."""
    idx = list(range(len(frames[0])))
    steps = []
    for k, (panels, title) in enumerate(zip(frames, titles)):
        keys = sorted({key for p in panels for key in p})
        restyle = {key: [p[key] for p in panels] for key in keys}
        steps.append({"method": "update", "label": str(k), "args": [restyle, {"title.text": title}, idx]})
    fig.update_layout(sliders=[{"active": len(frames) - 1, "currentvalue": {"prefix": f"{label} "}, "steps": steps,
                                "pad": {"t": 30}}])
    fig.update_layout(height=fig.layout.height + 80)
    return fig


def t2i_export_figure(trace: T2ITrace) -> go.Figure:
    frames = [t2i_panels(trace, k) for k in range(trace.steps + 1)]
    return with_slider(t2i_figure(trace), frames, [t2i_title(trace, k) for k in range(trace.steps + 1)], "step")


def jacobi_export_figure(trace: JacobiTrace) -> go.Figure:
    frames = [[jacobi_cells(trace, k)] for k in range(trace.passes + 1)]
    return with_slider(jacobi_figure(trace), frames, [jacobi_title(trace, k) for k in range(trace.passes + 1)], "pass")


def export_html(t2i_traces: Sequence[T2ITrace], jacobi_traces: Sequence[JacobiTrace], path: str | Path,
                title: str = "Show-o Turbo trajectory explorer") -> Path:
    """Write both explorers as one HTML page (plotly.js inlined once; no kernel, no network)."""
    import html
    import plotly.io as pio
    figs = [("T2I: teacher vs student, step by step", [t2i_export_figure(t) for t in t2i_traces]),
            ("Jacobi: a text block across passes (grey unchanged · orange changed · green final; » fast-forwarded · "
             "• stationary)", [jacobi_export_figure(t) for t in jacobi_traces])]
    parts, first = [], True
    for heading, group in figs:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        for fig in group:
            parts.append(pio.to_html(fig, full_html=False, include_plotlyjs="inline" if first else False,
                                     config={"responsive": False}))
            first = False
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
            f"<body style='font-family:sans-serif'><h1>{html.escape(title)}</h1>{''.join(parts)}</body></html>")
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# Sources for the pipeline's explorer: the teacher from the trajectory store, the student live.


def store_t2i_source(world, store: dict[str, torch.Tensor], student: ShowoModel, student_steps: int, rows: int,
                     arms: Sequence = (), **sampler) -> tuple[list[str], Callable[[str], list[T2ITrace]]]:
    """The first `rows` stored teacher trajectories; for each caption, the teacher's stored trace and
    a live student trace with `student_steps` steps (no CFG; `sampler` as for `sampled_t2i_trace`),
    and one of each of `arms` (benchmark.student_arms: their own sampler settings and start)."""
    prompts = prompt_lookup(world)
    captions = [stored_caption(world, store, r) for r in range(rows)]
    row_of = {c: r for r, c in enumerate(captions)}

    def traces_for(caption: str) -> list[T2ITrace]:
        teacher = stored_t2i_trace(world, store, row_of[caption], f"teacher ({store['probs'].shape[1]} steps, CFG)", prompts)
        live = sampled_t2i_trace(student, world, caption, student_steps, f"student ({student_steps} steps, no CFG)",
                                 prompt=prompts.get(caption), **sampler)
        own = [sampled_t2i_trace(a.model, world, caption, student_steps,
                                 f"{a.name.removeprefix('turbo_')} student ({student_steps} steps, no CFG)",
                                 prompt=prompts.get(caption), **{**sampler, "temperature": a.temperature,
                                                                 "top_k": a.top_k.get(student_steps), **a.start})
               for a in arms]
        return [teacher, live, *own]
    return captions, traces_for


def store_jacobi_source(world, store: dict[str, torch.Tensor], student: ShowoModel, rows: int, max_new_tokens: int,
                        block_size: int, precision: str = "fp32") -> tuple[list[str], Callable[[int], dict[str, list[JacobiTrace]]]]:
    """The first `rows` stored questions: the teacher's stored Jacobi blocks and the student's, live."""
    n_img = student.config.num_image_tokens
    questions = [mmu_question(world, store["prompt"][r], n_img) for r in range(rows)]

    def traces_for(row: int) -> dict[str, list[JacobiTrace]]:
        return {"teacher": stored_jacobi_traces(world, store, row, n_img),
                "student": sampled_jacobi_traces(student, world, store["prompt"][row].long(), "student", max_new_tokens,
                                                 block_size, precision)}
    return questions, traces_for

"""The gradio app around :class:`~diffsim.app.engine.Engine`: Pair, Rank and 2AFC tabs; errors shown in the page."""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Callable
from typing import Any

from .._optional import require
from ..errors import DiffSimError
from .engine import Engine

logger = logging.getLogger(__name__)

INTRO = (
    "Upload images to compare them with **{name}** ({polarity}). Layer and step apply to every tab; "
    "changing them re-runs only the U-Net from cached latents (the VAE encodes each image once)."
)


def _gradio() -> Any:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a local tool: no usage reports
    return require("gradio", "demo", "diffsim demo")


def _error(exc: Exception) -> str:
    if isinstance(exc, DiffSimError):
        return f"**Error:** {html.escape(str(exc))}"
    logger.exception("demo: unexpected error")
    return f"**Unexpected error:** {html.escape(type(exc).__name__)}: {html.escape(str(exc))}"


def _guarded(engine: Engine, fn: Callable[..., tuple], n_out: int) -> Callable[..., tuple]:
    """Run ``fn`` under the engine's lock; any error becomes a message in the last output (the status)."""

    def run(*args: Any) -> tuple:
        try:
            with engine.lock:
                return fn(*args)
        except Exception as exc:  # noqa: BLE001 - every failure is reported in the page
            return (None,) * (n_out - 1) + (_error(exc),)

    return run


def _polarity(engine: Engine) -> str:
    return "higher = more similar" if engine.metric.higher_is_better else "lower = more similar"


def build_demo(engine: Engine, title: str = "diffsim") -> Any:
    """The Blocks app. API names (for ``gradio_client``): ``/pair``, ``/rank``, ``/twoafc``."""
    gr = _gradio()
    name = engine.metric.config.get("metric", "diffsim-s")

    def pair(a: str | None, b: str | None, layer: str, step: float) -> tuple:
        if a is None and b is None:
            return None, None, None, "Upload image A and image B."
        r = engine.pair(a, b, layer, int(step))
        h, w = r.map_a.shape
        status = (
            f"Layer **{r.layer}** ({h}×{w} tokens), step **{r.step}**: score **{r.score:.6f}** "
            f"({_polarity(engine)}). Map colours: {r.vmin:.4f} (blue) to {r.vmax:.4f} (red), "
            "the per-token cosine of each image's tokens aligned to the other image."
        )
        return round(r.score, 6), r.overlay_a, r.overlay_b, status

    def rank(ref: str | None, cands: list[str] | None, layer: str, step: float) -> tuple:
        ranked, skipped = engine.rank(ref, cands, layer, int(step))
        gallery = [(r.source, f"#{r.rank} · {r.score:.4f} · {os.path.basename(r.name)}") for r in ranked]
        lines = ["| rank | score | image |", "|---:|---:|---|"]
        lines += [f"| {r.rank} | {r.score:.6f} | {html.escape(os.path.basename(r.name))} |" for r in ranked]
        if skipped:
            lines += ["", "**Skipped:** " + "; ".join(html.escape(s) for s in skipped)]
        return gallery, "\n".join(lines)

    def twoafc(ref: str | None, a: str | None, b: str | None, layer: str, step: float) -> tuple:
        c = engine.twoafc(ref, a, b, layer, int(step))
        if c.closer == "tie":
            verdict = f"**Tie**: both candidates score {c.score_a:.6f}."
        else:
            verdict = (
                f"**Candidate {c.closer}** is closer to the reference, by {c.margin:.6f} "
                f"(A {c.score_a:.6f}, B {c.score_b:.6f}; {_polarity(engine)})."
            )
        return round(c.score_a, 6), round(c.score_b, 6), verdict

    with gr.Blocks(title=title) as demo:
        gr.Markdown(f"# {title}\n" + INTRO.format(name=name, polarity=_polarity(engine)))
        with gr.Row():
            layer = gr.Dropdown(engine.layers, value=engine.default_layer, label="Layer", elem_id="layer")
            step = gr.Slider(
                0,
                engine.max_step,
                value=engine.default_step,
                step=1,
                label="Step (the paper's index K; larger = noisier)",
                elem_id="step",
            )
        with gr.Tab("Pair"):
            with gr.Row():
                pa = gr.File(label="Image A", file_types=["image"], type="filepath", elem_id="pair-a")
                pb = gr.File(label="Image B", file_types=["image"], type="filepath", elem_id="pair-b")
            run_pair = gr.Button("Compare", variant="primary", elem_id="pair-run")
            score = gr.Number(label="Score", precision=6, interactive=False, elem_id="pair-score")
            pair_status = gr.Markdown(elem_id="pair-status")
            with gr.Row():
                oa = gr.Image(
                    label="A, coloured by its tokens' agreement with B", type="pil", format="png", interactive=False
                )
                ob = gr.Image(
                    label="B, coloured by its tokens' agreement with A", type="pil", format="png", interactive=False
                )
            outs = [score, oa, ob, pair_status]
            fn = _guarded(engine, pair, len(outs))
            run_pair.click(fn, [pa, pb, layer, step], outs, api_name="pair")
            layer.change(fn, [pa, pb, layer, step], outs, api_visibility="private")
            step.release(fn, [pa, pb, layer, step], outs, api_visibility="private")
        with gr.Tab("Rank"):
            with gr.Row():
                rr = gr.File(label="Reference", file_types=["image"], type="filepath", elem_id="rank-ref")
                rc = gr.File(
                    label="Candidates",
                    file_count="multiple",
                    file_types=["image"],
                    type="filepath",
                    elem_id="rank-cands",
                )
            run_rank = gr.Button("Rank", variant="primary", elem_id="rank-run")
            grid = gr.Gallery(label="Most to least similar", columns=4, elem_id="rank-grid")
            rank_status = gr.Markdown(elem_id="rank-status")
            run_rank.click(_guarded(engine, rank, 2), [rr, rc, layer, step], [grid, rank_status], api_name="rank")
        with gr.Tab("2AFC"):
            with gr.Row():
                tr = gr.File(label="Reference", file_types=["image"], type="filepath", elem_id="afc-ref")
                ta = gr.File(label="Candidate A", file_types=["image"], type="filepath", elem_id="afc-a")
                tb = gr.File(label="Candidate B", file_types=["image"], type="filepath", elem_id="afc-b")
            run_afc = gr.Button("Which is closer?", variant="primary", elem_id="afc-run")
            with gr.Row():
                sa = gr.Number(label="Score A", precision=6, interactive=False, elem_id="afc-score-a")
                sb = gr.Number(label="Score B", precision=6, interactive=False, elem_id="afc-score-b")
            verdict = gr.Markdown(elem_id="afc-verdict")
            run_afc.click(_guarded(engine, twoafc, 3), [tr, ta, tb, layer, step], [sa, sb, verdict], api_name="twoafc")
    return demo


def launch(
    engine: Engine, host: str = "127.0.0.1", port: int | None = 7860, block: bool = True, quiet: bool = False
) -> Any:
    """Serve the app on ``host:port``; ``block=False`` returns the running Blocks (call ``.close()``)."""
    demo = build_demo(engine)
    demo.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=not block,
        quiet=quiet,
        ssr_mode=False,
        inbrowser=False,
        share=False,
    )
    return demo

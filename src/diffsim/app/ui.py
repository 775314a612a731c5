"""The gradio app around :class:`~diffsim.app.engine.Engine`: Pair, Rank and 2AFC tabs.

Inputs are image widgets with previews (drag and drop, paste, or click an example); each tab offers the
example images as clickable rows. The pair map is the ``diffsim map`` figure (both images, one colour bar,
the score); rankings are a grid with the scores as captions. Errors are one line, in the page and as a toast.
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from .._optional import require
from ..errors import DiffSimError
from .engine import Engine, PairResult
from .examples import ExampleSets, example_sets, find_images, repository_examples

logger = logging.getLogger(__name__)

INTRO = (
    "Compare images with **{name}** ({polarity}). Drop, paste or click an example image; layer and step apply "
    "to every tab, and changing them re-runs only the U-Net from cached latents (the VAE encodes each image once)."
)
LOADING = "Loading the model weights (first use; this can take a minute)"


def _gradio() -> Any:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a local tool: no usage reports
    return require("gradio", "demo", "diffsim demo")


def _polarity(engine: Engine) -> str:
    return "higher = more similar" if engine.metric.higher_is_better else "lower = more similar"


def _message(exc: Exception) -> str:
    """One line for the page: the DiffSimError's own text, or the type and text of an unexpected error."""
    if isinstance(exc, DiffSimError):
        return str(exc)
    logger.exception("demo: unexpected error")
    return f"unexpected error: {type(exc).__name__}: {exc}"


def _paths(items: Sequence[Any] | None) -> list[Any]:
    """File paths of a gallery input's ``(path, caption)`` items (plain paths pass through)."""
    return [it[0] if isinstance(it, (tuple, list)) else it for it in items or []]


def _report(progress: Any, engine: Engine, what: str) -> None:
    """Tell the progress bar whether the model is still to load (lazily loaded local folders)."""
    if progress is None:
        return
    loaded = bool(getattr(engine.metric.backbone, "weights_loaded", True))
    progress(0.05 if loaded else 0.0, desc=what if loaded else LOADING)


def pair_figure(engine: Engine, result: PairResult, a: Any, b: Any) -> Any:
    """The ``diffsim map`` figure of a pair result, as a PIL image: both maps, one colour bar, the score."""
    from ..viz.figure import to_pil
    from ..viz.maps import PairMaps, overlay_figure

    name = str(engine.metric.config.get("metric", "diffsim-s"))
    maps = PairMaps(
        result.map_a, result.map_b, result.score, result.layer, name, bool(engine.metric.higher_is_better), result.step
    )
    crop = str(engine.metric.config.get("crop", "none"))
    names = (os.path.basename(str(a)), os.path.basename(str(b)))
    return to_pil(overlay_figure(a, b, maps, crop, result.vmin, result.vmax, names=names))


class Handlers:
    """What each tab's button does, without gradio: ``(inputs..., progress) -> outputs``; errors propagate."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def pair(self, a: str | None, b: str | None, layer: str, step: float, progress: Any = None) -> tuple:
        if a is None and b is None:
            return None, None, "Upload image A and image B, or click an example below."
        _report(progress, self.engine, "Embedding the two images")
        r = self.engine.pair(a, b, layer, int(step))
        if progress is not None:
            progress(0.8, desc="Drawing the maps")
        h, w = r.map_a.shape
        status = (
            f"Layer **{r.layer}** ({h}×{w} tokens), step **{r.step}**: score **{r.score:.6f}** "
            f"({_polarity(self.engine)}). The colour bar gives the per-token cosine of each image's tokens "
            f"aligned to the other image ({r.vmin:.4f} to {r.vmax:.4f})."
        )
        return round(r.score, 6), pair_figure(self.engine, r, a, b), status

    def rank(self, ref: str | None, cands: Sequence[Any] | None, layer: str, step: float, progress: Any = None):
        _report(progress, self.engine, "Embedding the reference and the candidates")
        ranked, skipped = self.engine.rank(ref, _paths(cands), layer, int(step))
        grid = [(r.source, f"#{r.rank} · {r.score:.4f} · {os.path.basename(r.name)}") for r in ranked]
        lines = ["| rank | score | image |", "|---:|---:|---|"]
        lines += [f"| {r.rank} | {r.score:.6f} | {html.escape(os.path.basename(r.name))} |" for r in ranked]
        if skipped:
            lines += ["", "**Skipped:** " + "; ".join(html.escape(s) for s in skipped)]
        return grid, "\n".join(lines)

    def twoafc(self, ref: str | None, a: str | None, b: str | None, layer: str, step: float, progress: Any = None):
        _report(progress, self.engine, "Embedding the reference and both candidates")
        c = self.engine.twoafc(ref, a, b, layer, int(step))
        if c.closer == "tie":
            verdict = f"**Tie**: both candidates score {c.score_a:.6f}."
        else:
            verdict = (
                f"**Candidate {c.closer}** is closer to the reference, by {c.margin:.6f} "
                f"(A {c.score_a:.6f}, B {c.score_b:.6f}; {_polarity(self.engine)})."
            )
        return round(c.score_a, 6), round(c.score_b, 6), verdict


def _guarded(gr: Any, engine: Engine, fn: Callable[..., tuple], n_out: int) -> Callable[..., tuple]:
    """Run ``fn`` under the engine's lock; an error becomes one line in the status output and a toast."""

    def run(*args: Any) -> tuple:
        try:
            with engine.lock:
                return fn(*args)
        except Exception as exc:  # noqa: BLE001 - every failure is reported in the page
            line = _message(exc)
            gr.Warning(line)
            prefix = "Error" if isinstance(exc, DiffSimError) else "Unexpected error"
            return (None,) * (n_out - 1) + (f"**{prefix}:** {html.escape(line.removeprefix('unexpected error: '))}",)

    return run


def image_input(gr: Any, label: str, elem_id: str) -> Any:
    """An image widget with a preview (upload, drag and drop, paste) that hands the app the file's path.

    The file is passed on as uploaded (no re-encoding: 16-bit and float images keep their values); a file
    that is not an image stops with one line naming it instead of a traceback. (The check wraps this
    widget's own ``preprocess``: a subclass of ``gr.Image`` would make gradio write a ``.pyi`` stub here.)
    """
    widget = gr.Image(
        label=label,
        type="filepath",
        image_mode=None,
        sources=["upload", "clipboard"],
        height=240,
        elem_id=elem_id,
    )
    read = widget.preprocess

    def preprocess(payload: Any) -> Any:
        try:
            return read(payload)
        except gr.Error:
            raise
        except Exception as exc:  # noqa: BLE001 - any unreadable upload
            path = getattr(payload, "orig_name", None) or getattr(payload, "path", None) or "the upload"
            raise gr.Error(
                f"{label}: cannot read {os.path.basename(str(path))}: not an image file ({type(exc).__name__})",
                print_exception=False,
            ) from None

    widget.preprocess = preprocess
    return widget


def build_demo(
    engine: Engine, title: str = "diffsim", examples: Sequence[str | os.PathLike] | str | os.PathLike | None = "repo"
) -> Any:
    """The Blocks app. API names (for ``gradio_client``): ``/pair``, ``/rank``, ``/twoafc``.

    ``examples``: a folder of example images, or a list of image files, offered as clickable rows in every
    tab; ``"repo"`` (default) is the repository's ``examples/`` when diffsim runs from a checkout, ``None``
    shows none.
    """
    gr = _gradio()
    name = engine.metric.config.get("metric", "diffsim-s")
    sets: ExampleSets = example_sets(_example_files(examples))
    h = Handlers(engine)
    bar = gr.Progress()  # gradio finds the Progress default and shows a bar over the outputs

    def pair(a: str | None, b: str | None, layer: str, step: float, progress: Any = bar) -> tuple:
        return h.pair(a, b, layer, step, progress)

    def rank(ref: str | None, cands: Any, layer: str, step: float, progress: Any = bar) -> tuple:
        return h.rank(ref, cands, layer, step, progress)

    def twoafc(ref: str | None, a: str | None, b: str | None, layer: str, step: float, progress: Any = bar):
        return h.twoafc(ref, a, b, layer, step, progress)

    def guarded(fn: Callable[..., tuple], n_out: int) -> Callable[..., tuple]:
        run = _guarded(gr, engine, fn, n_out)
        run.__wrapped__ = fn  # type: ignore[attr-defined]  # gradio reads the signature (gr.Progress) through it
        return run

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
                pa = image_input(gr, "Image A", "pair-a")
                pb = image_input(gr, "Image B", "pair-b")
            if sets.pairs:
                gr.Examples(sets.pairs, [pa, pb], label="Examples (click to load)", elem_id="pair-examples")
            run_pair = gr.Button("Compare", variant="primary", elem_id="pair-run")
            score = gr.Number(label="Score", precision=6, interactive=False, elem_id="pair-score")
            pair_status = gr.Markdown(elem_id="pair-status")
            gr.Markdown(
                "**Where the images agree**: each image's tokens coloured by how well the other image explains them"
            )
            figure = gr.Image(
                label="Similarity maps",
                show_label=False,
                type="pil",
                format="png",
                interactive=False,
                height=560,
                elem_id="pair-map",
            )
            outs = [score, figure, pair_status]
            fn = guarded(pair, len(outs))
            run_pair.click(fn, [pa, pb, layer, step], outs, api_name="pair")
            layer.change(fn, [pa, pb, layer, step], outs, api_visibility="private")
            step.release(fn, [pa, pb, layer, step], outs, api_visibility="private")
        with gr.Tab("Rank"):
            with gr.Row():
                rr = image_input(gr, "Reference", "rank-ref")
                rc = gr.Gallery(
                    label="Candidates (drop several images)",
                    type="filepath",
                    file_types=["image"],
                    interactive=True,
                    columns=4,
                    height=240,
                    elem_id="rank-cands",
                )
            if sets.rankings:
                gr.Examples(sets.rankings, [rr, rc], label="Examples (click to load)", elem_id="rank-examples")
            run_rank = gr.Button("Rank", variant="primary", elem_id="rank-run")
            grid = gr.Gallery(label="Most to least similar", columns=4, elem_id="rank-grid")
            rank_status = gr.Markdown(elem_id="rank-status")
            run_rank.click(guarded(rank, 2), [rr, rc, layer, step], [grid, rank_status], api_name="rank")
        with gr.Tab("2AFC"):
            with gr.Row():
                tr = image_input(gr, "Reference", "afc-ref")
                ta = image_input(gr, "Candidate A", "afc-a")
                tb = image_input(gr, "Candidate B", "afc-b")
            if sets.twoafc:
                gr.Examples(sets.twoafc, [tr, ta, tb], label="Examples (click to load)", elem_id="afc-examples")
            run_afc = gr.Button("Which is closer?", variant="primary", elem_id="afc-run")
            with gr.Row():
                sa = gr.Number(label="Score A", precision=6, interactive=False, elem_id="afc-score-a")
                sb = gr.Number(label="Score B", precision=6, interactive=False, elem_id="afc-score-b")
            verdict = gr.Markdown(elem_id="afc-verdict")
            run_afc.click(guarded(twoafc, 3), [tr, ta, tb, layer, step], [sa, sb, verdict], api_name="twoafc")
    return demo


def launch(
    engine: Engine,
    host: str = "127.0.0.1",
    port: int | None = 7860,
    block: bool = True,
    quiet: bool = False,
    title: str = "diffsim",
    examples: Sequence[str | os.PathLike] | str | os.PathLike | None = "repo",
) -> Any:
    """Serve the app on ``host:port``; ``block=False`` returns the running Blocks (call ``.close()``)."""
    demo = build_demo(engine, title, examples)
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


def _example_files(examples: Sequence[str | os.PathLike] | str | os.PathLike | None) -> list[str]:
    if isinstance(examples, str) and examples == "repo":
        return find_images(repository_examples())
    if examples is None or isinstance(examples, (str, os.PathLike)):
        return find_images(examples)
    return [str(p) for p in examples]

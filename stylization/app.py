"""The web page: ``python -m stylization.app checkpoints=DIR [host=127.0.0.1] [port=7860]``.

A photo (uploaded or from the webcam), speech (uploaded or recorded), an emotion typed in words
(with an intensity) and an art picture or a named art style become the stylised talking-head
video, its contact sheet and its coefficients, to watch and download. The page is a Gradio
front end to :class:`stylization.pipeline.Pipeline`, the code infer.py runs: the page adds
controls, progress, a queue and file handling, no inference of its own, and it shows the one-line
reasons infer.py gives for bad inputs.

- One job runs at a time (Gradio's queue, ``queue_size`` waiting); the models load at start.
- The emotion shown by a style clip (StyleTalk, or SAAS with ``motion=saas``) and head motion
  from the speech (SAAS, ``pose=audio``) are offered when their checkpoints exist, named art
  styles when ``exstyle_codes`` does.
- The page listens on ``host`` (127.0.0.1: this machine only; configs/app.yaml says what another
  address exposes). Uploads are limited to ``max_upload_mb`` each and to image, audio and video
  files.
- Jobs write into ``workdir`` (a temporary folder unless given). A job that fails leaves nothing;
  only the last ``keep_jobs`` jobs' files are kept, and everything the page wrote (Gradio's upload
  cache included) is removed when it stops.
"""

from __future__ import annotations

import itertools
import logging
import mimetypes
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from stylization.errors import ConfigError, UserError

log = logging.getLogger("stylization.app")

REPO = Path(__file__).resolve().parents[1]
DEMO_CHECKPOINTS = "outputs/demo/checkpoints"  # what `make demo` trains (scripts/demo.py)
# What each upload may be, by the file's MIME type (from its name): speech may also be a video with sound.
ACCEPTED = {"photo": ("image",), "art picture": ("image",), "speech": ("audio", "video"),
            "style clip": ("video",), "pose video": ("video",)}
POSE_FROM_AUDIO = "audio"


def find_checkpoints(given: str | None) -> str:
    """The checkpoint folder: ``given``, else ``checkpoints/`` when it holds a Style-E or Style-A
    run, else the demo's (``outputs/demo/checkpoints``); ConfigError when none exists."""
    if given is not None:
        if not os.path.isdir(given):
            raise ConfigError(f"checkpoints={given} is not a folder (one laid out like checkpoints/, see "
                              "checkpoints/README.md)")
        return given
    for candidate in (REPO / "checkpoints", REPO / DEMO_CHECKPOINTS):
        if (candidate / "style_e").exists() or (candidate / "style_a").exists():
            return str(candidate)
    raise ConfigError("no checkpoints: give checkpoints=DIR (laid out like checkpoints/), or run `make demo`, "
                      f"which trains small models into {DEMO_CHECKPOINTS}")


def check_upload(path: str | None, what: str) -> str | None:
    """``path`` when its name says it is a file of the kinds ``ACCEPTED[what]`` lists (None passes);
    UserError naming the upload otherwise."""
    if path is None:
        return None
    kind = (mimetypes.guess_type(path)[0] or "unknown/unknown").split("/")[0]
    if kind not in ACCEPTED[what]:
        kinds = " or ".join(ACCEPTED[what])
        raise ConfigError(f"the {what} ({os.path.basename(path)}) must be {'an' if kinds[0] in 'aeiou' else 'a'} "
                          f"{kinds} file")
    return path


def readable_message(exc: UserError, labels: dict[str, str]) -> str:
    """The error's one line with the uploads' temporary paths replaced by what they are (``photo
    (me.png)``): the same reason infer.py prints, in the page's words."""
    text = str(exc)
    for path, label in sorted(labels.items(), key=lambda item: -len(item[0])):
        text = text.replace(path, label)
    return text


@dataclass
class Features:
    """What the checkpoints offer beyond photo + text + art (controls shown only when present)."""

    style_clip: bool  # the emotion from a style clip (cfg.motion: styletalk or saas)
    pose_from_audio: bool  # SAAS's head motion from the speech
    art: bool  # an art picture / art style (Style-A); PIRenderer renders photo-real
    art_styles: list[str]  # names of exstyle_codes entries
    degree: float | None  # Style-A's default d_s


class Jobs:
    """The job folders under ``root``: one per request, the oldest removed beyond ``keep``."""

    def __init__(self, root: Path, keep: int):
        self.root, self.keep = root, max(1, int(keep))
        self.root.mkdir(parents=True, exist_ok=True)
        self.folders: list[Path] = []
        self.counter = itertools.count()

    def new(self) -> Path:
        while len(self.folders) >= self.keep:
            shutil.rmtree(self.folders.pop(0), ignore_errors=True)
        folder = self.root / f"{time.strftime('%Y%m%d-%H%M%S')}-{next(self.counter):04d}"
        folder.mkdir()
        self.folders.append(folder)
        return folder

    def drop(self, folder: Path) -> None:
        """A failed job's folder: removed, so nothing half-made stays."""
        shutil.rmtree(folder, ignore_errors=True)
        if folder in self.folders:
            self.folders.remove(folder)


class App:
    """The pipeline behind the page, and the job function the page's button calls."""

    def __init__(self, cfg: DictConfig, workdir: Path):
        from stylization.engine.distributed import resolve_device
        from stylization.pipeline import Pipeline

        if cfg.mode != "generate":
            raise ConfigError("the page generates from a photo and speech: mode=edit is for infer.py")
        cfg.sheet_out = None  # every job writes its own <out>_sheet.png
        self.cfg = cfg
        self.pipeline = Pipeline(cfg, resolve_device(str(cfg.device)))
        self.pipeline.load_models()
        renderer = self.pipeline.renderer
        art = cfg.renderer == "style_a"
        self.features = Features(
            style_clip=os.path.exists(str(cfg[cfg.motion])),
            pose_from_audio=os.path.exists(str(cfg.saas_pose)),
            art=art, art_styles=self.pipeline.art_style_names() if art else [],
            degree=float(renderer.degree) if art else None)
        self.jobs = Jobs(workdir / "jobs", int(cfg.keep_jobs))

    def generate(self, photo: str | None, speech: str | None, text: str | None, emotion_scale: float,
                 art: str | None = None, art_style: str | None = None, art_degree: float | None = None,
                 style_clip: str | None = None, pose: str | None = None, pose_from_audio: bool = False,
                 seed: int = 0, on_step=None) -> dict:
        """One job -> {"video", "sheet", "coeffs": paths, "timings": dict}. Bad inputs raise
        :class:`UserError` with infer.py's reason (paths as the uploads' names)."""
        from stylization.pipeline import Job

        labels = {}
        for path, what in ((photo, "photo"), (speech, "speech"), (art, "art picture"), (style_clip, "style clip"),
                           (pose, "pose video")):
            if path is not None:
                check_upload(path, what)
                labels[str(path)] = f"{what} ({os.path.basename(path)})"
        if photo is None:
            raise ConfigError("give a photo (upload one or take one with the webcam)")
        if speech is None:
            raise ConfigError("give the speech (upload a recording or record one)")
        text = text if text and text.strip() else None
        if style_clip is not None and text is not None:
            raise ConfigError("give the emotion as a text or as a style clip, not both (clear one of them)")
        folder = self.jobs.new()
        job = Job(audio=str(speech), out=str(folder / "stylized.mp4"), image=str(photo), text=text,
                  art=art if self.features.art else None, art_style=art_style or None,
                  pose=POSE_FROM_AUDIO if pose_from_audio else pose, style_clip=style_clip,
                  emotion_scale=float(emotion_scale), seed=int(seed or 0),
                  art_degree=None if art_degree is None or not self.features.art else float(art_degree),
                  on_step=on_step)
        try:
            written = self.pipeline.run(job)
        except UserError as exc:
            self.jobs.drop(folder)
            raise UserError(readable_message(exc, labels)) from None
        except BaseException:
            self.jobs.drop(folder)
            raise
        by_suffix = {Path(p).suffix: p for p in written}
        return {"video": job.out, "sheet": by_suffix.get(".png"), "coeffs": by_suffix.get(".npy"),
                "timings": job.timings}


def build_page(app: App, examples: list[str]):
    """The Gradio page (gr.Blocks) calling ``app.generate``."""
    import gradio as gr

    features = app.features

    def picture(**options) -> gr.Image:
        """gr.Image that hands over a file Pillow cannot open as it is, so the pipeline rejects it
        in infer.py's words rather than Gradio's. (The instance's ``preprocess`` is wrapped: a
        subclass of a Gradio component makes Gradio write a .pyi stub beside this file.)"""
        image = gr.Image(type="filepath", image_mode=None, **options)
        preprocess = image.preprocess

        def tolerant(payload):
            try:
                return preprocess(payload)
            except (OSError, ValueError):
                return None if payload is None or payload.path is None else str(payload.path)

        image.preprocess = tolerant
        return image

    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],  # no web fonts: works offline
                              font_mono=["ui-monospace", "monospace"])
    with gr.Blocks(title="Stylized talking heads", delete_cache=(900, 3600)) as page:
        gr.Markdown("## Stylized talking heads\nA photo, speech, an emotion and an art style become a talking "
                    "video (Style²Talker: Style-E moves the face, Style-A paints it).")
        inputs = {}
        with gr.Row():
            with gr.Column():
                with gr.Row():
                    inputs["photo"] = picture(label="Photo (a face)", sources=["upload", "webcam"], height=260,
                                              elem_id="photo")
                    if features.art:
                        inputs["art"] = picture(label="Art picture (a face in the style)", sources=["upload"],
                                                height=260, elem_id="art")
                inputs["speech"] = gr.Audio(label="Speech", type="filepath", sources=["upload", "microphone"],
                                            elem_id="speech")
                inputs["text"] = gr.Textbox(label="Emotion, in words", lines=2, elem_id="emotion",
                                            placeholder="e.g. A woman speaks with a broad smile.")
                gr.Examples([[e] for e in examples], inputs=[inputs["text"]], label="Example emotions")
                with gr.Row():
                    inputs["emotion_scale"] = gr.Slider(0.0, 3.0, value=float(app.cfg.emotion_scale), step=0.1,
                                                        label="Emotion intensity (0: ignore the text, >1: more)",
                                                        elem_id="emotion_scale")
                    if features.art:
                        inputs["art_degree"] = gr.Slider(0.0, 1.0, value=features.degree, step=0.05,
                                                         label="Art degree (0: the photo's look, 1: the art's)",
                                                         elem_id="art_degree")
                button = gr.Button("Generate", variant="primary", elem_id="generate")
                with gr.Accordion("More: a named art style, the emotion from a clip, head motion, seed", open=False):
                    if features.art and features.art_styles:
                        inputs["art_style"] = gr.Dropdown(features.art_styles, value=None, elem_id="art_style",
                                                          label="A named art style (instead of the art picture)")
                    if features.style_clip:
                        inputs["style_clip"] = gr.Video(label=f"The emotion shown by a style clip ({app.cfg.motion}; "
                                                              "instead of the text)", sources=["upload"], height=200,
                                                        elem_id="style_clip")
                    inputs["pose"] = gr.Video(label="Head motion from a video", sources=["upload"], height=200,
                                              elem_id="pose")
                    if features.pose_from_audio:
                        inputs["pose_from_audio"] = gr.Checkbox(label="Head motion from the speech (SAAS)",
                                                                elem_id="pose_from_audio")
                    inputs["seed"] = gr.Number(value=int(app.cfg.seed), precision=0, label="Seed", elem_id="seed")
            with gr.Column():
                video = gr.Video(label="Video", elem_id="video", interactive=False, height=420)
                sheet = gr.Image(label="Contact sheet (photo, art, frames)", type="filepath", elem_id="sheet",
                                 interactive=False, height=300)
                coeffs = gr.File(label="Coefficients (.npy, [frames, 260])", elem_id="coeffs", interactive=False)
                status = gr.Markdown(elem_id="status")

        names = list(inputs)
        steps = ["inputs", "face", "source coefficients", "motion", "render"]

        def run(values: dict, progress=gr.Progress(track_tqdm=True)):
            given = {name: values[inputs[name]] for name in names}
            counter = itertools.count()
            on_step = lambda step: progress(min(next(counter), len(steps) - 1) / len(steps), desc=step)  # noqa: E731
            try:
                result = app.generate(**given, on_step=on_step)
            except UserError as exc:
                raise gr.Error(str(exc), print_exception=False) from None
            timings = ", ".join(f"{k} {v:.1f} s" for k, v in result["timings"].items())
            return result["video"], result["sheet"], result["coeffs"], f"Done. Timings: {timings}"

        button.click(run, inputs=set(inputs.values()), outputs=[video, sheet, coeffs, status], concurrency_limit=1)
    return page, theme


def stop_on_signal(signum, frame) -> None:
    raise KeyboardInterrupt


def serve(cfg: DictConfig) -> None:
    """Load the models, serve the page until interrupted, then remove what the page wrote."""
    cfg.checkpoints = find_checkpoints(None if cfg.checkpoints is None else str(cfg.checkpoints))
    made_workdir = cfg.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="stylization-app-") if made_workdir else str(cfg.workdir))
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(workdir / "gradio")  # uploads and served copies, removed with the rest
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home (this may run offline)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own requests to the page, one line each
    signal.signal(signal.SIGTERM, stop_on_signal)  # `kill` stops the page as Ctrl-C does: cleaned up
    try:
        app = App(cfg, workdir)
        page, theme = build_page(app, list(cfg.examples))
        if str(cfg.host) not in ("127.0.0.1", "localhost", "::1"):
            log.warning("listening on %s: anyone who reaches port %s can upload files and run jobs here "
                        "(there is no login)", cfg.host, cfg.port)
        log.info("checkpoints: %s; jobs write to %s", cfg.checkpoints, workdir)
        page.queue(max_size=int(cfg.queue_size), default_concurrency_limit=1)
        page.launch(server_name=str(cfg.host), server_port=int(cfg.port), max_file_size=f"{int(cfg.max_upload_mb)}mb",
                    show_error=True, ssr_mode=False, theme=theme, footer_links=[], allowed_paths=[str(workdir)])
    except KeyboardInterrupt:
        log.info("stopped")
    finally:
        shutil.rmtree(workdir / "gradio", ignore_errors=True)
        shutil.rmtree(workdir / "jobs", ignore_errors=True)
        if made_workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    import hydra

    @hydra.main(version_base="1.3", config_path="../configs", config_name="app")
    def entry(cfg: DictConfig) -> None:
        from stylization.cli import run_cli

        run_cli(lambda: serve(cfg))

    entry()


if __name__ == "__main__":
    main()

"""Inference, in one place: (photo, speech, emotion text, art picture) -> stylised talking-head video.

:meth:`Pipeline.run` is a sequence of named, timed steps (long ones with tqdm):

1. **inputs** (:meth:`Pipeline.read_inputs`) — every file is read and checked before any model
   runs: the photo (readable image), the speech (any format, rate or channel count; not empty or
   silent), the text (1 to 300 characters), the art picture or ``art_style`` entry, the pose
   source, the output folder.
2. **face** (:meth:`Pipeline.find_face`) — 68 landmarks of the largest face (dlib by default);
   the content crop (:func:`~stylization.data.alignment.face_crop`, the corpus framing).
3. **source coefficients** — Deep3DFaceRecon on the crop when its files exist (``deep3d``), or a
   fit of the face model to the landmarks (``fit``); both in :mod:`stylization.preprocess`.
4. **Style-E**, **StyleTalk** or **SAAS** (:meth:`Pipeline.motion`) — the expression sequence from the
   speech, the text and the source expression (Style-E), or from the speech and a style clip's
   expressions (``style_clip=`` a video, ``.npy`` or ``.mat``; ``emotion_source``; ``motion=styletalk``:
   the speech's phonemes, ``motion=saas``: its mel windows and the source expression); then the pose
   track (:func:`~stylization.preprocess.pose.pose_track`):
   the source's pose held still, a gentle procedural motion, or a pose source (video or
   coefficient file, looped back and forth when shorter than the speech).
5. **Style-A** (:meth:`Pipeline.render`) — the inputs from the one input builder shared with
   training (:class:`~stylization.data.render_inputs.RenderInputs`), identity and art codes once,
   then every 73×27 window rendered in batches.
   With ``renderer=pirender`` PIRenderer renders instead (photo-real, no art picture): the content
   crop at its size, driven by the same windows (:meth:`Pipeline.render_pirender`).
6. **outputs** (:meth:`Pipeline.write`) — H.264 mp4 with the speech, ``.npy`` coefficients and a
   contact sheet, all written only when everything before succeeded (temporary files + rename).

Steps 5 and 6 run as one stream (:class:`FrameStream`): each batch of frames is resized, converted
to ``fps`` and encoded as soon as it is drawn, and only the contact sheet's frames are kept, so
memory does not grow with the length of the speech. Their time is therefore one entry of
``Job.timings``, ``"Style-A + outputs"`` (``"PIRenderer + outputs"``): rendering, encoding, the
``.npy`` and the sheet.

Without a photo (``image=null``) only steps 1 and 4 run (the source from ``source_coeffs``, no
pose options) and the video previews the face model's landmarks: the motion model alone.
Models come from training runs through :mod:`stylization.runs`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
import torch
from omegaconf import OmegaConf

from stylization.constants import COEFF_DIM, COEFF_SLICES, FACE_CROP_SIZE, FPS
from stylization.data.audio import check_speech, load_audio, mel_windows, melspectrogram, n_video_frames
from stylization.data.coeffs import semantic_windows
from stylization.data.draw import landmark_canvas
from stylization.data.face_model import FaceModel
from stylization.data.video import VideoWriter
from stylization.errors import ConfigError, DataError, UserError
from stylization.numerics import PRECISIONS
from stylization.preprocess.pose import apply_pose, check_pose_motion, load_coeff_file, pose_track, read_pose_source

log = logging.getLogger("stylization.infer")
MAX_TEXT = 300
COEFF_BACKENDS = ("auto", "deep3d", "fit")
RENDERERS = ("style_a", "pirender")
CLIP_MOTIONS = ("styletalk", "saas")  # the models that take the emotion from a style clip
MODES = ("generate", "edit")  # a face speaking new speech | a talking video restyled (SAAS's video-driven editing)
POSE_FROM_AUDIO = "audio"  # pose=audio: SAAS's head poses generated from the speech


# -- inputs ------------------------------------------------------------------------------------

def check_text(text: str | None) -> str | None:
    """The emotion text stripped, or None; ConfigError unless it has 1 to MAX_TEXT characters."""
    if text is None:
        return None
    text = str(text).strip()
    if not 0 < len(text) <= MAX_TEXT:
        raise ConfigError(f"text must be a description of 1 to {MAX_TEXT} characters (got {len(text)})")
    return text


def read_text_file(path: str) -> str:
    """The emotion description in a UTF-8 text file (``text_file=``), checked by :func:`check_text`."""
    if not os.path.isfile(path):
        raise DataError("text file not found", path)
    try:
        with open(path, encoding="utf-8") as f:
            return check_text(f.read())
    except UnicodeDecodeError:
        raise DataError("not a UTF-8 text file", path) from None


def read_image(path: str, what: str = "image") -> np.ndarray:
    """RGB uint8 [H, W, 3]; DataError naming the file when missing or not a picture."""
    if not os.path.isfile(path):
        raise DataError(f"{what} not found", path)
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise DataError(f"not a readable {what} (expected a picture: png, jpg, ...)", path)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def check_degree(value, name: str) -> float:
    """A style degree in [0, 1]; ConfigError naming the option otherwise."""
    try:
        degree = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= degree <= 1.0:
        raise ConfigError(f"{name} must be in [0, 1] (0: the photo's look, 1: the art style's), got {degree:g}")
    return degree


def check_output(path: str) -> str:
    """The output's folder exists (made if needed) and is writable."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the output folder ({exc.strerror})", directory) from None
    if not os.access(directory, os.W_OK):
        raise DataError("output folder is not writable", directory)
    return path


def check_style_clip(path: str) -> str:
    """A style clip must exist: a coefficient ``.npy``, a 3DMM ``.mat`` or a video (DataError otherwise)."""
    if not os.path.isfile(path):
        raise DataError("style clip not found", path)
    return path


def load_source_coeffs(path: str | None) -> np.ndarray:
    """The source face's coefficients [260]: the first row of a .npy file, or zeros (mean face)."""
    if path is None:
        return np.zeros(COEFF_DIM, np.float32)
    return load_coeff_file(path)[0]


# -- motion --------------------------------------------------------------------------------------

class MotionModel:
    """Speech -> expression, from a training run of stage ``style_e`` (text-controlled) or
    ``audio2exp`` (audio only), rebuilt from the run alone (:func:`stylization.runs.load_run`)."""

    def __init__(self, checkpoint: str, device: torch.device, use_ema: bool = True, precision: str = "auto"):
        from stylization.runs import STYLE_E_HINT, audio2exp_from_run, load_run, style_e_from_run

        run = load_run(checkpoint, use_ema=use_ema, hint=f"{STYLE_E_HINT} (or stage=audio2exp)")
        self.path, self.stage = run.path, run.stage
        if "denoiser" in run.module_names:
            self.style_e, self.audio2exp = style_e_from_run(run, precision=precision).to(device), None
        else:
            self.style_e, self.audio2exp = None, audio2exp_from_run(run).to(device)
        self.device = device

    @torch.no_grad()
    def expression(self, mel: torch.Tensor, source_exp: torch.Tensor, text: str | None, guidance: float,
                   seed: int) -> torch.Tensor:
        """Mel windows [T, 1, 80, 16], source exp [64] -> expression [T, 64] (eyes open)."""
        mel, source_exp = mel.to(self.device), source_exp.to(self.device)
        if self.style_e is not None:
            return self.style_e.generate(mel, source_exp, text, guidance, seed).cpu()
        out = [self.audio2exp(mel[None, s:s + 256], source_exp[None], torch.zeros(1, len(mel[s:s + 256]),
                                                                                  device=self.device))[0].float()
               for s in range(0, len(mel), 256)]
        return torch.cat(out).cpu()


def coefficients_from_audio(model: MotionModel, wav: np.ndarray, source: np.ndarray, text: str | None = None,
                            guidance: float = 1.0, seed: int = 0) -> np.ndarray:
    """16 kHz speech -> coefficients [T, 260] at 25 fps: the source's row with the generated expression."""
    n_frames = n_video_frames(wav.size)
    mel = torch.from_numpy(mel_windows(melspectrogram(wav), n_frames))
    coeffs = np.tile(source, (n_frames, 1))
    coeffs[:, COEFF_SLICES["exp"]] = model.expression(mel, torch.from_numpy(source[COEFF_SLICES["exp"]]), text,
                                                      guidance, seed).numpy()
    return coeffs


# -- outputs -------------------------------------------------------------------------------------

def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """[T, 3, H, W] in [-1, 1] -> uint8 [T, H, W, 3]."""
    return ((frames.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def sheet_frame_indices(n_frames: int, columns: int = 4, rows: int = 2) -> np.ndarray:
    """The frames a contact sheet shows: min(columns · rows, n_frames) evenly spaced indices into a
    video of ``n_frames`` frames, first and last included."""
    return np.linspace(0, n_frames - 1, min(columns * rows, n_frames)).round().astype(int)


def contact_sheet(inputs: list[np.ndarray], frames: np.ndarray, columns: int = 4, rows: int = 2) -> np.ndarray:
    """One row of inputs (photo crop, art picture), then ``rows`` × ``columns`` evenly spaced frames.

    ``frames`` [T, S, S, 3] is the video, or only its frames at :func:`sheet_frame_indices` (T) in
    order (what a stream keeps): picking from those picks them all, so the sheet is the same.
    """
    size = frames.shape[1]
    pick = sheet_frame_indices(len(frames), columns, rows)
    tiles = [frames[i] for i in pick] + [np.full_like(frames[0], 255)] * (columns * rows - len(pick))
    grid = np.concatenate([np.concatenate(tiles[r * columns:(r + 1) * columns], 1) for r in range(rows)], 0)
    top = [cv2.resize(x, (size, size), interpolation=cv2.INTER_AREA) for x in inputs]
    top += [np.full((size, size, 3), 255, np.uint8)] * (columns - len(top))
    return np.concatenate([np.concatenate(top[:columns], 1), grid], 0)


def landmark_batches(face_model: FaceModel, coeffs: np.ndarray, size: int, batch_frames: int = 25
                     ) -> Iterator[np.ndarray]:
    """Coefficients [T, 260] -> RGB frames of the projected landmarks, ``batch_frames`` at a time
    ([n, size, size, 3] uint8); the landmarks of all T frames are projected at once ([T, 68, 2])."""
    lm = face_model.landmarks_from_coeffs(torch.from_numpy(coeffs).float(), size).numpy()
    for start in range(0, len(lm), batch_frames):
        yield np.stack([landmark_canvas([p], [(30, 30, 30)], size) for p in lm[start:start + batch_frames]])


def resample_index(n_frames: int, fps: float) -> np.ndarray:
    """For each output frame at ``fps``, the 25 fps frame it shows (nearest time, same duration):
    [T'] indices into ``n_frames`` frames, T' = max(1, round(n_frames · fps / 25)), non-decreasing."""
    if fps == FPS:
        return np.arange(n_frames)
    n = max(1, int(round(n_frames * fps / FPS)))
    return np.minimum((np.arange(n) * FPS / fps).round().astype(int), n_frames - 1)


def resample_frames(frames: np.ndarray, fps: float) -> np.ndarray:
    """25 fps frames [T, ...] -> ``fps`` by nearest time (same duration)."""
    return frames if fps == FPS else frames[resample_index(len(frames), fps)]


def resample_batches(batches: Iterable[np.ndarray], n_frames: int, fps: float) -> Iterator[np.ndarray]:
    """:func:`resample_frames` on a stream: 25 fps batches [n, ...] (``n_frames`` frames in all) ->
    the ``fps`` frames each batch holds (:func:`resample_index`, computed once), batch by batch."""
    if fps == FPS:
        yield from batches
        return
    index = resample_index(n_frames, fps)
    start = 0
    for batch in batches:
        lo, hi = np.searchsorted(index, (start, start + len(batch)))
        if hi > lo:
            yield batch[index[lo:hi] - start]
        start += len(batch)


def resize_frames(frames: np.ndarray, size: int | None, interpolation: int | None = None) -> np.ndarray:
    """RGB uint8 [n, H, H, 3] -> [n, size, size, 3] (None or H: unchanged). ``interpolation`` None:
    area averaging to shrink, bicubic to enlarge."""
    if size is None or int(size) == frames.shape[1]:
        return frames
    s = int(size)
    if interpolation is None:
        interpolation = cv2.INTER_AREA if s < frames.shape[1] else cv2.INTER_CUBIC
    return np.stack([cv2.resize(f, (s, s), interpolation=interpolation) for f in frames])


@dataclass
class FrameStream:
    """A video as it is rendered: ``n_frames`` RGB uint8 frames [S, S, 3] at the output frame rate,
    arriving as batches [n, S, S, 3] from ``batches`` (an iterator, read once: nothing is drawn
    until it is read). ``n_frames`` is known in advance (from the coefficients), so the contact
    sheet's frames can be chosen before any is drawn."""

    batches: Iterator[np.ndarray]
    n_frames: int

    def read(self, keep: np.ndarray | None = None, kept: list | None = None) -> Iterator[np.ndarray]:
        """The batches, copying the frames at the sorted indices ``keep`` (into the whole video) into
        ``kept`` in order as they pass; RuntimeError if the stream does not hold ``n_frames`` frames."""
        start = 0
        for batch in self.batches:
            if keep is not None:
                kept.extend(batch[i - start].copy() for i in keep[(keep >= start) & (keep < start + len(batch))])
            start += len(batch)
            yield batch
        if start != self.n_frames:
            raise RuntimeError(f"the renderer gave {start} frames, {self.n_frames} expected")


def write_outputs(out: str, frames: Iterable[np.ndarray] | np.ndarray | None, wav: np.ndarray, fps: float,
                  coeffs: np.ndarray | None, sheet: np.ndarray | Callable[[], np.ndarray] | None,
                  sheet_out: str | None = None) -> list[str]:
    """The video (``out``), ``<out>.npy`` and the sheet (``sheet_out``, default ``<out>_sheet.png``);
    on any failure none of them remains.

    Args:
        frames: RGB uint8 batches [n, S, S, 3], encoded as they arrive (a renderer's stream; one
            array [T, S, S, 3] is one batch), or None for no video.
        wav: the speech [N] at 16 kHz, cropped or padded to the video's T / ``fps`` seconds.
        coeffs: [T, 260] saved as float32, or None.
        sheet: the contact sheet RGB uint8 [H, W, 3]; or a function returning it, called once the
            video is written (a sheet of streamed frames); or None.
    """
    stem = os.path.splitext(out)[0]
    written: list[str] = []
    try:
        if frames is not None:
            with VideoWriter(out, fps=fps, audio=wav) as writer:
                for batch in [frames] if isinstance(frames, np.ndarray) else frames:
                    writer.write(batch)
            written.append(out)
        if coeffs is not None:
            path = stem + ".npy"
            np.save(path + ".tmp.npy", coeffs.astype(np.float32))
            os.replace(path + ".tmp.npy", path)
            written.append(path)
        if sheet is not None:
            path = sheet_out or stem + "_sheet.png"
            image = sheet() if callable(sheet) else sheet
            if not cv2.imwrite(path + ".tmp.png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
                raise DataError("could not write the contact sheet", path)
            os.replace(path + ".tmp.png", path)
            written.append(path)
    except BaseException:
        for path in written:
            if os.path.exists(path):
                os.remove(path)
        raise
    return written


# -- the pipeline --------------------------------------------------------------------------------

@dataclass
class Job:
    """One tuple to render (``image`` None: coefficients and a landmark preview only)."""

    audio: str | None  # the speech (None only with mode=edit: the video's sound)
    out: str
    image: str | None = None
    text: str | None = None
    art: str | None = None
    art_style: str | None = None
    pose: str | None = None
    style_clip: str | None = None
    video: str | None = None  # mode=edit: the talking video to restyle (audio: its sound, or a given speech)
    style_frames: str | None = None  # a character's reference frames (folder or video): its talking style
    emotion_scale: float = 1.0
    seed: int = 0
    art_degree: float | None = None  # Style-A's style degree d_s in [0, 1] for this job (None: cfg.art_degree)
    on_step: Callable[[str], None] | None = None  # called with each step's name (the timings' keys) as it starts
    timings: dict = field(default_factory=dict)


@dataclass
class Inputs:
    """What step 1 read: speech [N] float32 at 16 kHz, photo and art picture RGB uint8 [H, W, 3]."""

    wav: np.ndarray
    image: np.ndarray | None = None
    art: np.ndarray | None = None


@dataclass
class SourceFace:
    """The photo's largest face: its landmarks [68, 2] (photo pixels), the content crop
    [FACE_CROP_SIZE, FACE_CROP_SIZE, 3] and the landmarks in the crop's pixels."""

    landmarks: np.ndarray
    crop: np.ndarray
    crop_landmarks: np.ndarray


class Pipeline:
    """Models loaded once, jobs run one after another. ``cfg`` is configs/infer.yaml."""

    def __init__(self, cfg, device: torch.device):
        from stylization.data.face_model import build_face_model

        check_pose_motion(str(cfg.pose_motion))
        if cfg.motion not in CLIP_MOTIONS:
            raise ConfigError(f"motion must be {' or '.join(CLIP_MOTIONS)} (the style-clip model), got {cfg.motion!r}")
        if cfg.renderer not in RENDERERS:
            raise ConfigError(f"renderer must be {' or '.join(RENDERERS)}, got {cfg.renderer!r}")
        if cfg.coeffs_backend not in COEFF_BACKENDS:
            raise ConfigError(f"coeffs_backend must be {', '.join(COEFF_BACKENDS)}, got {cfg.coeffs_backend!r}")
        self.cfg, self.device = cfg, device
        self.face_model = build_face_model(str(cfg.data.face_model))
        self.emotion_source(None, None)  # a bad emotion_source fails before any model loads
        if cfg.mode not in MODES:
            raise ConfigError(f"mode must be {' or '.join(MODES)}, got {cfg.mode!r}")
        self.motion_model = self.clip_model = self.recognizer = self.edit_model = self.pose_model = None
        self.renderer = self.render_inputs = self.detector = self.coeff_backend = self.exstyle = None
        self.identity_seconds = 0.0  # the last Style-A identity encoding (pSp codes, parsing), seconds
        self.default_degree: float | None = None  # Style-A's d_s for jobs that set none (cfg.art_degree, or the run's)
        self.precision = str(OmegaConf.select(cfg, "precision", default="auto"))
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        # style_frames= jobs: (references, transferred motion) per (style video, motion run), kept for the next job
        self.style_references: dict = {}

    # -- models loaded when a job first needs them --

    def _text_motion(self) -> MotionModel:
        if self.motion_model is None:
            self.motion_model = MotionModel(str(self.cfg.style_e), self.device, bool(self.cfg.use_ema), self.precision)
        return self.motion_model

    def _clip_motion(self):
        """The style-clip model of ``cfg.motion``: StyleTalk (``cfg.styletalk``, with the phoneme
        recogniser) or SAAS (``cfg.saas``)."""
        if self.clip_model is None:
            from stylization.runs import load_saas, load_styletalk

            if self.cfg.motion == "saas":
                self.clip_model = load_saas(str(self.cfg.saas)).to(self.device)
            else:
                from stylization.data.phonemes import PhonemeRecognizer

                self.clip_model = load_styletalk(str(self.cfg.styletalk)).to(self.device)
                self.recognizer = PhonemeRecognizer()
        return self.clip_model, self.recognizer

    def _edit_model(self):
        """SAAS's video-driven generator (``cfg.saas_edit``: a saas_edit run or the released video_driven.pth)."""
        if self.edit_model is None:
            from stylization.runs import load_saas

            self.edit_model = load_saas(str(self.cfg.saas_edit), "saas_edit").to(self.device)
        return self.edit_model

    def _detector(self):
        if self.detector is None:
            from stylization.preprocess.faces import LandmarkDetector

            self.detector = LandmarkDetector(str(self.cfg.detector), str(self.device))
            self.coeff_backend = self._coefficient_backend()
        return self.detector

    def emotion_source(self, text: str | None, style_clip: str | None) -> str:
        """``text`` or ``clip``: where a job's emotion comes from (``cfg.emotion_source``, or what the job gives)."""
        chosen = self.cfg.emotion_source
        if chosen not in (None, "text", "clip"):
            raise ConfigError(f"emotion_source must be text or clip (or null: what the job gives), got {chosen!r}")
        if text is not None and style_clip is not None:
            raise ConfigError("give the emotion as text=... or as a style clip style_clip=..., not both "
                              "(emotion_source=text|clip says which)")
        if chosen == "clip" and style_clip is None:
            raise ConfigError("emotion_source=clip needs style_clip=VIDEO_OR_COEFFS (a video, .npy or .mat)")
        if chosen == "text" and style_clip is not None:
            raise ConfigError("emotion_source=text, but style_clip= is given; drop one of them")
        return chosen or ("clip" if style_clip is not None else "text")

    # -- models needed only with a photo (loaded on the first such job) --

    def load_models(self) -> None:
        """Load now, rather than in the first job, what a photo + text job needs: Style-E and the
        renderer of ``cfg.renderer`` (a server does this before its first request, so a missing
        checkpoint stops it at start)."""
        self._text_motion()
        self._load_renderer()

    def art_style_names(self) -> list[str]:
        """The names ``art_style=`` accepts: the entries of ``cfg.exstyle_codes`` ([] without the file)."""
        if not os.path.isfile(str(self.cfg.exstyle_codes)):
            return []
        self._exstyle_code_names()
        return sorted(self.exstyle)

    def _load_renderer(self) -> None:
        if self.renderer is not None:
            return
        if self.cfg.renderer == "pirender":
            from stylization.runs import load_pirender

            self.renderer = load_pirender(str(self.cfg.pirender)).to(self.device)
            self._detector()
            return
        from stylization.data.render_inputs import RenderInputs
        from stylization.runs import STYLE_A_HINT, load_run, style_a_renderer_from_run

        cfg = self.cfg
        run = load_run(str(cfg.style_a), use_ema=bool(cfg.use_ema), hint=STYLE_A_HINT)
        r = style_a_renderer_from_run(run).to(self.device)
        if cfg.art_degree is not None:
            r.degree = check_degree(cfg.art_degree, "art_degree")
        self.default_degree = r.degree
        # The same builder the training dataset uses: the model sees at inference what it learnt on.
        self.render_inputs = RenderInputs(content_size=r.content_size, code_size=r.psp.input_size,
                                          identity_alignment=r.identity_alignment,
                                          parsing="landmarks" if r.parser is None else "none")
        r.precision = self.precision
        self.renderer = r
        self._detector()

    def _coefficient_backend(self):
        """(crop [S, S, 3], crop landmarks [68, 2]) -> source coefficients [260]."""
        cfg = self.cfg
        lm3d = os.path.join(str(cfg.bfm), "similarity_Lm3D_all.mat")
        deep3d_ready = os.path.isfile(str(cfg.deep3d)) and os.path.isfile(lm3d)
        if cfg.coeffs_backend == "deep3d" or (cfg.coeffs_backend == "auto" and deep3d_ready):
            from stylization.preprocess.deep3d import Deep3DBackend

            return Deep3DBackend(str(cfg.deep3d), str(cfg.bfm), self.device)
        from stylization.preprocess.fitting import fit_coefficients

        if cfg.coeffs_backend == "auto":
            log.info("source coefficients: fitting the face model to the landmarks (Deep3DFaceRecon files %s, %s "
                     "not found)", cfg.deep3d, lm3d)
        return lambda crop, landmarks: fit_coefficients(self.face_model, landmarks, crop.shape[0])

    @contextmanager
    def _timed(self, job: Job, name: str):
        if job.on_step is not None:
            job.on_step(name)
        start = time.perf_counter()
        yield
        job.timings[name] = time.perf_counter() - start

    # -- the steps --

    def run(self, job: Job) -> list[str]:
        """Render one job; returns the files written."""
        if self.cfg.mode == "edit":
            return self.run_edit(job)
        if job.video is not None:
            raise ConfigError("video= is the talking video mode=edit restyles; add mode=edit (or drop video=)")
        if job.style_frames is not None:
            from stylization.reference_pipeline import run_style_frames

            return run_style_frames(self, job)
        with self._timed(job, "inputs"):
            inputs = self.read_inputs(job)
        if inputs.image is None:
            return self._run_motion_only(job, inputs)
        self._load_renderer()
        with self._timed(job, "face"):
            face = self.find_face(job, inputs.image)
        with self._timed(job, "source coefficients"):
            source = self.coeff_backend(face.crop, face.crop_landmarks)
        with self._timed(job, self.motion_step(job)):
            coeffs = self.motion(job, inputs.wav, source)
            apply_pose(coeffs, self.pose(job, source, coeffs, inputs.wav))
        with self._timed(job, self.render_step()):  # steps 5 and 6: the frames are encoded as they are drawn
            written = self.write(job, inputs, face, self.render(job, inputs, face, coeffs, source), coeffs)
        self.split_render_timing(job)
        return written

    def split_render_timing(self, job: Job) -> None:
        """Style-A's share of the render step, as the entries ``"of which ..."`` after it: the identity
        (pSp codes, parsing and the generator's per-identity half) and the frames (the generator's
        per-frame half); the rest of the step is resizing, encoding and writing."""
        seconds = getattr(self.renderer, "seconds", None)
        if self.cfg.renderer != "style_a" or not seconds:
            return
        job.timings["of which Style-A identity"] = self.identity_seconds + seconds["encode"]
        job.timings["of which Style-A frames"] = seconds["frames"]

    def render_step(self) -> str:
        """The timing entry of steps 5 and 6, which run as one stream (see the module docstring)."""
        return ("Style-A" if self.cfg.renderer == "style_a" else "PIRenderer") + " + outputs"

    def run_edit(self, job: Job) -> list[str]:
        """mode=edit (SAAS's video-driven editing): a talking video + a style clip -> the same
        performance in the clip's style, rendered from the video's first frame with the video's own
        head motion and sound (or ``audio=``)."""
        from stylization.data.video import read_video
        from stylization.preprocess.pose import pose_rows, video_coefficients

        with self._timed(job, "inputs"):
            if job.video is None or job.style_clip is None:
                raise ConfigError("mode=edit restyles a talking video: give video=INPUT and style_clip=VIDEO_OR_COEFFS")
            for key, value in (("image", job.image), ("text", job.text), ("pose", job.pose)):
                if value is not None:
                    raise ConfigError(f"mode=edit takes the face, the words and the head motion from video=; drop {key}=")
            check_style_clip(job.style_clip)
            check_output(job.out)
            wav = load_audio(job.audio or job.video)
            check_speech(wav, job.audio or job.video)
            first = read_video(job.video, fps=None, max_frames=1)[0]  # the 25 fps video's first frame too
            if self.cfg.renderer == "style_a" and job.art is None and job.art_style is None:
                raise ConfigError("give an art picture (art=PATH) or an exstyle code name (art_style=NAME), "
                                  "or render photo-real with renderer=pirender")
            inputs = Inputs(wav, first, read_image(job.art, "art picture") if job.art is not None else None)
        self._load_renderer()
        with self._timed(job, "face"):
            face = self.find_face(replace(job, image=job.video), first)
        with self._timed(job, "video coefficients"):
            coeffs = video_coefficients(job.video, self._detector(), self.coeff_backend, FACE_CROP_SIZE, "video")
        with self._timed(job, "SAAS edit"):
            model = self._edit_model()
            code = model.style_code(self.style_clip_expressions(job.style_clip))
            exp = COEFF_SLICES["exp"]
            coeffs[:, exp] = model.edit(torch.from_numpy(coeffs[:, exp]), code).cpu().numpy()
            apply_pose(coeffs, pose_track(coeffs[0], len(coeffs), driving=pose_rows(coeffs)))
        with self._timed(job, self.render_step()):
            return self.write(job, inputs, face, self.render(job, inputs, face, coeffs, coeffs[0]), coeffs)

    def read_inputs(self, job: Job) -> Inputs:
        """Step 1: read and check every input file before any model runs."""
        job.text = check_text(job.text)
        self.emotion_source(job.text, job.style_clip)
        if job.style_clip is not None:
            check_style_clip(job.style_clip)
        check_output(job.out)
        if job.art_degree is not None:
            check_degree(job.art_degree, "art_degree")
        wav = load_audio(job.audio)
        check_speech(wav, job.audio)
        if job.image is None:
            if job.pose is not None or self.cfg.pose_motion != "still":
                raise ConfigError("pose= and pose_motion= move a rendered head: give a photo (image=PATH), "
                                  "or drop them (without a photo the source pose comes from source_coeffs)")
            return Inputs(wav)
        if self.cfg.source_coeffs is not None:
            raise ConfigError("source_coeffs is for runs without a photo: with image= the source coefficients "
                              "come from the photo; drop source_coeffs=")
        if job.pose is not None and job.pose != POSE_FROM_AUDIO and not os.path.isfile(job.pose):
            raise DataError(f"pose source not found (a video, a coefficient .npy, or pose={POSE_FROM_AUDIO})", job.pose)
        image = read_image(job.image, "photo")
        if self.cfg.renderer == "style_a" and job.art is None and job.art_style is None and job.style_frames is None:
            raise ConfigError("give an art picture (art=PATH) or an exstyle code name (art_style=NAME), "
                              "or render photo-real with renderer=pirender")
        art = read_image(job.art, "art picture") if job.art is not None else None
        return Inputs(wav, image, art)

    def find_face(self, job: Job, image: np.ndarray) -> SourceFace:
        """Step 2: the largest face's landmarks and the content crop (the corpus framing)."""
        from stylization.data.alignment import face_crop

        face = self.detector(image, job.image)
        if face.n_faces > 1:
            log.warning("%s: %d faces found; using the largest", job.image, face.n_faces)
        crop, crop_landmarks = face_crop(image, face.landmarks, FACE_CROP_SIZE)
        return SourceFace(face.landmarks, crop, crop_landmarks)

    def motion_step(self, job: Job) -> str:
        if job.style_clip is None:
            return "Style-E"
        return "SAAS" if self.cfg.motion == "saas" else "StyleTalk"

    def motion(self, job: Job, wav: np.ndarray, source: np.ndarray) -> np.ndarray:
        """Step 4: speech + (text or style clip) + the source row [260] -> coefficients [T, 260] (the
        source's pose): Style-E from the text; from a style clip StyleTalk (the speech's phonemes) or
        SAAS (the speech's mel windows and the source expression), as ``cfg.motion`` says."""
        if job.style_clip is None:
            return coefficients_from_audio(self._text_motion(), wav, source, job.text, job.emotion_scale, job.seed)
        model, recognizer = self._clip_motion()
        n_frames = n_video_frames(wav.size)
        code = model.style_code(self.style_clip_expressions(job.style_clip))
        coeffs = np.tile(source, (n_frames, 1))
        if recognizer is not None:  # StyleTalk
            exp = model.generate(recognizer.recognize(wav, n_frames), code)
        else:  # SAAS
            mel = torch.from_numpy(mel_windows(melspectrogram(wav), n_frames))
            exp = model.generate(mel, torch.from_numpy(source[COEFF_SLICES["exp"]]), code)
        coeffs[:, COEFF_SLICES["exp"]] = exp.cpu().numpy()
        return coeffs

    def style_clip_expressions(self, path: str) -> np.ndarray:
        """A style clip -> its expressions [S, 64]: a coefficient ``.npy``, a 3DMM ``.mat`` (StyleTalk's
        at ``cfg.style_clip_fps``), or a video (every frame through the face and coefficient steps)."""
        from stylization.preprocess.mat3dmm import read_3dmm
        from stylization.preprocess.pose import video_coefficients

        if path.endswith(".npy"):
            coeffs = load_coeff_file(path)
        elif path.endswith(".mat"):
            coeffs = read_3dmm(path, float(self.cfg.style_clip_fps))
        else:
            detector = self._detector()
            coeffs = video_coefficients(path, detector, self.coeff_backend, FACE_CROP_SIZE, "style clip")
        return coeffs[:, COEFF_SLICES["exp"]]

    def pose(self, job: Job, source: np.ndarray, coeffs: np.ndarray, wav: np.ndarray) -> np.ndarray:
        """Step 4, pose: the track [T, 9] (angle, trans, crop) from the pose options. ``pose=audio``:
        SAAS's poses generated from the speech (``cfg.saas_pose``), in the style of the style clip
        (else of the generated expressions), added to the source's pose."""
        driving = None
        if job.pose == POSE_FROM_AUDIO:
            model = self._pose_model()
            style = self.style_clip_expressions(job.style_clip) if job.style_clip is not None \
                else coeffs[:, COEFF_SLICES["exp"]]
            first = np.concatenate([source[COEFF_SLICES["angle"]], source[COEFF_SLICES["trans"]]])
            driving = model.generate(wav, len(coeffs), model.style_code(style), first, float(self.cfg.pose_top_p),
                                     float(self.cfg.pose_temperature), job.seed)
        elif job.pose is not None:
            driving = read_pose_source(job.pose, self.detector, self.face_model, FACE_CROP_SIZE)
        return pose_track(source, len(coeffs), str(self.cfg.pose_motion), driving, job.seed)

    def _pose_model(self):
        """SAAS's poses from speech: a saas_pose run, or the released audio2pose files (``cfg.saas_pose``),
        these with the released SAAS model's style encoder (motion=saas)."""
        if self.pose_model is None:
            from stylization.runs import load_saas_pose

            # the released pose files read codes with the released SAAS model's style encoder (loaded on demand)
            style_encoder = (lambda: self._clip_motion()[0].generator.style_encoder) if self.cfg.motion == "saas" else None
            self.pose_model = load_saas_pose(str(self.cfg.saas_pose), style_encoder).to(self.device)
        return self.pose_model

    @torch.no_grad()
    def render(self, job: Job, inputs: Inputs, face: SourceFace, coeffs: np.ndarray, source: np.ndarray
               ) -> FrameStream:
        """Step 5: coefficients [T, 260] (and the source row [260]) -> the frames uint8 [S, S, 3] at
        ``cfg.fps`` and ``cfg.size``, T' = len(resample_index(T, cfg.fps)) of them, as a stream of
        batches (``cfg.batch_size`` frames before the frame-rate conversion). The codes are computed
        here; each batch is drawn, resized and converted when the stream is read."""
        cfg, r = self.cfg, self.renderer
        fps = float(cfg.fps)
        n_frames = len(resample_index(len(coeffs), fps))
        if cfg.renderer == "pirender":
            return FrameStream(resample_batches(self.render_pirender(face, coeffs), len(coeffs), fps), n_frames)
        r.degree = self.default_degree if job.art_degree is None else float(job.art_degree)
        batch = self.render_inputs.identity(face.crop, face.crop_landmarks, aligned_from=(inputs.image, face.landmarks))
        exstyle_z = None
        if job.art_style is not None:
            exstyle_z = torch.from_numpy(self._exstyle_code(job.art_style)).to(self.device)
        else:
            batch["art"] = self.render_inputs.art(inputs.art)
        batch = {k: torch.as_tensor(v)[None].to(self.device) for k, v in batch.items()}
        began = time.perf_counter()
        content, identity, art = r.encode_inputs(batch, exstyle_z)
        self.identity_seconds = time.perf_counter() - began
        windows = torch.from_numpy(semantic_windows(coeffs)).to(self.device)
        keypoints = None
        if r.uses_keypoints:  # the face model's projections of the source row and of every frame
            project = lambda c: self.face_model.landmarks_from_coeffs(torch.from_numpy(c).float(), FACE_CROP_SIZE)  # noqa: E731
            keypoints = self.render_inputs.drive_keypoints(project(source).numpy(), project(coeffs).numpy(),
                                                           face.crop_landmarks, face.crop.shape[0]).to(self.device)
        drawn = r.render_batches(content, identity, art, windows, int(cfg.batch_size), progress=True,
                                 keypoints=keypoints)
        size = None if cfg.size is None else int(cfg.size)
        return FrameStream(resample_batches((resize_frames(to_uint8(x), size) for x in drawn), len(coeffs), fps),
                           n_frames)

    @torch.no_grad()
    def render_pirender(self, face: SourceFace, coeffs: np.ndarray) -> Iterator[np.ndarray]:
        """PIRenderer (photo-real): the content crop at the renderer's size, driven by every 73×27
        window -> frames uint8 [n, S, S, 3] (``cfg.size`` when set), ``cfg.batch_size`` at a time
        at 25 fps, drawn as the iterator is read."""
        from tqdm import tqdm

        from stylization.data.render_inputs import resize, to_tensor

        r, bs = self.renderer, int(self.cfg.batch_size)
        size = None if self.cfg.size is None else int(self.cfg.size)
        source = to_tensor(resize(face.crop, r.image_size))[None].to(self.device)
        windows = torch.from_numpy(semantic_windows(coeffs)).to(self.device)
        for w in tqdm(windows.split(bs), desc="PIRenderer", unit="batch"):
            frames = r(source.expand(len(w), -1, -1, -1), w)["fake_image"]  # fp32: see configs/infer.yaml precision
            yield resize_frames(to_uint8(frames.cpu()), size, cv2.INTER_CUBIC)

    def _exstyle_code_names(self) -> None:
        if self.exstyle is None:  # the file is read once
            from stylization.loading import load_exstyle_codes

            self.exstyle = load_exstyle_codes(str(self.cfg.exstyle_codes))

    def _exstyle_code(self, name: str) -> np.ndarray:
        """An ``exstyle_code.npy`` entry: a Z+ code [1, 18, 512]."""
        self._exstyle_code_names()
        if name not in self.exstyle:
            raise ConfigError(f"art_style {name!r} is not in {self.cfg.exstyle_codes} "
                              f"(it has: {', '.join(sorted(self.exstyle)[:8])} ...)")
        return self.exstyle[name]

    def write(self, job: Job, inputs: Inputs, face: SourceFace, frames: FrameStream, coeffs: np.ndarray) -> list[str]:
        """Step 6: the video (encoded as ``frames`` is read), the coefficients and the contact sheet
        (made of the frames kept on the way), all or none."""
        cfg = self.cfg
        sheet_out = None if cfg.sheet_out is None else check_output(str(cfg.sheet_out))
        kept: list[np.ndarray] = []  # the sheet's frames, copied as they stream past
        keep, sheet = None, None
        if cfg.sheet:
            art_view = inputs.art if inputs.art is not None else np.full_like(face.crop, 255)
            keep = sheet_frame_indices(frames.n_frames)
            sheet = lambda: contact_sheet([face.crop, art_view], np.stack(kept))  # noqa: E731
        return write_outputs(job.out, frames.read(keep, kept), inputs.wav, float(cfg.fps),
                             coeffs if cfg.save_coeffs else None, sheet, sheet_out)

    def _run_motion_only(self, job: Job, inputs: Inputs) -> list[str]:
        """Without a photo: the coefficients from ``source_coeffs`` and a landmark preview video
        (drawn and encoded batch by batch)."""
        cfg = self.cfg
        source = load_source_coeffs(cfg.source_coeffs)
        with self._timed(job, self.motion_step(job)):
            coeffs = self.motion(job, inputs.wav, source)
        with self._timed(job, "outputs"):
            frames = None
            if cfg.preview_video:
                frames = resample_batches(landmark_batches(self.face_model, coeffs, int(cfg.size or FACE_CROP_SIZE)),
                                          len(coeffs), float(cfg.fps))
            return write_outputs(job.out, frames, inputs.wav, float(cfg.fps), coeffs, None)


def read_batch(path: str) -> list[dict]:
    """A CSV of jobs: a header naming columns among image, audio, text, art, art_style, pose,
    style_clip, style_frames, out, emotion_scale, seed (audio and out required)."""
    import csv

    if not os.path.isfile(path):
        raise DataError("batch file not found", path)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise DataError("batch file has no rows", path)
    known = {"image", "audio", "text", "art", "art_style", "pose", "style_clip", "style_frames", "out", "emotion_scale",
             "seed"}
    unknown = set(rows[0]) - known
    if unknown or not {"audio", "out"} <= set(rows[0]):
        raise DataError(f"batch columns must include audio and out, among {sorted(known)} (unknown: {sorted(unknown)})",
                        path)
    return [{k: (v.strip() or None) if isinstance(v, str) else v for k, v in row.items()} for row in rows]


def run_batch(pipeline: Pipeline, rows: list[dict], defaults: dict) -> tuple[int, list[str]]:
    """Render every row; a failed row is reported and skipped. Returns (done, failure lines)."""
    failures = []
    for i, row in enumerate(rows, start=1):
        spec = {**defaults, **{k: v for k, v in row.items() if v is not None}}
        try:
            job = Job(audio=spec["audio"], out=spec["out"], image=spec.get("image"), text=spec.get("text"),
                      art=spec.get("art"), art_style=spec.get("art_style"), pose=spec.get("pose"),
                      style_clip=spec.get("style_clip"), style_frames=spec.get("style_frames"),
                      emotion_scale=float(spec.get("emotion_scale", 1.0)), seed=int(spec.get("seed", 0)))
            for path in pipeline.run(job):
                log.info("row %d: wrote %s", i, path)
        except UserError as exc:
            failures.append(f"row {i}: {exc}")
            log.error("row %d failed: %s", i, exc)
    return len(rows) - len(failures), failures

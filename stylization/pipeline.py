"""Inference, in one place: (photo, speech, emotion text, art picture) -> stylised talking-head video.

Stages (each timed, long ones with tqdm):

1. **inputs** — every file is read and checked before any model runs: the photo (readable
   image), the speech (any format, rate or channel count; not empty or silent), the text (1 to
   300 characters), the art picture or ``art_style`` entry, the pose source, the output folder.
2. **face** — 68 landmarks of the largest face (dlib by default); the content crop
   (:func:`~stylization.data.alignment.face_crop`, the corpus framing).
3. **source coefficients** — Deep3DFaceRecon on the crop when its files exist (``deep3d``), or a
   fit of the face model to the landmarks (``fit``).
4. **Style-E** — the expression sequence from the speech, the text and the source expression;
   the pose is the source's held still, a gentle procedural motion, or a pose source (video or
   coefficient file, looped back and forth when shorter than the speech).
5. **Style-A** — identity and art codes once, then every 73×27 window rendered in batches.
6. **outputs** — H.264 mp4 with the speech, ``.npy`` coefficients and a contact sheet, all
   written only when everything before succeeded (temporary files + rename).

Without a photo (``image=null``) only stages 1, 3 (from ``source_coeffs``) and 4 run and the
video previews the face model's landmarks: the motion model alone.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from stylization.data.audio import check_speech, load_audio, mel_windows, melspectrogram, n_video_frames
from stylization.data.coeffs import COEFF_DIM, COEFF_SLICES, semantic_windows, validate_coeffs
from stylization.data.draw import landmark_canvas
from stylization.data.face_model import FaceModel
from stylization.data.video import FPS, write_video
from stylization.errors import ConfigError, DataError, UserError

log = logging.getLogger("stylization.infer")
MAX_TEXT = 300


# -- inputs ------------------------------------------------------------------------------------

def check_text(text: str | None) -> str | None:
    if text is None:
        return None
    text = str(text).strip()
    if not 0 < len(text) <= MAX_TEXT:
        raise ConfigError(f"text must be a description of 1 to {MAX_TEXT} characters (got {len(text)})")
    return text


def read_image(path: str, what: str = "image") -> np.ndarray:
    """RGB uint8 [H, W, 3]; DataError naming the file when missing or not a picture."""
    if not os.path.isfile(path):
        raise DataError(f"{what} not found", path)
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise DataError(f"not a readable {what} (expected a picture: png, jpg, ...)", path)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


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


def load_source_coeffs(path: str | None) -> np.ndarray:
    """The source face's coefficients [260]: the first row of a .npy file, or zeros (mean face)."""
    if path is None:
        return np.zeros(COEFF_DIM, np.float32)
    arr = load_coeff_file(path)
    return arr[0]


def load_coeff_file(path: str) -> np.ndarray:
    """A .npy of coefficients [T, 257|260] (or one row) -> float32 [T, 260] (crop zero when absent)."""
    if not os.path.isfile(path):
        raise DataError("coefficient file not found", path)
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataError(f"not a readable .npy array ({exc})", path) from None
    arr = arr[None] if arr.ndim == 1 else arr
    validate_coeffs(arr, path)
    out = np.zeros((len(arr), COEFF_DIM), np.float32)
    out[:, : arr.shape[1]] = arr
    return out


# -- motion --------------------------------------------------------------------------------------

class MotionModel:
    """Speech -> expression, from a training run of stage ``style_e`` (text-controlled) or
    ``audio2exp`` (audio only), rebuilt from the checkpoint alone."""

    def __init__(self, checkpoint: str, device: torch.device, use_ema: bool = True):
        from stylization.engine.checkpoint import module_from_checkpoint, resolve_checkpoint
        from stylization.style_e.generate import StyleE

        path, state = resolve_checkpoint(checkpoint, "train one with: python train.py stage=style_e data.root=DIR "
                                                     "(or stage=audio2exp)")
        self.path, self.stage = path, state.get("stage")
        if "denoiser" in state.get("modules", {}):
            self.style_e = StyleE.from_checkpoint(path, use_ema).to(device)
            self.audio2exp = None
        else:
            self.style_e = None
            self.audio2exp = module_from_checkpoint(state, "audio2exp", use_ema, path).to(device)
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


def ping_pong(n_source: int, n_frames: int) -> np.ndarray:
    """Indices 0, 1, ..., n-1, n-2, ..., 1, 0, 1, ... of length n_frames (never out of range)."""
    if n_source <= 1:
        return np.zeros(n_frames, np.int64)
    period = 2 * n_source - 2
    k = np.arange(n_frames) % period
    return np.where(k < n_source, k, period - k)


def gentle_pose(n_frames: int, seed: int, amplitude: float = 0.04) -> np.ndarray:
    """A slow procedural head motion: [T, 3] angle offsets (radians) from two sinusoids per axis."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames) / FPS
    out = np.zeros((n_frames, 3), np.float32)
    for axis, scale in enumerate((0.6, 1.0, 0.3)):  # pitch, yaw, roll
        f = rng.uniform(0.15, 0.35, 2)
        phase = rng.uniform(0, 2 * np.pi, 2)
        out[:, axis] = amplitude * scale * (0.7 * np.sin(2 * np.pi * f[0] * t + phase[0])
                                            + 0.3 * np.sin(2 * np.pi * f[1] * t + phase[1]))
    return out


# -- outputs -------------------------------------------------------------------------------------

def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """[T, 3, H, W] in [-1, 1] -> uint8 [T, H, W, 3]."""
    return ((frames.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def contact_sheet(inputs: list[np.ndarray], frames: np.ndarray, columns: int = 4, rows: int = 2) -> np.ndarray:
    """One row of inputs (photo crop, art picture), then ``rows`` × ``columns`` evenly spaced frames."""
    size = frames.shape[1]
    pick = np.linspace(0, len(frames) - 1, min(columns * rows, len(frames))).round().astype(int)
    tiles = [frames[i] for i in pick] + [np.full_like(frames[0], 255)] * (columns * rows - len(pick))
    grid = np.concatenate([np.concatenate(tiles[r * columns:(r + 1) * columns], 1) for r in range(rows)], 0)
    top = [cv2.resize(x, (size, size), interpolation=cv2.INTER_AREA) for x in inputs]
    top += [np.full((size, size, 3), 255, np.uint8)] * (columns - len(top))
    return np.concatenate([np.concatenate(top[:columns], 1), grid], 0)


def landmark_video(face_model: FaceModel, coeffs: np.ndarray, size: int) -> np.ndarray:
    """Coefficients [T, 260] -> RGB frames [T, size, size, 3] of the projected landmarks."""
    lm = face_model.landmarks_from_coeffs(torch.from_numpy(coeffs).float(), size).numpy()
    return np.stack([landmark_canvas([p], [(30, 30, 30)], size) for p in lm])


def resample_frames(frames: np.ndarray, fps: float) -> np.ndarray:
    """25 fps frames -> ``fps`` by nearest time (same duration)."""
    if fps == FPS:
        return frames
    n = max(1, int(round(len(frames) * fps / FPS)))
    return frames[np.minimum((np.arange(n) * FPS / fps).round().astype(int), len(frames) - 1)]


def write_outputs(out: str, frames: np.ndarray | None, wav: np.ndarray, fps: float, coeffs: np.ndarray | None,
                  sheet: np.ndarray | None, sheet_out: str | None = None) -> list[str]:
    """The video (``out``), ``<out>.npy`` and the sheet (``sheet_out``, default ``<out>_sheet.png``);
    on any failure none of them remains."""
    stem = os.path.splitext(out)[0]
    written: list[str] = []
    try:
        if frames is not None:
            write_video(out, frames, fps=fps, audio=wav)
            written.append(out)
        if coeffs is not None:
            path = stem + ".npy"
            np.save(path + ".tmp.npy", coeffs.astype(np.float32))
            os.replace(path + ".tmp.npy", path)
            written.append(path)
        if sheet is not None:
            path = sheet_out or stem + "_sheet.png"
            if not cv2.imwrite(path + ".tmp.png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
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

    audio: str
    out: str
    image: str | None = None
    text: str | None = None
    art: str | None = None
    art_style: str | None = None
    pose: str | None = None
    emotion_scale: float = 1.0
    seed: int = 0
    timings: dict = field(default_factory=dict)


class Pipeline:
    """Models loaded once, jobs run one after another. ``cfg`` is configs/infer.yaml."""

    def __init__(self, cfg, device: torch.device):
        from stylization.data.face_model import build_face_model

        self.cfg, self.device = cfg, device
        self.face_model = build_face_model(str(cfg.data.face_model))
        self.motion = MotionModel(str(cfg.style_e), device, bool(cfg.use_ema))
        self.renderer = self.detector = self.coeff_backend = self.exstyle = None

    def _load_renderer(self):
        if self.renderer is not None:
            return
        from stylization.data.faces import LandmarkDetector
        from stylization.style_a.renderer import StyleARenderer

        cfg = self.cfg
        self.renderer = StyleARenderer.from_checkpoint(str(cfg.style_a), bool(cfg.use_ema)).to(self.device)
        self.identity_alignment = self.renderer.identity_alignment
        if cfg.art_degree is not None:
            self.renderer.degree = float(cfg.art_degree)
        self.detector = LandmarkDetector(str(cfg.detector), str(self.device))
        backend = str(cfg.coeffs_backend)
        deep3d_ready = os.path.isfile(str(cfg.deep3d)) and os.path.isfile(os.path.join(str(cfg.bfm),
                                                                                         "similarity_Lm3D_all.mat"))
        if backend == "deep3d" or (backend == "auto" and deep3d_ready):
            from stylization.data.deep3d import Deep3DBackend

            self.coeff_backend = Deep3DBackend(str(cfg.deep3d), str(cfg.bfm), self.device)
        elif backend in ("auto", "fit"):
            from stylization.data.fitting import fit_coefficients

            self.coeff_backend = lambda image, lm: fit_coefficients(self.face_model, lm, image.shape[0])
            log.info("source coefficients: fitting the face model to the landmarks (Deep3DFaceRecon files %s, %s "
                     "not found)", cfg.deep3d, os.path.join(str(cfg.bfm), "similarity_Lm3D_all.mat"))
        else:
            raise ConfigError(f"coeffs_backend must be auto, deep3d or fit, got {backend!r}")

    @contextmanager
    def _timed(self, job: Job, name: str):
        start = time.perf_counter()
        yield
        job.timings[name] = time.perf_counter() - start

    def _art_code(self, job: Job) -> torch.Tensor:
        r = self.renderer
        size = r.psp.input_size
        if job.art_style is not None:
            if self.exstyle is None:
                from stylization.style_a.dualstylegan import load_exstyle_codes

                self.exstyle = load_exstyle_codes(str(self.cfg.exstyle_codes))
            if job.art_style not in self.exstyle:
                raise ConfigError(f"art_style {job.art_style!r} is not in {self.cfg.exstyle_codes} "
                                  f"(it has: {', '.join(sorted(self.exstyle)[:8])} ...)")
            z = torch.from_numpy(self.exstyle[job.art_style]).to(self.device)
            return r.generator.generator.generator.map_codes(z)
        art = cv2.resize(read_image(job.art, "art picture"), (size, size), interpolation=cv2.INTER_AREA)
        return r.codes(torch.from_numpy(art).permute(2, 0, 1)[None].float().div(127.5).sub(1).to(self.device))

    def _pose(self, job: Job, source: np.ndarray, n_frames: int) -> np.ndarray:
        """[T, 6 + 3] angle, trans and crop columns for every frame."""
        sl = COEFF_SLICES
        still = np.concatenate([source[sl["angle"]], source[sl["trans"]], source[sl["crop"]]])
        pose = np.tile(still, (n_frames, 1)).astype(np.float32)
        if job.pose is None:
            if self.cfg.pose_motion == "gentle":
                pose[:, 0:3] += gentle_pose(n_frames, job.seed)
            elif self.cfg.pose_motion != "still":
                raise ConfigError(f"pose_motion must be still or gentle, got {self.cfg.pose_motion!r}")
            return pose
        driving = self._pose_source(job.pose)
        idx = ping_pong(len(driving), n_frames)
        delta = driving[idx] - driving[0]  # motion relative to the pose source's first frame
        pose[:, 0:6] += delta
        return pose

    def _pose_source(self, path: str) -> np.ndarray:
        """A pose video or coefficient file -> [N, 6] angle + trans."""
        sl = COEFF_SLICES
        if path.endswith(".npy"):
            arr = load_coeff_file(path)
            return np.concatenate([arr[:, sl["angle"]], arr[:, sl["trans"]]], 1)
        from stylization.data.alignment import face_crop
        from stylization.data.fitting import fit_coefficients
        from stylization.data.video import read_video

        from tqdm import tqdm

        frames = read_video(path)
        rows = []
        for frame in tqdm(frames, desc="pose source", unit="frame"):
            crop, lm = face_crop(frame, self.detector(frame, path).landmarks, 256)
            row = fit_coefficients(self.face_model, lm, 256, steps=40)
            rows.append(np.concatenate([row[sl["angle"]], row[sl["trans"]]]))
        return np.stack(rows)

    def run(self, job: Job) -> list[str]:
        """Render one job; returns the files written."""
        cfg = self.cfg
        with self._timed(job, "inputs"):
            job.text = check_text(job.text)
            check_output(job.out)
            wav = load_audio(job.audio)
            check_speech(wav, job.audio)
            if job.pose is not None and not os.path.isfile(job.pose):
                raise DataError("pose source not found", job.pose)
            image = None
            if job.image is not None:
                image = read_image(job.image, "photo")
                if job.art is None and job.art_style is None:
                    raise ConfigError("give an art picture (art=PATH) or an exstyle code name (art_style=NAME)")
                if job.art is not None:
                    read_image(job.art, "art picture")
        if image is None:
            return self._run_motion_only(job, wav)
        self._load_renderer()
        r = self.renderer
        from stylization.data.alignment import face_crop
        from stylization.data.parsing import landmark_parsing

        with self._timed(job, "face"):
            face = self.detector(image, job.image)
            if face.n_faces > 1:
                log.warning("%s: %d faces found; using the largest", job.image, face.n_faces)
            crop, crop_lm = face_crop(image, face.landmarks, 256)
        with self._timed(job, "source coefficients"):
            source = self.coeff_backend(crop, crop_lm)
        with self._timed(job, "Style-E"):
            coeffs = coefficients_from_audio(self.motion, wav, source, job.text, job.emotion_scale, job.seed)
            pose = self._pose(job, source, len(coeffs))
            coeffs[:, COEFF_SLICES["angle"]], coeffs[:, COEFF_SLICES["trans"]] = pose[:, 0:3], pose[:, 3:6]
            coeffs[:, COEFF_SLICES["crop"]] = pose[:, 6:9]
        with self._timed(job, "Style-A"), torch.no_grad():
            c = r.content_size
            rgb = cv2.resize(crop, (c, c), interpolation=cv2.INTER_AREA)
            to_t = lambda x: torch.from_numpy(x).permute(2, 0, 1)[None].float().div(127.5).sub(1).to(self.device)  # noqa: E731
            parsing = None
            if r.parser is None:
                parsing = torch.from_numpy(landmark_parsing(crop_lm, c, c / 256))[None].to(self.device)
            content = r.content_input(to_t(rgb), parsing)
            p = r.psp.input_size
            if self.identity_alignment == "ffhq":
                from stylization.data.alignment import ffhq_align

                identity_face = ffhq_align(image, face.landmarks, p)
            else:
                identity_face = cv2.resize(crop, (p, p), interpolation=cv2.INTER_AREA)
            identity = r.codes(to_t(identity_face))
            art = self._art_code(job)
            windows = torch.from_numpy(semantic_windows(coeffs)).to(self.device)
            frames = to_uint8(r.render(content, identity, art, windows, int(cfg.batch_size), progress=True))
        with self._timed(job, "outputs"):
            if cfg.size is not None and int(cfg.size) != frames.shape[1]:
                s = int(cfg.size)
                frames = np.stack([cv2.resize(f, (s, s), interpolation=cv2.INTER_AREA if s < f.shape[0]
                                              else cv2.INTER_CUBIC) for f in frames])
            frames = resample_frames(frames, float(cfg.fps))
            art_view = read_image(job.art, "art picture") if job.art is not None else np.full_like(crop, 255)
            sheet = contact_sheet([crop, art_view], frames) if cfg.sheet else None
            sheet_out = None if cfg.get("sheet_out") is None else check_output(str(cfg.sheet_out))
            written = write_outputs(job.out, frames, wav, float(cfg.fps), coeffs if cfg.save_coeffs else None, sheet,
                                    sheet_out)
        return written

    def _run_motion_only(self, job: Job, wav: np.ndarray) -> list[str]:
        cfg = self.cfg
        source = load_source_coeffs(cfg.get("source_coeffs"))
        with self._timed(job, "Style-E"):
            coeffs = coefficients_from_audio(self.motion, wav, source, job.text, job.emotion_scale, job.seed)
        with self._timed(job, "outputs"):
            size = int(cfg.size or 256)
            frames = resample_frames(landmark_video(self.face_model, coeffs, size), float(cfg.fps)) \
                if cfg.video else None
            return write_outputs(job.out, frames, wav, float(cfg.fps), coeffs, None)


def read_batch(path: str) -> list[dict]:
    """A CSV of jobs: a header naming columns among image, audio, text, art, art_style, pose,
    out, emotion_scale, seed (audio and out required)."""
    import csv

    if not os.path.isfile(path):
        raise DataError("batch file not found", path)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise DataError("batch file has no rows", path)
    known = {"image", "audio", "text", "art", "art_style", "pose", "out", "emotion_scale", "seed"}
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
                      emotion_scale=float(spec.get("emotion_scale", 1.0)), seed=int(spec.get("seed", 0)))
            for path in pipeline.run(job):
                log.info("row %d: wrote %s", i, path)
        except UserError as exc:
            failures.append(f"row {i}: {exc}")
            log.error("row %d failed: %s", i, exc)
    return len(rows) - len(failures), failures

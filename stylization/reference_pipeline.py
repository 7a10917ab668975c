"""Style from reference frames at inference: ``infer.py image=... audio=... style_frames=DIR`` and
``scripts/style_transfer.py``.

Steps (the reference-frame style transfer method, Pham et al. CVPRW 2024):

1. **References** (:func:`read_style_references`): every style frame goes through the face step and
   the coefficient step (as a photo does); the face model's posed keypoints minus their mean are the
   character's reference motion φ_s [N, 68, 3]; the four Style Reference Images are retrieved with
   the key motion templates (:mod:`stylization.style_reference.templates`).
2. **Style transfer** (:func:`transfer_style`): the motion generator of a ``style_ref_motion`` run is
   fine-tuned towards φ_s on an audio stream (the style video's own sound when it has one, its frames
   then pairing up with it, else the job's speech); the audio's features become the manifold-projection
   bank. A run written by
   ``scripts/style_transfer.py`` (stage ``style_ref_transfer``) is used as it is.
3. **Motion** -> the photo's landmarks: the photo's posed keypoints plus the generated motion,
   projected into the photo's content crop; γ (``style_strength``) blends the transferred and
   untransferred motion.
4. **Frames**: with ``art=`` / ``art_style=`` (or ``renderer=pirender``), the landmarks are fitted
   back to coefficients (identity fixed to the photo's; :func:`~stylization.preprocess.clip_fit.fit_clip`)
   and rendered by Style-A (or PIRenderer); otherwise a ``style_ref_generator`` run draws each frame from
   the photo, the facial map of its landmarks and the Intermediate Style Patterns (the photo mapped onto
   each Style Reference Image by its Style Mapping network). Either way the frames are encoded batch
   by batch as they are drawn (:class:`~stylization.pipeline.FrameStream`), timed as one step with the
   outputs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator

import numpy as np
import torch
from omegaconf import OmegaConf

from stylization.constants import COEFF_SLICES, FACE_CROP_SIZE
from stylization.data.audio import mel_windows, melspectrogram
from stylization.data.face_model import FaceModel, project
from stylization.data.keypoint_motion import Motion, face_keypoints, head_pose
from stylization.errors import ConfigError

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ReferenceFrames:
    """A character's style frames after the face and coefficient steps.

    crops: content crops uint8 [N, S, S, 3] (S = FACE_CROP_SIZE); landmarks: [N, 68, 2] in crop pixels;
    coeffs: [N, 260]; motion: φ_s (:class:`~stylization.data.keypoint_motion.Motion` of the frames as one
    sequence); chosen: the 4 Style Reference Images' indices (template order); wav: the style video's
    sound (16 kHz) or None.
    """

    crops: np.ndarray
    landmarks: np.ndarray
    coeffs: np.ndarray
    motion: Motion
    chosen: np.ndarray
    wav: np.ndarray | None


def read_style_references(path: str, detector, fit, face_model: FaceModel,
                          frames: list[np.ndarray] | None = None) -> ReferenceFrames:
    """Style frames (a folder of pictures or a video; :func:`~stylization.data.style_frames.read_style_frames`,
    or ``frames`` already read from it) -> :class:`ReferenceFrames`. ``detector(frame, source)`` and
    ``fit(crop, landmarks)`` are the pipeline's face and coefficient steps."""
    from tqdm import tqdm

    from stylization.data.alignment import face_crop
    from stylization.data.audio import load_audio
    from stylization.data.style_frames import read_style_frames
    from stylization.errors import DataError
    from stylization.style_reference.templates import mouth_descriptors, retrieve_style_references

    crops, landmarks, rows = [], [], []
    for frame in tqdm(read_style_frames(path) if frames is None else frames, desc="style frames", unit="frame"):
        crop, lm = face_crop(frame, detector(frame, path).landmarks, FACE_CROP_SIZE)
        crops.append(crop)
        landmarks.append(lm)
        rows.append(fit(crop, lm))
    coeffs = np.stack(rows).astype(np.float32)
    wav = None
    if os.path.isfile(path):
        try:
            wav = load_audio(path)
        except DataError:  # a silent video: the job's speech is the transfer's audio
            wav = None
    lm = np.stack(landmarks)
    return ReferenceFrames(np.stack(crops), lm, coeffs, Motion.of(face_model, coeffs),
                           retrieve_style_references(mouth_descriptors(lm)), wav)


def audio_mels(wav: np.ndarray) -> torch.Tensor:
    """Speech (16 kHz) -> mel windows [T, 1, 80, 16], one per 25 fps frame."""
    from stylization.data.audio import n_video_frames

    return torch.from_numpy(mel_windows(melspectrogram(wav), n_video_frames(wav.size)))


def transfer_style(motion_run: str, refs: ReferenceFrames, wav: np.ndarray | None, options, projection: dict):
    """Fine-tune ``motion_run``'s generator towards ``refs`` -> (transferred, untransferred, FeatureBank or
    None). The audio stream is ``wav``, or (None) the style video's own sound, whose frames then pair up
    with it (the generator's own loss on them is L_mg). ``options``: a
    :class:`~stylization.style_reference.transfer.TransferOptions`; ``projection``: ``{"weight": w, "k": k}``
    (weight 0: no bank)."""
    from tqdm import tqdm

    from stylization.runs import load_style_ref_motion
    from stylization.style_reference.motion import FeatureBank
    from stylization.style_reference.transfer import transfer

    base = load_style_ref_motion(motion_run)
    if base.untransferred is not None:
        raise ConfigError(f"{motion_run} is already a transferred run; transfer from its style_ref_motion run")
    paired = None
    if wav is None:
        if refs.wav is None:
            raise ConfigError("the style frames have no sound: the transfer needs an audio stream")
        mels = audio_mels(refs.wav)
        n = min(len(mels), len(refs.coeffs))  # the video's frames and its sound, both at 25 fps
        mels, paired = mels[:n], [(refs.motion.face[:n], refs.motion.pose[:n])]
    else:
        mels = audio_mels(wav)
    with tqdm(total=int(options.steps), desc="style transfer", unit="step") as bar:
        tuned, logs = transfer(base.generator, refs.motion.face, refs.motion.pose, [mels], options,
                               progress=lambda _: bar.update(), paired=paired)
    log.info("style transfer: L_sc %.4f -> %.4f, L_mg %.4f after %d steps", logs[0]["l_sc"], logs[-1]["l_sc"],
             logs[-1]["l_mg"], len(logs))
    bank = None
    if float(projection["weight"]) > 0:
        with torch.no_grad():
            features = tuned.encoder(mels[None])[0]
        bank = FeatureBank(features, int(projection["k"]), float(projection["weight"]))
    return tuned, base.generator, bank


def save_transfer_run(out: str, motion_run: str, tuned, untransferred, bank, inputs: dict) -> str:
    """Write a ``style_ref_transfer`` run (one checkpoint in the training format, loadable by
    :func:`~stylization.runs.load_style_ref_motion`) to the directory ``out``; returns the file."""
    from stylization.engine.checkpoint import FORMAT, atomic_save
    from stylization.runs import STYLE_REF_TRANSFER_STAGE, load_run

    run = load_run(motion_run)
    config = OmegaConf.to_container(run.config, resolve=True)
    config["transfer_inputs"] = inputs
    modules = {"generator": tuned.state_dict(), "untransferred": untransferred.state_dict()}
    if bank is not None:
        modules["feature_bank"] = bank.state_dict()
    state = {"format": FORMAT, "stage": STYLE_REF_TRANSFER_STAGE, "step": run.step, "epoch": 0, "batch_in_epoch": 0,
             "config": config, "code_version": "", "modules": modules, "ema": {}, "optimizers": {}}
    os.makedirs(os.path.join(out, "checkpoints"), exist_ok=True)
    file = os.path.join(out, "checkpoints", f"step_{run.step:09d}.pt")
    atomic_save(state, file)
    with open(os.path.join(out, "config.yaml.tmp"), "w") as f:
        f.write(OmegaConf.to_yaml(OmegaConf.create(config)))
    os.replace(os.path.join(out, "config.yaml.tmp"), os.path.join(out, "config.yaml"))
    return file


def photo_landmarks(face_model: FaceModel, source: np.ndarray, face: torch.Tensor, pose: torch.Tensor) -> np.ndarray:
    """The photo's coefficients [260] + motion (face [T, 68, 3], pose [T, 6]) -> landmarks [T, 68, 2] in
    content-crop pixels."""
    motion = Motion(face_keypoints(face_model, source), head_pose(source), face, pose)
    return project(motion.keypoints(face_model), FACE_CROP_SIZE).numpy()


def landmarks_to_coeffs(face_model: FaceModel, source: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Landmarks [T, 68, 2] (crop pixels) -> coefficients [T, 260] with the photo's identity held fixed."""
    from stylization.preprocess.clip_fit import fit_clip

    coeffs = fit_clip(face_model, landmarks, FACE_CROP_SIZE, identity=source[COEFF_SLICES["id"]][:face_model.id_dim])
    coeffs[:, COEFF_SLICES["tex"]] = source[COEFF_SLICES["tex"]]
    coeffs[:, COEFF_SLICES["gamma"]] = source[COEFF_SLICES["gamma"]]
    return coeffs


def generator_frames(run_path: str, photo_crop: np.ndarray, reference_crops: np.ndarray, landmarks: np.ndarray,
                     device: torch.device, batch: int = 16) -> Iterator[np.ndarray]:
    """A ``style_ref_generator`` run draws the frames: photo crop uint8 [224, 224, 3], the 4 Style
    Reference Images' crops uint8 [4, 224, 224, 3], landmarks [T, 68, 2] (crop pixels) -> frames uint8
    [n, S, S, 3] (S: the run's image size), ``batch`` at a time, drawn as the iterator is read (the run
    is loaded and the Intermediate Style Patterns computed here, before the first frame)."""
    import torch.nn.functional as F

    from stylization.data.draw import facial_map
    from stylization.runs import load_run
    from stylization.style_reference.generator_stage import intermediate_style_patterns, render

    run = load_run(run_path, hint="train one with: python train.py stage=style_ref_generator "
                                  "model=style_ref_generator_small stage.mapping=MAPPING_RUN data.root=DIR")
    if run.stage != "style_ref_generator":
        raise ConfigError(f"style_ref_generator={run_path} is a {run.stage!r} run, not a 'style_ref_generator' one")
    m = run.config.model
    mapping = run.module("mapping", m.mapping).to(device)
    generator = run.module("generator", m.generator).to(device)
    size = int(m.image_size)

    def images(x: np.ndarray) -> torch.Tensor:  # uint8 [N, H, W, 3] -> [N, 3, S, S] in [-1, 1]
        t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(device)
        return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)

    source = images(photo_crop[None])
    with torch.no_grad():
        patterns = intermediate_style_patterns(mapping, source, images(reference_crops)[None], int(m.mapping_image_size))

    @torch.no_grad()
    def draw() -> Iterator[np.ndarray]:
        from tqdm import tqdm

        for start in tqdm(range(0, len(landmarks), batch), desc="style-aware generator", unit="batch"):
            maps = np.stack([facial_map(lm, size, size / FACE_CROP_SIZE) for lm in landmarks[start:start + batch]])
            maps = torch.from_numpy(maps).permute(0, 3, 1, 2).float().div(255).to(device)
            out = render(generator, source, maps[None], patterns)[0]
            yield out.add(1).mul(127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()

    return draw()


def run_style_frames(pipeline, job) -> list[str]:
    """``infer.py image=... audio=... style_frames=DIR``: the steps of the module docstring; returns the
    files written (the video with the speech, the coefficients fitted to the generated landmarks, the
    contact sheet)."""
    from stylization.data.style_frames import read_style_frames
    from stylization.pipeline import FrameStream
    from stylization.runs import load_style_ref_motion
    from stylization.style_reference.motion import StyleRefMotion
    from stylization.style_reference.transfer import TransferOptions

    cfg = pipeline.cfg
    for key, value in (("text", job.text), ("style_clip", job.style_clip), ("pose", job.pose)):
        if value is not None:
            raise ConfigError(f"style_frames= gives the talking style, head motion included; drop {key}=")
    if cfg.pose_motion != "still":
        raise ConfigError("style_frames= gives the head motion too; drop pose_motion=")
    with pipeline._timed(job, "inputs"):
        inputs = pipeline.read_inputs(job)
        if inputs.image is None:
            raise ConfigError("style_frames= animates a photo: give image=PHOTO")
        style_frames = read_style_frames(job.style_frames)  # read (and checked) before any model runs
    use_renderer = job.art is not None or job.art_style is not None or cfg.renderer == "pirender"
    if use_renderer:
        pipeline._load_renderer()
    detector = pipeline._detector()
    with pipeline._timed(job, "face"):
        face = pipeline.find_face(job, inputs.image)
        source = pipeline.coeff_backend(face.crop, face.crop_landmarks)
    key = (os.path.abspath(job.style_frames), str(cfg.style_ref_motion))
    cache = pipeline.style_references  # one transfer per style video for a batch of jobs
    if key not in cache:
        with pipeline._timed(job, "style frames"):
            refs = read_style_references(job.style_frames, detector, pipeline.coeff_backend, pipeline.face_model,
                                         style_frames)
        with pipeline._timed(job, "style transfer"):
            model = load_style_ref_motion(str(cfg.style_ref_motion), float(cfg.style_strength))
            if model.untransferred is None and int(cfg.transfer.steps) > 0:
                options = TransferOptions(**OmegaConf.to_container(cfg.transfer, resolve=True))
                projection = {"weight": float(cfg.style_projection), "k": int(cfg.style_projection_k)}
                stream = None if refs.wav is not None else inputs.wav  # a style video's own sound, else the speech
                tuned, base, bank = transfer_style(str(cfg.style_ref_motion), refs, stream, options, projection)
                model = StyleRefMotion(tuned, base, bank, float(cfg.style_strength)).eval()
        if refs.wav is None:  # transferred on this job's speech: not for another job
            cache.clear()
        else:
            cache[key] = (refs, model)
    else:
        refs, model = cache[key]
    with pipeline._timed(job, "motion"):
        face_motion, pose_motion = model.to(pipeline.device)(audio_mels(inputs.wav).to(pipeline.device)[None])
        landmarks = photo_landmarks(pipeline.face_model, source, face_motion[0].cpu(), pose_motion[0].cpu())
        coeffs = landmarks_to_coeffs(pipeline.face_model, source, landmarks)
    # the frames are drawn and encoded as one stream (Pipeline.write), timed as one step
    if use_renderer:
        with pipeline._timed(job, pipeline.render_step()):
            return pipeline.write(job, inputs, face, pipeline.render(job, inputs, face, coeffs, source), coeffs)
    with pipeline._timed(job, "style-aware generator + outputs"):
        frames = generator_frames(str(cfg.style_ref_generator), face.crop, refs.crops[refs.chosen], landmarks,
                                  pipeline.device, int(cfg.batch_size))
        return pipeline.write(job, inputs, face, FrameStream(frames, len(landmarks)), coeffs)

"""Loading official (third-party) checkpoint files into our modules, strictly.

Each kind knows its file's top-level structure and any documented key renames; the weights
are read with ``torch.load(..., weights_only=True)`` (or safetensors) and loaded with
``strict=True``. Errors name the file and the missing, unexpected or mis-shaped keys.

Kinds so far (``KINDS`` builds each at the official configuration):

* ``sadtalker_audio2exp`` — SadTalker's ``auido2exp_00300-model.pth`` (``{"model": state_dict,
  "epoch": ...}``) or ``SadTalker_V0.0.2_*.safetensors`` (one flat dict: the keys containing
  ``audio2exp`` with the ``audio2exp.`` prefix removed). Into :class:`~stylization.style_e.audio2exp.Audio2Exp`.
* ``stylegan2_generator`` — rosinality's converted or training checkpoints; the ``g_ema`` entry. A
  ``train.py`` checkpoint also pickles its ``args`` (an ``argparse.Namespace``), the one class
  :data:`~stylization.engine.checkpoint.SAFE_GLOBALS` lets ``weights_only=True`` rebuild.
* ``stylegan2_discriminator`` — a training checkpoint (or one converted with ``--disc``); ``d``.
* ``dualstylegan_generator`` — DualStyleGAN's ``checkpoint/<style>/generator.pt`` (``g_ema``).
* ``psp_encoder`` — DualStyleGAN / VToonify's ``encoder.pt`` (``{'state_dict': encoder.* + decoder.*,
  'latent_avg', 'opts'}``), into :class:`~stylization.style_a.psp.PSP` (Z+ encoder); ``latent_avg``
  ([18, 512] or [512]) fills the module's buffer.
* ``vtoonify_d`` — VToonify-D's ``vtoonify_s_d.pt`` etc. (``{'g_ema': whole model}``), into
  :class:`~stylization.style_a.vtoonify.VToonifyD`.
* ``styleheat`` — StyleHEAT's ``StyleHEAT_visual.pt`` (``{'net_G_ema': whole model}``): its
  ``video_warper.*`` and ``calibrator.*`` renamed by :func:`~stylization.style_a.style_a.styleheat_state`
  (the rest, HFGI inversion and the audio warper, is not Style-A's and is ignored), into the
  motion generator and refinement network of a Style-A generator (:class:`~stylization.style_a.style_a.MotionParts`).
* ``bisenet`` — face-parsing.PyTorch / VToonify's ``faceparsing.pth`` (a plain state dict), into
  :class:`~stylization.style_a.bisenet.BiSeNet` (19 classes).
* ``deep3d_recon`` — Deep3DFaceRecon's ``epoch_20.pth`` (``{'net_recon': state_dict, ...}``), into
  :class:`~stylization.preprocess.recon_net.ReconNet`.
* ``syncnet`` — joonson/syncnet_python's ``data/syncnet_v2.model`` (a plain state dict, perhaps without
  the BatchNorm ``num_batches_tracked`` counters, which are then added as zeros), into
  :class:`~stylization.syncnet.model.SyncNet` (1024-d embeddings).
* ``pirender`` — StyleTalk's ``renderer_checkpoint.pt`` or PIRender's ``face`` checkpoint (``net_G_ema``),
  into :class:`~stylization.styletalk.pirender.PIRenderer` (no rename).
* ``styletalk`` — StyleTalk's ``styletalk_checkpoint.pth`` (``{'model_state_dict': ...}``; the keys under
  ``content_encoder.``, ``style_encoder.`` and ``decoder.``, any others ignored as the official
  inference ignores them), into :class:`~stylization.styletalk.model.StyleTalk` (no rename).
* ``arcface`` — insightface arcface_torch's ``backbone.pth`` (a plain state dict; e.g. the model
  zoo's ``ms1mv3_arcface_r100_fp16``), into :class:`~stylization.metrics.arcface.IResNet` of the
  depth its ``layerK.M.`` keys have (18, 34, 50, 100 or 200); for the benchmark's CSIM.

Plain state dicts and DataParallel ``module.`` prefixes are accepted for every kind.

Style-A's other fetched files: :func:`load_exstyle_codes` (DualStyleGAN's ``exstyle_code.npy``,
read with an unpickler that admits only arrays), :func:`vgg19_features` and :func:`lpips_vgg`
(the perceptual losses' ImageNet networks; the loss modules themselves take them ready-made).

The benchmark's FID network: :func:`inception_fid` (torch-fidelity's Inception-v3 with the
TF-2015-12-05 weights from a local file, torch-fidelity's or pytorch-fid's; never downloaded).

CLIP and transformers: :func:`clip_text_encoder` (Style-E's text condition, open_clip or
transformers backend), :func:`open_clip_model`; :func:`hf_clip_text` (a local transformers CLIP
directory), :func:`export_hf_clip_text` (an open_clip text tower -> such a directory, through the
rename map :func:`open_clip_text_state_to_hf`), :func:`transformers_lm` (a local causal or
sequence-to-sequence language model directory, for rewording the emotion texts).
"""

from __future__ import annotations

import io
import os
import pickle
import re

import numpy as np
import torch
from torch import nn

from stylization.constants import PARSING_CLASSES
from stylization.engine.checkpoint import load_file
from stylization.errors import CheckpointError, ConfigError, DataError

SOURCES = {
    "sadtalker_audio2exp": "SadTalker's release (checkpoints/auido2exp_00300-model.pth or "
                           "SadTalker_V0.0.2_256.safetensors); see checkpoints/README.md",
    "stylegan2_generator": "rosinality/stylegan2-pytorch (convert_weight.py on stylegan2-ffhq-config-f.pkl gives "
                           "stylegan2-ffhq-config-f.pt); see checkpoints/README.md",
    "stylegan2_discriminator": "a rosinality/stylegan2-pytorch training checkpoint, or convert_weight.py --disc; "
                               "see checkpoints/README.md",
    "dualstylegan_generator": "DualStyleGAN's release (checkpoint/<style>/generator.pt); see checkpoints/README.md",
    "psp_encoder": "DualStyleGAN's / VToonify's release (checkpoint/encoder.pt); see checkpoints/README.md",
    "vtoonify_d": "VToonify's release (checkpoint/vtoonify_d_<style>/vtoonify_s_d.pt); see checkpoints/README.md",
    "styleheat": "StyleHEAT's release (checkpoints/StyleHEAT_visual.pt, FeiiYin/StyleHEAT); see checkpoints/README.md",
    "bisenet": "VToonify's release (checkpoint/faceparsing.pth, from face-parsing.PyTorch); see checkpoints/README.md",
    "deep3d_recon": "Deep3DFaceRecon_pytorch's released model (checkpoints/<name>/epoch_20.pth); "
                    "see checkpoints/README.md",
    "syncnet": "joonson/syncnet_python's release (data/syncnet_v2.model, fetched by download_model.sh); "
               "see checkpoints/README.md",
    "pirender": "StyleTalk's release (checkpoints/renderer_checkpoint.pt) or PIRender's face checkpoint "
                "(RenYurui/PIRender); see checkpoints/README.md",
    "styletalk": "StyleTalk's release (checkpoints/styletalk_checkpoint.pth, FuxiVirtualHuman/styletalk); "
                 "see checkpoints/README.md",
    "saas_video_driven": "SAAS's release (checkpoints/video_driven/video_driven.pth, tanshuai0219/SAAS); "
                         "see checkpoints/README.md",
    "saas_audio_driven": "SAAS's audio-driven file (checkpoints/audio_driven/audio_driven.pth; not in SAAS's release "
                         "yet, SAAS#1), or a conversion of this project's saas run; see checkpoints/README.md",
    "saas_pose_codebook": "SAAS's release (checkpoints/audio2pose/pose_codebook.pth); see checkpoints/README.md",
    "saas_audio2pose": "SAAS's release (checkpoints/audio2pose/audio2pose.pth); see checkpoints/README.md",
    "arcface": "insightface's arcface_torch model zoo (e.g. ms1mv3_arcface_r100_fp16/backbone.pth); "
               "see checkpoints/README.md",
}
# The entry of a dict checkpoint that holds each kind's weights.
ENTRIES = {"stylegan2_generator": "g_ema", "stylegan2_discriminator": "d", "dualstylegan_generator": "g_ema",
           "deep3d_recon": "net_recon", "psp_encoder": "state_dict", "bisenet": "state_dict",
           "vtoonify_d": "g_ema", "styleheat": "net_G_ema", "pirender": "net_G_ema"}


def build_module(kind: str) -> nn.Module:
    """The module of ``kind`` at the configuration of the official file."""
    if kind == "sadtalker_audio2exp":
        from stylization.style_e.audio2exp import Audio2Exp

        return Audio2Exp()
    if kind == "stylegan2_generator":
        from stylization.style_a.stylegan2 import Generator

        return Generator(1024, 512, 8, channel_multiplier=2)
    if kind == "stylegan2_discriminator":
        from stylization.style_a.stylegan2 import Discriminator

        return Discriminator(1024, channel_multiplier=2)
    if kind == "dualstylegan_generator":
        from stylization.style_a.dualstylegan import DualStyleGAN

        return DualStyleGAN(1024, 512, 8, channel_multiplier=2, res_index=6)
    if kind == "psp_encoder":
        from stylization.style_a.psp import PSP

        return PSP(1024, z_plus=True)
    if kind == "vtoonify_d":
        from stylization.style_a.vtoonify import VToonifyD

        return VToonifyD(256, 1024)
    if kind == "styleheat":
        from stylization.style_a.style_a import MotionParts

        return MotionParts()
    if kind == "bisenet":
        from stylization.style_a.bisenet import BiSeNet

        return BiSeNet(PARSING_CLASSES)
    if kind == "deep3d_recon":
        from stylization.preprocess.recon_net import ReconNet

        return ReconNet()
    if kind == "syncnet":
        from stylization.syncnet.model import SyncNet

        return SyncNet(1024)
    if kind == "arcface":
        from stylization.metrics.arcface import IResNet

        return IResNet(100)
    if kind == "styletalk":
        from stylization.styletalk.model import StyleTalk

        return StyleTalk()
    if kind == "pirender":
        from stylization.styletalk.pirender import PIRenderer

        return PIRenderer()
    if kind in ("saas_video_driven", "saas_audio_driven"):
        from stylization.saas.model import SAASGenerator

        return SAASGenerator(kind.split("_")[1])
    if kind == "saas_pose_codebook":
        from stylization.saas.codebook import VQCodebook

        return VQCodebook(in_dim=6, n_codes=200, classes=256)
    if kind == "saas_audio2pose":
        from stylization.saas.pose import AudioPosePredictor

        return AudioPosePredictor()
    raise CheckpointError(f"unknown checkpoint kind {kind!r}; known: {sorted(SOURCES)}")


def _read(path: str, kind: str) -> dict:
    if path.endswith(".safetensors"):
        if not os.path.isfile(path):
            raise CheckpointError(f"checkpoint file not found; get it from {SOURCES[kind]}", path)
        from safetensors import SafetensorError
        from safetensors.torch import load_file as load_safetensors

        try:
            return load_safetensors(path)
        except (SafetensorError, OSError) as exc:  # a damaged header / unreadable file; anything else is a bug
            raise CheckpointError(f"not a readable safetensors file ({exc})", path) from None
    return load_file(path, f"get it from {SOURCES[kind]}")


def extract_state_dict(kind: str, obj: dict, path: str) -> dict[str, torch.Tensor]:
    """The module state dict inside an official file's top-level structure."""
    if kind == "sadtalker_audio2exp":
        if "model" in obj and isinstance(obj["model"], dict):
            return obj["model"]
        keys = [k for k in obj if "audio2exp" in k]
        if keys:
            return {k.split("audio2exp.", 1)[1]: obj[k] for k in keys}
        raise CheckpointError("neither {'model': state_dict} nor keys containing 'audio2exp': not a SadTalker "
                              "Audio2Exp checkpoint", path)
    if kind == "styleheat":
        from stylization.style_a.style_a import styleheat_state

        entry = obj.get("net_G_ema", obj)
        if not isinstance(entry, dict) or not any(k.startswith(("video_warper.", "calibrator.")) for k in entry):
            raise CheckpointError("no 'net_G_ema' with video_warper.* / calibrator.* keys: not a StyleHEAT checkpoint",
                                  path)
        return styleheat_state(_strip_module_prefix(entry))
    if kind == "styletalk":
        entry = obj.get("model_state_dict", obj)
        parts = ("content_encoder.", "style_encoder.", "decoder.")
        state = {k: v for k, v in _strip_module_prefix(entry).items() if k.startswith(parts)} \
            if isinstance(entry, dict) else {}
        if not state:
            raise CheckpointError("no 'model_state_dict' with content_encoder.* / style_encoder.* / decoder.* keys: "
                                  "not a StyleTalk checkpoint", path)
        return state
    if kind in ("saas_video_driven", "saas_audio_driven"):
        # {part: state dict} (training files add optimisers and discriminators, ignored; a DDP run's parts
        # carry "module."): the parts become the prefixes of SAASGenerator's keys
        first = "encoder" if kind == "saas_video_driven" else "audio_encoder"
        parts = (first, "style_encoder", "ra", "decoder")
        missing = [p for p in parts if not isinstance(obj.get(p), dict)]
        if missing:
            raise CheckpointError(f"no {missing} entries (top-level keys: {sorted(obj)[:8]}): not a {kind} file", path)
        return {f"{p}.{k}": v for p in parts for k, v in _strip_module_prefix(obj[p]).items()}
    if kind == "saas_pose_codebook":
        entry = obj.get("state_dict", obj)
        if not isinstance(entry, dict) or not any(k.startswith("quantize.") for k in entry):
            raise CheckpointError("no 'state_dict' with quantize.* keys: not a SAAS pose codebook", path)
        return _strip_module_prefix(entry)
    if kind == "saas_audio2pose":
        # {'state_dict', 'optimizer', 'epoch', 'config'}; the state dict was saved from nn.DataParallel ("module.")
        entry = obj.get("state_dict", obj)
        state = _strip_module_prefix(entry) if isinstance(entry, dict) else {}
        if not any(k.startswith(("audio_eocder.", "cross_modal_layer.")) for k in state):
            raise CheckpointError("no 'state_dict' with audio_eocder.* / cross_modal_layer.* keys: not a SAAS "
                                  "audio-to-pose predictor", path)
        return state
    if kind in ("syncnet", "arcface"):
        from stylization.syncnet.model import with_batch_counters

        if not obj or not all(torch.is_tensor(v) for v in obj.values()):
            what = "a SyncNet" if kind == "syncnet" else "an ArcFace backbone"
            raise CheckpointError(f"not a plain state dict of tensors: not {what} checkpoint", path)
        return with_batch_counters(_strip_module_prefix(obj))
    if kind in ENTRIES:
        entry = ENTRIES[kind]
        if entry in obj and isinstance(obj[entry], dict):
            return _strip_module_prefix(obj[entry])
        if obj and all(torch.is_tensor(v) for v in obj.values()):
            return _strip_module_prefix(obj)  # a plain state dict
        raise CheckpointError(f"no {entry!r} entry (top-level keys: {sorted(obj)[:8]}): not a {kind} checkpoint", path)
    raise CheckpointError(f"unknown checkpoint kind {kind!r}; known: {sorted(SOURCES)}", path)


def _strip_module_prefix(state: dict) -> dict:
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def check_keys(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], path: str) -> None:
    """Raise a one-line :class:`CheckpointError` unless ``state`` has exactly ``own``'s keys and shapes."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shaped = [f"{k} {list(state[k].shape)} vs {list(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shaped:
        parts = [f"{label} {items[:5]}{' ...' if len(items) > 5 else ''} ({len(items)})"
                 for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shaped))
                 if items]
        raise CheckpointError("does not match the model: " + "; ".join(parts), path)


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], path: str) -> nn.Module:
    """``module.load_state_dict(state, strict=True)`` with a one-line error naming the bad keys."""
    check_keys(module.state_dict(), state, path)
    module.load_state_dict(state, strict=True)
    return module


def load_style_a(generator: nn.Module, vtoonify: str | None = None, styleheat: str | None = None) -> nn.Module:
    """Initialise a :class:`~stylization.style_a.style_a.StyleAGenerator` from official files.

    ``vtoonify`` (a VToonify-D ``g_ema`` file) must match every parameter except ``motion.*``,
    ``refinement.*`` and (with ``keypoints=True``, not in the paper) ``keypoint_sft.*`` exactly; ``styleheat`` (``StyleHEAT_visual.pt``) supplies those two through
    the documented rename map (only ``motion.*`` when the model has no refinement network).
    """
    if vtoonify is not None:
        vtoonify = os.fspath(vtoonify)
        state = extract_state_dict("vtoonify_d", _read(vtoonify, "vtoonify_d"), vtoonify)
        own = {k: v for k, v in generator.state_dict().items()
               if not k.startswith(("motion.", "refinement.", "keypoint_sft."))}
        check_keys(own, state, vtoonify)
        generator.load_state_dict(state, strict=False)  # strictness checked above, for this subset
    if styleheat is not None:
        parts = generator.motion_parts()
        styleheat = os.fspath(styleheat)
        state = extract_state_dict("styleheat", _read(styleheat, "styleheat"), styleheat)
        if parts.refinement is None:
            state = {k: v for k, v in state.items() if k.startswith("motion.")}
        load_strict(parts, state, styleheat)
    return generator


def load_official(kind: str, path: str | os.PathLike, module: nn.Module | None = None) -> nn.Module:
    """Read an official file of ``kind`` and load it strictly into ``module`` (default: :func:`build_module`)."""
    path = os.fspath(path)
    if kind not in SOURCES:
        raise CheckpointError(f"unknown checkpoint kind {kind!r}; known: {sorted(SOURCES)}", path)
    obj = _read(path, kind)
    state = extract_state_dict(kind, obj, path)
    if module is None and kind == "arcface":  # the released backbones come in several depths
        from stylization.metrics.arcface import DEPTHS, IResNet, depth_of

        depth = depth_of(state)
        if depth is None:
            raise CheckpointError(f"its layer1-4 block counts match no IResNet depth ({sorted(DEPTHS)}): "
                                  "not an ArcFace backbone", path)
        module = IResNet(depth)
    module = build_module(kind) if module is None else module
    if kind == "psp_encoder":  # pSp adds latent_avg to every code; it lives beside the state dict
        avg, dim = obj.get("latent_avg"), module.latent_avg.shape[-1]  # 512 for the released encoders
        if not torch.is_tensor(avg) or avg.shape[-1] != dim:
            raise CheckpointError(f"has no 'latent_avg' [18, {dim}] (or [{dim}]) beside its state_dict", path)
        state = {**state, "latent_avg": avg.reshape(-1, dim).expand_as(module.latent_avg).clone()}
    return load_strict(module, state, path)


# -- Style-A: art-style codes, the perceptual losses' feature networks -----------------------

class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts of NumPy arrays and nothing else (no code can run from the file)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("collections", "OrderedDict")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def load_exstyle_codes(path: str | os.PathLike, style_dim: int = 512) -> dict[str, np.ndarray]:
    """DualStyleGAN / VToonify ``exstyle_code.npy``: {style image name: float32 [1, 18, 512]} (Z+;
    ``style_dim`` other than 512 only for small test models).

    The file is a pickled dict inside .npy; it is read with an unpickler that accepts only
    NumPy arrays, so a malicious file cannot run code. Map a code to W+ with the generator's
    mapping network (``StyleARenderer.encode_inputs(batch, exstyle_z=...)``).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError("exstyle code file not found; it ships beside the DualStyleGAN / VToonify checkpoints", path)
    try:
        with open(path, "rb") as f:
            major, _ = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(f)
            if dtype != np.dtype(object) or shape != ():
                raise ValueError(f"expected a pickled dict (object array of shape ()), found {dtype} {shape}")
            codes = _ArrayUnpickler(io.BytesIO(f.read())).load()
        codes = codes.item() if isinstance(codes, np.ndarray) else codes
    except (ValueError, pickle.UnpicklingError, EOFError, OSError) as exc:
        raise DataError(f"not a readable exstyle code file ({exc})", path) from None
    if not isinstance(codes, dict) or not codes:
        raise DataError("expected a non-empty dict {style name: [1, 18, 512] array}", path)
    out = {}
    for name, code in codes.items():
        arr = np.asarray(code, np.float32)
        if arr.shape[-1] != style_dim or arr.ndim not in (2, 3):
            raise DataError(f"style {name!r} has shape {list(arr.shape)}, expected [1, 18, {style_dim}]", path)
        out[str(name)] = arr.reshape(1, -1, style_dim)
    return out


def vgg19_features(weights: str | None) -> nn.Module:
    """torchvision's VGG-19 ``features`` for :class:`~stylization.style_a.losses.VGGPerceptual`.

    ``weights="imagenet"``: ``VGG19_Weights.IMAGENET1K_V1`` from the torch hub cache (downloaded
    there when missing and the network allows; a clear error otherwise); ``None``: a random
    initialisation (tests only).
    """
    from torchvision.models import VGG19_Weights, vgg19

    if weights is None:
        return vgg19(weights=None).features
    if weights != "imagenet":
        raise ConfigError(f"stage.perceptual_weights must be 'imagenet' or null, got {weights!r}")
    url = VGG19_Weights.IMAGENET1K_V1.url
    try:
        return vgg19(weights=VGG19_Weights.IMAGENET1K_V1).features
    # OSError covers a failed download (urllib's URLError) and the file system; RuntimeError is
    # torch.load's report of a truncated file in the cache.
    except (OSError, RuntimeError) as exc:
        cache = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
        raise CheckpointError(f"VGG-19 ImageNet weights unavailable ({type(exc).__name__}); download {url} to that "
                              "path, or set the stage's perceptual loss weights to 0", cache) from None


def lpips_vgg() -> nn.Module:
    """The ``lpips`` package's LPIPS-VGG network for :class:`~stylization.style_a.losses.LPIPSLoss`
    (it fetches torchvision's ImageNet VGG-16 on first use)."""
    try:
        import lpips
    except ImportError:
        raise ConfigError("LPIPS needs the lpips package (pip install lpips), or set stage.loss.lpips=0") from None
    try:
        return lpips.LPIPS(net="vgg", verbose=False)
    except (OSError, RuntimeError) as exc:  # as vgg19_features: a failed download or a truncated cached file
        raise CheckpointError(f"LPIPS-VGG weights unavailable ({type(exc).__name__}: {exc}); connect once to "
                              "download them, or set stage.loss.lpips=0") from None


INCEPTION_SOURCE = ("torch-fidelity's weights-inception-2015-12-05-6726825d.pth or pytorch-fid's "
                    "pt_inception-2015-12-05-6726825d.pth (the same tensors); see checkpoints/README.md")


def inception_fid(path: str | os.PathLike | None, device: str = "cpu") -> nn.Module:
    """torch-fidelity's FID Inception-v3 (pool features, ``"2048"``) with the weights in ``path``.

    The file is read only with ``weights_only=True`` (:func:`load_file`); the library then gets
    the checked tensors re-serialised in memory, so its own ``torch.load`` never sees the file.
    A missing path or file, or a file of another network, is a one-line :class:`CheckpointError`;
    nothing is downloaded.
    """
    if not path:
        raise CheckpointError(f"FID needs inception=PATH, the Inception weights file: {INCEPTION_SOURCE}")
    path = os.fspath(path)
    state = load_file(path, f"get it from {INCEPTION_SOURCE}")
    state = _strip_module_prefix(state.get("state_dict", state))
    if not state or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError("not a plain state dict of tensors: not an Inception weights file", path)
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    try:
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=buffer)
    except RuntimeError as exc:  # load_state_dict(strict=True): missing, unexpected or mis-shaped tensors
        detail = " ".join(str(exc).split())[:300]
        raise CheckpointError(f"does not match torch-fidelity's Inception-v3: {detail}", path) from None
    return net.to(device).eval()

# -- CLIP (Style-E's text condition) ---------------------------------------------------------

def clip_text_encoder(model: str | dict, pretrained: str | None, seed: int = 0, backend: str = "open_clip",
                      hf_model: str | None = None):
    """Build Style-E's frozen text encoder (the configs' ``model.text_encoder._target_``).

    Args:
        model: an open_clip model name (``"ViT-B-32"``) or an open_clip CLIP config dict
            (e.g. :func:`~stylization.style_e.text_encoder.tiny_clip_config`). open_clip backend only.
        pretrained: with a name: an open_clip tag (``"openai"``, downloaded once into the open_clip /
            Hugging Face cache) or a local checkpoint file; None for random weights. Must be None
            with a config dict. open_clip backend only.
        seed: the initialisation seed of random weights (the global RNG is left untouched).
        backend: ``"open_clip"`` or ``"hf"`` (transformers' CLIP text tower from ``hf_model``; the
            same vector for the same weights, see :func:`export_hf_clip_text`).
        hf_model: with ``backend="hf"``: a local directory of a transformers ``CLIPModel`` or
            ``CLIPTextModelWithProjection`` with its tokenizer files (e.g. a download of
            ``openai/clip-vit-base-patch32``, or :func:`export_hf_clip_text`'s output).

    Returns:
        :class:`~stylization.style_e.text_encoder.ClipTextEncoder`.
    """
    from stylization.style_e.text_encoder import ClipTextEncoder

    key = "model.text_encoder"
    if backend == "hf":
        if hf_model is None:
            raise ConfigError(f"{key}.backend=hf reads {key}.hf_model=DIR (a local transformers CLIP directory); "
                              "it is null")
        tower = hf_clip_text(hf_model, key=f"{key}.hf_model")
        return ClipTextEncoder(tower, tower.tokenize)
    if backend != "open_clip":
        raise ConfigError(f"{key}.backend must be open_clip or hf, got {backend!r}")
    if hf_model is not None:
        raise ConfigError(f"{key}.hf_model={hf_model!r} is read only with {key}.backend=hf; set the backend "
                          "or hf_model=null")
    return ClipTextEncoder(*open_clip_model(model, pretrained, seed, key=key))


def open_clip_model(model: str | dict, pretrained: str | None, seed: int = 0, key: str = "clip"):
    """An open_clip CLIP (image and text towers) and its tokenizer: ``model`` a name or a config dict,
    ``pretrained`` a tag, a local file or None (random weights from ``seed``; the global RNG is left
    untouched). ``key`` names the config option in the error messages."""
    import pickle

    import open_clip

    from stylization.errors import ConfigError

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if isinstance(model, str):
            try:
                clip = open_clip.create_model(model, pretrained=pretrained)
            # open_clip raises RuntimeError for an unknown name or tag and failed downloads, OSError /
            # FileNotFoundError from the Hugging Face hub or the file system, UnpicklingError or
            # ValueError for a file that is not a CLIP checkpoint.
            except (RuntimeError, OSError, ValueError, pickle.UnpicklingError) as exc:
                # the first 200 characters: open_clip's message for an unknown name lists every model it knows
                reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
                raise CheckpointError(
                    f"cannot load CLIP {key}.model={model} pretrained={pretrained!r} "
                    f"({type(exc).__name__}: {reason}); the tag downloads once into the open_clip / Hugging Face cache "
                    f"(needs the network once), or set {key}.pretrained to a local checkpoint file"
                ) from None
            tokenizer = open_clip.get_tokenizer(model)
        else:
            if pretrained is not None:
                raise ConfigError(f"{key}.pretrained={pretrained!r} cannot load into a CLIP config dict; "
                                  f"give a model name ({key}.model=ViT-B-32) or pretrained=null")
            clip = open_clip.CLIP(**dict(model))
            tokenizer = open_clip.get_tokenizer("ViT-B-32")  # the bundled BPE vocabulary
    return clip, tokenizer


# -- transformers: CLIP's text tower (Style-E's other backend), language models -------------

# open_clip's text tower -> transformers' CLIPTextModelWithProjection. Outside the blocks:
OPEN_CLIP_TEXT_TO_HF = {
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
}
# Inside block i (``transformer.resblocks.{i}.<module>.<weight|bias>`` ->
# ``text_model.encoder.layers.{i}.<module>.<weight|bias>``):
OPEN_CLIP_BLOCK_TO_HF = {
    "ln_1": "layer_norm1",
    "attn.out_proj": "self_attn.out_proj",
    "ln_2": "layer_norm2",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}
# Two are not renames: a block's ``attn.in_proj_weight`` [3W, W] and ``attn.in_proj_bias`` [3W]
# hold nn.MultiheadAttention's q, k and v stacked in that order -> ``self_attn.{q,k,v}_proj.*``;
# ``text_projection`` [W, D] (used as x @ P) -> ``text_projection.weight`` [D, W] (an nn.Linear).
# Not the text tower's, skipped: the image tower, the logit scale / bias, the causal mask buffer.
OPEN_CLIP_NOT_TEXT = ("visual.", "logit_scale", "logit_bias", "attn_mask")


def open_clip_text_state_to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An open_clip CLIP state dict (a ``CustomTextCLIP``'s ``text.*`` too) -> the state dict of
    transformers' ``CLIPTextModelWithProjection``, by the maps above. A text key they do not know
    (layer scales, attention pooling, a linear projection) raises :class:`CheckpointError`."""
    out, unknown = {}, []
    for key, value in state.items():
        key = key[len("text."):] if key.startswith("text.") else key
        if key.startswith(OPEN_CLIP_NOT_TEXT):
            continue
        if key in OPEN_CLIP_TEXT_TO_HF:
            out[OPEN_CLIP_TEXT_TO_HF[key]] = value
            continue
        if key == "text_projection":
            out["text_projection.weight"] = value.t().contiguous()
            continue
        match = re.fullmatch(r"transformer\.resblocks\.(\d+)\.(.+)", key)
        if match is None:
            unknown.append(key)
            continue
        layer, rest = f"text_model.encoder.layers.{match[1]}.", match[2]
        if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
            param = rest.rsplit("_", 1)[1]
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                out[f"{layer}self_attn.{name}.{param}"] = part.contiguous()
            continue
        module, _, param = rest.rpartition(".")
        if module in OPEN_CLIP_BLOCK_TO_HF and param in ("weight", "bias"):
            out[f"{layer}{OPEN_CLIP_BLOCK_TO_HF[module]}.{param}"] = value
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"open_clip text keys with no transformers CLIP equivalent: {unknown[:5]}"
                              f"{' ...' if len(unknown) > 5 else ''} ({len(unknown)})")
    return out


def hf_clip_text_config(clip: nn.Module, tokenizer):
    """The ``transformers.CLIPTextConfig`` of an open_clip CLIP's text tower (refusing the
    variants transformers' CLIP cannot express: no causal mask, layer scale, a pooling other than
    at the end-of-text token, a linear projection, a tanh-approximated GELU)."""
    from transformers import CLIPTextConfig

    tower = getattr(clip, "text", clip)  # a CustomTextCLIP keeps its text tower under .text
    blocks = getattr(getattr(tower, "transformer", None), "resblocks", None)
    if not blocks:
        raise CheckpointError(f"{type(tower).__name__} has no transformer.resblocks: not an open_clip text "
                              "transformer, cannot convert it to transformers' CLIP")
    block = blocks[0]
    act = {"QuickGELU": "quick_gelu", "GELU": "gelu"}.get(type(block.mlp.gelu).__name__)
    pool = getattr(tower, "text_pool_type", getattr(tower, "pool_type", None))
    problems = [text for text, bad in (
        ("no causal mask", getattr(tower, "attn_mask", None) is None),
        ("layer scale", not isinstance(block.ls_1, nn.Identity)),
        (f"pooling {pool!r} (argmax / eos only)", pool not in ("argmax", "eos")),
        ("a class token", getattr(tower, "cls_emb", None) is not None),
        ("a linear text projection", not isinstance(tower.text_projection, nn.Parameter)),
        (f"activation {type(block.mlp.gelu).__name__}",
         act is None or getattr(block.mlp.gelu, "approximate", "none") != "none"),
    ) if bad]
    if problems:
        raise CheckpointError(f"this open_clip text tower has {', '.join(problems)}: transformers' CLIP text model "
                              "cannot reproduce it")
    vocab_size, width = tower.token_embedding.weight.shape
    return CLIPTextConfig(vocab_size=int(vocab_size), hidden_size=int(width),
                          intermediate_size=int(block.mlp.c_fc.out_features), num_hidden_layers=len(blocks),
                          num_attention_heads=int(block.attn.num_heads),
                          max_position_embeddings=int(tower.positional_embedding.shape[0]),
                          projection_dim=int(tower.text_projection.shape[1]), hidden_act=act,
                          layer_norm_eps=float(tower.ln_final.eps), bos_token_id=int(tokenizer.sot_token_id),
                          eos_token_id=int(tokenizer.eot_token_id), pad_token_id=int(tokenizer.eot_token_id))


def hf_clip_tokenizer(tokenizer, context_length: int = 77):
    """open_clip's ``SimpleTokenizer`` -> the ``transformers.CLIPTokenizer`` with the same ids: the
    same byte-level BPE vocabulary and merges (open_clip ships them as bpe_simple_vocab_16e6.txt.gz),
    its ``<start_of_text>`` / ``<end_of_text>`` named ``<|startoftext|>`` / ``<|endoftext|>``.
    Built offline. The tokenizer alone does not apply open_clip's ftfy / HTML-entity cleaning:
    :class:`~stylization.style_e.text_encoder.HFClipText` does it before calling it."""
    from open_clip.tokenizer import SimpleTokenizer
    from transformers import CLIPTokenizer

    if (not isinstance(tokenizer, SimpleTokenizer) or tokenizer.reduction_fn is not None
            or getattr(tokenizer.clean_fn, "__name__", "") != "_clean_lower" or len(tokenizer.all_special_ids) != 2):
        raise CheckpointError(f"{type(tokenizer).__name__}: only open_clip's SimpleTokenizer with its default "
                              "cleaning converts to a transformers CLIPTokenizer")
    names = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {names.get(token, token): i for token, i in tokenizer.encoder.items()}
    merges = sorted(tokenizer.bpe_ranks, key=tokenizer.bpe_ranks.get)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=int(context_length))


def export_hf_clip_text(clip: nn.Module, tokenizer, out_dir: str | os.PathLike) -> str:
    """Write an open_clip CLIP's text tower as a transformers ``CLIPTextModelWithProjection``
    directory (config, safetensors weights, tokenizer files) that ``model.text_encoder.backend=hf
    model.text_encoder.hf_model=<out_dir>`` loads; returns ``out_dir``. The weights go through
    :func:`open_clip_text_state_to_hf` and load strictly."""
    from transformers import CLIPTextModelWithProjection

    out_dir = os.fspath(out_dir)
    config = hf_clip_text_config(clip, tokenizer)
    tower = getattr(clip, "text", clip)
    state = open_clip_text_state_to_hf({k: v.detach().float() for k, v in tower.state_dict().items()})
    model = load_strict(CLIPTextModelWithProjection(config), state, out_dir)
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    hf_clip_tokenizer(tokenizer, config.max_position_embeddings).save_pretrained(out_dir)
    return out_dir


def _hf_config(path: str, key: str, what: str):
    """The transformers config of a local model directory, or a one-line :class:`CheckpointError`."""
    if not os.path.isdir(path):
        raise CheckpointError(f"{what} directory not found ({key})", path)
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise CheckpointError(f"no config.json: not a transformers model directory ({key})", path)
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:  # unreadable JSON, an unknown model_type
        raise CheckpointError(f"unreadable config.json ({type(exc).__name__}: {_first_line(exc)}) ({key})",
                              path) from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else ""


def hf_clip_text(path: str | os.PathLike, key: str = "hf_model"):
    """A local transformers CLIP directory (``CLIPModel``: its text half, or
    ``CLIPTextModelWithProjection``) and its ``CLIPTokenizer`` ->
    :class:`~stylization.style_e.text_encoder.HFClipText` (float32, eval mode). Every text weight
    must be in the file; the image tower's are ignored. ``key`` names the option in errors."""
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer

    from stylization.style_e.text_encoder import HFClipText

    path = os.fspath(path)
    config = _hf_config(path, key, "transformers CLIP")
    if config.model_type == "clip":
        text_config = config.text_config
        text_config.projection_dim = config.projection_dim  # a CLIPModel keeps it at the top level
    elif config.model_type == "clip_text_model":
        text_config = config
    else:
        raise CheckpointError(f"model_type {config.model_type!r} is not CLIP; {key} needs a CLIPModel or "
                              "CLIPTextModelWithProjection directory", path)
    has = lambda name: os.path.isfile(os.path.join(path, name))  # noqa: E731
    if not (has("tokenizer.json") or (has("vocab.json") and has("merges.txt"))):
        raise CheckpointError("no CLIP tokenizer files (tokenizer.json, or vocab.json + merges.txt) beside the "
                              f"weights ({key}); copy them from the model's release", path)
    try:
        model, info = CLIPTextModelWithProjection.from_pretrained(
            path, config=text_config, dtype=torch.float32, local_files_only=True, output_loading_info=True)
        tokenizer = CLIPTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:  # no / unreadable weights, mis-shaped tensors
        raise CheckpointError(f"cannot load a transformers CLIP text model ({type(exc).__name__}: "
                              f"{_first_line(exc)}) ({key})", path) from None
    image_side = ("vision_model.", "visual_projection.", "logit_scale")
    unexpected = [k for k in info["unexpected_keys"] if not k.startswith(image_side)]
    parts = [f"{label} {sorted(keys)[:5]} ({len(keys)})" for label, keys in
             (("missing", list(info["missing_keys"])), ("unexpected", unexpected),
              ("mis-shaped", [str(k) for k in info.get("mismatched_keys", [])])) if keys]
    if parts:
        raise CheckpointError(f"does not match a CLIP text model ({key}): " + "; ".join(parts), path)
    eos = text_config.eos_token_id
    if eos != 2 and tokenizer.eos_token_id != eos:  # 2: transformers' legacy configs, pooled by argmax
        raise CheckpointError(f"the tokenizer's end-of-text id {tokenizer.eos_token_id} is not the model's "
                              f"eos_token_id {eos} ({key})", path)
    return HFClipText(model.eval().requires_grad_(False), tokenizer)


def transformers_lm_kind(path: str | os.PathLike, key: str = "paraphrase_model") -> bool:
    """Whether the local transformers directory ``path`` holds a sequence-to-sequence LM (True) or a
    causal LM (False), from its config.json alone; anything else raises :class:`CheckpointError`."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES)

    path = os.fspath(path)
    config = _hf_config(path, key, "language model")
    if config.model_type in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES:  # first: BART has both kinds
        return True
    if config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return False
    raise CheckpointError(f"model_type {config.model_type!r} is neither a causal nor a sequence-to-sequence "
                          f"language model ({key})", path)


def transformers_lm(path: str | os.PathLike, key: str = "paraphrase_model"):
    """A local transformers language-model directory -> (model in eval mode, tokenizer,
    ``is_seq2seq``): ``AutoModelForSeq2SeqLM`` when the config's ``model_type`` has a
    sequence-to-sequence LM (T5, BART, ...), else ``AutoModelForCausalLM`` (GPT-2, Llama, Qwen, ...).
    Nothing is downloaded; remote code is not run. ``key`` names the option in errors."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    path = os.fspath(path)
    seq2seq = transformers_lm_kind(path, key)
    auto = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = auto.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:  # no / unreadable tokenizer or weights
        raise CheckpointError(f"cannot load the language model ({type(exc).__name__}: {_first_line(exc)}) ({key})",
                              path) from None
    return model.eval().requires_grad_(False), tokenizer, seq2seq

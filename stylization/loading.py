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

Plain state dicts and DataParallel ``module.`` prefixes are accepted for every kind.

Style-A's other fetched files: :func:`load_exstyle_codes` (DualStyleGAN's ``exstyle_code.npy``,
read with an unpickler that admits only arrays), :func:`vgg19_features` and :func:`lpips_vgg`
(the perceptual losses' ImageNet networks; the loss modules themselves take them ready-made).
"""

from __future__ import annotations

import io
import os
import pickle

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
}
# The entry of a dict checkpoint that holds each kind's weights.
ENTRIES = {"stylegan2_generator": "g_ema", "stylegan2_discriminator": "d", "dualstylegan_generator": "g_ema",
           "deep3d_recon": "net_recon", "psp_encoder": "state_dict", "bisenet": "state_dict",
           "vtoonify_d": "g_ema", "styleheat": "net_G_ema"}


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
    module = build_module(kind) if module is None else module
    state = extract_state_dict(kind, obj, path)
    if kind == "psp_encoder":  # pSp adds latent_avg to every code; it lives beside the state dict
        avg = obj.get("latent_avg")
        if not torch.is_tensor(avg) or avg.shape[-1] != 512:
            raise CheckpointError("has no 'latent_avg' [18, 512] (or [512]) beside its state_dict", path)
        state = {**state, "latent_avg": avg.reshape(-1, 512).expand_as(module.latent_avg).clone()}
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


def load_exstyle_codes(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """DualStyleGAN / VToonify ``exstyle_code.npy``: {style image name: float32 [1, 18, 512]} (Z+).

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
        if arr.shape[-1] != 512 or arr.ndim not in (2, 3):
            raise DataError(f"style {name!r} has shape {list(arr.shape)}, expected [1, 18, 512]", path)
        out[str(name)] = arr.reshape(1, -1, 512)
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
                              "path, or set stage.loss.perceptual=0", cache) from None


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


# -- CLIP (Style-E's text condition) ---------------------------------------------------------

def clip_text_encoder(model: str | dict, pretrained: str | None, seed: int = 0):
    """Build Style-E's frozen text encoder (the configs' ``model.text_encoder._target_``).

    Args:
        model: an open_clip model name (``"ViT-B-32"``) or an open_clip CLIP config dict
            (e.g. :func:`~stylization.style_e.text_encoder.tiny_clip_config`).
        pretrained: with a name: an open_clip tag (``"openai"``, downloaded once into the open_clip /
            Hugging Face cache) or a local checkpoint file; None for random weights. Must be None
            with a config dict.
        seed: the initialisation seed of random weights (the global RNG is left untouched).

    Returns:
        :class:`~stylization.style_e.text_encoder.ClipTextEncoder`.
    """
    from stylization.style_e.text_encoder import ClipTextEncoder

    return ClipTextEncoder(*open_clip_model(model, pretrained, seed, key="model.text_encoder"))


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

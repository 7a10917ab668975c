"""Style-E: schedule and samplers, the denoiser, guidance, long audio, loading, a short training run."""

import math

import numpy as np
import pytest
import torch
from conftest import compose_train, train_as_documented

from stylization.errors import CheckpointError
from stylization.loading import clip_text_encoder, load_official
from stylization.style_e.audio2exp import Audio2Exp
from stylization.style_e.denoiser import DiffMLP
from stylization.style_e.diffusion import (
    AncestralSampler,
    CosineSchedule,
    DDIMSampler,
    build_sampler,
    respaced_timesteps,
)
from stylization.runs import load_run, style_e_from_run
from stylization.style_e.generate import StyleE
from stylization.style_e.sequence import blend_windows, chunk_bounds, split_windows, window_starts
from stylization.style_e.text_encoder import interpolate_texts, tiny_clip_config

# -- schedule and samplers ---------------------------------------------------------------

def test_cosine_schedule_golden_values():
    s = CosineSchedule(1000)
    assert s.alphas_cumprod.dtype == np.float64 and np.all(np.diff(s.alphas_cumprod) < 0)
    expected = lambda t: (math.cos(((t + 1) / 1000 + 0.008) / 1.008 * math.pi / 2) /  # noqa: E731
                          math.cos(0.008 / 1.008 * math.pi / 2)) ** 2
    for t in (0, 200, 500, 800):
        assert s.alphas_cumprod[t] == pytest.approx(expected(t), rel=1e-9)
    assert s.betas.max() <= 0.999
    x0, noise = torch.ones(2, 3), torch.zeros(2, 3)
    out = s.q_sample(x0, torch.tensor([0, 800]), noise)
    assert torch.allclose(out[:, 0], torch.tensor([math.sqrt(expected(0)), math.sqrt(expected(800))]).float())


def test_respacing_keeps_the_right_timesteps():
    assert respaced_timesteps(1000, 5) == [0, 200, 400, 600, 800]
    assert respaced_timesteps(1000, 1) == [0]
    assert DDIMSampler(CosineSchedule(), 5).timesteps == [0, 200, 400, 600, 800]
    with pytest.raises(ValueError, match="cannot respace"):
        respaced_timesteps(10, 11)
    with pytest.raises(ValueError, match="ddim"):
        build_sampler("euler", CosineSchedule(), 5)


def perfect_predictor(x0):
    return lambda x_t, t: x0.expand(x_t.shape[0], *x0.shape[1:])


@pytest.mark.parametrize("sampler_cls", [DDIMSampler, AncestralSampler])
def test_samplers_return_x0_of_a_perfect_predictor(sampler_cls):
    x0 = torch.randn(1, 32, 64)
    for steps in (1, 5):
        out = sampler_cls(CosineSchedule(), steps).sample(perfect_predictor(x0), (3, 32, 64),
                                                          generator=torch.Generator().manual_seed(0))
        assert torch.allclose(out, x0.expand(3, 32, 64))


def test_ddim_is_deterministic_and_golden():
    """A fixed contracting "denoiser" pins the DDIM update numerically (eta 0)."""
    sampler = DDIMSampler(CosineSchedule(), 5)
    fn = lambda x_t, t: 0.5 * x_t  # noqa: E731
    a = sampler.sample(fn, (2, 4), generator=torch.Generator().manual_seed(3))
    b = sampler.sample(fn, (2, 4), generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    x = torch.randn((2, 4), generator=torch.Generator().manual_seed(3))
    ac = CosineSchedule().alphas_cumprod
    for t, t_prev in ((800, 600), (600, 400), (400, 200), (200, 0)):
        x0 = 0.5 * x
        eps = (x - math.sqrt(ac[t]) * x0) / math.sqrt(1 - ac[t])
        x = math.sqrt(ac[t_prev]) * x0 + math.sqrt(1 - ac[t_prev]) * eps
    assert torch.allclose(a, 0.5 * x, atol=1e-6)
    stochastic = DDIMSampler(CosineSchedule(), 5, eta=1.0)
    assert not torch.equal(stochastic.sample(fn, (2, 4), generator=torch.Generator().manual_seed(3)), a)


# -- denoiser and guidance ---------------------------------------------------------------

def test_paper_size_denoiser_has_about_five_million_parameters():
    from hydra.utils import instantiate

    with torch.device("meta"):
        net = instantiate(compose_train(["stage=style_e"]).model.denoiser)
    n = sum(p.numel() for p in net.parameters())
    assert 4.5e6 < n < 6.5e6


def test_denoiser_shapes_and_null_text():
    torch.manual_seed(0)
    net = DiffMLP(exp_dim=64, width=32, blocks=2, window_frames=8, text_dim=16, use_text=True)
    x, a, text = torch.randn(3, 8, 64), torch.randn(3, 8, 64), torch.randn(3, 16)
    t = torch.tensor([0, 500, 999])
    out = net(x, t, a, text)
    assert out.shape == (3, 8, 64)
    keep = torch.tensor([True, False, True])
    mixed = net(x, t, a, text, keep)
    assert torch.allclose(mixed[0], out[0]) and not torch.allclose(mixed[1], out[1])
    assert torch.allclose(mixed[1], net(x, t, a, None)[1])
    with pytest.raises(ValueError, match="expected windows"):
        net(torch.randn(1, 7, 64), t[:1], torch.randn(1, 7, 64), text[:1])
    no_text = DiffMLP(exp_dim=64, width=32, blocks=1, window_frames=8, text_dim=16, use_text=False)
    assert no_text(x, t, a).shape == (3, 8, 64)


def small_style_e(text_dim=16, overlap=4):
    torch.manual_seed(0)
    denoiser = DiffMLP(exp_dim=64, width=32, blocks=2, window_frames=8, text_dim=text_dim, use_text=True).eval()
    audio2exp = Audio2Exp(channels=(4, 4, 8, 8, 16)).eval()
    return StyleE(denoiser, audio2exp, None, build_sampler("ddim", CosineSchedule(1000), 5), overlap_frames=overlap)


def test_guidance_scale_interpolates_and_extrapolates():
    model = small_style_e()
    with torch.no_grad():
        model.denoiser.null_text.fill_(0.3)  # an "unconditional" text unlike the conditional one
    model.sampler = DDIMSampler(model.sampler.schedule, 1)  # one step: the guided x0 is the output itself
    mel, src, text = torch.randn(8, 1, 80, 16), torch.zeros(64), torch.randn(16)
    g = lambda scale: model.generate(mel, src, text, guidance_scale=scale, seed=1)  # noqa: E731
    cond, uncond, double = g(1.0), g(0.0), g(2.0)
    assert cond.shape == (8, 64) and not torch.allclose(cond, uncond)
    assert torch.allclose(double, uncond + 2.0 * (cond - uncond), atol=1e-5)
    assert torch.allclose(g(0.5), 0.5 * (cond + uncond), atol=1e-5)


def test_text_interpolation_is_spherical():
    a, b = torch.nn.functional.normalize(torch.randn(2, 16), dim=-1)
    assert torch.allclose(interpolate_texts(a, b, 0.0), a, atol=1e-5)
    assert torch.allclose(interpolate_texts(a, b, 1.0), b, atol=1e-5)
    assert interpolate_texts(a, b, 0.5).norm() == pytest.approx(1.0, abs=1e-5)


def test_tiny_clip_text_encoder_caches_and_is_deterministic():
    enc = clip_text_encoder(tiny_clip_config(embed_dim=32, width=32, layers=1), pretrained=None, seed=3)
    out = enc(["A woman speaks happily.", "A man talks angrily.", "A woman speaks happily."])
    assert out.shape == (3, 32) and torch.allclose(out.norm(dim=-1), torch.ones(3))
    assert torch.equal(out[0], out[2]) and not torch.allclose(out[0], out[1]) and len(enc._cache) == 2
    again = clip_text_encoder(tiny_clip_config(embed_dim=32, width=32, layers=1), pretrained=None, seed=3)
    assert torch.allclose(again(["A man talks angrily."])[0], out[1], atol=1e-5)  # batching moves the last bits


def test_clip_text_encoder_names_the_model_when_it_cannot_be_built(tmp_path):
    from stylization.errors import ConfigError

    with pytest.raises(CheckpointError, match="model.text_encoder.model=ViT-Nope pretrained='openai'"):
        clip_text_encoder("ViT-Nope", "openai")  # fails at the config lookup: no download is tried
    (tmp_path / "clip.pt").write_text("not weights")
    with pytest.raises(CheckpointError, match="pretrained="):
        clip_text_encoder("ViT-B-32", str(tmp_path / "clip.pt"))
    with pytest.raises(ConfigError, match="model.text_encoder.pretrained"):
        clip_text_encoder(tiny_clip_config(), pretrained="openai")


# -- long audio --------------------------------------------------------------------------

def test_windows_cover_any_length():
    assert window_starts(5, 8, 4) == [0]
    assert window_starts(8, 8, 4) == [0]
    assert window_starts(20, 8, 4) == [0, 4, 8, 12]
    assert window_starts(21, 8, 2) == [0, 6, 12, 13]
    seq = torch.arange(5.0)[:, None]
    assert split_windows(seq, [0], 8)[0, :, 0].tolist() == [0, 1, 2, 3, 4, 4, 4, 4]


def test_blending_is_exact_on_consistent_windows_and_smooth_across_seams():
    truth = torch.sin(torch.arange(50.0) / 5)[:, None].repeat(1, 3)
    starts = window_starts(50, 8, 4)
    windows = split_windows(truth, starts, 8)
    assert torch.allclose(blend_windows(windows, starts, 50), truth, atol=1e-6)
    # windows that disagree by a constant offset are handed over gradually, never with a jump
    offsets = torch.arange(len(starts), dtype=torch.float32)[:, None, None]
    blended = blend_windows(windows + offsets, starts, 50)
    jumps = (blended[1:] - blended[:-1] - (truth[1:] - truth[:-1])).abs().max()
    assert jumps <= 2.0 / 5 + 1e-5  # an offset of 1 is spread over the overlap: steps of at most 2 / (overlap + 1)


@pytest.mark.parametrize("n_frames", [3, 8, 37])
def test_generate_any_length_without_seams(n_frames):
    model = small_style_e()
    mel = torch.randn(n_frames, 1, 80, 16)
    out = model.generate(mel, torch.zeros(64), torch.randn(16), seed=5)
    assert out.shape == (n_frames, 64) and torch.isfinite(out).all()
    again = model.generate(mel, torch.zeros(64), torch.ones(16), seed=5)
    assert torch.equal(again, model.generate(mel, torch.zeros(64), torch.ones(16), seed=5))  # seeded
    if n_frames > 8:  # several windows: no step at a seam is larger than the largest step inside a window
        steps = (out[1:] - out[:-1]).norm(dim=-1)
        seams = [s - 1 for s in window_starts(n_frames, 8, 4)[1:]] + [s + 3 for s in window_starts(n_frames, 8, 4)[:-1]]
        inside = [i for i in range(n_frames - 1) if i not in seams]
        assert steps[seams].max() <= 1.5 * steps[inside].max()


def test_chunks_are_balanced_and_cover_everything():
    assert chunk_bounds(10, 4) == [(0, 3), (3, 6), (6, 10)]
    assert chunk_bounds(8, 8) == [(0, 8)] and chunk_bounds(1, 64) == [(0, 1)]
    for n, size in ((65, 64), (200, 7), (13, 1)):
        bounds = chunk_bounds(n, size)
        sizes = [b - a for a, b in bounds]
        assert bounds[0][0] == 0 and bounds[-1][1] == n and all(x[1] == y[0] for x, y in zip(bounds, bounds[1:]))
        assert max(sizes) <= size and max(sizes) - min(sizes) <= 1 and len(bounds) == -(-n // size)
    with pytest.raises(ValueError, match="max_size"):
        chunk_bounds(5, 0)


class WindowwiseDenoiser(torch.nn.Module):
    """A stand-in x0 predictor built of elementwise operations only: each window's output depends on
    that window alone, and no kernel changes with the batch size, so any difference between two
    chunkings would come from the chunking itself (noise, guidance or order), not from floating point."""

    window_frames, use_text = 8, True

    def __init__(self):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(0.7))

    def forward(self, x_t, t, audio_exp, text=None, text_keep=None):
        text_term = torch.zeros(x_t.shape[0]) if text is None else text.sum(-1)
        if text_keep is not None:
            text_term = torch.where(text_keep, text_term, torch.zeros_like(text_term))
        return torch.tanh(self.gain * x_t + audio_exp) * (1 + 0.1 * text_term)[:, None, None] + t[:, None, None] / 1e3


@pytest.mark.parametrize("sampler", ["ancestral", "ddim", None])
def test_windows_in_chunks_give_the_same_expression(sampler):
    """Long audio: the denoiser sees at most max_windows windows per call, and the result is bit for bit
    the unchunked one for the same seed (ancestral sampling draws fresh noise at every step: it is
    drawn for all windows at once, as without chunks). With the real denoiser PyTorch's CPU kernels
    may round differently for other batch sizes (a 1×1 Conv1d picks its algorithm by batch size), so
    there the results agree to float precision."""
    schedule = CosineSchedule(1000)
    samplers = {"ancestral": AncestralSampler(schedule, 5), "ddim": build_sampler("ddim", schedule, 5), None: None}
    audio2exp = Audio2Exp(channels=(4, 4, 8, 8, 16)).eval()
    mel, text = torch.randn(4 * 22 + 4, 1, 80, 16), torch.randn(16)  # 22 windows of 8 frames at hop 4
    model = StyleE(WindowwiseDenoiser(), audio2exp, None, samplers[sampler], overlap_frames=4)
    calls = []
    model.denoiser.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    whole = model.generate(mel, torch.zeros(64), text, guidance_scale=2.0, seed=7, max_windows=22)
    assert set(calls) == {44}  # one call per step: 22 windows, conditional and unconditional
    for max_windows in (1, 5, 8):
        calls.clear()
        chunked = model.generate(mel, torch.zeros(64), text, guidance_scale=2.0, seed=7, max_windows=max_windows)
        assert torch.equal(chunked, whole), max_windows
        assert max(calls) <= 2 * max_windows
    assert not torch.equal(model.generate(mel, torch.zeros(64), text, guidance_scale=2.0, seed=8), whole)

    real = small_style_e()
    real.sampler = samplers[sampler]
    unchunked = real.generate(mel, torch.zeros(64), text, guidance_scale=2.0, seed=7, max_windows=22)
    torch.testing.assert_close(real.generate(mel, torch.zeros(64), text, guidance_scale=2.0, seed=7, max_windows=3),
                               unchunked, rtol=0, atol=1e-5)


# -- checkpoints -------------------------------------------------------------------------

def test_sadtalker_files_load_strictly(tmp_path):
    official = Audio2Exp(channels=(4, 4, 8, 8, 16))
    torch.save({"model": official.state_dict(), "epoch": 300}, tmp_path / "auido2exp_00300-model.pth")
    net = load_official("sadtalker_audio2exp", tmp_path / "auido2exp_00300-model.pth", Audio2Exp(channels=(4, 4, 8, 8, 16)))
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), official.state_dict().values()))
    from safetensors.torch import save_file

    flat = {f"audio2exp.{k}": v.contiguous() for k, v in official.state_dict().items()}
    flat["generator.some.weight"] = torch.zeros(2)
    save_file(flat, str(tmp_path / "SadTalker_V0.0.2_256.safetensors"))
    load_official("sadtalker_audio2exp", tmp_path / "SadTalker_V0.0.2_256.safetensors", Audio2Exp(channels=(4, 4, 8, 8, 16)))
    broken = dict(official.state_dict())
    broken.pop("mapping1.bias")
    torch.save({"model": broken}, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match=r"missing \['mapping1.bias'\]"):
        load_official("sadtalker_audio2exp", tmp_path / "broken.pth", Audio2Exp(channels=(4, 4, 8, 8, 16)))
    with pytest.raises(CheckpointError, match="mis-shaped"):
        load_official("sadtalker_audio2exp", tmp_path / "auido2exp_00300-model.pth", Audio2Exp(channels=(4, 4, 8, 8, 32)))
    with pytest.raises(CheckpointError, match="SadTalker's release"):
        load_official("sadtalker_audio2exp", tmp_path / "absent.pth", Audio2Exp())


# -- training ----------------------------------------------------------------------------

def style_e_overrides(root, run_dir, stage="style_e", model="style_e_small", extra=(), **trainer):
    base = {"max_steps": 30, "num_workers": 0, "log_every_steps": 10, "val_every_steps": 30, "val_batches": 1,
            "image_every_steps": 30, "checkpoint_every_steps": 30, "device": "cpu", "ema_decay": 0.9}
    base.update(trainer)
    return [f"stage={stage}", f"model={model}", f"data.root={root}", "stage.batch_size=8", "stage.lr=1e-3",
            "model.denoiser.width=64", "model.denoiser.blocks=2", f"trainer.run_dir={run_dir}"] + \
        [f"trainer.{k}={v}" for k, v in base.items()] + list(extra)


def run_stage(overrides):
    from stylization.engine.distributed import init_distributed
    from stylization.engine.run import build_stage
    from stylization.engine.trainer import Trainer

    cfg = compose_train(overrides)
    trainer = Trainer(cfg, build_stage(cfg), init_distributed("cpu"))
    losses = []
    original = trainer.stage.training_step

    def record(batch, ctx):
        out = original(batch, ctx)
        losses.append(float(out["x0_mse"]))
        return out

    trainer.stage.training_step = record
    trainer.fit()
    return trainer, losses


def test_short_training_run_lowers_the_loss_and_reloads(synthetic_corpus, tmp_path):
    trainer, losses = run_stage(style_e_overrides(synthetic_corpus, tmp_path / "run"))
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5]), losses
    model = style_e_from_run(load_run(tmp_path / "run"), precision="fp32")
    mel = torch.randn(40, 1, 80, 16)
    out = model.generate(mel, torch.zeros(64), "A woman speaks happily.", seed=0)
    assert out.shape == (40, 64) and torch.isfinite(out).all()


@pytest.mark.parametrize("stage, ablation", [("style_e_cgan", []), ("style_e", ["ablation=no_text"])])
def test_ablation_variants_train(synthetic_corpus, tmp_path, stage, ablation):
    trainer, losses = run_stage(style_e_overrides(synthetic_corpus, tmp_path / "run", stage=stage, extra=ablation,
                                                  max_steps=4, val_every_steps=4, image_every_steps=0))
    assert trainer.step == 4 and all(np.isfinite(losses))
    generated = style_e_from_run(load_run(tmp_path / "run"), precision="fp32").generate(
        torch.randn(10, 1, 80, 16), torch.zeros(64), "A man talks angrily.")
    assert generated.shape == (10, 64)


def test_frozen_audio2exp_from_an_audio2exp_run(synthetic_corpus, tmp_path):
    from conftest import tiny_audio2exp_overrides

    a2e_run = tmp_path / "a2e"
    cfg_overrides = tiny_audio2exp_overrides(synthetic_corpus, a2e_run, max_steps=2, image_every_steps=0,
                                             val_every_steps=100)
    from stylization.engine.distributed import init_distributed
    from stylization.engine.run import build_stage
    from stylization.engine.trainer import Trainer

    cfg = compose_train(cfg_overrides)
    Trainer(cfg, build_stage(cfg), init_distributed("cpu")).fit()
    overrides = style_e_overrides(synthetic_corpus, tmp_path / "se", max_steps=2, val_every_steps=100,
                                  image_every_steps=0) + [f"stage.audio2exp_checkpoint={a2e_run}"]
    trainer, _ = run_stage(overrides)
    a2e = trainer.raw_modules["audio2exp"]
    assert not any(p.requires_grad for p in a2e.parameters())
    saved = torch.load(sorted((a2e_run / "checkpoints").glob("*.pt"))[-1], weights_only=True)["ema"]["audio2exp"]
    assert all(torch.equal(saved[k], v) for k, v in a2e.state_dict().items())


# -- the documented CPU commands select their recipes ---------------------------------------

@pytest.mark.parametrize("command, expected", [
    (["stage=style_e", "model=style_e_small"],
     {"stage.batch_size": 24, "stage.lr": 1e-3, "trainer.ema_decay": 0.99, "trainer.val_every_steps": 200,
      "trainer.val_batches": 4, "trainer.checkpoint_every_steps": 200, "trainer.num_workers": 1}),
    (["stage=audio2exp", "model=audio2exp_small"],
     {"stage.batch_size": 16, "stage.lr": 2e-4, "trainer.ema_decay": 0.999}),
])
def test_documented_cpu_command_trains_with_its_recipe(synthetic_corpus, tmp_path, command, expected):
    """README's / docs/results.md's short command, run as a user would (plus 2 steps and a run dir),
    trains with the CPU recipe its small model brings (configs/experiment/), and says so in config.yaml."""
    train_as_documented([*command, "trainer.max_minutes=10"], synthetic_corpus, tmp_path / "run", expected, validate=False)


@pytest.mark.parametrize("override, key", [
    ("model.diffusion.sampler=euler", "model.diffusion.sampler='euler' is unknown"),
    ("model.diffusion.steps=2000", "model.diffusion.steps=2000 cannot respace"),
    ("stage.text_dropout=1.5", "stage.text_dropout=1.5"),
    ("model.denoiser.text_dim=16", "model.denoiser.text_dim=16"),
])
def test_bad_options_fail_when_the_stage_is_built(tmp_path, override, key):
    """Before any data loads or any module is built, with the key named."""
    from stylization.engine.run import build_stage
    from stylization.errors import ConfigError

    cfg = compose_train(["stage=style_e", "model=style_e_small", f"data.root={tmp_path / 'no_corpus'}", override])
    with pytest.raises(ConfigError, match=key.replace("(", r"\(").replace(".", r"\.")):
        build_stage(cfg)

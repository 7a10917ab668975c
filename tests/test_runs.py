"""stylization.runs: one way to load a run (config, step, modules, EMA or raw) and the per-stage assemblers."""

import pytest
import torch
from conftest import compose_train, tiny_audio2exp_overrides

from stylization.engine.distributed import init_distributed
from stylization.engine.run import build_stage
from stylization.engine.trainer import Trainer
from stylization.errors import CheckpointError, ConfigError
from stylization.runs import (
    audio2exp_from_run,
    load_audio2exp,
    load_run,
    style_a_renderer_from_run,
    style_e_from_run,
)
from stylization.style_e.audio2exp import Audio2Exp


def train(overrides) -> Trainer:
    cfg = compose_train(overrides)
    trainer = Trainer(cfg, build_stage(cfg), init_distributed("cpu"))
    trainer.fit()
    return trainer


def equal_states(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def style_e_run(synthetic_corpus, tmp_path_factory):
    """A 2-step style_e run (EMA decay 0.5, a checkpoint after each step) and its trainer."""
    from test_style_e import style_e_overrides

    run_dir = tmp_path_factory.mktemp("runs") / "style_e"
    trainer = train(style_e_overrides(synthetic_corpus, run_dir, max_steps=2, checkpoint_every_steps=1,
                                      val_every_steps=100, image_every_steps=0, ema_decay=0.5,
                                      extra=["data.val_split=null", "stage.batch_size=2"]))
    return run_dir, trainer


@pytest.fixture(scope="module")
def style_a_run(synthetic_corpus, tmp_path_factory):
    from test_style_a import style_a_overrides

    run_dir = tmp_path_factory.mktemp("runs") / "style_a"
    return run_dir, train(style_a_overrides(synthetic_corpus, run_dir, 2, ["data.val_split=null"]))


def test_a_run_directory_loads_its_newest_checkpoint_and_a_file_loads_itself(style_e_run):
    run_dir, trainer = style_e_run
    run = load_run(run_dir)
    assert run.path == str(run_dir / "checkpoints" / "step_000000002.pt")
    assert (run.step, run.stage, run.module_names) == (2, "style_e", ["audio2exp", "denoiser"])
    assert run.config.stage.batch_size == 2 and run.config.trainer.ema_decay == 0.5  # the config that ran
    first = load_run(run_dir / "checkpoints" / "step_000000001.pt")
    assert first.step == 1 and first.path.endswith("step_000000001.pt")


def test_ema_or_raw_weights(style_e_run):
    run_dir, trainer = style_e_run
    ema, raw = load_run(run_dir), load_run(run_dir, use_ema=False)
    assert equal_states(ema.module("denoiser", ema.config.model.denoiser), trainer.ema["denoiser"].shadow)
    assert equal_states(raw.module("denoiser", raw.config.model.denoiser), trainer.raw_modules["denoiser"])
    assert not equal_states(trainer.ema["denoiser"].shadow, trainer.raw_modules["denoiser"])  # they differ
    # audio2exp keeps no EMA (stage.ema_modules): both give the raw weights
    assert equal_states(ema.module("audio2exp", ema.config.model.audio2exp), trainer.raw_modules["audio2exp"])
    module = ema.module("denoiser", ema.config.model.denoiser)
    assert not module.training
    with pytest.raises(CheckpointError, match="has no module 'generator'"):
        ema.module("generator")


def test_missing_paths_and_foreign_files_are_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found; train one with this"):
        load_run(tmp_path / "absent", hint="train one with this")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="holds no loadable checkpoints"):
        load_run(tmp_path / "empty")
    torch.save({"model": {"w": torch.zeros(2)}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a training checkpoint of this project"):
        load_run(tmp_path / "foreign.pt")
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_run(tmp_path / "notes.pt")


def test_style_e_from_run_generates_what_the_trained_modules_generate(style_e_run):
    from stylization.style_e.generate import StyleE

    run_dir, trainer = style_e_run
    run = load_run(run_dir)
    model = style_e_from_run(run, precision="fp32")
    stage = trainer.stage
    trained = StyleE(trainer.ema["denoiser"].shadow, trainer.raw_modules["audio2exp"], stage.text_encoder,
                     stage.sampler, overlap_frames=int(run.config.model.overlap_frames)).eval()
    mel, source = torch.randn(40, 1, 80, 16, generator=torch.Generator().manual_seed(0)), torch.zeros(64)
    text = "A woman speaks happily."
    assert torch.allclose(model.generate(mel, source, text, seed=3), trained.generate(mel, source, text, seed=3),
                          atol=1e-5)
    ancestral = style_e_from_run(run, sampler="ancestral", steps=2, precision="fp32")
    assert type(ancestral.sampler).__name__ == "AncestralSampler" and ancestral.sampler.timesteps == [0, 500]
    with pytest.raises(ConfigError, match="model.diffusion.sampler='euler'"):
        style_e_from_run(run, sampler="euler")
    with pytest.raises(ConfigError, match="model.diffusion.steps=2000"):
        style_e_from_run(run, steps=2000)


def test_audio2exp_from_a_style_e_run_and_from_an_audio2exp_run(style_e_run, tiny_corpus, tmp_path):
    run_dir, trainer = style_e_run
    assert equal_states(audio2exp_from_run(load_run(run_dir)), trainer.raw_modules["audio2exp"])
    a2e_trainer = train(tiny_audio2exp_overrides(tiny_corpus, tmp_path / "a2e", max_steps=2, image_every_steps=0,
                                                 val_every_steps=100))
    net = audio2exp_from_run(load_run(tmp_path / "a2e"))
    mel, source, blink = torch.randn(2, 5, 1, 80, 16), torch.randn(2, 64), torch.rand(2, 5)
    trained = a2e_trainer.ema["audio2exp"].shadow.eval()
    assert equal_states(net, trained)
    with torch.no_grad():  # the trained copy keeps channels-last weights: the last bits may differ
        assert torch.allclose(net(mel, source, blink), trained(mel, source, blink), atol=1e-6)
    # load_audio2exp: a run directory, a run's checkpoint file, or SadTalker's file into the given module
    file = load_run(tmp_path / "a2e").path
    assert equal_states(load_audio2exp(tmp_path / "a2e", Audio2Exp()), net)
    assert equal_states(load_audio2exp(file, Audio2Exp()), net)
    official = Audio2Exp(channels=(4, 4, 8, 8, 16))
    torch.save({"model": official.state_dict(), "epoch": 300}, tmp_path / "auido2exp_00300-model.pth")
    assert equal_states(load_audio2exp(tmp_path / "auido2exp_00300-model.pth", Audio2Exp(channels=(4, 4, 8, 8, 16))),
                        official)
    with pytest.raises(CheckpointError, match="stage=audio2exp"):
        load_audio2exp(tmp_path / "absent.pth", Audio2Exp())


def test_style_a_renderer_from_run_renders_what_the_trained_generator_renders(style_a_run):
    run_dir, trainer = style_a_run
    run = load_run(run_dir)
    assert run.stage == "style_a"
    renderer = style_a_renderer_from_run(run)
    assert renderer.degree == float(run.config.stage.degree)
    assert renderer.identity_alignment == run.config.model.identity_alignment
    assert equal_states(renderer.generator, trainer.ema["generator"].shadow)
    assert equal_states(renderer.psp, trainer.raw_modules["psp"])
    g = torch.Generator().manual_seed(0)
    size, face = renderer.content_size, int(run.config.model.psp.input_size)
    content = torch.randn(1, 22, size, size, generator=g)
    windows = torch.randn(2, 73, 27, generator=g)
    faces = torch.rand(2, 3, face, face, generator=g) * 2 - 1
    with torch.no_grad():
        identity, art = renderer.codes(faces[:1]), renderer.codes(faces[1:])
        keypoints = torch.rand(2, 68, 2, generator=g) * size  # the small model draws the targets' keypoints
        ours = renderer(content, identity, art, windows, repeats=2, keypoints=keypoints)["image"]
        generator = trainer.ema["generator"].shadow.eval()
        theirs = generator(content, identity, art, windows, renderer.degree, repeats=2, keypoints=keypoints)["image"]
    assert torch.equal(ours, theirs)
    with pytest.raises(CheckpointError, match="without a 'denoiser' module"):
        style_e_from_run(run)


def test_runs_saved_before_the_targets_moved_still_load(style_e_run, tmp_path):
    """A checkpoint whose saved config names the old homes of moved classes (the text encoder built
    inside the model file, the cGAN module) loads through MOVED_TARGETS and gives the same model."""
    from stylization.engine import checkpoint as ckpt_io

    run_dir, _ = style_e_run
    state = ckpt_io.load_file(run_dir / "checkpoints" / "step_000000002.pt")
    state["config"]["model"]["text_encoder"]["_target_"] = "stylization.style_e.text_encoder.ClipTextEncoder"
    state["config"]["stage"]["_target_"] = "stylization.style_e.cgan.StyleECGANStage"
    old = tmp_path / "old.pt"
    ckpt_io.atomic_save(state, old)
    run = load_run(old)
    assert run.config.model.text_encoder._target_ == "stylization.loading.clip_text_encoder"
    assert run.config.stage._target_ == "stylization.style_e.cgan_stage.StyleECGANStage"
    mel, source = torch.randn(40, 1, 80, 16), torch.zeros(64)
    then, now = style_e_from_run(run), style_e_from_run(load_run(run_dir))
    assert torch.equal(then.generate(mel, source, "a calm voice", 1.0, 0), now.generate(mel, source, "a calm voice", 1.0, 0))

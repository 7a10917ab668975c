"""SAAS's modules in the released layouts: strict loading of files written from the manifests (and
check_checkpoint.py), the quantiser against hand computations (the official row order,
straight-through gradients, usage, re-seeding), and the hypernetwork that now trains."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, read_manifest

from stylization.errors import CheckpointError
from stylization.loading import load_official
from stylization.saas.adapter import ResidualAdapter
from stylization.saas.codebook import AttentionPooling, VectorQuantizer, VQCodebook
from stylization.saas.model import SAASGenerator
from stylization.saas.pose import AudioPosePredictor


def released_file(path, manifest: str, wrap_parts: bool):
    """Random tensors of a manifest, saved as the release saves them: {part: state dict} (the generator
    files) or {'state_dict', 'optimizer', 'epoch'} (the pose codebook, the audio-to-pose predictor: its
    manifest's names keep DataParallel's "module." prefix, as the file does)."""
    g = torch.Generator().manual_seed(0)
    state = {name: (torch.randn(shape, generator=g) if shape else torch.tensor(0)) for name, shape in read_manifest(manifest)}
    for name in state:
        if name.endswith("running_var"):
            state[name] = state[name].abs() + 0.5
    if wrap_parts:
        parts = {}
        for name, value in state.items():
            part, rest = name.split(".", 1)
            parts.setdefault(part, {})[rest] = value
        torch.save({**parts, "epoch": 7}, path)
    else:
        torch.save({"state_dict": state, "optimizer": {"n_steps": 3}, "epoch": 2}, path)


@pytest.mark.parametrize("kind, manifest, module", [
    ("saas_video_driven", "saas_video_driven.tsv", lambda: SAASGenerator("video")),
    ("saas_audio_driven", "saas_audio_driven.tsv", lambda: SAASGenerator("audio")),
    ("saas_pose_codebook", "saas_pose_codebook.tsv", lambda: VQCodebook(in_dim=6, n_codes=200, classes=256)),
    ("saas_audio2pose", "saas_audio2pose.tsv", AudioPosePredictor),
])
def test_released_layouts_load_strictly(kind, manifest, module, tmp_path):
    expected = [(name.removeprefix("module."), shape) for name, shape in read_manifest(manifest)]
    assert [(k, list(v.shape)) for k, v in module().state_dict().items()] == expected
    path = tmp_path / f"{kind}.pth"
    released_file(path, manifest, wrap_parts=kind not in ("saas_pose_codebook", "saas_audio2pose"))
    model = load_official(kind, path).eval()
    with torch.no_grad():
        if kind == "saas_pose_codebook":
            assert model(torch.randn(2, 32, 6))["reconstruction"].shape == (2, 32, 6)
        elif kind == "saas_audio2pose":
            past = torch.randint(200, (2, 4))
            assert model(torch.randn(2, 32, 28, 12), torch.randn(2, 256), past, 0).shape == (2, 8, 200)
        elif kind == "saas_video_driven":
            window = torch.randn(2, 32, 64)
            assert model(window, window, exp=torch.randn(2, 40, 64)).shape == (2, 40, 64)


def test_check_checkpoint_and_a_wrong_file(tmp_path):
    path = tmp_path / "video_driven.pth"
    released_file(path, "saas_video_driven.tsv", wrap_parts=True)
    done = subprocess.run([sys.executable, "scripts/check_checkpoint.py", "--kind", "saas_video_driven", str(path)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().splitlines()[-1].startswith("OK"), done.stderr[-500:]
    with pytest.raises(CheckpointError, match=r"no \['audio_encoder'\] entries"):
        load_official("saas_audio_driven", path)


def test_released_pose_files_generate_poses_with_the_released_style_encoder(tmp_path):
    """A folder holding the released audio2pose.pth and pose_codebook.pth (SAAS's checkpoints/audio2pose)
    loads for pose=audio with the SAAS model's style encoder, and check_checkpoint accepts the predictor."""
    from stylization.runs import load_saas_pose

    released_file(tmp_path / "audio2pose.pth", "saas_audio2pose.tsv", wrap_parts=False)
    released_file(tmp_path / "pose_codebook.pth", "saas_pose_codebook.tsv", wrap_parts=False)
    done = subprocess.run([sys.executable, "scripts/check_checkpoint.py", "--kind", "saas_audio2pose",
                           str(tmp_path / "audio2pose.pth")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().splitlines()[-1].startswith("OK"), done.stderr[-500:]
    with pytest.raises(CheckpointError, match="style encoder"):
        load_saas_pose(tmp_path)
    model = load_saas_pose(tmp_path, lambda: SAASGenerator("audio").style_encoder)
    rng = np.random.default_rng(0)
    code = model.style_code(rng.standard_normal((20, 64)).astype(np.float32) * 0.1)
    wav = rng.standard_normal(16000 * 3).astype(np.float32) * 0.1
    poses = model.generate(wav, 70, code, np.zeros(6), seed=3)
    assert poses.shape == (70, 6) and np.isfinite(poses).all()
    np.testing.assert_array_equal(poses, model.generate(wav, 70, code, np.zeros(6), seed=3))  # seeded


def test_quantiser_rows_gradients_usage_and_reseeding():
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 6).train()
    z = torch.randn(2, 3, 6, requires_grad=True)  # [B, T, dim]
    z_q, loss, idx = vq(z)
    rows = z.detach().transpose(1, 2).reshape(-1, 6)  # the official rows: channels-first, then cut
    expected = torch.cdist(rows, vq.embedding.weight).argmin(1)
    assert torch.equal(idx, expected)
    torch.testing.assert_close(z_q.detach(), vq.embedding.weight[idx].reshape(2, 6, 3).transpose(1, 2))
    z_q.sum().backward()
    torch.testing.assert_close(z.grad, torch.ones_like(z))  # straight through
    diff = (vq.embedding.weight[idx].detach() - rows).pow(2).mean()
    assert float(loss.detach()) == pytest.approx(float(1.25 * diff), rel=1e-5)
    assert 1 <= vq.perplexity(idx) <= len(set(idx.tolist())) + 1e-6
    vq.usage.zero_()
    vq.usage[0] = 1.0
    assert vq.reseed_dead(z, threshold=0.5) == 7 and vq.usage[1] == pytest.approx(1 / 8)
    assert any(torch.allclose(vq.embedding.weight[1], r) for r in rows)


def test_attention_pooling_by_hand():
    pool = AttentionPooling(4)
    tokens = torch.randn(2, 3, 4)
    w = torch.softmax(tokens @ pool.Ws[0], 1)
    torch.testing.assert_close(pool(tokens), (w[..., None] * tokens).sum(1))


def test_the_hypernetwork_trains_and_modulates_as_the_official_writes():
    """Gradients reach the hypernetworks and ra_style's layers 1-4 (the official .data writes give them
    none); sample 0's style LSTM is an nn.LSTM with weights ra_style·(1 + Δ) in layers 1-4 and
    ra_style_tmp's own in layers 0 and 5."""
    torch.manual_seed(0)
    ra = ResidualAdapter().train()
    latent, style = torch.randn(2, 7, 64), torch.randn(2, 256)
    ra(latent, style).square().mean().backward()
    for hyper in (*ra.linear_layers_ih, *ra.linear_layers_hh, *ra.linear_layers_bias_ih):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in hyper.parameters())
    assert ra.ra_style.weight_ih_l2.grad.abs().sum() > 0 and ra.ra_style.weight_ih_l0.grad is None
    ra.eval()
    with torch.no_grad():
        params = ra.style_parameters(style)[0]
        delta = ra.linear_layers_hh[2](style)[0]
        torch.testing.assert_close(params["weight_hh_l3"], ra.ra_style.weight_hh_l3 * (1 + delta))
        assert params["weight_ih_l0"] is ra.ra_style_tmp.weight_ih_l0
        lstm = torch.nn.LSTM(320, 64, 6, batch_first=True)
        lstm.load_state_dict(params)
        h = ra.ra_init_hidden_state(style).view(2, 6, 64).transpose(0, 1)[:, :1].contiguous()
        c = ra.ra_init_cell_state(style).view(2, 6, 64).transpose(0, 1)[:, :1].contiguous()
        styled = lstm(torch.cat([latent[:1], style[:1, None].expand(-1, 7, -1)], -1), (h, c))[0]
        h0 = ra.neutral_init_hidden_state[:, None].contiguous()
        c0 = ra.neutral_init_cell_state[:, None].contiguous()
        torch.testing.assert_close(ra(latent, style)[:1], ra.neutral_branch(latent[:1], (h0, c0))[0] + styled)


def test_the_codebook_stage_trains_and_reseeds(tiny_corpus, tmp_path):
    """stage=saas_codebook as documented: the class head has one output per training style, the logged
    terms include the perplexities, dead codes are re-seeded, validation runs on held-out speakers."""
    from conftest import train_as_documented

    from stylization.runs import load_run

    run_dir = tmp_path / "codebook"
    small = ["stage=saas_codebook", "model=saas_codebook_small", "stage.batch_size=2", "model.codebook.dim=32",
             "model.codebook.heads=2", "model.codebook.ffn=48", "model.codebook.layers=1", "model.codebook.n_codes=16",
             "stage.reseed_every=1", "stage.reseed_threshold=0.9", "trainer.num_workers=0", "trainer.log_every_steps=1",
             "trainer.val_batches=1", "trainer.val_every_steps=3", "trainer.checkpoint_every_steps=3"]
    train_as_documented(small, tiny_corpus, run_dir, {"stage.loss.recon": 10.0, "trainer.max_minutes": 10}, steps=3)
    run = load_run(run_dir)
    codebook = run.module("codebook", run.config.model.codebook)  # its class count, from the data, is saved
    assert codebook.fc.out_features == 4  # spk_a and spk_b, neutral and happy
    log = (run_dir / "train.log").read_text()
    assert "usage_perplexity=" in log and "reseeded=" in log and "val" in log and "trip_accuracy=" in log


def test_the_generator_stage_trains_every_part_but_the_frozen_codebook(tiny_corpus, tmp_path):
    """stage=saas on a tiny codebook run: two steps move the hypernetworks and the audio encoder, leave
    the style encoder (the codebook's) as it was, and log every loss term; the run rebuilds from its
    own config."""
    from conftest import compose_train

    from stylization.engine.run import run_training
    from stylization.runs import load_run

    tiny = ["model.codebook.dim=32", "model.codebook.heads=2", "model.codebook.ffn=48", "model.codebook.layers=1",
            "model.codebook.n_codes=16"]
    trainer = ["trainer.num_workers=0", "trainer.log_every_steps=1", "trainer.val_batches=1", "trainer.device=cpu",
               "trainer.image_every_steps=0"]
    codebook_dir, run_dir = tmp_path / "codebook", tmp_path / "saas"
    run_training(compose_train(["stage=saas_codebook", "model=saas_codebook_small", f"data.root={tiny_corpus}",
                                f"trainer.run_dir={codebook_dir}", "stage.batch_size=2", "trainer.max_steps=1",
                                *tiny, *trainer]))
    cfg = compose_train(["stage=saas", "model=saas_small", f"data.root={tiny_corpus}", f"trainer.run_dir={run_dir}",
                         f"stage.codebook={codebook_dir}", "stage.batch_size=2", "trainer.max_steps=2",
                         "trainer.val_every_steps=2", "trainer.checkpoint_every_steps=2", "model.generator.style_dim=32",
                         "model.generator.latent_dim=8",
                         *trainer])
    run_training(cfg)
    run = load_run(run_dir, use_ema=False)
    generator = run.module("generator", run.config.model.generator)
    codebook = load_run(codebook_dir).weights["codebook"]  # the codebook run's EMA weights, as the stage reads them
    assert torch.equal(generator.style_encoder.quantize.embedding.weight, codebook["quantize.embedding.weight"])
    first = SAASGenerator(**{k: v for k, v in run.config.model.generator.items() if k != "_target_"})
    assert not torch.equal(generator.ra.linear_layers_ih[0].inc.double_conv[0].weight,
                           first.ra.linear_layers_ih[0].inc.double_conv[0].weight)  # trained (seeded init differs too)
    log = (run_dir / "train.log").read_text()
    for term in ("recon_dtw=", "mouth=", "cls=", "dis=", "trip=", "tem=", "d_style=", "r1=", "m_lmd="):
        assert term in log, term
    res = subprocess.run([sys.executable, "scripts/eval_motion.py", f"run={run_dir}", f"data.root={tiny_corpus}",
                          "split=test", "device=cpu"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["clips"] == 2 and all(k in out for k in ("m_lmd", "still_f_lmd", "audio_only_m_lmd", "wrong_style_f_lmd"))
    clip = tiny_corpus / "clips" / "spk_c_happy"
    res = subprocess.run([sys.executable, "infer.py", "motion=saas", f"saas={run_dir}", f"audio={clip / 'audio.wav'}",
                          f"style_clip={clip / 'coeffs.npy'}", f"out={tmp_path / 'saas.mp4'}", "device=cpu"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "SAAS" in res.stdout, res.stderr[-3000:]
    assert np.load(tmp_path / "saas.npy").shape == (48, 260)


def test_the_generator_stage_trains_its_own_codebook_first(tiny_corpus, tmp_path):
    """stage=saas without stage.codebook (the documented one-command form): the first
    stage.codebook_steps steps train the codebook, which is then frozen and copied into the generator's
    style encoder and its EMA copy; the switch step is saved with the checkpoint. Then stage=saas_pose
    on that run's style encoder, and scripts/eval_pose.py on the result."""
    from conftest import compose_train

    from stylization.engine.checkpoint import load_latest
    from stylization.engine.run import run_training
    from stylization.runs import load_run

    run_dir = tmp_path / "saas"
    cfg = compose_train(["stage=saas", "model=saas_small", f"data.root={tiny_corpus}", f"trainer.run_dir={run_dir}",
                         "stage.batch_size=2", "trainer.max_steps=3", "stage.codebook_steps=2", "trainer.val_every_steps=3",
                         "trainer.checkpoint_every_steps=3", "model.codebook.dim=32", "model.codebook.heads=2",
                         "model.codebook.ffn=48", "model.codebook.layers=1", "model.codebook.n_codes=16",
                         "model.generator.style_dim=32", "model.generator.latent_dim=8", "trainer.num_workers=0",
                         "trainer.log_every_steps=1", "trainer.val_batches=1", "trainer.device=cpu",
                         "trainer.image_every_steps=0", "stage.codebook_phase.reseed_every=1"])
    run_training(cfg)
    _, state = load_latest(str(run_dir))
    assert state["stage_state"] == {"codebook_until": 2}
    codebook = state["modules"]["codebook"]
    shared = [k for k in codebook if k.split(".")[0] in ("encoder", "quantize", "self_attention")]
    assert len(shared) > 10
    for weights in (state["modules"]["generator"], state["ema"]["generator"]):
        for k in shared:
            assert torch.equal(weights[f"style_encoder.{k}"], codebook[k]), k
    fresh = VQCodebook(in_dim=64, dim=32, layers=1, heads=2, ffn=48, n_codes=16, classes=4).state_dict()
    moved = [k for k, v in codebook.items() if v.is_floating_point() and k in fresh and v.shape == fresh[k].shape
             and not torch.equal(v, fresh[k])]
    assert moved  # the codebook phase trained it
    lines = (run_dir / "train.log").read_text()
    assert "codebook_usage_perplexity=" in lines and "codebook_reseeded=" in lines and "recon_dtw=" in lines
    run = load_run(run_dir)  # rebuilds from the recorded config (the codebook's size included)
    assert run.module("generator", run.config.model.generator).style_encoder.quantize.embedding.weight.shape[0] == 16

    # stage=saas_pose on that run's style encoder: the pose codebook, then the predictor; eval_pose reports
    pose_dir = tmp_path / "pose"
    run_training(compose_train(["stage=saas_pose", "model=saas_pose_small", f"data.root={tiny_corpus}",
                                f"trainer.run_dir={pose_dir}", f"stage.codebook={run_dir}", "stage.batch_size=2",
                                "trainer.max_steps=3", "stage.codebook_steps=1", "stage.reseed_every=1",
                                "trainer.val_every_steps=3", "trainer.checkpoint_every_steps=3",
                                "model.pose_codebook.quant_factor=2", "model.predictor.audio_steps=16",
                                "trainer.num_workers=0", "trainer.log_every_steps=1", "trainer.val_batches=1",
                                "trainer.device=cpu", "trainer.image_every_steps=0"]))
    _, state = load_latest(str(pose_dir))
    assert state["stage_state"] == {"codebook_until": 1}
    assert torch.equal(state["modules"]["style_codebook"]["quantize.embedding.weight"], codebook["quantize.embedding.weight"])
    lines = (pose_dir / "train.log").read_text()
    assert "codebook_pose_l1=" in lines and "token_accuracy=" in lines and "mask_index=" in lines and "val ce=" in lines
    res = subprocess.run([sys.executable, "scripts/eval_pose.py", f"run={pose_dir}", f"data.root={tiny_corpus}",
                          "split=test", "device=cpu", "samples=2"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["clips"] == 2 and out["pose_diversity_deg"] > 0 and "real_speed_energy_corr" in out


def test_table_3_switches():
    """w/o codebook: the tokens are pooled unquantised (no VQ loss); w/o HyperStyle: the style LSTM runs
    as stored and the hypernetworks get no gradient."""
    from stylization.saas.codebook import VQStyleEncoder

    torch.manual_seed(0)
    encoder = VQStyleEncoder(dim=32, layers=1, heads=2, ffn=48, n_codes=8, use_codebook=False).eval()
    out = encoder.encode(torch.randn(2, 32, 64))
    assert torch.equal(out["tokens"], out["latent"]) and float(out["vq_loss"]) == 0.0
    ra = ResidualAdapter(latent_dim=8, style_dim=32, hyperstyle=False)
    latent, style = torch.randn(2, 5, 8), torch.randn(2, 32)
    ra(latent, style).sum().backward()
    assert all(p.grad is None for p in ra.linear_layers_ih.parameters())
    assert ra.ra_style_tmp.weight_ih_l3.grad is not None and ra.ra_style.weight_ih_l3.grad is None


def test_edit_restyles_with_the_source_style_of_the_first_32_frames():
    """SAASMotion.edit is the official video-driven inference: the source code from the performance's
    first 32 frames, the target code from the style clip's centre window, the generator on the whole
    performance; the audio-driven generator refuses to edit."""
    from stylization.saas.generate import SAASMotion, style_window

    torch.manual_seed(0)
    tiny = {"latent_dim": 8, "style_dim": 32, "style_encoder": {"dim": 32, "layers": 1, "heads": 2, "ffn": 48,
                                                                   "n_codes": 16}}
    generator = SAASGenerator("video", **tiny).eval()
    model = SAASMotion(generator)
    rng = np.random.default_rng(0)
    performance = torch.from_numpy(rng.standard_normal((45, 64)).astype(np.float32) * 0.1)
    clip = rng.standard_normal((70, 64)).astype(np.float32) * 0.1
    code = model.style_code(clip)
    with torch.no_grad():
        torch.testing.assert_close(code, generator.style(torch.from_numpy(clip[19:51])[None]))  # the centre 32
        expected = generator(torch.from_numpy(clip[19:51])[None], performance[None, :32], exp=performance[None])[0]
    torch.testing.assert_close(model.edit(performance, code), expected)
    np.testing.assert_array_equal(style_window(clip[:5], 8), clip[[0, 1, 2, 3, 4, 3, 2, 1]])  # short: back and forth
    with pytest.raises(ValueError, match="video-driven"):
        SAASMotion(SAASGenerator("audio", **tiny)).edit(performance, code)

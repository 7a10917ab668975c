"""Style-E's text encoder through transformers (``model.text_encoder.backend=hf``): a tiny random
open_clip text tower, exported with stylization.loading.export_hf_clip_text (the documented rename
map, and a CLIPTokenizer built offline from open_clip's BPE files), loads as transformers'
CLIPTextModelWithProjection and gives open_clip's ids and vectors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import compose_train
from hydra.utils import instantiate

from stylization.errors import CheckpointError, ConfigError
from stylization.loading import (clip_text_encoder, export_hf_clip_text, hf_clip_text, hf_clip_tokenizer,
                                open_clip_model)
from stylization.style_e.text_encoder import tiny_clip_config

TINY = tiny_clip_config(embed_dim=32, width=32, layers=2, heads=2)
SENTENCES = [
    "A woman speaks with a broad smile, cheeks raised, clearly delighted.",
    "A MAN talks   angrily;  brows drawn together -- he's furious, isn't he?",
    "Someone says 42 words at 3.5 dB, e.g. (quietly) & calmly!",
    "A person speaks, " + ", ".join(f"the lips slightly parted {i} times" for i in range(30)) + ".",  # > 77 tokens
    "\u201cCurly quotes\u201d, \ufb01 ligatures, \uff26ullwidth &amp; entities: open_clip cleans them with ftfy",
    "",
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(open_clip CLIP, its tokenizer, the exported transformers directory)."""
    clip, tokenizer = open_clip_model(TINY, None, seed=3)
    out = export_hf_clip_text(clip, tokenizer, tmp_path_factory.mktemp("hf_clip") / "text")
    return clip, tokenizer, Path(out)


def test_the_tokenizers_give_the_same_ids(exported):
    _, tokenizer, out = exported
    tower = hf_clip_text(out)
    ids = tower.tokenize(SENTENCES)
    assert ids.shape == (len(SENTENCES), 77)
    expected = tokenizer(SENTENCES)
    eot = tokenizer.eot_token_id
    for row, (got, want) in enumerate(zip(ids, expected)):
        n = int((want == eot).nonzero()[0]) + 1  # open_clip pads with 0, transformers with end-of-text
        assert got[:n].tolist() == want[:n].tolist(), SENTENCES[row]
        assert (got[n:] == eot).all()
    assert int((expected[3] != 0).sum()) == 77 and expected[3, -1] == eot  # the long one was cut


def test_both_backends_give_the_same_vectors(exported):
    _, _, out = exported
    ours = clip_text_encoder(TINY, None, seed=3)
    theirs = clip_text_encoder(TINY, None, backend="hf", hf_model=str(out))
    assert theirs.embed_dim == ours.embed_dim == 32
    a, b = ours(SENTENCES), theirs(SENTENCES)
    assert torch.allclose(a.norm(dim=-1), torch.ones(len(SENTENCES)))
    diff = (a - b).abs().max().item()
    print(f"max |open_clip - transformers| = {diff:.2e}")
    assert diff < 1e-5
    assert not theirs.clip.model.training and not any(p.requires_grad for p in theirs.parameters())


def test_quick_gelu_towers_convert_and_a_clip_model_directory_loads(tmp_path):
    """OpenAI's towers use QuickGELU; a full transformers CLIPModel directory (image tower too) loads its
    text half, the projection size read from the top level."""
    import open_clip
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(4)
    clip = open_clip.CLIP(**TINY, quick_gelu=True)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    text_dir = export_hf_clip_text(clip, tokenizer, tmp_path / "text")
    text_config = json.loads((tmp_path / "text" / "config.json").read_text())
    assert text_config["hidden_act"] == "quick_gelu" and text_config["projection_dim"] == 32
    text_config = {k: v for k, v in text_config.items() if k not in ("architectures", "model_type", "dtype")}
    config = CLIPConfig(text_config=text_config, projection_dim=32,
                        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                                       "num_attention_heads": 2, "image_size": 32, "patch_size": 16})
    full = CLIPModel(config)
    text_only = hf_clip_text(text_dir).model
    full.text_model.load_state_dict(text_only.text_model.state_dict())
    full.text_projection.load_state_dict(text_only.text_projection.state_dict())
    full.save_pretrained(tmp_path / "full")
    hf_clip_tokenizer(tokenizer).save_pretrained(tmp_path / "full")

    want = clip.eval().encode_text(tokenizer(SENTENCES))
    tower = hf_clip_text(tmp_path / "full")
    assert tower.embed_dim == 32
    assert (tower.encode_text(tower.tokenize(SENTENCES)) - want).abs().max() < 1e-5


def test_the_style_e_config_selects_the_backend(exported, tmp_path):
    """``model=style_e_small model.text_encoder.backend=hf model.text_encoder.hf_model=DIR`` builds the
    transformers tower with the denoiser's 512-d text input."""
    clip, tokenizer = open_clip_model(tiny_clip_config(), None, seed=0)
    out = export_hf_clip_text(clip, tokenizer, tmp_path / "small")
    cfg = compose_train(["stage=style_e", "model=style_e_small", "data.root=/nonexistent",
                         "model.text_encoder.backend=hf", f"model.text_encoder.hf_model={out}"])
    encoder = instantiate(cfg.model.text_encoder)
    assert encoder.embed_dim == cfg.model.denoiser.text_dim == 512
    reference = clip_text_encoder(tiny_clip_config(), None, seed=0)
    assert (encoder(SENTENCES[:2]) - reference(SENTENCES[:2])).abs().max() < 1e-5


def test_bad_directories_and_options_are_one_line_errors(exported, tmp_path):
    _, _, out = exported
    missing = tmp_path / "nowhere"
    with pytest.raises(CheckpointError, match=f"{missing}: transformers CLIP directory not found"):
        clip_text_encoder("ViT-B-32", None, backend="hf", hf_model=str(missing))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json: not a transformers model directory"):
        hf_clip_text(tmp_path / "empty")
    (tmp_path / "gpt").mkdir()
    (tmp_path / "gpt" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(CheckpointError, match="model_type 'gpt2' is not CLIP"):
        hf_clip_text(tmp_path / "gpt")
    (tmp_path / "notok").mkdir()
    (tmp_path / "notok" / "config.json").write_text((out / "config.json").read_text())
    with pytest.raises(CheckpointError, match="no CLIP tokenizer files"):
        hf_clip_text(tmp_path / "notok")
    with pytest.raises(ConfigError, match="backend=hf reads model.text_encoder.hf_model"):
        clip_text_encoder("ViT-B-32", None, backend="hf")
    with pytest.raises(ConfigError, match="must be open_clip or hf"):
        clip_text_encoder("ViT-B-32", None, backend="tf")
    with pytest.raises(ConfigError, match="read only with model.text_encoder.backend=hf"):
        clip_text_encoder(TINY, None, hf_model=str(out))
    for error in ("nowhere", "empty"):
        try:
            hf_clip_text(tmp_path / error)
        except CheckpointError as exc:
            assert "\n" not in str(exc)

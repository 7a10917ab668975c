"""CLIP ranking of the emotion texts (stylization/preprocess/texts.py)."""

import numpy as np
import torch

from stylization.preprocess.texts import CLIP_MEAN, CLIP_STD, ClipRanker, sample_frames


class StubClip(torch.nn.Module):
    """A CLIP whose image vector is the mean normalised colour and whose text vector is a colour word's."""

    COLOURS = {"red": [1.0, 0.0, 0.0], "green": [0.0, 1.0, 0.0], "blue": [0.0, 0.0, 1.0]}

    def __init__(self):
        super().__init__()
        self.visual = torch.nn.Module()
        self.visual.image_size = (8, 8)
        self.seen = None

    def encode_image(self, x):
        self.seen = x
        return x.mean((2, 3))

    def encode_text(self, tokens):
        return tokens

    def tokenizer(self, sentences):
        return torch.tensor([[v * 10 - 1 for v in self.COLOURS[s.split()[0]]] for s in sentences])


def test_rank_keeps_the_sentences_closest_to_the_frames():
    clip = StubClip()
    ranker = ClipRanker(clip, clip.tokenizer)
    frames = np.zeros((3, 16, 16, 3), np.uint8)
    frames[..., 0] = 255  # red frames: after CLIP's normalisation red is high, green and blue low
    sentences = ["blue sky", "red apple", "green leaf", "red brick"]
    assert ranker.rank(frames, sentences, 2) == ["red apple", "red brick"]  # ties keep the given order
    assert clip.seen.shape == (3, 3, 8, 8)  # resized to the tower's input size
    expected = (torch.tensor([1.0, 0.0, 0.0]) - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    torch.testing.assert_close(clip.seen[0, :, 4, 4], expected)
    scores = ranker.scores(frames, sentences)
    assert scores.shape == (4,) and scores.argmax() == 1


def test_a_real_open_clip_tower_ranks_deterministically():
    from stylization.loading import open_clip_model
    from stylization.style_e.text_encoder import tiny_clip_config

    ranker = ClipRanker(*open_clip_model(tiny_clip_config(), None, seed=3))
    frames = np.random.default_rng(0).integers(0, 255, (5, 40, 40, 3), dtype=np.uint8)
    sentences = [f"A person speaks, sentence {i}." for i in range(8)]
    first = ranker.rank(frames, sentences, 3)
    assert first == ranker.rank(frames, sentences, 3) and len(set(first)) == 3 and set(first) <= set(sentences)


def test_sample_frames_spreads_over_the_clip():
    frames = np.arange(10)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    assert sample_frames(frames, 4)[:, 0, 0, 0].tolist() == [0, 3, 6, 9]
    assert len(sample_frames(frames[:3], 4)) == 3

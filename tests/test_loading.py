"""stylization.loading's file reading: damaged files are one-line CheckpointErrors, bugs are not hidden."""

import pytest

from stylization.errors import CheckpointError
from stylization.loading import load_official


def test_a_damaged_safetensors_file_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "SadTalker_V0.0.2_256.safetensors"
    path.write_bytes(b"\x10" + bytes(7) + b"not json at all")
    with pytest.raises(CheckpointError, match="not a readable safetensors file") as info:
        load_official("sadtalker_audio2exp", path)
    assert str(path) in str(info.value)
    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        load_official("sadtalker_audio2exp", tmp_path / "missing.safetensors")


def test_a_bug_inside_the_reader_keeps_its_traceback(tmp_path, monkeypatch):
    import safetensors.torch

    def broken(path):
        raise TypeError("a programming error, not a bad file")

    monkeypatch.setattr(safetensors.torch, "load_file", broken)
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"")
    with pytest.raises(TypeError, match="programming error"):
        load_official("sadtalker_audio2exp", path)

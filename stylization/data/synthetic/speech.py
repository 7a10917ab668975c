"""Speech for the synthetic corpus: espeak-ng, resampled to 16 kHz mono."""

from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np

from stylization.constants import SAMPLE_RATE
from stylization.errors import DataError

INSTALL_HINT = "install it with: sudo apt-get install -y espeak-ng (or run make, which does)"


def espeak_path() -> str:
    found = shutil.which("espeak-ng")
    if found is None:
        raise DataError(f"espeak-ng is not installed; {INSTALL_HINT}")
    return found


def synthesize(text: str, voice: str, pitch: int, words_per_minute: int, amplitude: int = 100) -> np.ndarray:
    """Speak ``text`` with espeak-ng -> float32 mono at 16 kHz (deterministic for equal inputs)."""
    import soundfile
    from scipy.signal import resample_poly

    cmd = [espeak_path(), "-v", voice, "-p", str(int(np.clip(pitch, 0, 99))), "-s", str(int(words_per_minute)),
           "-a", str(int(np.clip(amplitude, 0, 200))), "--stdout", text]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0 or not proc.stdout:
        raise DataError(f"espeak-ng failed for voice {voice!r}: {proc.stderr.decode(errors='replace').strip()}")
    wav, rate = soundfile.read(io.BytesIO(proc.stdout), dtype="float32")
    if wav.ndim > 1:
        wav = wav.mean(axis=1)
    if rate != SAMPLE_RATE:
        g = np.gcd(rate, SAMPLE_RATE)
        wav = resample_poly(wav, SAMPLE_RATE // g, rate // g).astype(np.float32)
    return wav

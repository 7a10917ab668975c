"""Style-E: text-controlled emotional motion (expression coefficients from audio, identity and text)."""

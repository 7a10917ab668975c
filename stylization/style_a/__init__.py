"""Style-A: the art-stylised, coefficient-driven renderer (StyleGAN2 / DualStyleGAN backbone)."""

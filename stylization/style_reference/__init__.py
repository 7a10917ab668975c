"""The reference-frame style transfer method (Pham et al., CVPRW 2024)."""

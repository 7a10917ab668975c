"""Text: emotion descriptions (annotation templates) and, later, the CLIP text encoder."""

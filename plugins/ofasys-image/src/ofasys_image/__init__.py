"""IMAGE and BOX slots for ofasys: captioning, VQA, grounding, detection, image generation."""

__version__ = "0.1.0"

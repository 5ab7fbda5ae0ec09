"""MOTION slot for ofasys: text to motion by diffusion, and motion captioning."""

__version__ = "0.1.0"

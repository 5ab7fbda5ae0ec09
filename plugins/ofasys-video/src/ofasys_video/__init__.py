"""VIDEO slot for ofasys: video classification, captioning and question answering."""

__version__ = "0.1.0"

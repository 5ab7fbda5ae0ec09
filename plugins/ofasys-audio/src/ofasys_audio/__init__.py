"""AUDIO and PHONE slots for ofasys: speech recognition and text to speech."""

__version__ = "0.1.0"

"""TIMESERIES: a worked third-party ofasys plugin (entry module :mod:`ofasys_timeseries.plugin`)."""

__version__ = "0.1.0"

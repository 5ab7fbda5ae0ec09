import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: trains a model (minutes on CPU)")

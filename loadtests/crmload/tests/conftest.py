"""Unit tests of the load-test gate, sampler and report: synthetic data, no
system. Run from the repository root:

    loadtests/.venv/bin/python -m pytest loadtests/crmload/tests
"""
import importlib.util
import os
import sys
from pathlib import Path

import pytest

# Locust puts loadtests/ on the path for the locustfile; the tests do the same.
LOADTESTS = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(LOADTESTS))


def pytest_configure(config):
    # matplotlib 3.9 still calls pyparsing's old camelCase names: not ours to fix.
    config.addinivalue_line("filterwarnings", "ignore:.*deprecated - use:DeprecationWarning")


@pytest.fixture
def load_shape(monkeypatch):
    """load_shape("stress", LOADTEST_X="1", ...): the module of
    loadtests/shapes/stress.py, loaded afresh with only these LOADTEST_ variables."""
    def load(name, **env):
        for variable in [v for v in os.environ if v.startswith("LOADTEST_")]:
            monkeypatch.delenv(variable)
        for variable, value in env.items():
            monkeypatch.setenv(variable, value)
        spec = importlib.util.spec_from_file_location(f"{name}_shape", LOADTESTS / "shapes" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load

"""Test-wide setup: the repo root on sys.path, and the ``slow`` marker.

Tests marked ``slow`` (multi-process training runs) are left out of the default run, so
``python -m pytest -q tests`` stays fast. Run them on their own with

    python -m pytest -q -m slow tests

or everything with ``-m "slow or not slow"``. An explicit ``-m`` always wins over the default.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: multi-process or long test, left out unless selected with -m slow")
    if not config.option.markexpr:
        config.option.markexpr = "not slow"

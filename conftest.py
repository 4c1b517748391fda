"""The repository root's pytest hook: lowlight_test.py keeps the reference's name (a command line, not tests)."""
from __future__ import annotations

from pathlib import Path

import pytest

_COMMAND_LINE = Path(__file__).resolve().parent / "lowlight_test.py"


class _CommandLine(pytest.File):
    """A script whose name matches ``*_test.py``: nothing to collect, and never imported."""

    def collect(self):
        return []


def pytest_pycollect_makemodule(module_path: Path, parent):
    """``pytest lowlight_test.py`` names the file itself (pytest.ini's ``python_files`` does not apply then)."""
    if module_path.resolve() == _COMMAND_LINE:
        return _CommandLine.from_parent(parent, path=module_path)
    return None

"""pytest.ini and the root conftest.py: lowlight_test.py (the reference's script name) is never a test module."""
from __future__ import annotations

import subprocess
import sys

from helpers import ROOT

# pytest in a fresh interpreter, recording every collector it starts and whether lowlight_test was imported
_COLLECT = """
import sys, pytest
class Record:
    def pytest_collectstart(self, collector):
        print("COLLECTOR", type(collector).__name__, getattr(collector, "path", ""))
code = pytest.main(["--collect-only", "-q", *sys.argv[1:]], plugins=[Record()])
print("EXIT", int(code), "IMPORTED", "lowlight_test" in sys.modules)
"""


def _collect(*args: str) -> list[str]:
    r = subprocess.run([sys.executable, "-c", _COLLECT, *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    return r.stdout.splitlines()


def test_lowlight_test_py_is_never_collected_as_a_test_module():
    named = _collect("lowlight_test.py")  # named on the command line: conftest.py's empty collector, no import
    assert named[-1] == "EXIT 5 IMPORTED False", named[-5:]  # 5: no tests collected
    assert f"COLLECTOR _CommandLine {ROOT / 'lowlight_test.py'}" in named
    walked = _collect(".", "--ignore=tests")  # found by a walk of the root: python_files leaves it out
    assert walked[-1] == "EXIT 5 IMPORTED False", walked[-5:]
    assert f"COLLECTOR Dir {ROOT}" in walked and not [line for line in walked if "lowlight_test" in line]
    assert not [line for line in named + walked if line.startswith("COLLECTOR Module")]

"""tools/probe.py's judges: a failure is good only with a non-zero exit and one line naming the file/flag;
a traceback, a hang, exit 0 on a failure or a left-over temporary file is bad; an unclear message partial.
And every case of the probe file has a reconstruction (or an explained ``not re-run``)."""
from __future__ import annotations

import importlib

import pytest

import tools.probe as probe
from tools.probe_lib import CASES, PROBE, Res, classify_error, classify_ok


def _res(rc, err="", out="", timed_out=False):
    return Res(rc, out, err, 1.0, timed_out)


def test_classify_error_verdicts(tmp_path):
    assert classify_error(_res(2, "error: --tile -5: must be >= 0\n"), "--tile")[0] == "good"
    assert classify_error(_res(2, "error: something is wrong\n"), "--tile")[0] == "partial"
    assert classify_error(_res(2, "warning: x\nerror: --tile bad\n"), "--tile")[0] == "partial"
    assert classify_error(_res(1, "Traceback (most recent call last):\n  File x\nValueError: y\n"))[0] == "bad"
    assert classify_error(_res(0, ""), "--tile")[0] == "bad"
    assert classify_error(_res(-9, "", timed_out=True))[0] == "bad"
    (tmp_path / ".tmp-x.pth").write_bytes(b"")
    assert classify_error(_res(2, "error: --tile\n"), "--tile", dirs=[tmp_path])[0] == "bad"


def test_classify_ok_verdicts(tmp_path):
    assert classify_ok(_res(0))[0] == "good"
    assert classify_ok(_res(0), lambda: "no output")[0] == "bad"
    assert classify_ok(_res(0), lambda: ("partial", "noise"))[0] == "partial"
    assert classify_ok(_res(1, "error: x\n"))[0] == "bad"


@pytest.mark.skipif(not PROBE.exists(), reason="../shared/probe-2026-12-07.txt is not present")
def test_every_case_of_the_probe_file_is_reconstructed():
    for m in probe.CASE_MODULES:
        importlib.import_module(m)
    rows = probe.read_probe()
    missing = [(a, n) for a, n, *_ in rows if f"{a}:{n}" not in CASES and n not in CASES]
    assert not missing

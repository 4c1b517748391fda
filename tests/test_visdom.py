"""--enable_vis against a real visdom server started on loopback (no web assets needed for the API)."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

import train
from helpers import make_cityscapes, make_contrast

SERVER = ("import sys; from visdom.server.run_server import main; "
          "sys.argv = ['visdom', '-port', sys.argv[1], '--hostname', '127.0.0.1', '-env_path', sys.argv[2]]; main()")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def visdom_server(tmp_path):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(tmp_path / "visdom_env")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("visdom server did not start")
    yield port
    proc.terminate()
    proc.wait(10)


def test_training_windows_appear_in_visdom(tmp_path, visdom_server):
    import visdom

    city = make_cityscapes(tmp_path / "cityscapes", labels=False)
    contrast = make_contrast(tmp_path / "Contrast")
    train.main(["--stage", "scl", "--data_root", str(city), "--contrast_dir", str(contrast), "--crop_size", "32",
                "--num_workers", "0", "--device", "cpu", "--snapshots_folder", str(tmp_path / "snap"),
                "--total_itrs", "3", "--log_every", "1", "--w_seg", "0", "--w_segexp", "0", "--w_feat", "0",
                "--w_percep", "0", "--enable_vis", "--vis_port", str(visdom_server), "--vis_env", "scl_test"])
    viz = visdom.Visdom(port=visdom_server, env="scl_test", raise_exceptions=True, use_incoming_socket=False)
    windows = json.loads(viz.get_window_data(env="scl_test"))
    for name in ("loss/total", "loss/tv", "loss/color", "loss/con", "input | enhanced"):
        assert name in windows, sorted(windows)
    # the total-loss window holds the three logged points
    trace = windows["loss/total"]["content"]["data"][0]
    assert trace["x"] == [1, 2, 3]


def test_unreachable_server_is_one_line_error(tmp_path):
    from utils.errors import UserError

    city = make_cityscapes(tmp_path / "cityscapes", labels=False)
    contrast = make_contrast(tmp_path / "Contrast")
    with pytest.raises(UserError, match="no visdom server"):
        train.main(["--stage", "scl", "--data_root", str(city), "--contrast_dir", str(contrast), "--crop_size",
                    "32", "--num_workers", "0", "--device", "cpu", "--snapshots_folder", str(tmp_path / "s"),
                    "--total_itrs", "1", "--w_seg", "0", "--w_segexp", "0", "--w_feat", "0", "--w_percep", "0",
                    "--enable_vis", "--vis_port", str(_free_port())])


def test_unreachable_server_prints_only_the_error(caplog):
    """visdom's own 'Setting up a new session...' warning is not shown before the one-line error (probe:
    visdom_no_server)."""
    import logging

    from stages.vis import Visualizer
    from utils.errors import UserError

    with caplog.at_level(logging.INFO), pytest.raises(UserError, match="no visdom server"):
        Visualizer(port=_free_port())
    assert [r.getMessage() for r in caplog.records if r.name.startswith("visdom")] == []

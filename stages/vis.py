"""Visdom plots (``--enable_vis``): one window per loss term and a window of input/output images."""
from __future__ import annotations

import logging

import numpy as np
import torch

from utils.errors import UserError


class Visualizer:
    """Thin wrapper over ``visdom.Visdom`` that fails with one line when the server is not reachable."""

    def __init__(self, port: int = 28333, env: str = "main", server: str = "http://localhost") -> None:
        try:
            import visdom
        except ImportError as e:  # pragma: no cover - visdom is in requirements.txt
            raise UserError("--enable_vis needs the visdom package: pip install visdom") from e
        # visdom logs "Setting up a new session..." (and a warning when the server is away) to stderr: noise
        # before this class's own one-line error
        logging.getLogger("visdom").setLevel(logging.ERROR)
        try:
            self.viz = visdom.Visdom(server=server, port=port, env=env, raise_exceptions=True,
                                     use_incoming_socket=False)
            ok = self.viz.check_connection(timeout_seconds=3)
        except ConnectionError:
            ok = False
        if not ok:
            raise UserError(f"no visdom server at {server}:{port}; start one with "
                            f"`python -c 'from visdom.server.run_server import main; main()' -port {port}` "
                            f"or drop --enable_vis")
        self.env = env

    def line(self, name: str, x: float, y: float) -> None:
        """Append the point (x, y) to the window ``name`` (created on first use)."""
        self.viz.line(X=np.array([x]), Y=np.array([y]), win=name, update="append",
                      opts={"title": name, "xlabel": "iteration"})

    def images(self, name: str, images: torch.Tensor) -> None:
        """Show (N,3,H,W) images in [0,1] in the window ``name``."""
        self.viz.images(images.detach().clamp(0, 1).cpu().numpy(), win=name, nrow=images.shape[0],
                        opts={"title": name})

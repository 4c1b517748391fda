"""torch.hub entry points of this repository (the builders live in :mod:`network.hub`).

    model = torch.hub.load("<owner>/<repo>", "dce_net", weights="shipped")     # from GitHub
    model = torch.hub.load("path/to/repo", "dce_net", source="local")          # from a clone
"""
dependencies = ["torch", "torchvision"]

from network.hub import dce_net, deeplabv3plus_mobilenet, emnet  # noqa: E402,F401

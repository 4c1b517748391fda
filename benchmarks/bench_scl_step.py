"""One SCL-LLE training step (DCE-Net + the VGG terms, no segmentation net): reference-style loss
calls (VGG16 features of the enhanced image computed three times) against this project's SCLLoss
(computed once, shared by the Gram and perceptual terms).

    python benchmarks/bench_scl_step.py [--crop 384] [--batch 2] [--steps 3]

VGG16 weights are random (timing does not depend on them): they are written to a temporary
TORCH_HOME under the real file name, so the real loading code runs. Prints the median step time of
each variant, their ratio measured in this run, and the largest difference of the loss values.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--crop", type=int, default=384)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    home = tempfile.mkdtemp()
    os.environ["TORCH_HOME"] = home
    import torchvision

    ckdir = os.path.join(home, "hub", "checkpoints")
    os.makedirs(ckdir)
    torch.manual_seed(0)
    state = {k: (v if v.numel() < 3_000_000 else torch.zeros(1).expand(v.shape))
             for k, v in torchvision.models.vgg16().state_dict().items()}
    torch.save(state, os.path.join(ckdir, "vgg16-397923af.pth"))

    import Myloss
    from lowlight_model import enhance_net_nopool, weights_init
    from stages.sclloss import SCLLoss

    weights = {"tv": 200, "color": 8, "con": 10, "feat": 5, "percep": 1}
    model = enhance_net_nopool()
    model.apply(weights_init)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    n, c = args.batch, args.crop
    I, P, Q = torch.rand(n, 3, c, c) * 0.3, torch.rand(n, 3, c, c), torch.rand(n, 3, c, c)
    tv, color, gram, percep = Myloss.L_TV(), Myloss.L_color(), Myloss.PerceptualLoss(), Myloss.perception_loss()
    shared = SCLLoss(weights)

    def reference():  # the reference's calls: VGG of E in perception_loss and in both Gram terms
        _, E, A = model(I)
        loss = (200 * tv(A) + 8 * color(E).mean() + 10 * Myloss.contrastive_loss(E, P, Q)
                + 5 * torch.clamp(gram(E, P) - gram(E, Q) + 0.04, min=0) + percep(I, E))
        return loss

    def ours():
        _, E, A = model(I)
        return sum(shared(I, E, A, None, P, Q).values())

    def step(fn):
        loss = fn()
        opt.zero_grad()
        loss.backward()
        return loss.item()

    state0 = {k: v.clone() for k, v in model.state_dict().items()}
    results = {}
    for name, fn in (("reference calls", reference), ("shared features", ours)):
        model.load_state_dict(state0)
        step(fn)  # warm-up
        times, values = [], []
        for _ in range(args.steps):
            t = time.perf_counter()
            values.append(step(fn))
            times.append(time.perf_counter() - t)
        results[name] = (statistics.median(times), values)
    base = results["reference calls"][0]
    print(f"SCL-LLE step, batch {n}, {c}x{c}, {args.threads} threads, median of {args.steps} (no optimizer.step)")
    for name, (t, values) in results.items():
        print(f"{name:<16} {t:7.2f} s   {base / t:5.2f}x   loss {values[0]:.6f}")
    diff = abs(results["reference calls"][1][0] - results["shared features"][1][0])
    print(f"max loss difference: {diff:.2e}")


if __name__ == "__main__":
    main()

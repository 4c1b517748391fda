"""Training speed: one SCL-LLE step (DCE-Net + all VGG terms, no segmentation net), the reference graph
against this project's, with and without AMP; and the data-parallel speed-up of 1 vs 2 processes.

    python benchmarks/bench_training.py [--crop 384] [--batch 2] [--steps 3] [--ddp_crop 256] [--device cpu]

A step is forward, loss, backward and the optimiser update. "reference graph": the reference's loss calls
(VGG16 features of the enhanced image computed three times, of P/Q/I with gradients tracked), fp32,
contiguous tensors. "ours": losses.SCLLoss (features of the output computed once, P/Q/I without
gradient), optionally channels_last and ``--amp bf16`` (autocast, as ``train.py --amp bf16``); "+ Gram
cache" is what ``train.py --stage scl`` runs: the contrast images' Gram matrices cached by image (the
steady state, timed after the warm-up step filled the cache; a pool of K contrast images costs K
relu2_2 passes once). VGG16 weights
are random (timing does not depend on them), written to a temporary TORCH_HOME under the real file name.
Prints median ms/step, the ratio to the reference measured in this run, and the loss difference to the
reference (fp32 must agree within 1e-5 relative). The DDP rows run the same step in 1 and 2 processes
(gloo on the CPU, nccl on CUDA; per-process batch fixed) and report images/s.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils.help import HelpFormatter  # noqa: E402
WEIGHTS = {"tv": 200, "color": 8, "con": 10, "feat": 5, "percep": 1}


@contextlib.contextmanager
def fake_vgg_home():
    """A temporary TORCH_HOME holding random VGG16 weights under the real name (nothing is downloaded)."""
    from tools.random_backbone_weights import write_random_weights

    with tempfile.TemporaryDirectory() as home:
        os.environ["TORCH_HOME"] = home
        write_random_weights(os.path.join(home, "hub", "checkpoints"), ("vgg16",))
        yield


def make_step(variant: str, n: int, c: int, device: torch.device):
    """A closure running one training step of ``variant``; returns the loss (float)."""
    import Myloss
    from lowlight_model import enhance_net_nopool, weights_init
    from losses import SCLLoss

    torch.manual_seed(0)
    model = enhance_net_nopool()
    model.apply(weights_init)
    g = torch.Generator().manual_seed(1)
    inputs = [torch.rand(n, 3, c, c, generator=g) * s for s in (0.3, 1.0, 1.0)]
    fmt = torch.channels_last if "channels_last" in variant else torch.contiguous_format
    model.to(device, memory_format=fmt)
    I, P, Q = (t.to(device, memory_format=fmt) for t in inputs)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    amp = torch.autocast(device.type, torch.bfloat16) if "bf16" in variant else contextlib.nullcontext()
    if variant == "reference graph":
        tv, color = Myloss.L_TV(), Myloss.L_color()
        vgg = Myloss.get_vgg_features(device)
        gram, percep = Myloss.PerceptualLoss(vgg=vgg), Myloss.perception_loss(vgg=vgg)

        def losses():
            _, E, A = model(I)
            return (200 * tv(A) + 8 * color(E).mean() + 10 * Myloss.contrastive_loss(E, P, Q)
                    + 5 * torch.clamp(gram(E, P) - gram(E, Q) + 0.04, min=0) + percep(I, E))
    else:
        crit = SCLLoss(WEIGHTS, device=device)
        crit.vgg.to(memory_format=fmt)
        ids = [("P", k) for k in range(n)] + [("Q", k) for k in range(n)] if "cache" in variant else None

        def losses():
            with amp:
                _, E, A = model(I)
                return sum(crit(I, E, A, None, P, Q, contrast_ids=ids).values())

    def step() -> float:
        loss = losses()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def time_steps(step, steps: int, device: torch.device, clock=time.perf_counter) -> tuple[float, float]:
    """(median seconds per step, loss of the first timed step) after one warm-up step."""
    step()
    times, first = [], None
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = clock()
        loss = step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(clock() - t)
        first = loss if first is None else first
    return statistics.median(times), first


def _ddp_worker(rank: int, world: int, port: int, args, queue) -> None:
    import torch.distributed as dist

    from utils.device import close_distributed

    torch.set_num_threads(max(1, args.threads // world))
    device = torch.device(f"cuda:{rank}" if args.device == "cuda" else "cpu")
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    from lowlight_model import enhance_net_nopool, weights_init
    from losses import SCLLoss

    torch.manual_seed(0)
    model = enhance_net_nopool()
    model.apply(weights_init)
    model = torch.nn.parallel.DistributedDataParallel(model.to(device),
                                                      device_ids=[device] if device.type == "cuda" else None)
    crit = SCLLoss(WEIGHTS, device=device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    I, P, Q = (torch.rand(args.batch, 3, args.ddp_crop, args.ddp_crop, device=device) for _ in range(3))

    def step():
        _, E, A = model(I)
        loss = sum(crit(I, E, A, None, P, Q).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    t, _ = time_steps(step, args.steps, device)
    if rank == 0:
        queue.put(t)
    close_distributed()


def ddp_images_per_second(world: int, args) -> float:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.spawn(_ddp_worker, args=(world, port, args, queue), nprocs=world, join=True)
    return world * args.batch / queue.get()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    g = p.add_argument_group("what to time")
    g.add_argument("--crop", type=int, default=384)
    g.add_argument("--batch", type=int, default=2)
    g.add_argument("--steps", type=int, default=3)
    g.add_argument("--threads", type=int, default=2)
    g.add_argument("--ddp_crop", type=int, default=256)
    g = p.add_argument_group("how")
    g.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    g.add_argument("--no_ddp", action="store_true")
    g.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="cpu: this process's CPU time (robust on a shared machine; use with --threads 1)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with fake_vgg_home():
        run(args)


def run(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    variants = ["reference graph", "ours fp32", "ours fp32 channels_last", "ours fp32 channels_last + Gram cache",
                "ours bf16", "ours bf16 channels_last", "ours bf16 channels_last + Gram cache"]
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(f"SCL-LLE training step (forward, all VGG terms, backward, Adam), batch {args.batch}, "
          f"{args.crop}x{args.crop}, {device}, {args.threads} threads, {args.clock} clock, median of {args.steps}")
    print("| variant | ms/step | vs reference graph | loss rel. diff. to reference |\n|---|---|---|---|", flush=True)
    base = ref_loss = None
    for name in variants:
        t, loss = time_steps(make_step(name, args.batch, args.crop, device), args.steps, device, clock)
        base, ref_loss = (t, loss) if base is None else (base, ref_loss)
        diff = abs(loss - ref_loss) / abs(ref_loss)
        flag = " (MORE THAN 1e-5: fp32 must match the reference)" if "bf16" not in name and diff > 1e-5 else ""
        print(f"| {name} | {t * 1000:.0f} | {base / t:.2f}x | {diff:.1e}{flag} |", flush=True)
    if not args.no_ddp:
        one = ddp_images_per_second(1, args)
        two = ddp_images_per_second(2, args)
        print(f"\nDDP, ours fp32, {args.batch} images per process, {args.ddp_crop}x{args.ddp_crop}, "
              f"{args.threads} threads shared:")
        print(f"| processes | images/s | speed-up |\n|---|---|---|\n| 1 | {one:.2f} | 1.00x |\n"
              f"| 2 | {two:.2f} | {two / one:.2f}x |")

if __name__ == "__main__":
    main()

"""Turn Cityscapes (or any folder of normal-light photos) into the SCL-LLE training layout.

    python -m datasets.make_lowlight --src CITYSCAPES/leftImg8bit --dst datasets/data/cityscapes/leftImg8bit \\
        [--labels link|copy|none] [--contrast datasets/data/Contrast --n_contrast 200] [--workers 2] [--seed 0]

* **Inputs**: every image under ``--src`` (recursively; PNG/JPEG/BMP/TIFF) is darkened with the project's
  physically based model (:mod:`datasets.synthesis`: sRGB → linear, white-balance shift ≤ ±5 %, exposure
  log-uniform in [1/50, 1/3], Poisson shot noise with a gain log-uniform in [1e-4, 2e-3], read noise after
  Brooks et al. 2019, sRGB, 8 bits) and written as PNG to the same relative path under ``--dst``.
* **Deterministic per file**: the generator of a file is ``rng_for(seed, "lowlight/" + relative path)``,
  so reruns, ``--workers`` counts and runs split across machines all write identical bytes.
* **Resumable**: files are written atomically; a file that already exists in ``--dst`` is skipped.
* **Labels**: with ``--labels link`` (default) or ``copy``, every file of the ``gtFine`` folder next to
  ``--src`` (``<src>/../gtFine``, or ``--label_src``) is symlinked / copied to ``<dst>/../gtFine`` under
  the same relative path; ``none`` skips them.
* **Contrast set** (``--contrast DIR``, optional): ``--n_contrast`` source photos (a permutation drawn
  from ``rng_for(seed, "contrast")``, train split first when there is one) are copied as positives to
  ``DIR/GT/pos_<name>.png``, and ``--n_contrast`` others become negatives in ``DIR/low/``: alternately
  over-exposed in linear light (``over_<name>.png``, gain log-uniform in [2.5, 8]) and under-exposed
  with the low-light model (``under_<name>.png``); ``<name>`` is the relative path with ``/`` → ``__``.
* ``<dst>/../lowlight_params.jsonl``: the drawn parameters of every darkened image (exposure, gain K,
  read-noise σ, white-balance t and g), recomputed from the seeds, so it is complete after a resumed run.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import time

from tqdm import tqdm

from datasets.synthesis import draw_params, rng_for, synthesize_lowlight, synthesize_overexposed
from utils.errors import UserError, run_cli
from utils.fs import atomic_path, atomic_write
from utils.image_io import list_images, read_image, save_image
from utils.help import HelpFormatter


def _rel(path: str, root: str) -> str:
    return os.path.relpath(path, root).replace(os.sep, "/")


def _png(rel: str) -> str:
    return os.path.splitext(rel)[0] + ".png"


def plan_tasks(src: str, dst: str, seed: int, contrast: str | None, n_contrast: int) -> list[tuple[str, str, str, str]]:
    """``(kind, source path, output path, rng key)`` for every file to make; kind in low/pos/over/under."""
    files = sorted(list_images(src, recursive=True), key=lambda p: _rel(p, src))
    if not files:
        raise UserError(f"--src {src}: no images found; pass the leftImg8bit folder or a folder of photos")
    tasks = [("low", p, os.path.join(dst, _png(_rel(p, src))), "lowlight/" + _rel(p, src)) for p in files]
    if contrast and n_contrast > 0:
        order = [files[i] for i in rng_for(seed, "contrast").permutation(len(files))]
        order.sort(key=lambda p: not _rel(p, src).startswith("train/"))  # stable: train split first
        if len(order) < 2 * n_contrast:
            raise UserError(f"--n_contrast {n_contrast}: needs {2 * n_contrast} source images, --src has {len(order)}")
        for i, p in enumerate(order[:2 * n_contrast]):
            name = _png(_rel(p, src)).replace("/", "__")
            if i < n_contrast:
                tasks.append(("pos", p, os.path.join(contrast, "GT", "pos_" + name), "pos/" + name))
            else:
                kind = "over" if i % 2 == 0 else "under"
                tasks.append((kind, p, os.path.join(contrast, "low", f"{kind}_{name}"), f"{kind}/{name}"))
    return tasks


def run_task(task: tuple[str, str, str, str], seed: int = 0) -> str:
    """Make one file unless it exists; returns ``"done"`` or ``"skipped"``."""
    kind, src, out, key = task
    if os.path.exists(out):
        return "skipped"
    x = read_image(src)
    rng = rng_for(seed, key)
    if kind in ("low", "under"):
        y = synthesize_lowlight(x, rng)[0]
    elif kind == "over":
        y = synthesize_overexposed(x, rng)[0]
    else:
        y = x
    save_image(y, out)
    return "done"


def _run_task_star(args: tuple) -> str:
    return run_task(*args)


def place_labels(label_src: str, label_dst: str, mode: str) -> int:
    """Symlink or copy every file of ``label_src`` to the same relative path under ``label_dst``."""
    n = 0
    for folder, _, names in os.walk(label_src):
        for name in sorted(names):
            s = os.path.join(folder, name)
            d = os.path.join(label_dst, os.path.relpath(s, label_src))
            if os.path.lexists(d):
                continue
            with atomic_path(d) as tmp:
                if mode == "link":
                    os.remove(tmp)  # the link takes the temporary file's name
                    os.symlink(os.path.abspath(s), tmp)
                else:
                    shutil.copyfile(s, tmp)
            n += 1
    return n


def write_params(tasks: list[tuple[str, str, str, str]], dst: str, seed: int, path: str) -> None:
    """The drawn parameters of every darkened input (recomputed from the seeds), one JSON line each."""
    lines = []
    for kind, _, out, key in tasks:
        if kind == "low":
            p = draw_params(rng_for(seed, key))  # the first draws of the file's generator
            lines.append(json.dumps({"file": _rel(out, dst), **{k: round(v, 7) for k, v in p.items()}}))
    with atomic_write(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def make_lowlight(src: str, dst: str, seed: int = 0, workers: int = 1, labels: str = "link",
                  label_src: str | None = None, contrast: str | None = None, n_contrast: int = 200,
                  progress: bool = True) -> dict[str, int]:
    """Build the layout (module docstring); returns counts ``done``, ``skipped``, ``labels``."""
    if not os.path.isdir(src):
        raise UserError(f"--src {src}: folder not found")
    if os.path.abspath(src) == os.path.abspath(dst):
        raise UserError("--dst must differ from --src (the originals would be overwritten)")
    tasks = plan_tasks(src, dst, seed, contrast, n_contrast)
    todo = [t for t in tasks if not os.path.exists(t[2])]  # resumable: finished files are skipped
    counts = {"done": 0, "skipped": len(tasks) - len(todo), "labels": 0}
    bar = tqdm(total=len(tasks), initial=counts["skipped"], desc="make_lowlight", disable=not progress,
               dynamic_ncols=True)
    if workers > 1 and len(todo) > 1:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(min(workers, len(todo))) as pool:
            for r in pool.imap_unordered(_run_task_star, [(t, seed) for t in todo], chunksize=4):
                counts[r] += 1
                bar.update(1)
    else:
        for t in todo:
            counts[run_task(t, seed)] += 1
            bar.update(1)
    bar.close()
    parent = os.path.dirname(os.path.normpath(dst))
    if labels != "none":
        lsrc = label_src or os.path.join(os.path.dirname(os.path.normpath(src)), "gtFine")
        if os.path.isdir(lsrc):
            counts["labels"] = place_labels(lsrc, os.path.join(parent, "gtFine"), labels)
        elif label_src:
            raise UserError(f"--label_src {label_src}: folder not found")
    write_params(tasks, dst, seed, os.path.join(parent, "lowlight_params.jsonl"))
    return counts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m datasets.make_lowlight", description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    g = ap.add_argument_group("folders")
    g.add_argument("--src", required=True, help="normal-light images, e.g. .../cityscapes/leftImg8bit")
    g.add_argument("--dst", required=True, help="output folder, e.g. datasets/data/cityscapes/leftImg8bit")
    g.add_argument("--labels", choices=["link", "copy", "none"], default="link",
                   help="put <src>/../gtFine next to --dst as symlinks (default) or copies")
    g.add_argument("--label_src", default=None, help="label folder (default: <src>/../gtFine when it exists)")
    g = ap.add_argument_group("contrast set")
    g.add_argument("--contrast", default=None, help="also build the contrast set here (GT/ and low/; default: none)")
    g.add_argument("--n_contrast", type=int, default=200, help="positives and negatives each (default 200)")
    g = ap.add_argument_group("run")
    g.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1)), help="processes")
    g.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.time()
    c = make_lowlight(args.src, args.dst, args.seed, args.workers, args.labels, args.label_src, args.contrast,
                      args.n_contrast)
    print(f"made {c['done']} files, skipped {c['skipped']} already done, placed {c['labels']} label files "
          f"({args.labels}) in {time.time() - t0:.1f} s -> {args.dst}")


if __name__ == "__main__":
    run_cli(main)

"""Re-run the new user's probe (../shared/probe-2026-12-07.txt) on tiny inputs and write a Markdown table.

    OMP_NUM_THREADS=1 python tools/probe.py --out docs/probe.md [--only NAME[,NAME...] [--merge]] [--jobs 1]

The cases live in tools/probe_cases_*.py (shared inputs in probe_build.py, helpers and judges in probe_lib.py).
--merge replaces only the re-run cases' rows of the existing table and adds the run to its list of runs.

Each case runs the real command line in a subprocess (its own process group, under a time limit) on inputs
built in a temporary folder, and is classified with the probe file's definitions:
good = one clear line naming the file/flag, nothing half-written, non-zero exit on failure;
partial = right outcome, unclear message or noise; bad = traceback, hang, silent wrong result, lost data
or exit 0 on failure. A case of the file that this script does not reconstruct is listed as ``not re-run``.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tools.probe_lib as L  # noqa: E402
from tools.probe_lib import CASES, PROBE, MOUNTS, ROOT, short  # noqa: E402

CASE_MODULES = ["tools.probe_cases_base1", "tools.probe_cases_base2", "tools.probe_cases_user", "tools.probe_cases_infer",
                "tools.probe_cases_infer2", "tools.probe_cases_train", "tools.probe_cases_train2"]


# ------------------------------------------------------------------------------------------- report
def read_probe():
    rows = []
    for ln in PROBE.read_text().splitlines():
        if ln.startswith("#") or not ln.strip():
            continue
        parts = [p.strip() for p in ln.split(" | ", 3)]
        rows.append(parts + [""] * (4 - len(parts)))
    return rows


def run_case(name):
    area, f = CASES[name]
    t0 = time.time()
    try:
        v, obs = f()
    except Exception as e:  # the probe's own fault: never a verdict of the project
        v, obs = "not re-run", f"probe error: {type(e).__name__}: {short(str(e), 120)}"
    return name, v, obs, time.time() - t0


# defects of the project that this re-run found and that were fixed (each with a test that fails without it)
FIXES = [
    "visdom_no_server came out partial: visdom's own `Setting up a new session...` warning preceded the one-line "
    "error. stages/vis.py sets the visdom logger to ERROR before connecting; "
    "tests/test_visdom.py::test_unreachable_server_prints_only_the_error.",
]

# why a case that is not good is not a defect of the project (added to its observation)
EXPLAIN = {
    "torchrun_nproc_0": "torch.distributed.run asserts on --nproc_per_node 0 while parsing its own arguments, before "
                        "any of the project's code runs; nothing the project can change",
    "torchrun_scl_nproc_0": "as torchrun_nproc_0: the launcher's own assertion, before train.py runs",
    "torchrun_mem_world3_batch_gt_mem": "the project's one line comes from rank 0 only; the ChildFailedError summary "
                                        "after it is printed by torchrun itself when a worker exits non-zero",
}


def cell(s):
    return s.replace("|", "\\|").replace("\n", " ")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "docs" / "probe.md"))
    ap.add_argument("--only", default="", help="comma-separated case names (re-run a subset; prints, writes nothing)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--merge", action="store_true", help="with --only: update those rows of the existing --out table")
    a = ap.parse_args(argv)
    import importlib
    for m in CASE_MODULES:
        importlib.import_module(m)
    if a.list:
        print("\n".join(f"{CASES[n][0]} | {n}" for n in CASES))
        return 0
    names = [n for n in a.only.split(",") if n] or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        ap.error(f"--only: unknown case(s) {', '.join(unknown)} (see --list)")
    L.TMP = TMP = Path(tempfile.mkdtemp(prefix="lle-probe-"))
    t0 = time.time()
    results = {}
    try:
        L.city(), L.lol(), L.photos()   # built once here, so that parallel cases do not race
        with cf.ThreadPoolExecutor(a.jobs) as ex:
            for name, v, obs, secs in ex.map(run_case, names):
                results[name] = (v, obs)
                print(f"{secs:6.1f}s  {CASES[name][0]:5s} {name}: {v}: {obs}", flush=True)
    finally:
        for m in MOUNTS:
            subprocess.run(["umount", str(m)], capture_output=True)
        shutil.rmtree(TMP, ignore_errors=True)
    wall = time.time() - t0
    print(f"wall time {wall:.0f} s")
    cmd = "OMP_NUM_THREADS=1 python tools/probe.py " + " ".join(
        (x if len(x) < 200 else f"{x[:60]}…({len(x.split(','))} names)") for x in (argv if argv is not None else sys.argv[1:]))
    runs = [f"- `{cmd}`: {len(names)} case(s), wall time {wall:.0f} s"]
    if a.only and not a.merge:
        return 0
    if a.merge and Path(a.out).exists():
        text = Path(a.out).read_text()
        runs = [ln for ln in text.splitlines() if ln.startswith("- `OMP_NUM_THREADS=1 python tools/probe.py")] + runs
        for ln in text.splitlines():
            parts = [p.strip() for p in re.split(r"(?<!\\)\|", ln)[1:-1]]
            key = f"{parts[0]}:{parts[1]}" if len(parts) == 5 and f"{parts[0]}:{parts[1]}" in CASES else \
                (parts[1] if len(parts) == 5 else None)
            if key in CASES and key not in results and not parts[4].startswith("not reconstructed"):
                results[key] = (parts[3], parts[4].replace("\\|", "|"))
    total = sum(float(m.group(1)) for ln in runs for m in [re.search(r"wall time (\d+) s", ln)] if m)
    probe = read_probe()
    known = {r[1] for r in probe} | {f"{r[0]}:{r[1]}" for r in probe}
    rerun = sum(1 for ar, n, *_ in probe if (results.get(f"{ar}:{n}") or results.get(n, ("not re-run",)))[0] != "not re-run")
    lines = ["# Probe of 2026-12-07, re-run", "",
             f"`tools/probe.py` re-ran {rerun} of the {len(probe)} cases of `../shared/probe-2026-12-07.txt` on tiny "
             "inputs (CPU, `OMP_NUM_THREADS=1`, one case at a time, on a 2-core machine shared with two trainings). "
             "Each case runs the project's real entry point in a subprocess (its own process group, under a time "
             "limit) and is judged automatically with the file's definitions: good = one clear line naming the "
             "file/flag, nothing half-written, non-zero exit on failure; partial = right outcome, unclear message or "
             "noise; bad = traceback, hang, silent wrong result, lost data or exit 0 on failure. `not re-run` = not "
             "reconstructed here, with the reason (never counted as good).", "",
             f"Runs that produced this table (a later run's rows replace the earlier ones; wall time in all "
             f"{total:.0f} s):", "", *runs, "",
             "Project defects found by this re-run and fixed (the case re-run after the fix):", "",
             *[f"- {x}" for x in FIXES], ""]
    summary: dict = {}
    body = ["| area | case | verdict then | verdict now | observation |", "|---|---|---|---|---|"]
    for area, name, then, obs0 in probe:
        # a name the file lists twice (in two areas) is registered as "area:name" for its second area
        now, obs = results.get(f"{area}:{name}") or results.get(name, ("not re-run", "not reconstructed by tools/probe.py"))
        s = summary.setdefault(area, {"cases": 0, "good": 0, "partial": 0, "bad": 0, "not re-run": 0})
        s["cases"] += 1
        s[now if now in s else "not re-run"] += 1
        if now != "good" and name in EXPLAIN:
            obs = f"{obs} — {EXPLAIN[name]}"
        body.append(f"| {area} | {cell(name)} | {then} | {now} | {cell(obs)} |")
    extra = [n for n in results if n not in known]
    lines += ["| area | cases | good | partial | bad | not re-run |", "|---|---|---|---|---|---|"]
    tot = {k: 0 for k in ("cases", "good", "partial", "bad", "not re-run")}
    for area, s in summary.items():
        lines.append(f"| {area} | " + " | ".join(str(s[k]) for k in tot) + " |")
        for k in tot:
            tot[k] += s[k]
    lines += ["| all | " + " | ".join(str(tot[k]) for k in tot) + " |", ""] + body
    if extra:
        lines += ["", "Cases re-run that the file does not list: " + ", ".join(extra)]
    Path(a.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

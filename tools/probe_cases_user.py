"""The probe's README-path cases (area user) that probe_cases_base1.py does not hold."""
from __future__ import annotations

import json
import resource
import shutil
import socket
import subprocess
import time
from pathlib import Path

import tools.probe_lib as L
from tools.probe_build import deeplab, enh_run, mem_run, scl_run
from tools.probe_cases_base1 import emnet_ckpt
from tools.probe_lib import (NO_VGG, PY, ROOT, WEIGHTS, accepted, backbones, case, classify_error, classify_ok,
                             empty_home, enh_args, files, lle, lol, mem_args, peak_gb, photos, popen, finish, run,
                             scl_args, short, torchrun, train)


@case("user", "make_demo")
def _():
    res = ROOT / "datasets" / "result"
    existed = res.exists()
    # `make demo` with the existing environment: -o keeps make from rebuilding .venv (no network here)
    r = run(["make", "-s", "-o", ".venv/.installed", f"PY={PY}", "demo"], limit=240)
    got = [f for f in files(res) if f.endswith(".png")] if res.exists() else []
    v = classify_ok(r, lambda: None if len(got) == 6 else f"{len(got)} outputs, expected the 6 shipped samples")
    if not existed:
        shutil.rmtree(res, ignore_errors=True)
    return v[0], ("make demo (PY=the project's venv): 6 samples enhanced into datasets/result/, " + v[1]) if v[0] == "good" else v[1]


def formats_folder():
    """17 files of the formats and modes that are read (the 8-bit RGB source ref_rgb.png among them)."""
    def make():
        import cv2
        import numpy as np
        from PIL import Image
        from helpers import write_rgb
        d = L.TMP / "formats"
        rgb = write_rgb(d / "ref_rgb.png", 30, 50, seed=5, scale=0.3)
        im = Image.fromarray(rgb)
        cv2.imwrite(str(d / "rgb16_png.png"), (rgb[..., ::-1].astype(np.uint16) * 257))
        cv2.imwrite(str(d / "rgb16_tif.tif"), (rgb[..., ::-1].astype(np.uint16) * 257))
        Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(d / "gray16.png")
        rgba16 = np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 255, np.uint8)]).astype(np.uint16) * 257
        cv2.imwrite(str(d / "rgba16.png"), rgba16)
        im.convert("CMYK").save(d / "cmyk_jpg.jpg", quality=95)
        im.convert("CMYK").save(d / "cmyk_tif.tif")
        im.convert("L").save(d / "gray.png")
        im.convert("RGBA").save(d / "rgba.png")
        im.convert("LA").save(d / "la.png")
        im.convert("P").save(d / "pal.png")
        im.convert("1").save(d / "bw.png")
        ex = Image.fromarray(rgb)          # 50x30 stored, EXIF orientation 6: upright 30x50
        exif = Image.Exif()
        exif[0x0112] = 6
        ex.save(d / "exif6.jpg", exif=exif, quality=95)
        im.save(d / "prog.jpg", progressive=True, quality=95)
        im.save(d / "rgb.bmp")
        im.save(d / "plain.jpg", quality=95)
        im.save(d / "plain_tiff.tiff")
        return d
    return L.once("formats", make)


def formats_run():
    def make():
        out = L.TMP / "o_formats"
        return lle("--input_dir", formats_folder(), "--output_dir", out, "--weights", WEIGHTS, "--device", "cpu"), out
    return L.once("formats_run", make)


@case("user", "own_folder_16_formats")
def _():
    r, out = formats_run()
    n_in = len(files(formats_folder()))
    return classify_ok(r, lambda: None if len(files(out)) == n_in else f"{n_in} in, {len(files(out))} out")[0], \
        f"{n_in} files of {n_in} formats/modes in, {len(files(out))} outputs, exit {r.rc}"


@case("user", "webp_gif_silently_skipped")
def _():
    from PIL import Image
    d = photos(2, 24, 32)
    mix = L.TMP / "webpgif"
    shutil.copytree(d, mix)
    Image.open(d / "p0.png").save(mix / "a.webp")
    Image.open(d / "p0.png").save(mix / "b.gif")
    out = L.TMP / "o_webpgif"
    r = lle("--input_dir", mix, "--output_dir", out, "--weights", WEIGHTS, "--device", "cpu")
    note = [ln for ln in r.lines if "skipped" in ln and ("webp" in ln or "gif" in ln)]
    v = classify_ok(r, lambda: None if len(files(out)) == 2 else f"{len(files(out))} outputs")
    if v[0] != "good":
        return v
    return ("good", short(note[0])) if note else ("bad", "exit 0, .webp/.gif skipped without a word")


def big_png():
    def make():
        import numpy as np
        from PIL import Image
        p = L.TMP / "big" / "big.png"
        p.parent.mkdir()
        small = np.asarray(Image.open(photos() / "p0.png"))
        Image.fromarray(small).resize((4000, 3000), Image.BILINEAR).save(p, compress_level=1)
        return p.parent
    return L.once("big", make)


def _big(name, flags, limit_as=None, readme_gb=None):
    def f():
        out = L.TMP / f"o_{name}"
        pre = None
        if limit_as:
            def pre():
                resource.setrlimit(resource.RLIMIT_AS, (limit_as, limit_as))
        t0 = time.time()
        p = subprocess.Popen([PY, ROOT / "lowlight_test.py", "--input_dir", big_png(), "--output_dir", out, "--weights",
                              WEIGHTS, "--device", "cpu", *flags], cwd=ROOT, env=L.env_of(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=pre)
        r = finish(p, t0, 400)
        gb = peak_gb(r)
        v = classify_ok(r, lambda: None if len(files(out)) == 1 else "no output")
        if v[0] != "good":
            return v
        if readme_gb and (gb is None or gb > readme_gb * 1.25):
            return "partial", f"12 MP PNG: peak {gb} GB RSS, over 1.25x the README's {readme_gb} GB; {r.secs:.0f} s"
        return "good", f"12 MP PNG {' '.join(flags)}: peak {gb} GB RSS; {r.secs:.0f} s on the loaded CPU"
    L.CASES[name] = ("user", f)


_big("big_4000x3000_17GB_RSS", [], readme_gb=1.26)
_big("tile512_bounded_1.4GB", ["--tile", "512"], readme_gb=1.26)
_big("big_image_OOM_traceback", ["--memory_budget", "100"], limit_as=9 << 30)


@case("user", "demo_data")
def _():
    out = L.TMP / "demo_data"
    r = run([PY, "-m", "datasets.prepare_demo", "--n_crops", "6", "--out", out], limit=240)
    return accepted(r, f"python -m datasets.prepare_demo --n_crops 6: {len(files(out))} files, ",
                    lambda: None if len(files(out)) > 10 else f"only {len(files(out))} files")


@case("user", "scl_resume_identical_losses")
def _():
    a, b = L.TMP / "ident_a", L.TMP / "ident_b"
    r1 = train(*scl_args(a, "--total_itrs", "4"))
    train(*scl_args(b, "--total_itrs", "2"))
    r2 = train(*scl_args(b, "--total_itrs", "4", "--resume"))
    if r1.rc or r2.rc:
        return classify_ok(r1 if r1.rc else r2)

    def recs(d):
        return [json.loads(ln) for ln in (d / "losses.jsonl").read_text().splitlines() if ln.strip()]
    ra, rb = recs(a), recs(b)
    if len(ra) != len(rb):
        return "bad", f"{len(ra)} loss records straight, {len(rb)} with a resume"
    diff = max(abs(x[k] - y[k]) for x, y in zip(ra, rb) for k in x if isinstance(x[k], float))
    if diff > 1e-6:
        return "bad", f"resumed losses differ from the straight run by up to {diff:.3g}"
    return "good", f"4 iterations vs 2 + resume to 4: the same {len(ra)} loss records (max diff {diff:.1g})"


@case("user", "enh_emnet")
def _():
    p = emnet_ckpt()
    return "good", f"enhancer --arch emnet --embed_dim 8, 1 epoch: {p.name} and model_latest.pth written"


def _missing(name, argv_fn, needle):
    def f():
        out = L.TMP / ("t_" + name)
        r = train(*argv_fn(out), env=empty_home())
        return classify_error(r, needle, dirs=[out])
    L.CASES[name] = ("user", f)


_missing("enh_lpips_missing_msg", lambda d: enh_args(d, "--nepoch", "1", "--lpips_lambda", "1"),
         "alexnet-owt-7be5be79.pth")
_missing("scl_vgg_missing_msg", lambda d: scl_args(d, "--total_itrs", "1", "--w_feat", "1"), "vgg16-397923af.pth")
_missing("mem_resnet_missing_msg", lambda d: mem_args(d, "--nepoch", "1", "--query", "resnet18"),
         "resnet18-f37072fd.pth")


@case("user", "scl_default_labels_hint_require_labels")
def _():
    out = L.TMP / "t_nolabels"
    a = scl_args(out, "--total_itrs", "1", "--w_seg", "1")
    return classify_error(train(*a), "gtFine", dirs=[out])


@case("user", "mem_stage")
def _():
    run_dir = mem_run()
    log = (run_dir / "train.log").read_text() if (run_dir / "train.log").exists() else ""
    psnr = [ln for ln in log.splitlines() if "PSNR" in ln or "psnr" in ln]
    return "good", f"memory on the frozen DCE-Net: models/memory_best.pth; {short(psnr[-1], 90) if psnr else 'log has no PSNR line'}"


def _eval(out, *extra):
    _, va = lol()
    return lle("--input_dir", va, "--result_dir", out, "--weights", WEIGHTS, "--device", "cpu", "--no_lpips", *extra)


@case("user", "paired_eval_nomem")
def _():
    out = L.TMP / "o_eval_nomem"
    r = _eval(out)

    def chk():
        t = (out / "result.txt").read_text() if (out / "result.txt").exists() else ""
        return None if ("ori" in t and "oracle" in t.lower()) else f"result.txt lacks ori/oracle lines: {short(t, 80)}"
    return classify_ok(r, chk)


@case("user", "paired_eval_mem")
def _():
    out = L.TMP / "o_eval_mem"
    r = _eval(out, "--mem_weights", mem_run() / "models" / "memory_best.pth", "--mem_size", "8", "--save_images")

    def chk():
        t = (out / "result.txt").read_text() if (out / "result.txt").exists() else ""
        miss = [x for x in ("ori", "mem") if x not in t] + [x for x in ("ori", "mem") if not (out / x).is_dir()]
        miss += [] if list(out.glob("*.csv")) else ["csv"]
        return f"missing {miss}" if miss else None
    v = classify_ok(r, chk)
    return (v[0], "--mem_weights: ori/mem/oracle lines, ori/ mem/ images, csv, exit 0") if v[0] == "good" else v


@case("user", "paired_mem_pooling_mismatch")
def _():
    out = L.TMP / "o_eval_pool"
    return classify_error(_eval(out, "--mem_weights", mem_run() / "models" / "memory_best.pth", "--mem_size", "8",
                                "--pooling_size", "2"), "pool", dirs=[out])


@case("user", "paired_lpips_header_when_skipped")
def _():
    out = L.TMP / "o_eval_nolp"
    r = _eval(out)
    t = (out / "result.txt").read_text() if (out / "result.txt").exists() else ""
    v = classify_ok(r, lambda: None if "LPIPS not computed" in t else "result.txt does not say that LPIPS was skipped")
    return v


@case("user", "tensorboard")
def _():
    ev = [f for d in (scl_run(), enh_run()) for f in files(d) if "tfevents" in f]
    dirs = {f.split("/")[0] for f in ev}
    return ("good", f"tb/ event files in the SCL and enhancer run folders ({len(ev)})") if len(ev) >= 2 and dirs == {"tb"} \
        else ("bad", f"event files: {ev}")


@case("user", "loss_curve_png")
def _():
    have = [str(d) for d in (scl_run(), enh_run()) if (d / "loss_curves.png").exists()]
    return ("good", "loss_curves.png written in the SCL and enhancer run folders") if len(have) == 2 else \
        ("bad", f"loss_curves.png in {len(have)} of 2 run folders")


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@case("user", "visdom_no_server")
def _():
    out = L.TMP / "t_vis"
    port = str(_free_port())
    return classify_error(train(*scl_args(out, "--total_itrs", "1", "--enable_vis", "--vis_port", port)), port)


@case("user", "visdom_with_server")
def _():
    port = _free_port()
    code = ("import sys; from visdom.server.run_server import main; sys.argv = ['visdom', '-port', sys.argv[1], "
            "'--hostname', '127.0.0.1', '-env_path', sys.argv[2]]; main()")
    srv = popen([PY, "-c", code, str(port), L.TMP / "visdom_env"])
    try:
        t0 = time.time()
        while time.time() - t0 < 40 and srv.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                time.sleep(1)
        else:
            return "not re-run", f"the visdom server did not start here (exit {srv.poll()})"
        out = L.TMP / "t_vis_ok"
        r = train(*scl_args(out, "--total_itrs", "2", "--enable_vis", "--vis_port", str(port)))
        return accepted(r, f"plots sent to a local visdom server (port {port}), ")
    finally:
        import os
        import signal
        try:
            os.killpg(srv.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        srv.communicate(timeout=20)


@case("user", "enhancer_no_enable_vis_vs_feature_table")
def _():
    r = train("--stage", "enhancer", "--help")
    return ("good", "--enable_vis is listed in the enhancer stage's --help") if r.rc == 0 and "--enable_vis" in r.out \
        else ("bad", f"exit {r.rc}; --enable_vis {'listed' if '--enable_vis' in r.out else 'not listed'}")


@case("user", "scripts_unedited_errors")
def _():
    before = set(p.name for p in ROOT.iterdir())
    verdicts = []
    for cmd in (["train_enhancer_script.sh", "scl"], ["train_enhancer_script.sh", "lol_v1"],
                ["train_memory_script.sh"], ["test_script.sh"]):
        r = run(["bash", *cmd], env={"PYTHON": PY}, limit=120)
        verdicts.append((" ".join(cmd),) + classify_error(r, "datasets/data"))
    made = sorted(set(p.name for p in ROOT.iterdir()) - before)
    for m in made:
        shutil.rmtree(ROOT / m, ignore_errors=True)
    worst = max(verdicts, key=lambda v: ["good", "partial", "bad"].index(v[1]))
    if made:
        return "bad", f"the unedited scripts created {made} in the clone; " + worst[2]
    if worst[1] != "good":
        return worst[1], f"{worst[0]}: {worst[2]}"
    return "good", "each of the four unedited script commands: one line naming the missing data; " + short(verdicts[0][2], 90)


def _smoke(name, script, *a, needs=()):
    def f():
        for n in needs:
            L.CASES[n][1]()
        sd = L.TMP / "smoke"
        r = run(["bash", script, *a], env={"PYTHON": PY, "SMOKE": "1", "SMOKE_DIR": str(sd)}, limit=400)
        return accepted(r, f"SMOKE=1 {script} {' '.join(a)}: {len(files(sd))} files under the smoke folder, ", dirs=[sd])
    L.CASES[name] = ("user", f)


_smoke("train_enhancer_script", "train_enhancer_script.sh", "lol_v1")
_smoke("train_memory_script", "train_memory_script.sh")
_smoke("test_script", "test_script.sh")


@case("user", "make_test_timing")
def _():
    return "not re-run", ("make test runs the whole suite (over 10 min on the 2 shared cores); this probe's brief "
                          "forbids the whole suite while two trainings share the machine")


@case("user", "torchrun_scl_cpu")
def _():
    out = L.TMP / "t_tr2"
    r = torchrun(2, "train.py", *scl_args(out, "--total_itrs", "2"), limit=240)
    return accepted(r, "torchrun --nproc_per_node 2, SCL on the CPU: ", lambda: None if (out / "latest.pth").exists()
                    else "no latest.pth")


@case("user", "torchrun_memory_refused")
def _():
    # the name is the 2026-11-22 probe's; the file's observation: the stage runs under torchrun and checks
    # that the memory is identical on all processes
    out = L.TMP / "t_trmem"
    r = torchrun(2, "train.py", *mem_args(out, "--nepoch", "1"), limit=240)
    said = [ln for ln in (r.out + r.err).splitlines() if "identical on all 2 processes" in ln]
    for lg in out.rglob("train.log"):
        said += [ln for ln in lg.read_text().splitlines() if "identical on all 2 processes" in ln]
    v = classify_ok(r, lambda: None if said else "no check that the memory is identical on the 2 processes", dirs=[out])
    return (v[0], "memory stage under torchrun (2 processes): " + short(said[0].split(" ", 1)[-1], 100)) \
        if v[0] == "good" else v


@case("user", "precision_channels_last")
def _():
    out = L.TMP / "o_cl"
    r = lle("--input_dir", photos(), "--output_dir", out, "--weights", WEIGHTS, "--precision", "channels_last",
            "--device", "cpu")
    return classify_ok(r, lambda: None if len(files(out)) == 3 else "not 3 outputs")


@case("user", "scl_with_labels_deeplab")
def _():
    from tools.probe_build import city_labels
    out = L.TMP / "t_dl"
    a = scl_args(out, "--total_itrs", "1", "--w_seg", "0.1", "--w_segexp", "0.1", "--ckpt", deeplab())
    a[a.index("--data_root") + 1] = city_labels()
    backbones()
    return accepted(train(*a, limit=240), "SCL with labels and a DeepLab checkpoint (seg terms on): ")

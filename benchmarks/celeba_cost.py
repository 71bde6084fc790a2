"""What the CelebA run presets cost: steps, images per second, peak memory, and FLOPs.

Times, on random tensors of the real shapes (the cost of a step does not depend on the
weights or the pixels), with the preset's batch sizes and bf16 setting:

* classifier training: one SGD step of VGG16 at 128 px (``celeba-natural*``);
* D*: PGD-20 (ε = 2/255) on VGG16 at 128 px, at the diagnosis batch size;
* generator fitting: one joint step for the eight interpreted layers (five conv blocks, three
  FC layers; Table 5's compression networks) at each of the six scales, in the GAN phase
  (D update with lazy R1 every 4th step + C/G update) and in the warm-up phase (L_I only);
* JPEG loading: the CelebA loader's decode + crop + resize of 178×218 JPEGs, per process.

and prints a JSON document with the measured rates, the FLOPs of each step
(``torch.utils.flop_counter``, device-independent), peak memory (on a GPU
``torch.cuda.max_memory_allocated`` per measurement; on a CPU only the process's resident
high-water mark, which is not GPU memory) and the preset's projected time: training epochs ×
162,770 images, D*, and Σ over scales of steps × the measured step time.

    python benchmarks/celeba_cost.py --device cuda                 # the measurement that counts
    python benchmarks/celeba_cost.py --device cpu --scales 5 --steps 4 --train-steps 2
    python benchmarks/celeba_cost.py --flops-only --preset celeba-paper   # FLOPs, no device
    python benchmarks/celeba_cost.py --flops-only --preset celeba,celeba-paper --json docs/celeba_cost_counts.json

``--json`` writes the document with the command and the machine. ``--flops-only`` adds each
preset's settings and an estimate of its time on one GPU from the FLOPs and the stated rates
of ``GPU_ASSUMPTIONS`` (assumptions, not measurements).
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from interpretgan import models
from interpretgan.attacks import get_attack
from interpretgan.config import FIT_PRESETS, RUN_PRESETS, TRAIN_PRESETS, fit_for_image_size
from interpretgan.devices import resolve_device
from interpretgan.diagnosis.diagnose import build_dstar
from interpretgan.fitting import GanBank, gan_step, make_optimizers, schedule, stacked, warmup_steps
from interpretgan.gan import GAN_LOSSES
from interpretgan.layers import capture, default_layers
from interpretgan.precision import use_amp
from interpretgan.training import natural_step

from _record import machine, write

CELEBA_TRAIN, CELEBA_TEST = 162_770, 19_962  # the aligned release's partitions 0 and 2
SIZE = 128


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> dict:
    if device.type == "cuda":
        return {"gpu_peak_allocated_gib": torch.cuda.max_memory_allocated(device) / 2 ** 30}
    return {"cpu_process_rss_high_water_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}


def _time(fn, steps: int, warm: int, device: torch.device) -> list[float]:
    """Seconds of each of ``steps`` calls after ``warm`` untimed ones."""
    for _ in range(warm):
        fn()
    times = []
    for _ in range(steps):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return times


def _flops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    return float(fc.get_total_flops())


def classifier(device: torch.device, width: float) -> torch.nn.Module:
    torch.manual_seed(0)
    return models.create("vgg16", num_classes=2, input_size=SIZE, width=width).to(device)


def measure_training(device, preset: str, steps: int, width: float) -> dict:
    tcfg = TRAIN_PRESETS.get(preset)
    f = classifier(device, width)
    opt = torch.optim.SGD(f.parameters(), lr=tcfg.lr, momentum=tcfg.momentum)
    x = torch.rand(tcfg.batch_size, 3, SIZE, SIZE, device=device)
    y = torch.randint(0, 2, (tcfg.batch_size,), device=device)
    amp = use_amp(tcfg.amp, device)
    step = lambda: natural_step(f, opt, x, y, amp=amp)  # noqa: E731
    _peak_reset(device)
    times = _time(step, steps, 1, device)
    s = statistics.median(times)
    return {"preset": preset, "batch": tcfg.batch_size, "bf16": amp, "s_per_step": s, "s_all": times,
            "images_per_s": tcfg.batch_size / s, "flops_per_step": _flops(step), **_peak(device)}


def measure_pgd(device, batch: int, steps: int, width: float) -> dict:
    f = classifier(device, width).eval()
    for p in f.parameters():
        p.requires_grad_(False)
    atk = get_attack("pgd-20", "celeba")
    x = torch.rand(batch, 3, SIZE, SIZE, device=device)
    y = torch.randint(0, 2, (batch,), device=device)
    run = lambda: atk(f, x, y, early_stop=False, generator=torch.Generator().manual_seed(0))  # noqa: E731
    _peak_reset(device)
    times = _time(run, steps, 1, device)
    s = statistics.median(times)
    with torch.no_grad():  # autograd.grad cannot run under the FLOP counter: 20 × (forward +
        fwd = _flops(lambda: f(x))  # input gradient ≈ 2 forwards) + the two predictions
    return {"batch": batch, "s_per_batch": s, "s_all": times, "images_per_s": batch / s,
            "flops_per_batch_approx": 42 * fwd, **_peak(device)}


def measure_fit(device, fit_preset: str, scales: list[int], steps: int, width: float) -> list[dict]:
    cfg = fit_for_image_size(FIT_PRESETS.get(fit_preset), SIZE)
    f = classifier(device, width).eval()
    for p in f.parameters():
        p.requires_grad_(False)
    names = default_layers(f)
    x = torch.rand(cfg.batch_size, 3, SIZE, SIZE, device=device)
    with torch.no_grad():
        feats = capture(f, x, names)
        target = f(x).argmax(1)
    members = [(n, tuple(feats[n].shape[1:])) for n in names]
    banks = ([GanBank.build(members, 3, cfg).to(device)] if stacked(cfg, device)
             else [GanBank.build([m], 3, cfg).to(device) for m in members])
    opts = [make_optimizers(b, cfg) for b in banks]
    loss_fn = GAN_LOSSES.get(cfg.gan_loss)()
    amp = use_amp(cfg.amp, device)
    rows = []
    for scale in scales:
        for warmup in (False, True):
            start = sum(cfg.steps_per_scale[:scale]) + cfg.steps_per_scale[scale] // 2
            phase = dataclasses.replace(schedule(cfg, start), scale=scale, alpha=1.0, warmup=warmup)
            i = {"n": 0}

            def step(k: int | None = None):
                k = phase.step + i["n"] if k is None else k  # lazy R1 on every 4th step
                i["n"] += 1
                gan_step(banks, f, loss_fn, opts, feats, x, target, dataclasses.replace(phase, step=k),
                         cfg.lam, SIZE, amp=amp)

            _peak_reset(device)
            times = _time(step, steps, 1, device)
            s = statistics.median(times)
            rows.append({"scale": scale, "px": 4 * 2 ** scale, "phase": "warm-up" if warmup else "GAN",
                         "batch": cfg.batch_size, "layers": len(names), "bf16": amp, "banks": len(banks),
                         "s_per_step": s, "s_all": times, "images_per_s": cfg.batch_size / s,
                         # the FLOP counter cannot follow R1's double backward: a step without it
                         "flops_per_step_without_r1": _flops(lambda: step(4 * phase.step + 1)),
                         **_peak(device)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def measure_jpeg(n: int = 64) -> dict:
    """The CelebA loader's images per second in one process, on synthetic 178×218 JPEGs."""
    import numpy as np
    from PIL import Image

    from interpretgan.data import CelebA

    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "img_align_celeba").mkdir()
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:218, 0:178]
        for i in range(n):  # smooth, photo-like content (pure noise would not compress: 5x larger)
            img = np.stack([(xx * (1 + c) + yy * (3 - c) + 40 * i) % 256 for c in range(3)], -1)
            img = img + rng.normal(0, 6, img.shape)
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(
                root / "img_align_celeba" / f"{i + 1:06d}.jpg", quality=95)
        kib = sum(p.stat().st_size for p in (root / "img_align_celeba").iterdir()) / n / 1024
        (root / "list_attr_celeba.txt").write_text(
            f"{n}\nMale\n" + "".join(f"{i + 1:06d}.jpg 1\n" for i in range(n)))
        (root / "list_eval_partition.txt").write_text("".join(f"{i + 1:06d}.jpg 0\n" for i in range(n)))
        ds = CelebA(root, "train", size=SIZE)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as in a DataLoader worker
        t = time.perf_counter()
        for i in range(n):
            ds[i]
        seconds = time.perf_counter() - t
        torch.set_num_threads(threads)
        return {"images_per_s_per_process": n / seconds, "jpeg_kib": kib}


# The estimate for one GPU rests on these assumptions, not on measurements: the VGG16's bf16
# convolutions at batch >= 64 sustain 150 TFLOP/s (15 % of an H100's dense bf16 peak), the
# stacked, grouped G/D convolutions 30 TFLOP/s, and the training loader decodes JPEGs at
# 3,000 images/s with 4 worker processes.
GPU_ASSUMPTIONS = {"gpu": "H100", "gpu_memory_gb": 80, "dense_bf16_peak_tflops": 989,
                   "vgg16_tflops": 150, "gan_tflops": 30, "loader_images_per_s": 3000, "loader_workers": 4}


def _vgg16_counts(x: torch.Tensor) -> tuple[torch.nn.Module, dict]:
    """The meta-device VGG16 (frozen, eval mode) and its per-image FLOPs: forward, training step
    (forward + backward), forward + gradient to the input alone (the fit's L_I pass), and the
    bytes its forward saves for the backward (an upper bound: a tensor that several operations
    save counts once per operation)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        f = models.create("vgg16", num_classes=2, input_size=SIZE)
    counts = {}
    for key, fn in (("forward", lambda: f.eval()(x)), ("train", lambda: f.train()(x).sum().backward())):
        with FlopCounterMode(display=False) as fc:
            fn()
        counts[key] = float(fc.get_total_flops())
    saved = {"bytes": 0}

    def pack(t):
        saved["bytes"] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        f(x)
    f.eval().requires_grad_(False)
    xg = x.detach().requires_grad_(True)
    with FlopCounterMode(display=False) as fc:
        f(xg).sum().backward()
    counts["input_grad"] = float(fc.get_total_flops())
    counts["saved_bytes"] = saved["bytes"]
    return f, counts


def _fit_flops(f, cfg, stack: bool) -> list[dict]:
    """Per scale, one fit step's FLOPs in the GAN and the warm-up phase, for one bank per layer
    or (``stack``) the stacked bank a GPU runs, whose grouped convolutions' backward the
    counter overcounts."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        names = default_layers(f)
        xb = torch.rand(cfg.batch_size, 3, SIZE, SIZE)
        feats = capture(f, xb, names)
        target = torch.zeros(cfg.batch_size, dtype=torch.long)
        members = [(n, tuple(feats[n].shape[1:])) for n in names]
        banks = [GanBank(members, 3, cfg)] if stack else [GanBank([m], 3, cfg) for m in members]
    opts = [make_optimizers(b, cfg) for b in banks]
    loss_fn = GAN_LOSSES.get(cfg.gan_loss)()
    rows = []
    for scale in range(len(cfg.g_channels)):
        row = {"scale": scale, "px": 4 * 2 ** scale, "steps": cfg.steps_per_scale[scale]}
        for warmup in (False, True):
            phase = dataclasses.replace(schedule(cfg, 0), scale=scale, alpha=1.0, warmup=warmup, step=1)
            with FlopCounterMode(display=False) as fc:
                gan_step(banks, f, loss_fn, opts, feats, xb, target, phase, cfg.lam, SIZE)
            row["warmup_flops" if warmup else "gan_flops"] = float(fc.get_total_flops())
        rows.append(row)
    return rows


def settings(run_preset: str) -> dict:
    """What the preset runs: the classifier's training, D*'s attack and images, the fit."""
    run = RUN_PRESETS.get(run_preset)
    tcfg = TRAIN_PRESETS.get(run.natural)
    cfg = fit_for_image_size(FIT_PRESETS.get(run.fit), SIZE)
    atk = get_attack(run.attack, "celeba")
    return {"train_preset": run.natural, "train_epochs": tcfg.epochs, "train_batch": tcfg.batch_size,
            "train_steps": tcfg.epochs * (CELEBA_TRAIN // tcfg.batch_size), "train_lr": tcfg.lr,
            "train_amp": tcfg.amp, "train_images": CELEBA_TRAIN, "test_images": CELEBA_TEST, "image_size": SIZE,
            "attack": run.attack, "attack_eps": atk.eps, "dstar_images": run.dstar_images or CELEBA_TEST,
            "dstar_batch": inspect.signature(build_dstar).parameters["batch_size"].default,
            "fit_preset": run.fit, "fit_g_channels": list(cfg.g_channels), "fit_d_channels": list(cfg.d_channels),
            "fit_steps_per_scale": list(cfg.steps_per_scale), "fit_warmup_steps": list(warmup_steps(cfg)),
            "fit_steps": sum(cfg.steps_per_scale), "fit_batch": cfg.batch_size,
            "fit_generator_seeds": len(cfg.generator_seeds), "c_conv_small_maps": cfg.c_conv_small_maps}


def count_flops(run_preset: str) -> dict:
    """FLOPs (``torch.utils.flop_counter``) of each step the preset runs, counted on the meta
    device: no memory, no time, no device needed. Fit steps without the lazy R1 (every 4th
    step; the counter cannot follow its double backward), Adam's elementwise work not counted."""
    run = RUN_PRESETS.get(run_preset)
    tcfg = TRAIN_PRESETS.get(run.natural)
    cfg = dataclasses.replace(fit_for_image_size(FIT_PRESETS.get(run.fit), SIZE), adam="foreach", amp="off")
    with torch.device("meta"):
        x = torch.rand(1, 3, SIZE, SIZE)
    f, vgg = _vgg16_counts(x)
    fit = _fit_flops(f, cfg, stack=False)
    for row, st in zip(fit, _fit_flops(f, cfg, stack=True)):
        row.update(stacked_gan_flops=st["gan_flops"], stacked_warmup_flops=st["warmup_flops"])
    fit_total = sum(w * r["warmup_flops"] + (r["steps"] - w) * r["gan_flops"] for r, w in zip(fit, warmup_steps(cfg)))
    dstar = run.dstar_images or CELEBA_TEST
    return {"run_preset": run_preset, "classifier_forward_flops_per_image": vgg["forward"],
            "classifier_saved_for_backward_mib_per_image_fp32": vgg["saved_bytes"] / 2 ** 20,
            "classifier_train_flops_per_image": vgg["train"],
            "classifier_input_grad_flops_per_image": vgg["input_grad"],
            "train_flops": vgg["train"] * tcfg.epochs * CELEBA_TRAIN,
            "dstar_flops_approx": 42.0 * vgg["forward"] * dstar,  # 20 × (forward + input gradient) + 2
            "fit_steps": sum(cfg.steps_per_scale), "fit_batch": cfg.batch_size, "fit_layers": len(default_layers(f)),
            "fit_per_scale": fit, "fit_flops": fit_total}


def gpu_estimate(counts: dict, setup: dict, gpu: dict = GPU_ASSUMPTIONS) -> dict:
    """Seconds on one GPU from the FLOP counts and ``gpu``'s assumed rates (an estimate, not a
    measurement): training as the slower of loader and compute (test set once per epoch), D*
    and every fit step at the VGG16's rate for its L_I pass and the G/D rate for the rest; plus
    the memory the VGG16 saves for the backward in the fit's L_I pass and in D*'s batch."""
    epochs, rate = setup["train_epochs"], gpu["loader_images_per_s"]
    loader_s = epochs * (setup["train_images"] + setup["test_images"]) / rate
    compute_s = (counts["train_flops"] + epochs * setup["test_images"] * counts["classifier_forward_flops_per_image"]) \
        / (gpu["vgg16_tflops"] * 1e12)
    explanations = counts["fit_layers"] * setup["fit_generator_seeds"] * counts["fit_batch"]
    vgg = explanations * counts["classifier_input_grad_flops_per_image"]

    def step_s(flops: float) -> float:
        return vgg / (gpu["vgg16_tflops"] * 1e12) + (flops - vgg) / (gpu["gan_tflops"] * 1e12)

    scales = [{"scale": r["scale"], "px": r["px"], "gan_s": step_s(r["gan_flops"]),
               "warmup_s": step_s(r["warmup_flops"])} for r in counts["fit_per_scale"]]
    fit_s = sum(w * sc["warmup_s"] + (r["steps"] - w) * sc["gan_s"]
                for r, sc, w in zip(counts["fit_per_scale"], scales, setup["fit_warmup_steps"]))
    saved = counts["classifier_saved_for_backward_mib_per_image_fp32"] * 2 ** 20
    return {"train_loader_s": loader_s, "train_compute_s": compute_s, "train_s": max(loader_s, compute_s),
            "dstar_s": counts["dstar_flops_approx"] / (gpu["vgg16_tflops"] * 1e12),
            "fit_explanations_per_step": explanations, "fit_vgg16_flops_per_step": vgg,
            "fit_per_scale": scales, "fit_s": fit_s,
            "fit_saved_for_backward_gb_fp32": explanations * saved / 1e9,
            "dstar_saved_for_backward_gb_fp32": setup["dstar_batch"] * saved / 1e9}


def counts_doc(presets: list[str]) -> dict:
    """Per preset its settings, FLOP counts and the GPU estimate from them."""
    out = {}
    for name in presets:
        setup, counts = settings(name), count_flops(name)
        out[name] = {"settings": setup, "flops": counts, "gpu_estimate_s": gpu_estimate(counts, setup)}
    return {"gpu_assumptions": GPU_ASSUMPTIONS, "presets": out}


def project(run_preset: str, train: dict, pgd: dict, fit_rows: list[dict]) -> dict:
    """The preset's time from the measured rates (seconds); scales not measured are left out."""
    run = RUN_PRESETS.get(run_preset)
    tcfg = TRAIN_PRESETS.get(run.natural)
    cfg = fit_for_image_size(FIT_PRESETS.get(run.fit), SIZE)
    total = sum(cfg.steps_per_scale)
    fit_s, covered = 0.0, []
    for s, (n, warm) in enumerate(zip(cfg.steps_per_scale, warmup_steps(cfg))):
        by = {r["phase"]: r["s_per_step"] for r in fit_rows if r["scale"] == s}
        if not by:
            continue
        fit_s += warm * by["warm-up"] + (n - warm) * by["GAN"]
        covered.append(s)
    dstar = run.dstar_images or CELEBA_TEST
    return {"run_preset": run_preset, "train_epochs": tcfg.epochs, "train_steps": tcfg.epochs * (CELEBA_TRAIN // tcfg.batch_size),
            "train_s": tcfg.epochs * CELEBA_TRAIN / train["images_per_s"],
            "dstar_images": dstar, "dstar_s": dstar / pgd["images_per_s"],
            "fit_steps": total, "fit_batch": cfg.batch_size, "fit_scales_timed": covered,
            "fit_s": fit_s, "not_counted": "test-set evaluation per epoch, running agreement and "
                                           "checkpoints during the fit, KID, diagnosis, explanations"}


def measure(a: argparse.Namespace) -> dict:
    """Every timed stage of ``a.preset`` on ``a.device``, and the projected run time."""
    device = resolve_device(a.device)
    run = RUN_PRESETS.get(a.preset)
    doc = {"device": str(device), "preset": a.preset, "vgg16_width": a.width, "jpeg": measure_jpeg()}
    print(json.dumps(doc), flush=True)
    doc["train"] = measure_training(device, run.natural, a.train_steps, a.width)
    print(json.dumps(doc["train"]), flush=True)
    doc["pgd20"] = measure_pgd(device, a.pgd_batch, max(1, a.train_steps // 5), a.width)
    print(json.dumps(doc["pgd20"]), flush=True)
    doc["fit"] = measure_fit(device, run.fit, [int(s) for s in a.scales.split(",")], a.steps, a.width)
    doc["projection_s"] = project(a.preset, doc["train"], doc["pgd20"], doc["fit"])
    return doc


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--preset", default="celeba",
                    help="celeba or celeba-paper; with --flops-only a comma-separated list of them")
    ap.add_argument("--scales", default="0,1,2,3,4,5", help="scales to time (0: 4 px … 5: 128 px)")
    ap.add_argument("--steps", type=int, default=8, help="timed fit steps per scale and phase")
    ap.add_argument("--train-steps", type=int, default=10)
    ap.add_argument("--pgd-batch", type=int, default=500, help="D*'s batch size (build_dstar: 500)")
    ap.add_argument("--width", type=float, default=1.0, help="VGG16 width (1.0: the real one)")
    ap.add_argument("--json", "--out", dest="json", help="also write the JSON (with the command and machine) here")
    ap.add_argument("--flops-only", action="store_true",
                    help="only the settings, FLOPs and GPU estimate of each preset (meta device: any machine)")
    a = ap.parse_args(argv)
    presets = a.preset.split(",")
    if any(p not in ("celeba", "celeba-paper") for p in presets) or (len(presets) > 1 and not a.flops_only):
        ap.error("--preset: celeba or celeba-paper (a comma-separated list only with --flops-only)")
    started = machine()
    doc = counts_doc(presets) if a.flops_only else measure(a)
    print(json.dumps(doc, indent=2))
    write(a.json, doc, started)


if __name__ == "__main__":
    main()

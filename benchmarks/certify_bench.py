"""Throughput of the IPCert Monte-Carlo engine (wmlib.certify.noisy_votes) against naive loops.

    python benchmarks/certify_bench.py [--m-engine N] [--m-loop N] [--repeats N] [--quick]

For each model (random weights, 100 random IP images) it prints draws per second, one draw being
one noisy model classifying all 100 images:
  (a) per-point loop: a fresh deep-copied noisy model for EACH image, classifying that one image;
  (b) the engine as called by default (it picks, by measured speed, whether to prepare the next
      draw in a background thread), and (b') the engine with that thread always off / on;
  (c) plain forward passes of the same 100-image batch, no noise: the ceiling for (b).
Times are the best of ``--repeats`` blocks of ``--m-engine`` draws, variants interleaved, as other
jobs may share the machine. On a loaded CPU libgomp's spin-waiting slows plain forward passes more
than the engine with its thread on (which makes libgomp throttle spinning), so b/c can exceed 1.
The last line is ``engine/forward=<b/c> engine/per-point=<b/a>`` for the MNIST CNN.
"""
from __future__ import annotations

import argparse
import copy
import time

import torch

from wmlib.certify import noisy_votes
from wmlib.device import default_device
from wmlib.models import build_model

N_IMAGES = 100
SIGMA = 0.01


def best_rates(fns: dict, draws: int, repeats: int) -> dict:
    """Draws per second of each ``fn()`` (each performs ``draws`` draws): the best of ``repeats``
    rounds, the variants interleaved within a round so that load from other jobs hits all alike."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for key, fn in fns.items():
            time.sleep(0.2)                      # let the previous variant's threads go idle
            t0 = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            best[key] = min(best[key], time.perf_counter() - t0)
    return {key: draws / t for key, t in best.items()}


def per_point_loop(model, x, draws: int):
    """The naive IPCert loop: for every draw and every IP point, deep-copy, perturb, classify one image."""
    gen = torch.Generator(device=x.device).manual_seed(0)
    total = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        for _ in range(draws):
            for i in range(len(x)):
                noisy = copy.deepcopy(model)
                noise = torch.randn(total, generator=gen, device=x.device) * SIGMA
                offset = 0
                for p in noisy.parameters():
                    p.add_(noise[offset:offset + p.numel()].view_as(p))
                    offset += p.numel()
                noisy(x[i:i + 1]).argmax(1)


def forward_only(model, x, draws: int):
    with torch.no_grad():
        for _ in range(draws):
            model(x).argmax(1)


def bench(name: str, dataset: str, shape, args) -> tuple[float, float]:
    device = default_device()
    torch.manual_seed(0)
    model = build_model(name, dataset).to(device).eval()
    x = torch.rand(N_IMAGES, *shape, device=device)
    y = torch.randint(0, 10, (N_IMAGES,), device=device)
    engine = lambda overlap, m=args.m_engine: noisy_votes(model, x, y, sigma=SIGMA, m=m, overlap=overlap,
                                                          device=device)
    engine(None, 3), forward_only(model, x, 3)               # warm-up
    a = best_rates({"a": lambda: per_point_loop(model, x, args.m_loop)}, args.m_loop, 1)["a"]
    variants = {"c": lambda: forward_only(model, x, args.m_engine), "b": lambda: engine(None),
                "off": lambda: engine(False), "on": lambda: engine(True)}
    rates = best_rates(variants, args.m_engine, args.repeats)
    b, c = rates["b"], rates["c"]
    params = sum(p.numel() for p in model.parameters())
    size = "x".join(map(str, shape))
    print(f"{name} on {dataset} ({params:,} parameters, {N_IMAGES} images {size}, {device}):")
    print(f"  (a)  per-point loop  {a:8.2f} draws/s  ({1e3 / a:7.1f} ms/draw, m={args.m_loop})")
    print(f"  (b)  engine          {b:8.2f} draws/s  ({1e3 / b:7.1f} ms/draw, m={args.m_engine})")
    for key in ("off", "on"):
        print(f"  (b') overlap {key:3s}     {rates[key]:8.2f} draws/s  ({1e3 / rates[key]:7.1f} ms/draw)")
    print(f"  (c)  plain forward   {c:8.2f} draws/s  ({1e3 / c:7.1f} ms/draw)")
    print(f"  b/a = {b / a:.2f}   b/c = {b / c:.2f}", flush=True)
    return b / c, b / a


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--m-engine", type=int, default=128,
                    help="draws per timed block (engine, forward passes)")
    ap.add_argument("--m-loop", type=int, default=3, help="draws timed for the per-point loop")
    ap.add_argument("--repeats", type=int, default=2, help="timed blocks per variant; the best is kept")
    ap.add_argument("--quick", action="store_true", help="m-engine 32, m-loop 1, repeats 1")
    args = ap.parse_args()
    if args.quick:
        args.m_engine, args.m_loop, args.repeats = 32, 1, 1
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    mnist = bench("mnist_cnn", "mnist", (1, 28, 28), args)
    bench("cifar_cnn", "cifar10", (3, 32, 32), args)
    print(f"engine/forward={mnist[0]:.2f} engine/per-point={mnist[1]:.2f}")


if __name__ == "__main__":
    main()

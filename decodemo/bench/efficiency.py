"""How close each method's networks run to the machine, and the compute floor of a comparison:
``python -m decodemo.bench.efficiency [--domain texture] [--file FILE] [--threads 1] [--repeat 5]``.

Per method of a model set, on one input (a generated 256 px texture for an image set, a
generated 5 s hum clip for an audio set, or ``--file``): the FLOPs of one detection counted by
``torch.utils.flop_counter`` (per input and per spectrogram window), its median time at batch 1,
the rate that gives, and that rate as a share of an fp32 1024^3 matmul timed in the same run on
the same threads. The last line is the floor: the three methods' FLOPs at the matmul rate on
every core, the time no implementation of these networks beats on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

__all__ = ["matmul_rate", "measure", "main"]


def matmul_rate(repeats: int = 7, n: int = 1024) -> float:
    """FLOP/s of an fp32 ``n x n`` matmul on the current torch threads (median of ``repeats``)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times)


def measure(domain: str, file: Path | None = None, *, repeats: int = 5, log=print) -> dict:
    """The table of the module docstring for ``domain``'s bundled methods, as a dict."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from decodemo.inference import detect_prepared, prepare_path
    from decodemo.bench.compare import _inputs
    from decodemo.bench.methods import _median_time
    from decodemo.hub import ModelRegistry

    registry = ModelRegistry(device="cpu")
    names = [n for n in registry.names(domain=domain) if not n.endswith("/baseline")]
    if not names:
        raise SystemExit(f"No bundled model set {domain!r}; known: {sorted({n.split('/')[0] for n in registry.names()})}")
    rate = matmul_rate()
    threads = torch.get_num_threads()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        examples = {"audio" if p.suffix == ".wav" else "image": p for _, p, _ in _inputs(Path(tmp))}
        for name in names:
            model = registry.get(name)
            path = file or examples[model.config.modality]
            x = prepare_path(path, model.config)
            n_in = len(x.windows) if hasattr(x, "windows") else len(x.tiles)
            with FlopCounterMode(display=False) as counter, torch.inference_mode():
                detect_prepared(model, x, batch_size=16)
            flops = counter.get_total_flops()
            with torch.inference_mode():
                t = _median_time(lambda: detect_prepared(model, x, batch_size=16), repeats)
            rows.append({"model": name, "file": Path(path).name, "inputs": n_in, "gflop": flops / 1e9,
                         "gflop_per_input": flops / 1e9 / n_in, "seconds": t, "gflop_s": flops / 1e9 / t,
                         "share_of_matmul": flops / t / rate})
            log(f"{name}: {n_in} input(s), {flops / 1e9:.1f} GFLOP ({flops / 1e9 / n_in:.2f} per input) in "
                f"{t * 1e3:.0f} ms median of {repeats} -> {flops / 1e9 / t:.1f} GFLOP/s, "
                f"{100 * flops / t / rate:.0f}% of the matmul")
    total = sum(r["gflop"] for r in rows)
    cores = os.cpu_count() or 1
    floor = total * 1e9 / (rate * cores)
    log(f"matmul fp32 1024^3 on {threads} thread(s): {rate / 1e9:.0f} GFLOP/s. The three methods: {total:.1f} GFLOP, "
        f"{sum(r['seconds'] for r in rows):.2f} s measured; floor at the matmul rate on all {cores} cores "
        f"{floor:.2f} s")
    return {"threads": threads, "matmul_gflop_s": rate / 1e9, "cores": cores, "rows": rows,
            "total_gflop": total, "floor_seconds": floor}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m decodemo.bench.efficiency", description=__doc__.split("\n")[0])
    ap.add_argument("--domain", default="texture", help="a bundled model set (default texture)")
    ap.add_argument("--file", type=Path, default=None, help="the input (default: a generated one)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    report = measure(args.domain, args.file, repeats=args.repeat)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmarks, each a command line that prints what it measured:

- ``python -m decodemo.bench``: every method, its no-diffusion ablation and the baseline on
  every data set, one run (:mod:`decodemo.bench.suite`);
- ``python -m decodemo.bench.methods``: the three methods' accuracy and speed per set;
- ``python -m decodemo.bench.invad_steps``: invad's ablation over the number of inversion steps;
- ``python -m decodemo.bench.compare``: the latency of one full comparison, as the app runs it.
"""

__all__ = ["METHODS", "PRESETS", "train_method", "run", "markdown", "html_report", "main"]


def __getattr__(name: str):
    # the suite's names, imported on first use so that ``python -m decodemo.bench.methods`` (and the
    # others) do not import their own module twice
    if name in __all__:
        from decodemo.bench import suite

        return getattr(suite, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Command line: ``python -m decodemo {train,evaluate,score} ...`` for every method.

The parser and the commands live in :mod:`decodemo.commands`, one module per group of jobs; this module puts
the parser together and dispatches to the command's function.
"""

from __future__ import annotations

import argparse
import sys

from decodemo.commands import domains, export, models, registry, train
from decodemo.errors import DecodemoError

__all__ = ["main", "build_parser"]

COMMAND_GROUPS = (train, domains, export, models, registry)  # in this order: it is the order of --help


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m decodemo", description="Diffusion-based anomaly detection.")
    sub = p.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {name: fn for group in COMMAND_GROUPS for name, fn in group.HANDLERS.items()}[args.command]
    try:
        return handler(args)
    except DecodemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

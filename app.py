"""decodemo web app entry point.

The Gradio app (upload an image or a sound, see the three detectors side by side, record
verdicts) is not built yet. Until it is, this file says so and points at the command line,
which already trains, evaluates and scores with the ``invad`` detector.
"""

from __future__ import annotations

import sys

MESSAGE = """decodemo: the web app is not available in this version yet.

What works today is the command line, for example:

    python -m decodemo score --model checkpoints/bottle/invad path/to/image.png
    python -m decodemo evaluate --model checkpoints/bottle/invad --data ../shared/data/bottle
    python -m decodemo train --method invad --data DIR --out DIR

See README.md for details."""


def main() -> int:
    print(MESSAGE, file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())

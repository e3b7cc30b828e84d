"""decodemo web app: ``python app.py`` (also the Hugging Face Space's entry point).

Upload an image or a sound, or pick an example, and compare the three diffusion-based
detectors side by side. Options: ``--host``, ``--port``, ``--share``, ``--no-warm-up``.
The app itself is :mod:`decodemo.app.blocks`.
"""

from __future__ import annotations

from decodemo.app.blocks import main

if __name__ == "__main__":
    raise SystemExit(main())

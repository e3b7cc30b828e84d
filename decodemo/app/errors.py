"""Expected user errors (an empty upload, a file that is not an image, a missing choice): shown
to the person as a toast, logged on the server as one line without a traceback."""

from __future__ import annotations

import logging

import gradio as gr

__all__ = ["user_error"]

log = logging.getLogger("decodemo.app")


def user_error(message: str, title: str | None = None) -> gr.Error:
    """The ``gr.Error`` to raise for an expected user error; logged once, on one line."""
    log.warning("refused: %s", " ".join(str(message).split()))
    kwargs = {"title": title} if title else {}
    return gr.Error(message, print_exception=False, **kwargs)

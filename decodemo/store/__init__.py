"""Reviewer feedback: a database of analysed inputs, detector runs, review versions and
threshold changes (SQLAlchemy 2; SQLite by default, PostgreSQL through ``DECODEMO_DB_URL``;
Alembic migrations at start-up), and what the reviews say about the detectors."""

from decodemo.store.feedback import best_f1_threshold, cohen_kappa, feedback, item_labels
from decodemo.store.store import ANONYMOUS, VERDICTS, ReviewError, ReviewStore, safe_name

__all__ = ["ReviewStore", "ReviewError", "VERDICTS", "ANONYMOUS", "safe_name", "feedback", "cohen_kappa",
           "best_f1_threshold", "item_labels"]

"""Tables of the review store (SQLAlchemy 2 declarative). Alembic migrations in
``migrations/versions`` create and change them; this module is their current shape.

- ``items``: one per distinct uploaded content (SHA-256): the stored file, modality, domain,
  who uploaded it first and when, and how much the methods disagreed on it.
- ``runs``: every detector run on an item: model name and revision, score, decision, the
  threshold at the time, latency, and the anomaly map (a ``.npy`` file, referenced).
- ``reviews``: append-only review versions per (item, reviewer): verdict, which methods were
  right, an optional corrected mask (a PNG file, referenced), a note. An edit adds a version;
  an undo marks the latest live version undone (``undone_at``), so the previous one is current.
  ``request_id``: the client's id of the request that stored the version (optional), unique per
  reviewer, so that a request sent again after a lost answer is stored once.
- ``threshold_changes``: who changed a model's threshold, from what to what, and why.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = ["Base", "Item", "Run", "Review", "ThresholdChange", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    file_path: Mapped[str] = mapped_column(String(512), nullable=False)  # relative to the data directory
    modality: Mapped[str] = mapped_column(String(16), nullable=False, index=True)
    domain: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    height: Mapped[int] = mapped_column(Integer, nullable=False)  # input size (audio: mel bands)
    width: Mapped[int] = mapped_column(Integer, nullable=False)  # (audio: frames)
    uploaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    uploaded_by: Mapped[str] = mapped_column(String(128), nullable=False)
    anonymous: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    disagreement: Mapped[float] = mapped_column(Float, default=0.0, nullable=False, index=True)

    runs: Mapped[list["Run"]] = relationship(back_populates="item", order_by="Run.id")
    reviews: Mapped[list["Review"]] = relationship(back_populates="item", order_by="Review.id")


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), nullable=False, index=True)
    method: Mapped[str] = mapped_column(String(32), nullable=False)
    model_name: Mapped[str] = mapped_column(String(128), nullable=False)
    model_revision: Mapped[str] = mapped_column(String(128), nullable=False)
    score: Mapped[float] = mapped_column(Float, nullable=False)
    decision: Mapped[str] = mapped_column(String(16), nullable=False)
    threshold: Mapped[float] = mapped_column(Float, nullable=False)
    pixel_threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    percentile: Mapped[float | None] = mapped_column(Float, nullable=True)
    latency_ms: Mapped[float] = mapped_column(Float, nullable=False)
    nfe: Mapped[int] = mapped_column(Integer, nullable=False)
    map_path: Mapped[str] = mapped_column(String(512), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)

    item: Mapped[Item] = relationship(back_populates="runs")


class Review(Base):
    __tablename__ = "reviews"
    __table_args__ = (UniqueConstraint("item_id", "reviewer", "version", name="uq_review_version"),
                      UniqueConstraint("reviewer", "request_id", name="uq_review_request"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), nullable=False, index=True)
    reviewer: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    anonymous: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    verdict: Mapped[str] = mapped_column(String(16), nullable=False)  # normal / anomalous / unsure
    methods_right: Mapped[list] = mapped_column(JSON, default=list, nullable=False)
    mask_path: Mapped[str | None] = mapped_column(String(512), nullable=True)
    note: Mapped[str] = mapped_column(Text, default="", nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    undone_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    undone_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # see uq_review_request

    item: Mapped[Item] = relationship(back_populates="reviews")


class ThresholdChange(Base):
    __tablename__ = "threshold_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    old_threshold: Mapped[float] = mapped_column(Float, nullable=False)
    new_threshold: Mapped[float] = mapped_column(Float, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    changed_by: Mapped[str] = mapped_column(String(128), nullable=False)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)

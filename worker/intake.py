"""Kept for users' imports: ``worker.intake.enqueue`` lives in ``worker.service.intake``."""

from worker.service.intake import enqueue

__all__ = ["enqueue"]

"""Analysing an experiment's active dataset and keeping the result as a snapshot.

(Being built for the upload & results issue: see ``load_results`` and ``refresh_snapshot``.)
"""

from __future__ import annotations

from sqlmodel import Session

from experiments.models import Dataset, Experiment


def refresh_snapshot(session: Session, experiment: Experiment, dataset: Dataset):
    """Analyse ``dataset`` under the experiment's plan and store an AnalysisSnapshot."""
    return None


def load_results(session: Session, experiment: Experiment, *, dataset_version: int | None = None,
                 segment: str | None = None):
    """Everything the results section of the experiment page shows (``None`` before data)."""
    return None

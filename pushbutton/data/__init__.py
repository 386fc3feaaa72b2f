"""Training data: what a spec's data source holds and how pushbutton reads it. ``catalog`` knows
scikit-learn's bundled data sets without importing scikit-learn; ``checks`` reads a source cheaply
(column tables, a CSV sample, a parquet footer through ``parquet``) and checks the spec against it at
validate time; ``loading`` reads the whole source for training, typed as the spec declares, and cuts
the deterministic holdout every gate and champion check scores on."""

from __future__ import annotations

from pushbutton.data.catalog import SKLEARN_DATASETS, SklearnDataset, sklearn_datasets_markdown, snake_case
from pushbutton.data.loading import Split, load_frame, split

__all__ = [
    "SKLEARN_DATASETS",
    "SklearnDataset",
    "Split",
    "load_frame",
    "sklearn_datasets_markdown",
    "snake_case",
    "split",
]

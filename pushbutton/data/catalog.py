"""scikit-learn's bundled data sets as ``sklearn:<name>`` data sources: their columns as pushbutton names
them, kept here so that validating a spec never imports scikit-learn; the README's table is generated
from it (``sklearn_datasets_markdown``)."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class SklearnDataset:
    """One of scikit-learn's bundled data sets (no download) as a ``sklearn:<name>`` data source.

    ``columns`` are its feature columns as pushbutton names them (``snake_case`` of scikit-learn's),
    kept here so that validating a spec never imports scikit-learn (seconds); a unit test compares
    them with scikit-learn's. Every feature is a double without missing values. The target column is
    scikit-learn's ``target`` renamed to the spec's ``data.target``; ``target`` below is the name
    ``pushbutton init --from-data`` gives it.
    """

    loader: str  # function in sklearn.datasets
    task: str
    target: str
    columns: tuple[str, ...]
    labels: tuple[str, ...] = ()  # classification: what target 0, 1, ... stand for (its target_names)


_CANCER = (
    "radius",
    "texture",
    "perimeter",
    "area",
    "smoothness",
    "compactness",
    "concavity",
    "concave_points",
    "symmetry",
    "fractal_dimension",
)
SKLEARN_DATASETS = {
    "iris": SklearnDataset(
        "load_iris",
        "classification",
        "species",
        ("sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"),
        ("setosa", "versicolor", "virginica"),
    ),
    "diabetes": SklearnDataset(
        "load_diabetes",
        "regression",
        "progression",
        ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"),
    ),
    "wine": SklearnDataset(
        "load_wine",
        "classification",
        "cultivar",
        (
            "alcohol",
            "malic_acid",
            "ash",
            "alcalinity_of_ash",
            "magnesium",
            "total_phenols",
            "flavanoids",
            "nonflavanoid_phenols",
            "proanthocyanins",
            "color_intensity",
            "hue",
            "od280_od315_of_diluted_wines",
            "proline",
        ),
        ("class_0", "class_1", "class_2"),
    ),
    "breast_cancer": SklearnDataset(
        "load_breast_cancer",
        "classification",
        "diagnosis",
        (*(f"mean_{c}" for c in _CANCER), *(f"{c}_error" for c in _CANCER), *(f"worst_{c}" for c in _CANCER)),
        ("malignant", "benign"),
    ),
    "digits": SklearnDataset(
        "load_digits",
        "classification",
        "digit",
        tuple(f"pixel_{row}_{col}" for row in range(8) for col in range(8)),
        tuple(str(digit) for digit in range(10)),
    ),
}


def sklearn_datasets_markdown(most: int = 32) -> str:
    """The README's table of the ``sklearn:`` data sources, made from ``SKLEARN_DATASETS`` (a unit
    test keeps the README equal to it): ``python -c 'from pushbutton.data import *;
    print(sklearn_datasets_markdown())'``."""
    lines = [
        "| `data.source` | task | target (as `init --from-data` names it) | input columns (all `double`) |",
        "|---|---|---|---|",
    ]
    for name, dataset in SKLEARN_DATASETS.items():
        columns = dataset.columns
        if len(columns) > most:
            shown = f"`{columns[0]}`, `{columns[1]}`, … `{columns[-1]}` ({len(columns)} columns)"
        else:
            shown = ", ".join(f"`{c}`" for c in columns)
        target = f"`{dataset.target}`"
        if any(label not in (str(value), f"class_{value}") for value, label in enumerate(dataset.labels)):
            target += (
                " (" + ", ".join(f"{value} = {label}" for value, label in enumerate(dataset.labels)) + ")"
            )
        lines.append(f"| `sklearn:{name}` | {dataset.task} | {target} | {shown} |")
    return "\n".join(lines)


def snake_case(column: str) -> str:
    """'sepal length (cm)' -> 'sepal_length_cm': scikit-learn's column names as spec-friendly names."""
    return re.sub(r"[^0-9a-zA-Z]+", "_", str(column)).strip("_").lower()

"""``pushbutton render``: a model directory's Seldon manifests, without a cluster or a registry.

The serving spec is built as the lifecycle builds it (``champion_only``/``with_candidate`` of
``pushbutton.serving.spec``) from the model's ``model.yaml``, for the versions asked (default
champion 1, candidate the next); ``--candidate-percent``/``--shadow`` override the spec's traffic
policy. Images follow the Kubernetes runtime's template (``pushbutton.kube.runtime.image_ref``),
Seldon v2 storage URIs a template of ``{model}`` and ``{version}``. Every document is validated
(``pushbutton.kube.schemas``) before it is returned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from pushbutton.errors import SpecError, SpecIssue
from pushbutton.kube.runtime import DEFAULT_IMAGE, image_ref
from pushbutton.kube.schemas import validate_all
from pushbutton.serving.spec import Release, ServingSpec, champion_only, with_candidate
from pushbutton.spec.model import ModelSpec, TrafficSpec

Runtime = Literal["seldon-v1", "seldon-v2"]
RUNTIMES: tuple[Runtime, ...] = ("seldon-v1", "seldon-v2")
EXAMPLE_REGISTRY = "registry.example/models"
STORAGE_TEMPLATE = "s3://mlflow/models/{model}/{version}"


def serving_spec(
    model: ModelSpec,
    *,
    champion_version: int = 1,
    candidate_version: int | None = None,
    candidate_percent: int | None = None,
    shadow: bool = False,
) -> ServingSpec:
    """The champion alone, or with a candidate at ``candidate_percent`` (canary) or as a shadow."""

    def release(version: int) -> Release:
        return Release(str(version), f"models:/{model.name}/{version}", env_key="")

    champion = release(champion_version)
    if candidate_percent is None and not shadow and candidate_version is None:
        return champion_only(model, champion)
    if candidate_percent is not None and shadow:
        raise SpecError(
            [
                SpecIssue(
                    "pushbutton render",
                    "--shadow",
                    "a shadow takes no traffic share",
                    "pass --candidate-percent or --shadow, not both",
                )
            ]
        )
    candidate = release(candidate_version if candidate_version is not None else champion_version + 1)
    if candidate.version == champion.version:
        raise SpecError(
            [
                SpecIssue(
                    "pushbutton render",
                    "--candidate-version",
                    "the candidate is the champion",
                    "give the candidate another version than the champion",
                )
            ]
        )
    if shadow:
        model = model.model_copy(update={"traffic": TrafficSpec(mode="shadow")})
    elif candidate_percent is not None:
        try:
            traffic = TrafficSpec(candidate_percent=candidate_percent)
        except ValidationError as exc:
            problem = exc.errors()[0]["msg"].removeprefix("Value error, ")
            raise SpecError(
                [
                    SpecIssue(
                        "pushbutton render",
                        "--candidate-percent",
                        problem,
                        "give a share from 1 to 99, or --shadow",
                    )
                ]
            ) from exc
        model = model.model_copy(update={"traffic": traffic})
    return with_candidate(model, candidate, champion)


def render_model(
    model: ModelSpec,
    spec: ServingSpec,
    runtime: Runtime,
    *,
    image_registry: str = EXAMPLE_REGISTRY,
    image_template: str = DEFAULT_IMAGE,
    storage_template: str = STORAGE_TEMPLATE,
    logger_url: str | None = None,
    schemas_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """The validated documents serving ``spec`` on ``runtime``."""
    graph = model.serving.graph
    if runtime == "seldon-v1":
        from pushbutton.kube.seldon_v1 import render_seldon_deployment

        images = {p.name: image_ref(image_template, image_registry, p) for p in spec.predictors}
        docs = [render_seldon_deployment(spec, images=images, logger_url=logger_url, graph=graph)]
    else:
        from pushbutton.kube.seldon_v2 import render_seldon_v2

        uris = {p.name: storage_template.format(model=p.model, version=p.version) for p in spec.predictors}
        docs = render_seldon_v2(spec, storage_uris=uris, graph=graph)
    validate_all(docs, schemas_dir=schemas_dir)
    return docs

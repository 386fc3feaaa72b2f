"""Kubernetes for pushbutton: this package owns every Kubernetes document pushbutton generates (Seldon
Core v1 ``SeldonDeployment`` manifests in ``seldon_v1``, Seldon Core v2 ``Model``/``Pipeline``/``Experiment``
resources in ``seldon_v2``, the model image's Dockerfile and the Kaniko pod that builds it in ``image``;
the Connection's ``image_build`` and the uploaded build context in ``build``)
and their validation against the CRDs' schemas and pushbutton's own rules (``schemas``), all framework-free
and runnable without a cluster; ``runtime`` (Seldon v1 SeldonDeployments), ``runtime_v2`` (Seldon v2 Models,
Pipelines and Experiments) and ``client`` apply them to a cluster through the Kubernetes API; ``tester``
hands the CI/CD test step's microservice to the local runtime on both."""

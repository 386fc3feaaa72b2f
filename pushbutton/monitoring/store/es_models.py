"""The Elasticsearch store's definitions and model schemas (``elasticsearch.ElasticsearchStore`` uses it).

* ``bootstrap`` — once per process, the ILM policy, component and index templates and regular indices
  of ``deploy/elasticsearch`` (idempotent PUTs; skipped with ``bootstrap=false`` when an operator
  applied them and the writer lacks ``manage_ilm``/``manage_index_templates``);
* a model's **schema** is one document of ``pushbutton-models`` (``_id`` = the model), read real-time
  and changed read-modify-write under ``if_seq_no``/``if_primary_term``, so two processes adding
  classes or features at once do not lose either change; cached ``SCHEMA_TTL`` seconds;
* ``ensure`` also publishes the model's rows template (typed features, prediction) and extends the
  mapping of its existing rows stream (a feature added later gets a field; old documents: null);
* ``set_retention`` gives a model its own ILM policy (``logging.retention_days`` → the delete phase).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from pushbutton.monitoring.store import es_layout as L
from pushbutton.monitoring.store.base import (
    PREDICTION,
    Column,
    FeatureLike,
    ModelSchema,
    StoreError,
    StoreUnavailable,
)
from pushbutton.monitoring.store.es_client import Client
from pushbutton.monitoring.store.es_connection import EsSettings

SCHEMA_TTL = 10.0  # seconds a model's schema is cached (another process may add features or classes)
Change = Callable[[ModelSchema | None, str | None], tuple[ModelSchema | None, str | None]]


class Models:
    def __init__(self, es: Client, layout: L.Layout, settings: EsSettings, refresh: str | None):
        self.es, self.layout, self.settings, self.refresh = es, layout, settings, refresh
        self._cache: dict[str, tuple[ModelSchema, float]] = {}
        self._lock = threading.Lock()
        self._ready = False

    def bootstrap(self) -> None:
        """Create (or update) the ILM policy, templates and indices of ``deploy/elasticsearch``."""
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            if self.settings.bootstrap:
                call = self.es.call
                policy = self.layout.policy(self.settings.retention_days)
                call(f"create the ILM policy {L.POLICY}", "ilm.put_lifecycle", name=L.POLICY, body=policy)
                for name, body in self.layout.component_templates().items():
                    call(
                        f"create the component template {name}",
                        "cluster.put_component_template",
                        name=name,
                        body=body,
                    )
                for name, body in self.layout.index_templates().items():
                    call(
                        f"create the index template {name}",
                        "indices.put_index_template",
                        name=name,
                        body=body,
                    )
                for name, body in self.layout.indices().items():
                    if not call(f"look for the index {name}", "indices.exists", index=name):
                        call(
                            f"create the index {name}",
                            "indices.create",
                            index=name,
                            body=body,
                            exists_ok=True,
                        )
            self._ready = True

    def ensure(
        self,
        model: str,
        features: Sequence[FeatureLike | tuple[str, str] | str],
        prediction: FeatureLike | tuple[str, str] | None,
        exclude: Sequence[str],
    ) -> ModelSchema:
        """``MonitoringStore.ensure_model``: the SQL store's rules (a changed type is refused, a dropped
        feature keeps its field), on the schema document and the model's rows template."""
        self.bootstrap()
        columns = tuple(Column.of(f) for f in features if Column.of(f).name not in set(exclude))
        out = Column(PREDICTION, Column.of(prediction).type) if prediction is not None else Column(PREDICTION)
        L.check_feature_names(model, columns)
        if out.type not in L.ES_TYPES:
            raise StoreError(f"{model}: the prediction has unknown type {out.type!r}")
        inputs = tuple(Column.of(f).name for f in features)

        def merged(stored: ModelSchema | None, policy: str | None) -> tuple[ModelSchema | None, str | None]:
            if stored is None:
                return ModelSchema(model, columns, out, (), tuple(exclude), inputs), policy
            old = {c.name: c.type for c in stored.features}
            for column in columns:
                if column.name in old and old[column.name] != column.type:
                    raise StoreError(
                        f"{model}: feature {column.name!r} is stored as {old[column.name]} but the spec now says "
                        f"{column.type}; give the changed feature a new name (old rows would not fit)"
                    )
            if stored.prediction.type != out.type:
                raise StoreError(
                    f"{model}: prediction is stored as {stored.prediction.type} but the spec's output is now "
                    f"{out.type}; keep the output type or log the model under a new name"
                )
            new = {c.name for c in columns} | set(exclude)
            kept = tuple(c for c in stored.features if c.name not in new)  # a dropped feature keeps its field
            return ModelSchema(model, (*columns, *kept), out, stored.classes, tuple(exclude), inputs), policy

        def publish(schema: ModelSchema, policy: str | None) -> None:
            self._put_rows_template(schema, policy)
            self.es.call(f"add the features of {model} to its row log", "indices.put_mapping",
                         index=L.rows_stream(model), properties=L.feature_mappings(schema), missing_ok=True)  # fmt: skip

        schema = self._update(model, merged, publish)
        assert schema is not None
        return schema

    def _put_rows_template(self, schema: ModelSchema, policy: str | None) -> None:
        self.es.call(f"create the row-log template of {schema.model}", "indices.put_index_template",
                     name=L.model_template_name(schema.model), body=self.layout.model_template(schema, policy))  # fmt: skip

    def set_retention(self, model: str, days: float) -> None:
        """Give ``model``'s log streams their own ILM policy deleting after ``days``."""
        self.bootstrap()
        name = L.model_policy_name(model)
        self.es.call(
            f"create the ILM policy {name}", "ilm.put_lifecycle", name=name, body=self.layout.policy(days)
        )
        self.es.call(f"create the request-log template of {model}", "indices.put_index_template",
                     name="pushbutton-requests-" + L.stream_name(model),
                     body=self.layout.model_requests_template(model, name))  # fmt: skip
        self._update(model, lambda stored, _: (stored, name), self._put_rows_template)
        for stream in (L.requests_stream(model), L.rows_stream(model)):
            self.es.call(f"set the ILM policy of {stream}", "indices.put_settings", index=stream,
                         settings={"index.lifecycle.name": name}, missing_ok=True)  # fmt: skip

    def add_classes(self, model: str, classes: Iterable[str]) -> None:
        """Record classes seen in responses' probabilities (first seen first) in the model's schema."""
        seen = list(dict.fromkeys(classes))

        def change(stored: ModelSchema | None, policy: str | None) -> tuple[ModelSchema | None, str | None]:
            if stored is None:
                return None, policy
            new = tuple(c for c in seen if c not in stored.classes and L.usable_class(c))
            return ModelSchema(model, stored.features, stored.prediction, (*stored.classes, *new), stored.exclude,
                               stored.inputs), policy  # fmt: skip

        self._update(model, change)

    def schema(self, model: str) -> ModelSchema | None:
        """The model's schema (cached ``SCHEMA_TTL`` seconds), None before ``ensure``."""
        hit = self._cache.get(model)
        if hit and time.monotonic() - hit[1] < SCHEMA_TTL:
            return hit[0]
        found = self._load(model)
        if found is None or found[0] is None:
            return None
        self._cache[model] = (found[0], time.monotonic())
        return found[0]

    def _update(
        self, model: str, change: Change, publish: Callable[[ModelSchema, str | None], None] | None = None
    ) -> ModelSchema | None:
        """Read-change-write of the model's document, again when another writer got there first."""
        for _ in range(10):
            stored, policy, version = self._load(model) or (None, None, None)
            schema, policy = change(stored, policy)
            if schema is not None and publish is not None:
                publish(schema, policy)
            if self._save(model, schema, policy, version):
                if schema is not None:
                    self._cache[model] = (schema, time.monotonic())
                return schema
        raise StoreUnavailable(
            f"the schema of {model!r} in {self.es.where} keeps changing under this writer; retry later"
        )

    def _load(self, model: str) -> tuple[ModelSchema | None, str | None, tuple[int, int]] | None:
        """The model's document: its schema (None before ``ensure``), ILM policy and version."""
        found = self.es.call(f"read the schema of {model!r}", "get", index=L.MODELS, id=model)
        if not found or not found.get("found"):
            return None
        source, version = found["_source"], (found["_seq_no"], found["_primary_term"])
        if not source.get("schema"):
            return None, source.get("policy"), version
        data = json.loads(source["schema"])
        schema = ModelSchema(
            model,
            tuple(Column(n, t) for n, t in data["features"]),
            Column(PREDICTION, data["prediction"]),
            tuple(data.get("classes", ())),
            tuple(data.get("exclude", ())),
            tuple(data.get("inputs", ())),
        )
        return schema, source.get("policy"), version

    def _save(
        self, model: str, schema: ModelSchema | None, policy: str | None, version: tuple[int, int] | None
    ) -> bool:
        """Write the model's document unless another writer changed it since ``version`` (then False)."""
        document = {"model": model, "stream": L.stream_name(model), "policy": policy}
        if schema is not None:
            document["schema"] = json.dumps(
                {"features": [[c.name, c.type] for c in schema.features], "prediction": schema.prediction.type,
                 "classes": list(schema.classes), "exclude": list(schema.exclude), "inputs": list(schema.inputs)}
            )  # fmt: skip
        guard = (
            {"op_type": "create"}
            if version is None
            else {"if_seq_no": version[0], "if_primary_term": version[1]}
        )
        saved = self.es.call(f"save the schema of {model!r}", "index", index=L.MODELS, id=model, conflict_ok=True,
                             document={k: v for k, v in document.items() if v is not None}, refresh=self.refresh,
                             **guard)  # fmt: skip
        return saved is not None

"""Build a model version's image in the cluster: the Kaniko pod (``pushbutton.kube.image.kaniko_pod``)
run by the cncf-kubernetes provider's ``KubernetesPodOperator``.

``KanikoImageBuildOperator(model=…, version=…)`` reads the Seldon Connection (``pushbutton_seldon``,
``extra.runtime: seldon-v1``, as ``SeldonHook`` does: ``kubernetes_conn_id``, ``image_registry``,
``image_template``, ``namespace``, ``image_build``) when it runs, so the image it pushes is the one the
SeldonDeployment will reference (``pushbutton.kube.runtime.image_ref``), and the pod runs on the
cluster the Connection names. The build context is either

* packed and uploaded by the operator itself (no ``context_uri``; needs ``extra.image_build``, see
  ``pushbutton.kube.build``): the version's code from MLflow, the rendered Dockerfile, fetched by the
  pod's init container; this is what the CI/CD DAG's ``build_image`` task runs; or
* one you uploaded (``context_uri``, e.g. ``s3://builds/iris/4/context.tar.gz``), read by Kaniko.

A pod that ends ``Failed`` fails the task with the pod's name and the Kaniko container's termination
reason, exit code and message; a bad Connection or a ``latest`` destination fails it without retry.

The CI/CD DAG does not import this module (the provider's pod operator costs seconds per DAG parse):
its ``build_image`` task is ``SeldonImageBuildOperator`` (``operators.lifecycle``), which runs this
operator's ``build`` when the Connection asks for images and does nothing otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import BaseHook, Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from pushbutton.kube.image import KANIKO_IMAGE, REGISTRY_SECRET

if TYPE_CHECKING:
    from pushbutton.kube.build import ImageBuildConfig

CONTAINER = "kaniko"  # the container kaniko_pod renders; KPO watches it as its base container
DESTINATION = "pushbutton_image"  # in trigger_kwargs, so the trigger's event carries the pushed image


def termination(remote_pod: Any, container: str = CONTAINER) -> str:
    """``reason (exit code N): message`` of ``container``'s terminated state in a V1Pod, then that of
    an init container that failed (the context fetch: Kaniko never ran), then the pod's own reason and
    message (an eviction, a deadline) when it has one."""
    status = getattr(remote_pod, "status", None)
    parts = []

    def terminated_text(found: Any) -> str | None:
        terminated = getattr(getattr(found, "state", None), "terminated", None)
        if terminated is None:
            return None
        text = f"{terminated.reason or 'terminated'} (exit code {terminated.exit_code})"
        return f"{text}: {terminated.message.strip()}" if terminated.message else text

    for found in getattr(status, "container_statuses", None) or []:
        text = terminated_text(found) if found.name == container else None
        if text:
            parts.append(text)
    for found in getattr(status, "init_container_statuses", None) or []:
        text = terminated_text(found)
        if text and getattr(found.state.terminated, "exit_code", 0):
            parts.append(f"init container {found.name}: {text}")
    reason, message = getattr(status, "reason", None), getattr(status, "message", None)
    if reason or message:
        parts.append("pod " + ": ".join(str(p) for p in (reason, message) if p))
    return "; ".join(parts) or "no termination reason reported"


class KanikoImageBuildOperator(KubernetesPodOperator):
    """Run the Kaniko build of ``model`` version ``version`` and push it where the Seldon runtime
    pulls it from. Every ``KubernetesPodOperator`` argument passes through (``get_logs``,
    ``on_finish_action``, ``deferrable``, timeouts, ...); the pod itself is ``kaniko_pod``'s."""

    template_fields: Sequence[str] = (
        *KubernetesPodOperator.template_fields,
        "model",
        "version",
        "context_uri",
        "build_args",
        "env_secret",
    )

    def __init__(
        self,
        *,
        model: str,
        version: str,
        context_uri: str | None = None,
        seldon_conn_id: str = "pushbutton_seldon",
        env_key: str = "",
        dockerfile: str = "Dockerfile",
        build_args: Mapping[str, str] | None = None,
        env_secret: str | None = None,
        registry_secret: str | None = None,
        kaniko_image: str | None = None,
        service_account: str | None = None,
        cpu: str | None = None,
        memory: str | None = None,
        deferrable: bool = False,
        **kwargs: Any,
    ):
        super().__init__(base_container_name=CONTAINER, deferrable=deferrable, **kwargs)
        self.startup_timeout_given = "startup_timeout_seconds" in kwargs
        self.model, self.version, self.context_uri = model, version, context_uri
        self.seldon_conn_id, self.env_key, self.dockerfile = seldon_conn_id, env_key, dockerfile
        self.build_args = dict(build_args or {})
        self.env_secret, self.registry_secret = env_secret, registry_secret
        self.kaniko_image, self.service_account = kaniko_image, service_account
        self.cpu, self.memory = cpu, memory
        self.destination: str | None = None
        self.context_source: str | None = None  # the uploaded context (s3://…), when this operator packed it

    def _configure(self, upload: bool = True) -> None:
        """Resolve the Seldon Connection (cluster, namespace, image, image_build), pack and upload the
        context when no ``context_uri`` was given (not on a deferred task's resumption: its pod exists),
        and render the Kaniko pod; ``AirflowFailException`` naming the field to fix."""
        from pushbutton.errors import (
            ConfigError,
            ModelCodeError,
            NotFound,
            PushbuttonError,
            RequirementsError,
            SpecError,
        )
        from pushbutton.kube.build import CONTEXT_ARG, attach_context
        from pushbutton.kube.image import kaniko_pod
        from pushbutton.kube.runtime import image_ref, seldon_v1_config
        from pushbutton.serving.spec import Predictor

        where = f"connection {self.seldon_conn_id}"
        try:
            extra = BaseHook.get_connection(self.seldon_conn_id).extra_dejson
            if extra.get("runtime") != "seldon-v1":
                raise AirflowFailException(
                    f"{where}: extra.runtime: '{extra.get('runtime', 'local')}' serves no model images "
                    "(fix: set extra.runtime to 'seldon-v1' with extra.image_registry to build images)"
                )
            config = seldon_v1_config(extra, where)
            build = config.image_build
            if self.context_uri is None and build is None:
                raise AirflowFailException(
                    f"image build of {self.model} version {self.version}: no build context (fix: set "
                    f"extra.image_build in {where} so the operator uploads one, or pass context_uri)"
                )
            version = str(self.version)
            tracking = None
            if build is not None and self.context_uri is None:  # before anything is uploaded
                tracking = build.mlflow_tracking_uri or _tracking_uri(where)
            source = None
            if self.context_uri is None and upload:
                assert build is not None
                source = self._upload(build, version)
            self.context_source = source.uri if source else self.context_uri
            # the image the SeldonDeployment of this version will pull (same template, same registry)
            predictor = Predictor(name="champion", model=self.model, version=version, traffic=100,
                                  model_uri=f"models:/{self.model}/{version}", class_ref="predict:Model",
                                  env_key=self.env_key)  # fmt: skip
            self.destination = image_ref(config.image_template, config.image_registry, predictor)
            self.kubernetes_conn_id = config.kubernetes_conn_id
            for cached in ("hook", "client", "pod_manager"):  # KPO's, made from kubernetes_conn_id
                self.__dict__.pop(cached, None)
            # the operator's, the Seldon Connection's, the Kubernetes Connection's, default
            namespace = self.namespace or config.namespace or self.hook.get_namespace() or "default"
            env_secret = _pick(self.env_secret, build, "env_secret", None)
            build_args = dict(self.build_args)
            if tracking is not None:
                build_args.setdefault("MLFLOW_TRACKING_URI", tracking)
            if source is not None:  # the same S3/MinIO, as the pod reaches it, for a non-proxied store
                build_args.setdefault("MLFLOW_S3_ENDPOINT_URL", source.endpoint)
            self.pod_template_dict = kaniko_pod(
                name=f"build-{self.model}-{version}",
                namespace=namespace,
                context=self.context_uri or CONTEXT_ARG.removeprefix("--context="),
                destination=self.destination,
                dockerfile=self.dockerfile,
                build_args=build_args,
                env_secret=env_secret,
                registry_secret=_pick(self.registry_secret, build, "registry_secret", REGISTRY_SECRET),
                kaniko_image=_pick(self.kaniko_image, build, "kaniko_image", KANIKO_IMAGE),
                service_account=_pick(self.service_account, build, "service_account", None),
                labels={"pushbutton.io/model": self.model, "pushbutton.io/version": version},
                cpu=_pick(self.cpu, build, "cpu", "1"),
                memory=_pick(self.memory, build, "memory", "2Gi"),
                active_deadline_seconds=build.build_timeout_seconds if build is not None else None,
            )
            if source is not None:
                assert build is not None
                attach_context(
                    self.pod_template_dict, source, env_secret or build.env_secret, build.fetch_image
                )
            if build is not None and not self.startup_timeout_given:  # pulling images takes a while
                self.startup_timeout_seconds = build.startup_timeout_seconds
                self.schedule_timeout_seconds = build.startup_timeout_seconds
        except (SpecError, RequirementsError, NotFound, ConfigError, ModelCodeError) as exc:
            # a bad Connection extra, a `latest` destination, a broken spec or requirements file, an
            # unknown version: the same on every try
            raise AirflowFailException(f"image build of {self.model} version {self.version}: {exc}") from exc
        except PushbuttonError as exc:  # MLflow or S3/MinIO unreachable or refusing: may work on retry
            raise AirflowException(f"image build of {self.model} version {self.version}: {exc}") from exc
        except ValueError as exc:  # pydantic: a model name or version that is no model name or version
            raise AirflowFailException(
                f"image build: model '{self.model}' version '{self.version}': {exc} "
                "(fix: pass a registered model name and a numeric version)"
            ) from exc
        self.namespace = namespace
        self.pod_request_obj = None  # built from the template by KubernetesPodOperator.execute

    def _upload(self, build: ImageBuildConfig, version: str) -> Any:
        """Pack the version's context (``pushbutton.kube.build.pack_version``) and upload it; the env
        key of its requirements names the image when the template uses ``{env_key}``."""
        import tempfile
        from pathlib import Path

        from operators.hooks import MlflowRegistryHook
        from pushbutton.config import settings
        from pushbutton.kube.build import pack_version, upload_context

        with tempfile.TemporaryDirectory(prefix=f"pushbutton-context-{self.model}-") as tmp:
            packed = pack_version(MlflowRegistryHook().get_conn(), settings().serving_python, self.model,
                                  version, build, Path(tmp))  # fmt: skip
            source = upload_context(build, self.model, version, packed.tarball, packed.sha256)
        self.env_key = self.env_key or packed.env_key
        self.log.info("build context of %s v%s (sha256 %s) uploaded to %s", self.model, version,
                      packed.sha256[:12], source.uri)  # fmt: skip
        return source

    def build(self, context: Context) -> str | None:
        """Run the whole build synchronously inside another task (the CI/CD DAG's ``build_image``,
        ``SeldonImageBuildOperator``), as ``execute`` would; returns the pushed image."""
        if self.deferrable:
            self.log.warning("build_image runs the Kaniko pod synchronously; deferrable is ignored here")
        self.deferrable = False
        self._configure()
        self.log.info("building %s from %s in namespace %s", self.destination, self.context_source,
                      self.namespace)  # fmt: skip
        self.execute_sync(context)
        return self._built(context)

    def execute(self, context: Context) -> Any:
        self._configure()
        self.log.info(
            "building %s from %s in namespace %s", self.destination, self.context_source, self.namespace
        )
        if self.deferrable:  # the resumed instance cannot re-derive an uploaded context's env_key
            self.trigger_kwargs = {**(self.trigger_kwargs or {}), DESTINATION: self.destination}
        super().execute(context)
        return self._built(context)

    def trigger_reentry(self, context: Context, event: dict[str, Any]) -> Any:
        # deferrable: a resumed task is a new instance; find the same cluster again (its pod exists)
        self._configure(upload=False)
        if event.get(DESTINATION):  # the image the pod pushes (kept for a re-deferral's next event)
            self.destination = event[DESTINATION]
            self.trigger_kwargs = {**(self.trigger_kwargs or {}), DESTINATION: self.destination}
        super().trigger_reentry(context, event)
        return self._built(context)

    def _built(self, context: Context) -> str | None:
        """The pushed image, as XCom ``image`` (the return value reaches XCom only with
        ``do_xcom_push``, which for a pod operator means an XCom sidecar Kaniko does not feed)."""
        context["ti"].xcom_push(key="image", value=self.destination)
        return self.destination

    def cleanup(self, pod: Any, remote_pod: Any, xcom_result: dict | None = None,
                context: Context | None = None) -> None:  # fmt: skip
        try:
            super().cleanup(pod=pod, remote_pod=remote_pod, xcom_result=xcom_result, context=context)
        except AirflowSkipException:
            raise
        except AirflowException as exc:
            meta = getattr(remote_pod, "metadata", None) or getattr(pod, "metadata", None)
            name = f"{getattr(meta, 'namespace', self.namespace)}/{getattr(meta, 'name', '?')}"
            phase = getattr(getattr(remote_pod, "status", None), "phase", None) or "unknown"
            raise AirflowException(
                f"image build of {self.model} version {self.version} ({self.destination}) failed: "
                f"pod {name} ended {phase}; container {CONTAINER}: {termination(remote_pod)}"
            ) from exc


def _pick(mine: Any, build: ImageBuildConfig | None, field: str, default: Any) -> Any:
    """The operator's own argument, else the Connection's ``extra.image_build``, else the default."""
    if mine is not None:
        return mine
    return getattr(build, field) if build is not None else default


def _tracking_uri(where: str) -> str:
    """The platform's MLflow, unless it is a loopback address a build pod cannot reach."""
    from urllib.parse import urlsplit

    from operators.hooks import MlflowRegistryHook
    from pushbutton.kube.build import LOOPBACK

    uri = MlflowRegistryHook().tracking_uri()
    if (urlsplit(uri).hostname or "") in LOOPBACK:
        raise AirflowFailException(
            f"{where}: extra.image_build.mlflow_tracking_uri is not set and the platform's MLflow is {uri}, "
            "which a build pod cannot reach (fix: set extra.image_build.mlflow_tracking_uri to MLflow's "
            "address inside the cluster, e.g. http://mlflow.platform:5000)"
        )
    return uri

"""Build a model version's image in the cluster: the Kaniko pod (``pushbutton.kube.image.kaniko_pod``)
run by the cncf-kubernetes provider's ``KubernetesPodOperator``.

``KanikoImageBuildOperator(model=…, version=…, context_uri=…)`` reads the Seldon Connection
(``pushbutton_seldon``, ``extra.runtime: seldon-v1``, as ``SeldonHook`` does: ``kubernetes_conn_id``,
``image_registry``, ``image_template``, ``namespace``) when it runs, so the image it pushes is the
one the SeldonDeployment will reference (``pushbutton.kube.runtime.image_ref``), and the pod runs on
the cluster the Connection names. ``context_uri`` is where the build context was uploaded
(``pushbutton.kube.image.build_context``, e.g. ``s3://builds/iris/4/context.tar.gz``); uploading it
is not this operator's business. A pod that ends ``Failed`` fails the task with the pod's name and
the Kaniko container's termination reason, exit code and message; a bad Connection or a ``latest``
destination fails it without retry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import BaseHook, Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from pushbutton.kube.image import KANIKO_IMAGE, REGISTRY_SECRET

CONTAINER = "kaniko"  # the container kaniko_pod renders; KPO watches it as its base container


def termination(remote_pod: Any, container: str = CONTAINER) -> str:
    """``reason (exit code N): message`` of ``container``'s terminated state in a V1Pod, then the
    pod's own reason and message (an eviction, a deadline) when it has one."""
    status = getattr(remote_pod, "status", None)
    parts = []
    for found in getattr(status, "container_statuses", None) or []:
        terminated = getattr(getattr(found, "state", None), "terminated", None)
        if found.name == container and terminated is not None:
            text = f"{terminated.reason or 'terminated'} (exit code {terminated.exit_code})"
            parts.append(f"{text}: {terminated.message.strip()}" if terminated.message else text)
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
        context_uri: str,
        seldon_conn_id: str = "pushbutton_seldon",
        env_key: str = "",
        dockerfile: str = "Dockerfile",
        build_args: Mapping[str, str] | None = None,
        env_secret: str | None = None,
        registry_secret: str = REGISTRY_SECRET,
        kaniko_image: str = KANIKO_IMAGE,
        service_account: str | None = None,
        cpu: str = "1",
        memory: str = "2Gi",
        deferrable: bool = False,
        **kwargs: Any,
    ):
        super().__init__(base_container_name=CONTAINER, deferrable=deferrable, **kwargs)
        self.model, self.version, self.context_uri = model, version, context_uri
        self.seldon_conn_id, self.env_key, self.dockerfile = seldon_conn_id, env_key, dockerfile
        self.build_args = dict(build_args or {})
        self.env_secret, self.registry_secret = env_secret, registry_secret
        self.kaniko_image, self.service_account = kaniko_image, service_account
        self.cpu, self.memory = cpu, memory
        self.destination: str | None = None

    def _configure(self) -> None:
        """Resolve the Seldon Connection (cluster, namespace, image) and render the Kaniko pod;
        ``AirflowFailException`` naming the Connection field or pod field to fix."""
        from pushbutton.errors import PushbuttonError
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
            version = str(self.version)
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
            self.pod_template_dict = kaniko_pod(
                name=f"build-{self.model}-{version}",
                namespace=namespace,
                context=self.context_uri,
                destination=self.destination,
                dockerfile=self.dockerfile,
                build_args=self.build_args,
                env_secret=self.env_secret,
                registry_secret=self.registry_secret,
                kaniko_image=self.kaniko_image,
                service_account=self.service_account,
                labels={"pushbutton.io/model": self.model, "pushbutton.io/version": version},
                cpu=self.cpu,
                memory=self.memory,
            )
        except PushbuttonError as exc:  # SpecError: a bad Connection extra, a `latest` destination, ...
            raise AirflowFailException(f"image build of {self.model} version {self.version}: {exc}") from exc
        except ValueError as exc:  # pydantic: a model name or version that is no model name or version
            raise AirflowFailException(
                f"image build: model '{self.model}' version '{self.version}': {exc} "
                "(fix: pass a registered model name and a numeric version)"
            ) from exc
        self.namespace = namespace
        self.pod_request_obj = None  # built from the template by KubernetesPodOperator.execute

    def execute(self, context: Context) -> Any:
        self._configure()
        self.log.info(
            "building %s from %s in namespace %s", self.destination, self.context_uri, self.namespace
        )
        super().execute(context)
        return self._built(context)

    def trigger_reentry(self, context: Context, event: dict[str, Any]) -> Any:
        self._configure()  # deferrable: a resumed task is a new instance; find the same cluster again
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

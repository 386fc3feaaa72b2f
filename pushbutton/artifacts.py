"""The MLflow artifact store in S3 or MinIO: the bucket of an ``s3://`` artifacts destination.

``pushbutton up`` with ``PUSHBUTTON_ARTIFACTS_DESTINATION=s3://<bucket>[/<prefix>]`` runs MLflow with
``--artifacts-destination`` there (MLflow proxies every artifact: clients need no S3 keys) and first
creates the bucket with the ``minio`` client (``prepare``), idempotently: an existing bucket is fine.
Where the store is and who we are come from the environment MLflow's own S3 client (boto3) reads:

* ``MLFLOW_S3_ENDPOINT_URL`` — e.g. ``http://minio.example:9000`` (unset: AWS S3 itself);
* ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (optional ``AWS_SESSION_TOKEN``);
* ``AWS_DEFAULT_REGION`` or ``AWS_REGION`` (optional; MinIO's default is ``us-east-1``).

An unreachable endpoint or rejected keys stop ``up`` before MLflow starts, with the endpoint and the
fix named (never a key). ``python -m pushbutton.artifacts s3://bucket`` does the same from a shell, e.g.
as the compose stack's one-shot ``artifacts-init`` service.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from pushbutton.errors import StackError

if TYPE_CHECKING:
    from pushbutton.config import Settings

ENDPOINT_VARIABLE = "MLFLOW_S3_ENDPOINT_URL"
KEY_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
AWS_ENDPOINT = "https://s3.amazonaws.com"
# S3 error codes that mean "these keys are not accepted here" (wrong, expired or not allowed)
CREDENTIAL_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
     "InvalidTokenId", "AuthorizationHeaderMalformed", "AllAccessDisabled"}
)  # fmt: skip
OURS_ALREADY = "BucketAlreadyOwnedByYou"  # a concurrent creation by the same account: fine


class ArtifactStoreError(StackError):
    """The S3/MinIO artifact store cannot be used: bad destination, unreachable, keys rejected."""


class BucketClient(Protocol):
    def bucket_exists(self, bucket_name: str) -> bool: ...

    def make_bucket(self, bucket_name: str, location: str | None = None) -> None: ...


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str
    endpoint: str  # scheme://host[:port], as the user gave it (no credentials)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")


@dataclass(frozen=True)
class BucketResult:
    location: S3Location
    created: bool

    def describe(self) -> str:
        how = "created" if self.created else "exists"
        return f"artifact bucket s3://{self.location.bucket} at {self.location.endpoint}: {how}"


def parse_destination(destination: str, env: Mapping[str, str]) -> S3Location | None:
    """The bucket and endpoint of an ``s3://`` destination; ``None`` for any other destination."""
    parts = urlsplit(destination)
    if parts.scheme != "s3":
        return None
    if not parts.netloc:
        raise ArtifactStoreError(
            f"PUSHBUTTON_ARTIFACTS_DESTINATION={destination!r}: no bucket name "
            "(fix: s3://<bucket>[/<prefix>], e.g. s3://mlflow)"
        )
    endpoint = (env.get(ENDPOINT_VARIABLE) or AWS_ENDPOINT).rstrip("/")
    target = urlsplit(endpoint)
    if target.scheme not in ("http", "https") or not target.hostname or target.path not in ("", "/"):
        raise ArtifactStoreError(
            f"{ENDPOINT_VARIABLE}={_redact(endpoint)!r}: not an endpoint URL "
            "(fix: scheme, host and port only, e.g. http://minio.example:9000)"
        )
    if target.username or target.password:
        raise ArtifactStoreError(
            f"{ENDPOINT_VARIABLE}: credentials in the URL are not used "
            f"(fix: put them in {' and '.join(KEY_VARIABLES)}, the endpoint as {_redact(endpoint)})"
        )
    from minio.helpers import check_bucket_name

    try:
        check_bucket_name(parts.netloc, strict=True)
    except ValueError as exc:
        raise ArtifactStoreError(
            f"PUSHBUTTON_ARTIFACTS_DESTINATION={destination!r}: {exc} (fix: a bucket name of 3-63 lowercase "
            "letters, digits, dots and hyphens, e.g. s3://mlflow)"
        ) from None
    return S3Location(parts.netloc, parts.path.strip("/"), endpoint)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def minio_client(location: S3Location, env: Mapping[str, str], *, timeout: float = 10.0) -> BucketClient:
    """A ``minio.Minio`` client for ``location``'s endpoint with the keys in ``env`` (few retries, so an
    unreachable endpoint is reported in seconds rather than after urllib3's default back-off)."""
    import urllib3
    from minio import Minio

    missing = [name for name in KEY_VARIABLES if not env.get(name)]
    if missing:
        raise ArtifactStoreError(
            f"artifacts destination {location.uri} at {location.endpoint}: {' and '.join(missing)} "
            f"not set (fix: export the access key and secret key of the S3/MinIO account that owns the bucket)"
        )
    target = urlsplit(location.endpoint)
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=timeout, read=timeout),
        retries=urllib3.Retry(total=1, backoff_factor=0.2, status_forcelist=(502, 503, 504)),
    )
    return Minio(  # type: ignore[return-value]
        target.netloc,
        access_key=env["AWS_ACCESS_KEY_ID"],
        secret_key=env["AWS_SECRET_ACCESS_KEY"],
        session_token=env.get("AWS_SESSION_TOKEN") or None,
        secure=target.scheme == "https",
        region=env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or None,
        http_client=http,
    )


def ensure_bucket(
    destination: str, env: Mapping[str, str] | None = None, *, client: BucketClient | None = None
) -> BucketResult | None:
    """Create the bucket of an ``s3://`` destination unless it exists; ``None`` for other destinations.

    ``ArtifactStoreError`` names the endpoint, the bucket and the fix; it never holds a key."""
    env = os.environ if env is None else env
    location = parse_destination(destination, env)
    if location is None:
        return None
    where = f"S3 endpoint {location.endpoint} ({ENDPOINT_VARIABLE})"
    try:
        if client is None:
            client = minio_client(location, env)
        if client.bucket_exists(location.bucket):
            return BucketResult(location, created=False)
        try:
            client.make_bucket(location.bucket)
        except Exception as exc:
            if getattr(exc, "code", None) != OURS_ALREADY:
                raise
        return BucketResult(location, created=True)
    except ArtifactStoreError:
        raise
    except Exception as exc:
        raise explain(exc, location, where) from None


def explain(exc: Exception, location: S3Location, where: str) -> ArtifactStoreError:
    code = getattr(exc, "code", None)
    if isinstance(code, str):  # an S3 error answer (minio.error.S3Error)
        if code in CREDENTIAL_CODES:
            return ArtifactStoreError(
                f"{where} rejected the credentials for bucket {location.bucket!r} ({code}) (fix: set "
                f"{' and '.join(KEY_VARIABLES)} to an account of that store allowed to list and create "
                "buckets, e.g. MinIO's root user or a user with the readwrite policy)"
            )
        if code == "BucketAlreadyExists":
            return ArtifactStoreError(
                f"{where}: bucket {location.bucket!r} belongs to another account (fix: choose another "
                "bucket in PUSHBUTTON_ARTIFACTS_DESTINATION)"
            )
        message = getattr(exc, "message", None) or code
        return ArtifactStoreError(f"{where} refused bucket {location.bucket!r}: {code}: {message}")
    status = getattr(exc, "status_code", None) or getattr(exc, "_code", None)
    if status is not None:  # ServerError / InvalidResponseError: something answered, not as S3 does
        return ArtifactStoreError(
            f"{where} answered HTTP {status}, not as an S3 service (fix: point {ENDPOINT_VARIABLE} at the "
            "MinIO/S3 API port, e.g. :9000, not the console)"
        )
    reason = type(exc).__name__
    if "Connection refused" in str(exc) or "NewConnectionError" in str(exc):
        reason = "connection refused"
    elif "NameResolution" in str(exc) or "Name or service not known" in str(exc):
        reason = "host name not found"
    elif "timed out" in str(exc).lower():
        reason = "timed out"
    return ArtifactStoreError(
        f"cannot reach the {where}: {reason} (fix: start MinIO/S3 there, or set {ENDPOINT_VARIABLE} to "
        f"its API URL; bucket {location.bucket!r} is created at start-up)"
    )


def prepare(settings: Settings, env: Mapping[str, str] | None = None) -> list[str]:
    """``pushbutton up``'s hook: the bucket of an ``s3://`` artifacts destination exists; notes to print."""
    if not settings.artifacts_destination:
        return []
    result = ensure_bucket(settings.artifacts_destination, env)
    return [result.describe()] if result and result.created else []


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].startswith("s3://"):
        print("usage: python -m pushbutton.artifacts s3://BUCKET[/PREFIX]   (endpoint and keys: "
              f"{ENDPOINT_VARIABLE}, {', '.join(KEY_VARIABLES)})", file=sys.stderr)  # fmt: skip
        return 2
    try:
        result: Any = ensure_bucket(args[0])
    except ArtifactStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(result.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())

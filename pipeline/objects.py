"""Reading assets from the object store (MinIO in production, SeaweedFS embedded; both speak S3).

Failures are classified for the stream: an object that is gone or too large is permanent
(dead-letter), a store that does not answer is transient (retry). AccessDenied is permanent for
that object: a bucket policy that refuses it will refuse it again, and retrying would stall the
whole partition behind one object; it is counted (facegate_s3_access_denied_total) and alerted
on, because it means a policy to fix. Bad credentials (an unknown key, a wrong signature) are
refused for every object alike: retried until the operator fixes them.
"""

from __future__ import annotations

import asyncio
import io
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import urllib3
from minio import Minio
from minio.error import S3Error

from . import metrics
from .errors import PermanentError, StackError, TransientError
from .settings import Settings

T = TypeVar("T")
_GONE = {"NoSuchKey", "NoSuchBucket", "NoSuchVersion"}


class ObjectMissing(PermanentError):
    """The object was deleted (or never existed) before it was processed."""


class ObjectTooLarge(PermanentError):
    """The object is larger than settings.recognition.max_object_bytes."""


class ObjectAccessDenied(PermanentError):
    """The store's policy refuses this call on this object (AccessDenied)."""


class ObjectStoreUnavailable(TransientError):
    """The object store did not answer or failed server-side."""


def s3_client(settings: Settings) -> Minio:
    s3 = settings.s3
    if not s3.endpoint:
        raise StackError("s3: no endpoint; run `facegate up` or set FACEGATE_S3__ENDPOINT")
    http = urllib3.PoolManager(maxsize=32, timeout=urllib3.Timeout(connect=2.0, read=30.0), retries=False)
    return Minio(
        s3.endpoint,
        access_key=s3.access_key,
        secret_key=s3.secret_key.get_secret_value(),
        secure=s3.secure,
        region=s3.region,
        http_client=http,
    )


class ObjectStore:
    """Blocking S3 calls run on a small thread pool so many assets can be in flight."""

    def __init__(self, client: Minio, max_bytes: int, threads: int = 8) -> None:
        self.client = client
        self._max_bytes = max_bytes
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="s3")

    def _classify(self, bucket: str, key: str, exc: Exception, operation: str = "read") -> Exception:
        if isinstance(exc, S3Error):
            if exc.code in _GONE:
                return ObjectMissing(f"s3://{bucket}/{key}: {exc.code}")
            if exc.code == "AccessDenied":
                metrics.S3_ACCESS_DENIED.labels(operation=operation).inc()
                return ObjectAccessDenied(
                    f"s3://{bucket}/{key}: AccessDenied ({operation}; check the policy)"
                )
            if exc.code in {"InvalidAccessKeyId", "SignatureDoesNotMatch"}:
                # A credential problem is an operator problem: retry until it is fixed.
                return ObjectStoreUnavailable(f"s3://{bucket}/{key}: {exc.code} (check s3 credentials)")
        return ObjectStoreUnavailable(f"s3://{bucket}/{key}: {type(exc).__name__}: {exc}")

    def _read(self, bucket: str, key: str) -> bytes:
        response = None
        try:
            response = self.client.get_object(bucket, key)
            declared = int(response.headers.get("Content-Length", "0") or 0)
            if declared > self._max_bytes:
                raise ObjectTooLarge(f"s3://{bucket}/{key}: {declared} bytes > {self._max_bytes}")
            data = response.read(self._max_bytes + 1)
            if len(data) > self._max_bytes:
                raise ObjectTooLarge(f"s3://{bucket}/{key}: over {self._max_bytes} bytes")
            return data
        except (ObjectTooLarge, ObjectMissing):
            raise
        except Exception as exc:
            raise self._classify(bucket, key, exc) from exc
        finally:
            if response is not None:
                response.close()
                response.release_conn()

    async def read(self, bucket: str, key: str) -> bytes:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._read, bucket, key)

    async def remove(self, bucket: str, key: str) -> None:
        """Delete an object (gone already is fine); store failures are transient."""

        def remove() -> None:
            try:
                self.client.remove_object(bucket, key)
            except S3Error as exc:
                if exc.code not in _GONE:
                    raise self._classify(bucket, key, exc, "delete") from exc
            except Exception as exc:
                raise self._classify(bucket, key, exc, "delete") from exc

        await asyncio.get_running_loop().run_in_executor(self._pool, remove)

    async def write(self, bucket: str, key: str, data: bytes) -> None:
        """Put an object (a re-sealed reference photo); store failures are transient."""

        def write() -> None:
            try:
                self.client.put_object(
                    bucket, key, io.BytesIO(data), len(data), content_type="application/octet-stream"
                )
            except Exception as exc:
                raise self._classify(bucket, key, exc, "write") from exc

        await asyncio.get_running_loop().run_in_executor(self._pool, write)

    async def keys(self, bucket: str, prefix: str) -> list[str]:
        """Every object key under ``prefix`` (a subject's reference photos)."""

        def keys() -> list[str]:
            try:
                objects = self.client.list_objects(bucket, prefix=prefix, recursive=True)
                return sorted(o.object_name for o in objects if o.object_name)
            except S3Error as exc:
                if exc.code == "NoSuchBucket":
                    return []
                raise self._classify(bucket, prefix, exc, "list") from exc
            except Exception as exc:
                raise self._classify(bucket, prefix, exc, "list") from exc

        return await asyncio.get_running_loop().run_in_executor(self._pool, keys)

    def stream(self, bucket: str, key: str, chunk: int = 1 << 20) -> Iterator[bytes]:
        """The object's bytes in chunks (blocking; for spooling videos to disk in a thread)."""
        try:
            response = self.client.get_object(bucket, key)
        except Exception as exc:
            raise self._classify(bucket, key, exc) from exc
        try:
            yield from response.stream(chunk)
        except Exception as exc:
            raise self._classify(bucket, key, exc) from exc
        finally:
            response.close()
            response.release_conn()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking call that uses the store on its thread pool."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=False)


class SeaweedVacuum:
    """Compaction of SeaweedFS volumes: a delete there only marks the blob deleted in its volume
    file, where its bytes stay until the volume is vacuumed. A purge calls this after deleting
    reference photos, so that no copy of them is left on disk (MinIO deletes the file at once
    and needs nothing of the kind).

    The master's vacuum compacts every volume holding garbage over the threshold; a threshold
    of ~0 includes the one deleted photo. Its cost is copying the live blobs of those volumes.
    """

    def __init__(self, master_url: str, timeout_s: float = 300.0) -> None:
        self.url = master_url.rstrip("/") + "/vol/vacuum?garbageThreshold=0.000001"
        self.timeout_s = timeout_s

    async def __call__(self, bucket: str) -> None:
        def vacuum() -> None:
            try:
                with urllib.request.urlopen(self.url, timeout=self.timeout_s) as response:
                    response.read()
            except (OSError, ValueError) as exc:
                raise ObjectStoreUnavailable(f"seaweedfs vacuum at {self.url} failed: {exc}") from exc

        await asyncio.to_thread(vacuum)

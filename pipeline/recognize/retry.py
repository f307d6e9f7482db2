"""Retry transient failures with capped exponential backoff, for as long as it takes.

A transient failure (Triton, S3 or Qdrant down) never loses or dead-letters an event: the stream
waits, which is the backpressure the issue asks for — consumer lag grows and alerts fire
(facegate_kafka_consumer_lag_records), instead of records being dropped.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .. import metrics
from ..errors import TransientError
from ..gallery import GalleryUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT: tuple[type[BaseException], ...] = (TransientError, GalleryUnavailable, asyncio.TimeoutError)


async def until_done(
    call: Callable[[], Awaitable[T]],
    *,
    stage: str,
    first_delay_s: float = 0.2,
    max_delay_s: float = 10.0,
    transient: tuple[type[BaseException], ...] = TRANSIENT,
) -> T:
    delay = first_delay_s
    attempt = 0
    while True:
        try:
            return await call()
        except transient as exc:
            attempt += 1
            metrics.ASSETS_PROCESSED.labels(stage=stage, outcome=metrics.Outcome.RETRY).inc()
            log.warning(
                "transient failure, retrying in %.1fs (attempt %d): %s: %s",
                delay,
                attempt,
                type(exc).__name__,
                exc,
                extra={"stage": stage},
            )
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(max_delay_s, delay * 2)

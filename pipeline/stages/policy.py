"""The one place that decides what a failure in a stage means: retry, dead-letter or crash.

Modelled on quix-streams' error callbacks, but declarative: an ordered list of rules, each
naming exception classes (and optionally the stages it applies to); the first rule that matches
decides. The runner (``pipeline.kafka.runner``) carries the decision out:

- RETRY: the event is done again from the start after a backoff, for as long as it takes; its
  staged state is discarded, the records it already sent stand (they are sent again, and every
  output is idempotent). Nothing is committed past it meanwhile: the backlog waits (lag grows,
  the alerts fire) instead of records being dropped.
- DEAD_LETTER: this input can never succeed. What the event already did stands (its records are
  acknowledged, its state applied); the original bytes go to the dead-letter topic with the
  error class, message, stage and source position in the headers; the stage goes on.
- CRASH: going on could lose data (the dead-letter topic itself refuses the record). The worker
  stops without acknowledging the event; after its restart the event is read again.

To add a rule: put it above the first rule that would otherwise match (order matters; the last
rule catches every Exception). ``bug=True`` logs the traceback: the failure is facegate's, not
the input's.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass

from ..contract import ContractError
from ..errors import PermanentError, TransientError
from ..gallery import GalleryUnavailable
from ..ingest.notifications import MalformedNotification
from ..topology import TopologyError
from .base import OutputNotDelivered


class Action(enum.StrEnum):
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"
    CRASH = "crash"


class DeadLetterFailed(Exception):
    """The dead-letter topic did not acknowledge a record: nothing may be acknowledged past it."""


@dataclass(frozen=True)
class Rule:
    errors: tuple[type[BaseException], ...]
    action: Action
    stages: frozenset[str] = frozenset()  # empty: every stage
    bug: bool = False  # a fault in facegate rather than in the input: log the traceback
    why: str = ""

    def matches(self, exc: BaseException, stage: str) -> bool:
        return isinstance(exc, self.errors) and (not self.stages or stage in self.stages)


RULES: tuple[Rule, ...] = (
    Rule((DeadLetterFailed,), Action.CRASH, why="the input can be neither processed nor parked"),
    Rule((OutputNotDelivered,), Action.RETRY, why="the broker did not acknowledge an output"),
    Rule(
        (TransientError, GalleryUnavailable, asyncio.TimeoutError),
        Action.RETRY,
        why="a dependency is down or slow",
    ),
    Rule(
        (ContractError, PermanentError, MalformedNotification),
        Action.DEAD_LETTER,
        why="bad input: it will never succeed",
    ),
    Rule(
        (TopologyError,), Action.DEAD_LETTER, bug=True, why="a stage sent a record where it does not belong"
    ),
    Rule((Exception,), Action.DEAD_LETTER, bug=True, why="a bug: keep the record and the traceback, go on"),
)


def decide(exc: BaseException, stage: str, rules: tuple[Rule, ...] = RULES) -> Rule:
    for rule in rules:
        if rule.matches(exc, stage):
            return rule
    return Rule((BaseException,), Action.CRASH, bug=True, why="not an Exception")


@dataclass
class Backoff:
    """Capped exponential backoff with jitter for RETRY (the same curve as recognize.retry)."""

    first_s: float = 0.2
    max_s: float = 10.0
    attempt: int = 0

    def next_delay(self, jitter: float) -> float:
        delay = min(self.max_s, self.first_s * 2**self.attempt)
        self.attempt += 1
        return delay * (0.5 + jitter)

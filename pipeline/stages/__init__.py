"""The stream stages, each a class given its dependencies; ``pipeline.app`` wires them to topics.

| stage | reads | writes | state |
|---|---|---|---|
| recognize, recognize-frames | assets, frames | asset-events, subject-events, frames | tracks, in memory |
| admit | consent, enrollments | subject-events | none |
| join | subject-events | asset-events, gallery, audit, purges | subjects, subject-assets |
| assemble | asset-events | tags, subject-events | assets |
| normalise | minio-events | assets | none |
| expiry (timer) | the subjects table | subject-events | reads the join's |

``base`` holds the event/outbox/staged-table model and the ordering rule every stage keeps;
``policy`` the error rules. The Protocols their dependencies satisfy are in ``pipeline.interfaces``.
"""

from .admit import Admit
from .assemble import Assemble
from .base import Event, Outbox, OutputNotDelivered, Stage, StagedTable, Timer
from .expiry import Expiry
from .join import Join
from .normalise import Normalise
from .recognize import Recognize, RecognizeFrames

__all__ = [
    "Admit",
    "Assemble",
    "Event",
    "Expiry",
    "Join",
    "Normalise",
    "Outbox",
    "OutputNotDelivered",
    "Recognize",
    "RecognizeFrames",
    "Stage",
    "StagedTable",
    "Timer",
]

"""Reconcile at ``up``: faceprints may exist only for a subject whose consent is on record.

The vault (SQLite or PostgreSQL) and the broker's log are saved apart: a broker that crashed
comes back without its last second of records while the vault keeps what the workers stored in
it, and a data dir can be restored piecemeal. When they disagree, the rule that protects people
decides: a subject with faceprints in the vault but no consent on record (none at all, or the
latest is a withdrawal) gets an erasure request, which the consent join carries out like any
other: faceprints, key, gallery points, reference photos and tags, with its audit records
(ERASURE_REQUESTED by ``REQUESTER``, KEY_DESTROYED, PURGED) and a SubjectPurged receipt.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass

from ..cli.history import consent_view
from ..contract import PurgeReason, utcnow
from ..contract.internal import ErasureRequest
from ..kafka.io import EventProducer, Message, read_all
from ..settings import Settings
from ..vault import open_vault
from ..vault.master import KEY_FILE
from ..vault.vault import vault_dir

log = logging.getLogger("facegate.stack")

REQUESTER = "facegate-reconcile"


@dataclass(frozen=True)
class Erasure:
    subject_id: str
    why: str  # no_consent_on_record | consent_withdrawn
    event_id: str


def subjects_in_vault(settings: Settings) -> list[str]:
    """Subjects whose faceprints the vault can open; [] when there is no vault yet."""
    if settings.vault.dsn is None and not (vault_dir(settings) / KEY_FILE).exists():
        return []  # no key, no faceprints: nothing to open (and no key generated here)
    with open_vault(settings) as vault:
        return vault.list_subjects()


def without_consent(subjects: list[str], consent: list[Message], settings: Settings) -> dict[str, str]:
    """Of ``subjects``, those the consent registry gives no basis, and why."""
    by_subject: dict[str, list[Message]] = defaultdict(list)
    for message in consent:
        if message.key:
            by_subject[message.key].append(message)
    out = {}
    for subject in subjects:
        view = consent_view(subject, by_subject.get(subject, []), settings.privacy, utcnow())
        if view.state is None:
            out[subject] = "no_consent_on_record"
        elif view.state.withdrawn:
            out[subject] = "consent_withdrawn"
    return out


def reconcile(settings: Settings, bootstrap: str) -> list[Erasure]:
    """Request the erasure of every vault subject without consent on record; return them."""
    subjects = subjects_in_vault(settings)
    if not subjects:
        return []
    k = settings.kafka
    unconsented = without_consent(subjects, read_all(bootstrap, k.topic_consent), settings)
    if not unconsented:
        return []
    out = EventProducer(bootstrap, client_id="facegate-reconcile")
    erasures = []
    for subject, why in sorted(unconsented.items()):
        request = ErasureRequest(
            f"reconcile:{uuid.uuid4()}", subject, PurgeReason.ERASURE_REQUEST, utcnow(), f"{REQUESTER}:{why}"
        )
        out.send(k.topic_subject_events, subject, request.to_bytes())
        erasures.append(Erasure(subject, why, request.event_id))
        log.warning(
            "reconcile: %s has faceprints in the vault but %s: erasure requested (%s)",
            subject,
            why.replace("_", " "),
            request.event_id,
        )
    out.flush()
    return erasures

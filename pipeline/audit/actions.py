"""What an audit record records: one stable name per kind of event.

The names are part of the audit log's meaning (a privacy officer filters on them), so they never
change once written; a new kind of event gets a new name.
"""

from __future__ import annotations

import enum


class AuditAction(enum.StrEnum):
    CONSENT_CHANGED = "CONSENT_CHANGED"  # a GRANTED/UPDATED/WITHDRAWN change was applied
    CONSENT_REJECTED = "CONSENT_REJECTED"  # an invalid change went to the DLQ (with the reasons)
    ENROLLED = "ENROLLED"  # reference faceprints stored in the vault and the gallery
    ENROLLMENT_REFUSED = "ENROLLMENT_REFUSED"  # no valid basis, no face, several faces, ...
    ENROLLMENT_DEFERRED = "ENROLLMENT_DEFERRED"  # arrived before any consent: held, nothing computed
    MATCH_DECIDED = "MATCH_DECIDED"  # a face was tagged GREEN/AMBER/RED for a subject
    EXPIRY_WARNED = "EXPIRY_WARNED"  # a consent entered the AMBER window before valid_until
    ERASURE_REQUESTED = "ERASURE_REQUESTED"  # a privacy officer asked for erasure
    PURGED = "PURGED"  # gallery points, faceprints and tags of a subject removed
    KEY_DESTROYED = "KEY_DESTROYED"  # the subject's data key was destroyed (crypto-shredding)
    MASTER_KEY_ROTATED = "MASTER_KEY_ROTATED"  # data keys re-wrapped under a new master key
    REINDEXED = "REINDEXED"  # the gallery was rebuilt from the vault

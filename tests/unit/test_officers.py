"""Officer keys, the registry and the signatures that make consent-plane records take effect."""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.contract import (
    ConsentAction,
    ConsentChange,
    ErasureRequest,
    LegalBasis,
    ObjectRef,
    SubjectEnrollment,
    decode,
)
from pipeline.officers import (
    OfficerKey,
    OfficerKeyError,
    OfficerRegistry,
    Refusal,
    RegistryFile,
    RegistryUnavailable,
    Role,
    SignatureRefused,
    load_key,
    needs_passphrase,
    save_key,
    save_registry,
    sign,
    verify,
)
from pipeline.officers.registry import Officer

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def officer(key: OfficerKey, role: Role = Role.PRIVACY_OFFICER, **kw) -> Officer:
    return Officer(
        key.officer_id, f"name of {key.officer_id}", role, key.public_key, T0 - timedelta(days=1), **kw
    )


def grant(subject: str = "S-1", at: datetime = T0) -> ConsentChange:
    return ConsentChange(
        "ev-1",
        subject,
        ConsentAction.GRANTED,
        LegalBasis.EXPLICIT_CONSENT,
        ["editorial"],
        at,
        None,
        "s3://legal/S-1.pdf",
        at,
        "whoever",
    )


@pytest.fixture
def anna() -> OfficerKey:
    return OfficerKey.generate("anna")


@pytest.fixture
def registry(anna: OfficerKey) -> OfficerRegistry:
    return OfficerRegistry((officer(anna),))


def check(record, registry: OfficerRegistry, now: datetime = T0) -> Officer:
    message = record.to_bytes()
    return verify(message, decode(message), registry, now)


def refusal(record, registry: OfficerRegistry, now: datetime = T0) -> Refusal:
    with pytest.raises(SignatureRefused) as info:
        check(record, registry, now)
    return info.value.refusal


@pytest.mark.parametrize(
    "record",
    [
        grant(),
        SubjectEnrollment("ev-2", "S-1", [ObjectRef("enrollments", "S-1/a.jpg")]),
        ErasureRequest("ev-3", "S-1", T0, "whoever", evidence_uri="case://4711"),
    ],
    ids=lambda r: type(r).__name__,
)
def test_a_signed_record_verifies_and_names_its_officer(record, anna, registry):
    signed = sign(record, anna, now=T0)
    assert check(signed, registry).officer_id == "anna"
    by = "requested_by" if isinstance(record, ErasureRequest) else "recorded_by"
    assert getattr(signed, by) == "anna" and signed.signed_by == anna.key_id and len(signed.signature) == 64


def test_unsigned_forged_and_unknown_records_are_refused(anna, registry):
    assert refusal(grant(), registry) is Refusal.UNSIGNED
    signed = sign(grant(), anna)
    # Any change after signing, even one letter of the scope, breaks the signature.
    assert refusal(dataclasses.replace(signed, scopes=["marketing"]), registry) is Refusal.BAD_SIGNATURE
    assert refusal(dataclasses.replace(signed, subject_id="S-2"), registry) is Refusal.BAD_SIGNATURE
    mallory = OfficerKey.generate("anna")  # same id, another key: not anna
    assert refusal(sign(grant(), mallory), registry) is Refusal.UNKNOWN_KEY
    # A valid signature by anna's key id pasted onto another record.
    pasted = dataclasses.replace(grant("S-9"), signed_by=signed.signed_by, signature=signed.signature)
    assert refusal(pasted, registry) is Refusal.BAD_SIGNATURE


def test_the_signer_field_must_name_the_signing_officer(anna, registry):
    signed = sign(grant(), anna)
    relabelled = dataclasses.replace(signed, recorded_by="boss", signature=None)
    relabelled = dataclasses.replace(relabelled, signature=anna.sign(_unsigned(relabelled)))
    assert refusal(relabelled, registry) is Refusal.WRONG_SIGNER


def _unsigned(record) -> bytes:
    from pipeline.contract.signature import unsigned_message

    return unsigned_message(record)


def test_revocation_keeps_earlier_records_unless_the_key_was_compromised(anna, registry):
    before = sign(grant(at=T0 - timedelta(hours=1)), anna)
    after = sign(grant(at=T0 + timedelta(hours=1)), anna)
    retired = registry.revoke("anna", at=T0)
    assert check(before, retired, now=T0 + timedelta(days=1)).officer_id == "anna"
    assert refusal(after, retired, now=T0 + timedelta(days=1)) is Refusal.REVOKED
    stolen = retired.revoke("anna", compromised=True)
    assert refusal(before, stolen, now=T0 + timedelta(days=1)) is Refusal.REVOKED


def test_future_dated_and_out_of_role_records_are_refused(anna):
    assert refusal(sign(grant(at=T0 + timedelta(hours=1)), anna), OfficerRegistry((officer(anna),))) is (
        Refusal.FUTURE_DATED
    )
    clerk = OfficerRegistry((officer(anna, Role.ENROLLMENT_OPERATOR),))
    assert refusal(sign(grant(), anna), clerk) is Refusal.NOT_PERMITTED
    enrollment = SubjectEnrollment("ev-2", "S-1", [ObjectRef("enrollments", "S-1/a.jpg")])
    assert check(sign(enrollment, anna, now=T0), clerk).role is Role.ENROLLMENT_OPERATOR


def test_a_record_of_an_older_schema_has_no_signature_and_is_refused(registry):
    from pipeline.contract import REGISTRY
    from pipeline.contract.avro import SCHEMA_DIR, Schema

    old = Schema.from_json(json.loads((SCHEMA_DIR / "history" / "ConsentChange.v1.avsc").read_text()))
    datum = {
        k: v for k, v in grant().to_avro().items() if k not in ("justification", "signed_by", "signature")
    }
    message = old.encode(datum)
    assert REGISTRY.writer_of(message).fingerprint == old.fingerprint
    with pytest.raises(SignatureRefused) as info:
        verify(message, decode(message), registry, T0)
    assert info.value.refusal is Refusal.UNSIGNED


def test_key_file_is_0600_and_its_passphrase_is_needed(tmp_path, anna):
    plain = save_key(anna, tmp_path / "keys" / "anna.key")
    assert (plain.stat().st_mode & 0o777) == 0o600 and (plain.parent.stat().st_mode & 0o777) == 0o700
    assert not needs_passphrase(plain) and load_key(plain).key_id == anna.key_id
    with pytest.raises(OfficerKeyError, match="never overwritten"):
        save_key(anna, plain)
    locked = save_key(anna, tmp_path / "keys" / "anna-locked.key", passphrase=b"correct horse")
    assert needs_passphrase(locked)
    assert b"correct horse" not in locked.read_bytes()
    assert load_key(locked, b"correct horse").key_id == anna.key_id
    with pytest.raises(OfficerKeyError, match="wrong passphrase"):
        load_key(locked, b"wrong")
    with pytest.raises(OfficerKeyError, match="needs its passphrase"):
        load_key(locked)
    os.chmod(plain, 0o644)
    with pytest.raises(OfficerKeyError, match="readable by other users"):
        load_key(plain)


def test_registry_file_is_reread_when_it_changes(tmp_path, anna):
    path = tmp_path / "registry.json"
    watched = RegistryFile(path)
    assert watched.current().officers == ()  # absent: nobody is an officer
    save_registry(OfficerRegistry((officer(anna),)), path)
    assert watched.current().get("anna") is not None
    save_registry(watched.current().revoke("anna", at=T0), path)
    assert watched.current().get("anna").revoked_at == T0
    path.write_text("{ not json")
    with pytest.raises(RegistryUnavailable):
        watched.current()


def test_registry_refuses_reused_ids_and_keys(anna):
    registry = OfficerRegistry((officer(anna),))
    with pytest.raises(Exception, match="registered already"):
        registry.add(officer(OfficerKey.generate("anna")))
    with pytest.raises(Exception, match="registered already"):
        registry.add(dataclasses.replace(officer(anna), officer_id="other"))
    assert OfficerRegistry.from_json(json.loads(json.dumps(registry.to_json()))) == registry

"""The operator commands against the session's embedded stack, run as a user runs them.

Commands find the stack the way they do for a user: from the state file under FACEGATE_DATA_DIR.
The worker-free tests check what the commands themselves do (upload, produce, read, verify);
the flow test follows a subject through consent, enrollment, a tagged upload, erasure and the
right of access, with the stack's worker doing its part.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from pipeline.cli import _register, cli
from pipeline.contract import ConsentAction
from pipeline.errors import StackError
from pipeline.kafka.io import EventProducer
from pipeline.settings import get_settings

pytestmark = pytest.mark.integration

PHOTOS = Path(__file__).resolve().parents[1] / "data" / "photos" / "face_recognition"


def facegate(data_dir: Path | str, *args: str, code: int | None = 0) -> Result:
    """Run ``facegate ARGS`` in-process with FACEGATE_DATA_DIR pointing at a stack."""
    if "tail" not in cli.commands:
        _register()
    get_settings.cache_clear()  # the command reads its settings from this environment
    try:
        result = CliRunner().invoke(cli, list(args), env={"FACEGATE_DATA_DIR": str(data_dir)})
    finally:
        get_settings.cache_clear()
    if code is not None and result.exit_code != code:
        raise AssertionError(
            f"facegate {' '.join(args)}: exit {result.exit_code}, wanted {code}\n{result.output}"
            + (f"\n{result.exception!r}" if result.exception else "")
        )
    return result


def json_lines(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def until(what: str, probe: Callable[[], Any], timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(1.0)


@pytest.fixture
def run(stack: Any) -> Callable[..., Result]:
    def run_in_stack(*args: str, code: int | None = 0) -> Result:
        return facegate(stack.data_dir, *args, code=code)

    return run_in_stack


def test_commands_without_a_stack_say_so_in_one_line(tmp_path: Path) -> None:
    result = facegate(tmp_path, "tail", "tags", code=None)
    assert isinstance(result.exception, StackError)
    assert str(result.exception) == f"no stack running under {tmp_path.resolve()}; run `facegate up`"


def test_ingest_uploads_media_and_each_upload_becomes_an_asset_event(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    folder = tmp_path / "wire"
    (folder / "day1").mkdir(parents=True)
    (folder / "day1" / "biden.jpg").write_bytes((PHOTOS / "biden.jpg").read_bytes())
    (folder / "day1" / "frame").write_bytes((PHOTOS / "32bit.png").read_bytes())  # PNG without extension
    (folder / "caption.txt").write_text("not media\n")
    prefix = f"cli-{uuid.uuid4().hex[:8]}"

    result = run("ingest", str(folder), "--prefix", prefix)
    assert "skipped" in result.stderr and "caption.txt" in result.stderr
    size = (PHOTOS / "biden.jpg").stat().st_size + (PHOTOS / "32bit.png").stat().st_size
    assert f"uploaded 2 file(s), {size} bytes" in result.stdout

    wanted = {f"assets/{prefix}/day1/biden.jpg": "image/jpeg", f"assets/{prefix}/day1/frame": "image/png"}

    def arrived() -> dict[str, dict[str, Any]]:
        lines = json_lines(run("tail", "assets", "--json"))
        # other tests put undecodable events on the topic too (no "record" for those)
        records = {m["key"]: m["record"] for m in lines if "record" in m}
        return {k: records[k] for k in wanted} if set(wanted) <= set(records) else {}

    assets = until("the AssetUploaded events", arrived, timeout_s=30)
    for asset_id, content_type in wanted.items():
        record = assets[asset_id]
        assert record["type"] == "facegate.AssetUploaded"
        assert (record["bucket"], record["content_type"], record["kind"]) == ("assets", content_type, "IMAGE")
    text = run("tail", "assets").stdout
    assert f"assets/{prefix}/day1/biden.jpg  IMAGE  image/jpeg" in text


def test_consent_grant_then_show_and_withdraw_of_nobody(run: Callable[..., Result], stack: Any) -> None:
    subject = f"S-{uuid.uuid4().hex[:8]}"
    sent = run(
        "consent",
        "grant",
        subject,
        "--basis",
        "contract",
        "--scope",
        "Editorial",
        "--scope",
        "archive",
        "--evidence",
        "s3://contracts/staff.pdf",
        "--until",
        "2099-01-01",
    )
    assert "GRANTED" in sent.stdout and "CONTRACT" in sent.stdout

    shown = json.loads(run("consent", "show", subject, "--json").stdout)
    (change,) = shown["history"]
    assert (change["action"], change["scopes"], change["recorded_by"]) == (
        ConsentAction.GRANTED.value,
        ["archive", "editorial"],
        "dpo",  # the signing officer (the embedded stack's first), whatever the record said
    )
    assert change["valid_until"].startswith("2099-01-01")
    assert shown["decision"] == {
        "status": "GREEN",
        "reason": "consent:contract",
        "scopes": ["archive", "editorial"],
    }
    text = run("consent", "show", subject).stdout
    assert "current: CONTRACT scopes archive,editorial" in text
    assert "a face matched now: GREEN (consent:contract)" in text

    nobody = f"nobody-{uuid.uuid4().hex[:8]}"
    withdrawn = run("consent", "withdraw", nobody, code=1)
    assert "has no consent; nothing to withdraw" in withdrawn.output

    # Art. 9: no reference photo of a person without a valid basis is even uploaded.
    refused = run("enroll", nobody, str(PHOTOS / "biden.jpg"), code=1)
    assert f"{nobody} has no valid consent now (no_consent); nothing uploaded" in refused.output
    client, bucket = stack.s3(), stack.settings.s3.enrollment_bucket
    assert not client.bucket_exists(bucket) or not list(client.list_objects(bucket, prefix=f"{nobody}/"))


def test_audit_verify_reads_the_whole_log(run: Callable[..., Result]) -> None:
    result = run("audit", "verify", "--json")
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["problems"] == [] and report["undecodable"] == []
    assert report["records"] == sum(c["records"] for c in report["chains"].values())
    assert "audit log verified" in run("audit", "verify").stdout


# --- the whole flow, with the worker ---------------------------------------------------------


@pytest.fixture(scope="module")
def worker(stack: Any) -> None:
    """The flow needs the stack's worker and its model."""
    stack.require_model()
    if "worker" not in stack.pids:
        pytest.fail("the stack runs no pipeline worker (FACEGATE_STACK__WORKERS=false?)", pytrace=False)


def _current_tags(run: Callable[..., Result], asset_id: str) -> dict[str, Any] | None:
    records = [m["record"] for m in json_lines(run("tail", "tags", "--json", "--key", asset_id))]
    assert all(r["asset_id"] == asset_id for r in records)
    return records[-1] if records else None


@pytest.mark.models
@pytest.mark.slow
def test_consent_enroll_tag_erase_and_export(run: Callable[..., Result], stack: Any, worker: None) -> None:
    subject = f"obama-{uuid.uuid4().hex[:8]}"
    run(
        "consent",
        "grant",
        subject,
        "--basis",
        "explicit_consent",
        "--scope",
        "editorial",
        "--scope",
        "archive",
        "--evidence",
        f"s3://quitclaims/{subject}.pdf",
    )
    enrolled = run(
        "enroll", subject, str(PHOTOS / "obama.jpg"), str(PHOTOS / "obama2.jpg"), "--wait", "--timeout", "180"
    )
    assert "ENROLLED" in enrolled.stdout and '"stored":2' in enrolled.stdout

    prefix = f"cli-{uuid.uuid4().hex[:8]}"
    run("ingest", str(PHOTOS / "obama3.jpg"), "--prefix", prefix)
    asset_id = f"assets/{prefix}/obama3.jpg"

    def named() -> dict[str, Any] | None:
        tags = _current_tags(run, asset_id)
        return tags if tags and any(f["subject_id"] == subject for f in tags["faces"]) else None

    tags = until(f"{asset_id} tagged with {subject}", named, timeout_s=180)
    (face,) = [f for f in tags["faces"] if f["subject_id"] == subject]
    assert (face["status"], face["reason"]) == ("GREEN", "consent:explicit")
    assert face["bbox"]["w"] > 100 and face["bbox"]["h"] > 100
    assert f"subject {subject}" in run("tail", "tags").stdout

    export = json.loads(run("subject", "export", subject, "--json").stdout)
    assert list(export["assets"]) == [asset_id]
    assert export["assets"][asset_id][0]["status"] == "GREEN"
    assert sorted(r["object_key"] for r in export["reference_photos"]) == [
        f"{subject}/obama.jpg",
        f"{subject}/obama2.jpg",
    ]
    assert export["faceprints"] == {"faceprints": 2, "key_held": True, "vault": f"{stack.data_dir}/vault"}
    assert {a["action"] for a in export["audit"]} >= {"CONSENT_CHANGED", "ENROLLED", "MATCH_DECIDED"}
    assert "embedding" not in json.dumps(export)

    # A malformed consent event from another producer: dead-lettered, readable with `tail dlq`.
    junk_key = f"junk-{uuid.uuid4().hex[:8]}"
    producer = EventProducer(stack.kafka_bootstrap)
    producer.send(stack.settings.kafka.topic_consent, junk_key, b"not an avro record")
    producer.flush()

    erased = run("erase", subject, "--wait", "--timeout", "180")
    assert "deleted 2 reference photo(s)" in erased.stdout
    assert (
        f"purge {subject}  reason ERASURE_REQUEST  1 asset(s) untagged  2 faceprint(s) deleted"
        in erased.stdout
    )
    assert f"  asset {asset_id}" in erased.stdout

    after = _current_tags(run, asset_id)
    assert after is not None
    assert all(f["subject_id"] != subject for f in after["faces"])
    assert [f["reason"] for f in after["faces"]] == ["erased"]

    export = json.loads(run("subject", "export", subject, "--json").stdout)
    assert export["assets"] == {} and export["reference_photos"] == []
    assert export["faceprints"]["faceprints"] == 0 and export["faceprints"]["key_held"] is False
    (receipt,) = export["purges"]
    assert receipt["asset_ids"] == [asset_id] and receipt["key_destroyed"] is True
    assert export["consent"]["decision"]["reason"] == "erased"
    assert {"ERASURE_REQUESTED", "KEY_DESTROYED", "PURGED"} <= {a["action"] for a in export["audit"]}

    withdraw = run("consent", "withdraw", subject, code=1)
    assert "no consent (erased at" in withdraw.output

    def dead_lettered() -> list[dict[str, Any]]:
        return [m for m in json_lines(run("tail", "dlq", "--json")) if m["key"] == junk_key]

    (dead,) = until("the malformed consent event on the DLQ", dead_lettered, timeout_s=60)
    assert dead["headers"]["source_topic"] == stack.settings.kafka.topic_consent
    assert dead["headers"]["error_class"] and dead["headers"]["stage"]
    assert f"dlq key {junk_key}" in run("tail", "dlq").stdout

    verified = run("audit", "verify")
    assert "audit log verified" in verified.stdout


@pytest.mark.models
@pytest.mark.slow
def test_withdraw_takes_basis_from_the_current_consent_and_leads_to_a_purge(
    run: Callable[..., Result], stack: Any, worker: None
) -> None:
    subject = f"staff-{uuid.uuid4().hex[:8]}"
    run(
        "consent",
        "grant",
        subject,
        "--basis",
        "contract",
        "--scope",
        "intranet",
        "--evidence",
        "https://hr.example/contracts/1",
        "--until",
        "2099-06-30",
    )
    run("enroll", subject, str(PHOTOS / "biden.jpg"), "--wait", "--timeout", "180")

    withdrawn = run("consent", "withdraw", subject, "--officer", "dpo", "--wait", "--timeout", "180")
    assert "WITHDRAWN  CONTRACT  scopes intranet" in withdrawn.stdout
    assert "deleted 1 reference photo(s)" in withdrawn.stdout
    assert f"purge {subject}  reason WITHDRAWN" in withdrawn.stdout
    assert "1 faceprint(s) deleted  key destroyed yes" in withdrawn.stdout
    (purge,) = [m["record"] for m in json_lines(run("tail", "purges", "--json")) if m["key"] == subject]
    assert (purge["reason"], purge["faceprints_deleted"], purge["key_destroyed"]) == ("WITHDRAWN", 1, True)

    shown = json.loads(run("consent", "show", subject, "--json").stdout)
    assert [c["action"] for c in shown["history"]] == ["GRANTED", "WITHDRAWN"]
    assert shown["history"][1]["recorded_by"] == "dpo"
    assert shown["decision"]["status"] == "RED" and shown["decision"]["reason"] == "withdrawn"
    again = run("consent", "withdraw", subject, code=1)
    assert "no consent (withdrawn at" in again.output

"""The embedded stack: `facegate up/down/status` and upload -> AssetUploaded.

The shared ``stack`` fixture covers what runs on it (endpoints, notifications); the CLI's own
behaviour (idempotence, crash detection, leaving nothing behind, one-line errors) is tested
through ``facegate`` subprocesses, each with its own data dir and an empty model repository
(so that Triton starts in seconds).
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource
from conftest import stack_settings  # tests/integration/conftest.py

from pipeline.contract import AssetKind, AssetUploaded
from pipeline.kafka import ensure_topics, topic_specs
from pipeline.settings import KafkaSettings
from pipeline.stack import checks, procs
from pipeline.stack.parts import INFRASTRUCTURE, WORKERS, KafkaPart
from pipeline.stack.procs import read_stat

if TYPE_CHECKING:
    from conftest import RunningStack

pytestmark = pytest.mark.integration

FACEGATE = [sys.executable, "-m", "pipeline"]
WAIT_S = 15.0  # a functional bound, not a latency target: latency is printed


# --- helpers -------------------------------------------------------------------------------


def tail_consumer(stack: RunningStack, topic: str) -> Consumer:
    """A consumer assigned to the current end of every partition of ``topic`` (no group)."""
    consumer = Consumer(
        stack.kafka_config(**{"group.id": f"test-{uuid.uuid4().hex}", "enable.auto.commit": False})
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    ends = [
        TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
        for p in partitions
    ]
    consumer.assign(ends)
    return consumer


def collect(consumer: Consumer, until: Any, wait_s: float = WAIT_S) -> list[Any]:
    """Poll until ``until(messages)`` holds or ``wait_s`` passes; return the messages."""
    messages: list[Any] = []
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and not until(messages):
        message = consumer.poll(0.05)
        if message is not None and message.error() is None:
            messages.append(message)
    return messages


def assets(messages: list[Any]) -> list[AssetUploaded]:
    return [AssetUploaded.from_bytes(m.value()) for m in messages]


def put(stack: RunningStack, key: str, data: bytes, content_type: str, **kwargs: Any) -> None:
    stack.s3().put_object(stack.bucket, key, io.BytesIO(data), len(data), content_type=content_type, **kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def processes_of(data_dir: Path) -> dict[int, str]:
    """Live processes (pid: command line) whose command line or working dir is under ``data_dir``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        stat = read_stat(int(entry.name))
        if stat is None or stat.state == "Z":
            continue
        if str(data_dir) in cmdline or cwd.startswith(str(data_dir)):
            found[int(entry.name)] = cmdline
    return found


class Cli:
    """`facegate` run as a user runs it, with its own data dir."""

    def __init__(self, data_dir: Path, repository: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FACEGATE_")}
        self.env.update(FACEGATE_DATA_DIR=str(data_dir), FACEGATE_MODEL_REPOSITORY=str(repository), **env)

    def __call__(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        result = subprocess.run(
            [*FACEGATE, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        print(
            f"\n  facegate {' '.join(args)}: exit {result.returncode} in {time.monotonic() - started:.1f} s"
        )
        return result

    def up_json(self) -> dict[str, Any]:
        result = self("up", "--json")
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout))


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    """`facegate` on an empty model repository: Triton starts at once; for failing `up`s."""
    repository = tmp_path / "models"
    repository.mkdir()
    runner = Cli(tmp_path / "data", repository)
    yield runner
    runner("down")
    assert processes_of(runner.data_dir) == {}


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    line = lines[0]
    for word in words:
        assert word in line, line
    return line


# --- on the shared stack -------------------------------------------------------------------


def test_endpoints_answer(stack: RunningStack) -> None:
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    topics = admin.list_topics(timeout=10).topics
    specs = topic_specs(stack.settings)
    for spec in specs:
        assert spec.name in topics
        assert len(topics[spec.name].partitions) == stack.settings.kafka.partitions
    compacted = [s.name for s in specs if s.config.get("cleanup.policy") == "compact"]
    assert stack.settings.kafka.topic_consent in compacted and stack.settings.kafka.topic_tags in compacted
    described = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, n) for n in compacted])
    for resource, future in described.items():
        assert future.result()["cleanup.policy"].value == "compact", resource.name

    assert stack.s3().bucket_exists(stack.bucket)
    assert stack.s3().bucket_exists(stack.settings.s3.enrollment_bucket)
    with urllib.request.urlopen(f"http://{stack.triton_http}/v2/health/ready", timeout=5) as response:
        assert response.status == 200
    for part in ("triton", "bridge", "s3"):
        with urllib.request.urlopen(stack.metrics[part], timeout=5) as response:
            assert response.status == 200, part
    assert Path(stack.qdrant_path).is_dir()
    assert stack.settings.kafka.bootstrap == stack.kafka_bootstrap


def test_upload_yields_asset_uploaded(stack: RunningStack) -> None:
    topic = stack.settings.kafka.topic_assets
    consumer = tail_consumer(stack, topic)
    key = f"photos/{uuid.uuid4().hex} é.jpg"
    body = b"\xff\xd8\xff\xe0" + os.urandom(2000)
    started = time.monotonic()
    put(stack, key, body, "image/jpeg")
    put_returned = time.monotonic()
    asset_id = f"{stack.bucket}/{key}"
    messages = collect(consumer, lambda ms: any(m.key() == asset_id.encode() for m in ms))
    arrived = time.monotonic()
    consumer.close()
    (asset,) = [a for a in assets(messages) if a.asset_id == asset_id]
    print(
        f"\nupload -> AssetUploaded on {topic}: {arrived - put_returned:.3f} s after the PUT returned "
        f"({arrived - started:.3f} s from its start)"
    )
    stat = stack.s3().stat_object(stack.bucket, key)
    assert asset.bucket == stack.bucket and asset.object_key == key
    assert asset.etag == stat.etag
    assert asset.size == len(body)
    assert (asset.content_type, asset.kind, asset.source) == ("image/jpeg", AssetKind.IMAGE, "seaweedfs")
    assert abs(asset.uploaded_at.timestamp() - time.time()) < 60


def test_frames_videos_and_what_is_not_an_asset(stack: RunningStack) -> None:
    consumer = tail_consumer(stack, stack.settings.kafka.topic_assets)
    run = uuid.uuid4().hex[:8]
    frame_key = f"frames/vid-{run}/1500.jpg"
    meta_key = f"{run}/meta-frame.jpg"
    video_key = f"{run}/clip.mp4"
    ignored = {f"{run}/notes.txt"}
    put(stack, f"{run}/notes.txt", b"not a photo", "text/plain")
    # Reference photos of subjects are not assets.
    enrollment = stack.settings.s3.enrollment_bucket
    stack.s3().put_object(
        enrollment, f"{run}/ref.jpg", io.BytesIO(b"\xff\xd8ref"), 5, content_type="image/jpeg"
    )
    put(stack, frame_key, b"\xff\xd8frame", "image/jpeg")
    put(
        stack,
        meta_key,
        b"\xff\xd8frame",
        "image/jpeg",
        metadata={"video-id": f"v-{run}", "frame-time-ms": "40"},
    )
    # 6 MiB in 5 MiB parts: a multipart upload, whose parts must not become assets.
    video = os.urandom(6 * 1024 * 1024)
    stack.s3().put_object(
        stack.bucket, video_key, io.BytesIO(video), -1, content_type="video/mp4", part_size=5 << 20
    )
    # The same bytes again: the same object version, published once.
    put(stack, frame_key, b"\xff\xd8frame", "image/jpeg")
    wanted = {f"{stack.bucket}/{k}" for k in (frame_key, meta_key, video_key)}
    messages = collect(consumer, lambda ms: wanted <= {m.key().decode() for m in ms})
    # Notifications are delivered concurrently: give stragglers a moment before counting.
    messages += collect(consumer, lambda ms: False, wait_s=1.5)
    consumer.close()
    by_id: dict[str, list[AssetUploaded]] = {}
    for asset in assets(messages):
        by_id.setdefault(asset.asset_id, []).append(asset)
    frame = by_id[f"{stack.bucket}/{frame_key}"]
    assert len(frame) == 1
    assert (frame[0].kind, frame[0].video_id, frame[0].frame_time_ms) == (AssetKind.FRAME, f"vid-{run}", 1500)
    (meta,) = by_id[f"{stack.bucket}/{meta_key}"]
    assert (meta.kind, meta.video_id, meta.frame_time_ms) == (AssetKind.FRAME, f"v-{run}", 40)
    (clip,) = by_id[f"{stack.bucket}/{video_key}"]
    assert (clip.kind, clip.size) == (AssetKind.VIDEO, len(video))
    assert set(by_id) == wanted, f"unexpected assets: {set(by_id) - wanted - ignored}"


def test_malformed_notification_goes_to_the_dlq(stack: RunningStack) -> None:
    consumer = tail_consumer(stack, stack.settings.kafka.topic_dlq)
    body = b'{"event_type": "create", "message": {"new_entry": "garbage-' + uuid.uuid4().hex.encode() + b'"}}'
    request = urllib.request.Request(
        str(stack.notify_webhook), data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.loads(response.read()) == {"dead_lettered": 1}
    messages = collect(consumer, lambda ms: any(m.value() == body for m in ms))
    consumer.close()
    (record,) = [m for m in messages if m.value() == body]
    headers = {k: v.decode() for k, v in record.headers()}
    assert headers["error_class"] == "MalformedNotification"
    assert headers["stage"] == "notify" and headers["source"] == "webhook:seaweedfs"
    assert "new_entry" in headers["error_message"]
    # The bridge is still serving.
    with urllib.request.urlopen(
        str(stack.notify_webhook).replace("/hook", "/healthz"), timeout=5
    ) as response:
        assert response.status == 200


def test_bridge_keeps_notifications_while_kafka_is_away(tmp_path: Path) -> None:
    """An upload while the broker is down is published once the broker is back."""
    bootstrap = f"127.0.0.1:{free_port()}"
    bridge_port = free_port()
    settings = stack_settings(tmp_path).model_copy(update={"kafka": KafkaSettings(bootstrap=bootstrap)})
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEGATE_")}
    env["FACEGATE_KAFKA__BOOTSTRAP"] = bootstrap
    bridge = procs.spawn(
        [sys.executable, "-m", "pipeline.ingest.bridge", "--port", str(bridge_port)],
        cwd=tmp_path,
        env=env,
        log=tmp_path / "bridge.log",
    )
    started = [bridge]
    try:
        base = f"http://127.0.0.1:{bridge_port}"
        deadline = time.monotonic() + WAIT_S
        while checks.http_status(f"{base}/healthz", timeout_s=3) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert checks.http_status(f"{base}/healthz", timeout_s=3) == 503  # serving, Kafka unreachable

        payload = {
            "event_type": "create",
            "key": f"/buckets/{settings.s3.bucket}/away/{uuid.uuid4().hex}.jpg",
            "message": {
                "new_entry": {
                    "name": "x.jpg",
                    "attributes": {
                        "file_size": 3,
                        "mtime": int(time.time()),
                        "mime": "image/jpeg",
                        "md5": "AAAA",
                    },
                }
            },
        }
        request = urllib.request.Request(
            f"{base}/hook", data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.loads(response.read()) == {"published": 1}

        time.sleep(1.0)  # the bridge keeps it queued meanwhile
        host, port = bootstrap.split(":")
        broker_dir = tmp_path / "kafka"
        broker_dir.mkdir()
        broker = [str(KafkaPart.binary()), "start", "--data-dir", str(broker_dir), "--host", host]
        started.append(
            procs.spawn(
                [*broker, "--only", "kafka", "--kafka-port", port],
                cwd=tmp_path,
                env=env,
                log=tmp_path / "kafka.log",
            )
        )
        while not checks.kafka_ready(bootstrap) and time.monotonic() < deadline + WAIT_S:
            time.sleep(0.1)
        ensure_topics(settings, bootstrap)

        topic = settings.kafka.topic_assets
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "t", "session.timeout.ms": 6000})
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        asset_id = payload["key"].removeprefix("/buckets/")
        messages = collect(consumer, lambda ms: any(m.key() == asset_id.encode() for m in ms), wait_s=30)
        consumer.close()
        assert [a.asset_id for a in assets(messages)] == [asset_id]
        assert checks.http_status(f"{base}/healthz", timeout_s=3) == 200
    finally:
        procs.stop_all(started, 10)


# --- the CLI -------------------------------------------------------------------------------


def test_up_is_idempotent_detects_crashes_and_down_leaves_nothing(
    tmp_path: Path, stack: RunningStack
) -> None:
    # Infrastructure only (the workers are the lead's, and slow to start), but on the real model
    # repository: tritonserver then runs python stub processes in its session, which must go too.
    cli = Cli(tmp_path / "data", stack.settings.model_repository, FACEGATE_STACK__WORKERS="false")
    try:
        lifecycle(cli)
    finally:
        cli("down")


def lifecycle(cli: Cli) -> None:
    names = {part.name for part in INFRASTRUCTURE}
    first = cli.up_json()
    for field in ("kafka_bootstrap", "s3_endpoint", "bucket", "access_key", "triton_http"):
        assert first[field], field
    assert "secret_key" not in first  # only with --show-secrets
    assert first["triton_grpc"] and first["metrics"]["triton"] and first["data_dir"] == str(cli.data_dir)
    assert set(first["pids"]) == names - {"qdrant"}
    assert (cli.data_dir / "logs" / "s3.log").exists()

    assert cli.up_json() == first  # nothing new started: same pids, same ports

    status = cli("status", "--json")
    assert status.returncode == 0
    expected = dict.fromkeys(names, "up") | {worker.name: "down" for worker in WORKERS}
    assert {name: part["status"] for name, part in json.loads(status.stdout).items()} == expected

    os.kill(first["pids"]["bridge"], signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        stat = read_stat(first["pids"]["bridge"])
        if stat is None or stat.state == "Z":
            break
        time.sleep(0.05)
    status = cli("status", "--json")
    assert status.returncode == 1
    parts = json.loads(status.stdout)
    assert parts["bridge"]["status"] == "crashed"
    assert parts["kafka"]["status"] == "up"

    # up restarts just the crashed part, on its old port.
    again = cli.up_json()
    assert again["pids"]["bridge"] != first["pids"]["bridge"]
    assert {k: v for k, v in again["pids"].items() if k != "bridge"} == {
        k: v for k, v in first["pids"].items() if k != "bridge"
    }
    assert again["notify_webhook"] == first["notify_webhook"]

    running = processes_of(cli.data_dir)
    assert set(again["pids"].values()) <= set(running)
    assert any("triton_python_backend_stub" in cmdline for cmdline in running.values()), running
    down = cli("down")
    assert down.returncode == 0, down.stderr
    assert processes_of(cli.data_dir) == {}
    for pid in again["pids"].values():
        stat = read_stat(pid)
        assert stat is None or stat.state == "Z", pid
    assert not (cli.data_dir / "stack.json").exists()
    status = cli("status", "--json")
    assert {p["status"] for p in json.loads(status.stdout).values()} == {"down"}


def test_port_taken_is_one_line_and_starts_nothing(cli: Cli) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        cli.env["FACEGATE_STACK__S3_PORT"] = str(port)
        result = cli("up", "--json")
    line = assert_one_line_error(result, "s3", str(port), "FACEGATE_STACK__S3_PORT")
    print("\n" + line)
    assert result.stdout == ""
    assert processes_of(cli.data_dir) == {}
    assert not (cli.data_dir / "stack.json").exists()


def test_a_failing_part_stops_what_up_started(cli: Cli, tmp_path: Path) -> None:
    # A model that cannot load makes tritonserver exit after the broker has started.
    model = Path(cli.env["FACEGATE_MODEL_REPOSITORY"]) / "broken"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(
        'name: "broken"\nbackend: "python"\nmax_batch_size: 0\n'
        'input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
        'output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
    )
    (model / "1" / "model.py").write_text("raise RuntimeError('weights missing')\n")
    cli.env["FACEGATE_TRITON__MODEL"] = "broken"
    result = cli("up")
    line = assert_one_line_error(result, "triton", "broken", "weights missing")
    print("\n" + line)
    assert processes_of(cli.data_dir) == {}
    assert not (cli.data_dir / "stack.json").exists()


def test_unreachable_external_kafka_is_one_line(cli: Cli) -> None:
    address = f"127.0.0.1:{free_port()}"
    cli.env["FACEGATE_KAFKA__BOOTSTRAP"] = address
    result = cli("up")
    line = assert_one_line_error(result, "kafka", address, "FACEGATE_KAFKA__BOOTSTRAP")
    print("\n" + line)
    assert processes_of(cli.data_dir) == {}


def test_wrong_credentials_on_an_external_store(cli: Cli, stack: RunningStack) -> None:
    # The shared stack's services, used as external ones, with a secret key that is wrong.
    cli.env.update(
        FACEGATE_KAFKA__BOOTSTRAP=stack.kafka_bootstrap,
        FACEGATE_S3__ENDPOINT=stack.s3_endpoint,
        FACEGATE_S3__SECRET_KEY="not-the-secret",
        FACEGATE_TRITON__HTTP_URL=str(stack.triton_http),
        FACEGATE_TRITON__GRPC_URL=str(stack.triton_grpc),
    )
    result = cli("up")
    line = assert_one_line_error(result, "s3", "access key", "FACEGATE_S3__SECRET_KEY")
    print("\n" + line)
    assert processes_of(cli.data_dir) == {}

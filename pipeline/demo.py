"""``make run``'s walk-through on the running embedded stack, with real photos and the real CLI.

A privacy officer grants a subject explicit consent and enrolls one reference photo; a newsroom
uploads photos; the tags come back (the subject GREEN, everyone else RED); the subject withdraws;
their faceprints and key are destroyed and their tags revoked, with a receipt. Each step is the
command a person would type, printed before it runs.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

from .cli.common import bootstrap, connected_settings
from .contract import AssetFaces
from .kafka.io import read_all

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "tests" / "data" / "photos"


def facegate(*args: str) -> None:
    print(f"\n$ facegate {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "pipeline", *args], check=True)


def wait_for_tags(settings, asset_ids: set[str], timeout_s: float = 120.0) -> dict[str, AssetFaces]:
    deadline = time.monotonic() + timeout_s
    while True:
        view = {
            m.key: AssetFaces.from_bytes(m.value)
            for m in read_all(bootstrap(settings), settings.kafka.topic_tags)
            if m.key in asset_ids and m.value
        }
        if set(view) >= asset_ids or time.monotonic() > deadline:
            return view
        time.sleep(0.5)


def show(view: dict[str, AssetFaces]) -> None:
    for asset_id, tags in sorted(view.items()):
        faces = ", ".join(
            f"{f.status.value}{'(' + f.subject_id + ')' if f.subject_id else ''}" for f in tags.faces
        )
        print(f"  {asset_id:<55} {len(tags.faces):>2} face(s): {faces or '-'}")


def main() -> None:
    settings = connected_settings(kafka=True, s3=True)
    subject = f"demo-{uuid.uuid4().hex[:6]}"
    prefix = f"demo-{uuid.uuid4().hex[:6]}"
    photos = PHOTOS / "face_recognition"
    newsroom = [
        photos / "obama.jpg",
        photos / "obama3.jpg",
        photos / "biden.jpg",
        PHOTOS / "faces" / "2008_002506.jpg",
    ]

    print("facegate demo: consent, enrollment, ingest, tags, withdrawal, purge.")
    facegate(
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
        f"s3://legal/quitclaims/{subject}.pdf",
    )
    facegate("enroll", subject, str(photos / "obama2.jpg"), "--wait")
    started = time.monotonic()
    staging = ROOT / ".facegate" / "demo" / prefix
    staging.mkdir(parents=True, exist_ok=True)
    for photo in newsroom:
        (staging / photo.name).write_bytes(photo.read_bytes())
    facegate("ingest", str(staging), "--prefix", f"{prefix}/")
    assets = {f"{settings.s3.bucket}/{prefix}/{p.name}" for p in newsroom}
    view = wait_for_tags(settings, assets)
    print(
        f"\nTags on {settings.kafka.topic_tags} ({time.monotonic() - started:.1f}s after the upload began):"
    )
    show(view)

    # --wait prints the erasure receipt: it is written only once every tag naming them is revoked.
    facegate("consent", "withdraw", subject, "--wait", "--timeout", "60")
    print("Tags now:")
    show(wait_for_tags(settings, assets))
    facegate("audit", "verify")
    print("\nThe stack keeps running: `facegate status`, `facegate tail tags --follow`, `make down`.")


if __name__ == "__main__":
    main()

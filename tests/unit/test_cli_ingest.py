"""facegate ingest: which files are media, their content types and object keys (no servers)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from pipeline.cli.ingest import media_type, object_key, plan, sniff

PHOTOS = Path(__file__).resolve().parents[1] / "data" / "photos" / "face_recognition"


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png"),
        (b"GIF89a\x01\x00\x01\x00\x00\x00\x00\x00", "image/gif"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"II*\x00\x08\x00\x00\x00\x00\x00\x00\x00", "image/tiff"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "image/heic"),
        (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00", "video/mp4"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00", "video/quicktime"),
        (b"\x1aE\xdf\xa3\x9fB\x86\x81\x01B\xf7\x81", "video/x-matroska"),
        (b"RIFF\x24\x00\x00\x00AVI LIST", "video/x-msvideo"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n\n\n\n", None),
        (b"hello, world\n\n\n\n", None),
        (b"", None),
    ],
)
def test_sniff_knows_image_and_video_signatures(head: bytes, expected: str | None) -> None:
    assert sniff(head) == expected


def test_media_type_by_extension_first_then_content() -> None:
    jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 28
    assert media_type(Path("a.png"), jpeg) == "image/png"  # the extension wins when it is media
    assert media_type(Path("clip.mp4"), b"") == "video/mp4"
    assert media_type(Path("no_extension"), jpeg) == "image/jpeg"
    assert media_type(Path("photo.dat"), jpeg) == "image/jpeg"
    assert media_type(Path("notes.txt"), b"plain text here") is None
    assert media_type(Path("notes.txt"), jpeg) == "image/jpeg"  # a JPEG named .txt is still a JPEG


def test_object_key_joins_store_prefix_user_prefix_and_relative_path() -> None:
    assert object_key("a/b.jpg") == "a/b.jpg"
    assert object_key("b.jpg", "wire/2026-11-22/") == "wire/2026-11-22/b.jpg"
    assert object_key("b.jpg", "/wire/", "incoming/") == "incoming/wire/b.jpg"
    assert object_key("b.jpg", "", "incoming/") == "incoming/b.jpg"


def _tree(root: Path) -> None:
    (root / "day1" / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / "day1" / "obama.jpg").write_bytes((PHOTOS / "obama.jpg").read_bytes())
    (root / "day1" / "sub" / "biden").write_bytes((PHOTOS / "biden.jpg").read_bytes())  # no extension
    (root / "day1" / "notes.txt").write_text("caption: a press conference\n")
    (root / ".hidden" / "x.jpg").write_bytes((PHOTOS / "obama2.jpg").read_bytes())
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")


def test_plan_walks_folders_keys_relative_skips_non_media_and_hidden(tmp_path: Path) -> None:
    _tree(tmp_path)
    uploads, skipped = plan([tmp_path], prefix="wire")
    assert [(u.key, u.content_type) for u in uploads] == [
        ("wire/day1/obama.jpg", "image/jpeg"),
        ("wire/day1/sub/biden", "image/jpeg"),
    ]
    assert [u.size for u in uploads] == [
        (PHOTOS / "obama.jpg").stat().st_size,
        (PHOTOS / "biden.jpg").stat().st_size,
    ]
    assert skipped == [tmp_path / "day1" / "notes.txt"]


def test_plan_a_single_file_keeps_its_name(tmp_path: Path) -> None:
    uploads, skipped = plan([PHOTOS / "32bit.png"])
    assert [(u.key, u.content_type) for u in uploads] == [("32bit.png", "image/png")]
    assert skipped == []


def test_plan_refuses_two_files_for_one_key_and_merges_the_same_file(tmp_path: Path) -> None:
    _tree(tmp_path)
    (tmp_path / "obama.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 100)
    with pytest.raises(click.UsageError, match=r"would both be uploaded as obama\.jpg"):
        plan([tmp_path / "obama.jpg", tmp_path / "day1" / "obama.jpg"])
    uploads, _ = plan([tmp_path / "day1", tmp_path / "day1" / "obama.jpg"])
    assert sorted(u.key for u in uploads) == ["obama.jpg", "sub/biden"]

"""The data dir's marker and `reset`, and the broker part's reading of its own failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.errors import StackError
from pipeline.stack import datadir
from pipeline.stack.parts import KafkaPart


def test_a_new_data_dir_is_stamped_and_keeps_its_id(tmp_path: Path) -> None:
    first = datadir.open_marker(tmp_path)
    assert first.layout == datadir.LAYOUT and first.broker_id is None
    again = datadir.open_marker(tmp_path)
    assert again.id == first.id


def test_an_older_data_dir_is_taken_over(tmp_path: Path) -> None:
    (tmp_path / "kafka").mkdir()  # from before the marker: the broker's file is kept, not wiped
    (tmp_path / "kafka" / "kafka.json").write_text("{}")
    marker = datadir.open_marker(tmp_path)
    assert datadir.load(tmp_path) == marker
    assert (tmp_path / "kafka" / "kafka.json").read_text() == "{}"


def test_a_newer_layout_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / datadir.MARKER).write_text(json.dumps({"layout": datadir.LAYOUT + 1, "id": "x"}))
    with pytest.raises(StackError, match=r"newer facegate .* `facegate reset`"):
        datadir.open_marker(tmp_path)


def test_an_unreadable_marker_is_refused(tmp_path: Path) -> None:
    (tmp_path / datadir.MARKER).write_text("{not json")
    with pytest.raises(StackError, match=r"cannot read .*facegate\.json"):
        datadir.open_marker(tmp_path)


def test_reset_deletes_only_what_facegate_created(tmp_path: Path) -> None:
    datadir.open_marker(tmp_path)
    for name in ("kafka", "seaweedfs", "vault", "qdrant", "logs", "worker"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_text("x")
    (tmp_path / "ports.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("the user's own")
    (tmp_path / "photos").mkdir()
    deleted = datadir.reset(tmp_path)
    assert {p.name for p in deleted} == {
        "kafka",
        "seaweedfs",
        "vault",
        "qdrant",
        "logs",
        "worker",
        "ports.json",
        datadir.MARKER,
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "photos", "stack.lock"]
    assert datadir.reset(tmp_path) == []


def test_a_broker_that_cannot_load_its_file_says_so_and_what_to_do() -> None:
    lines = [
        "noida-db 0.2.3 | data dir: /d/kafka",
        "error: kafka: cannot listen on 127.0.0.1:1: failed to parse kafka snapshot: EOF while parsing",
    ]
    line = KafkaPart().failure(lines)
    assert "cannot load its saved records" in line and "EOF while parsing" in line
    assert "facegate reset" in line and "nothing was deleted" in line
    assert "cannot listen" not in line  # noida-db's wording points at the port, not the file

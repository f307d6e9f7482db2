"""``facegate officer add|keygen|list|revoke`` on a data dir of their own (no servers)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import _register, cli
from pipeline.officers import Role, ensure_first_officer, load_key, officers
from pipeline.settings import Settings, get_settings

_register()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    # The commands read get_settings(), cached per process: each test its own data dir.
    get_settings.cache_clear()
    yield {"FACEGATE_DATA_DIR": str(tmp_path / "data")}
    get_settings.cache_clear()


def refused(env: dict[str, str], *args: str) -> str:
    """The one-line error an operator sees (main() prints FacegateError's message)."""
    result = CliRunner().invoke(cli, ["officer", *args], env=env)
    assert result.exit_code != 0, result.output
    return result.output + str(result.exception)


def run(env: dict[str, str], *args: str, input: str | None = None) -> str:
    result = CliRunner().invoke(cli, ["officer", *args], env=env, input=input)
    assert result.exit_code == 0, result.output
    return result.output


def test_add_makes_a_protected_key_and_registers_it(env: dict[str, str], tmp_path: Path) -> None:
    out = run(env, "add", "anna", "--name", "Anna Berg", input="s3cret phrase\ns3cret phrase\n")
    key_file = Path(re.search(r"private key: (\S+)", out).group(1))  # type: ignore[union-attr]
    assert (key_file.stat().st_mode & 0o777) == 0o600 and b"s3cret" not in key_file.read_bytes()
    assert load_key(key_file, b"s3cret phrase").officer_id == "anna"
    listed = json.loads(run(env, "list", "--json"))["officers"]
    assert [(o["officer_id"], o["role"], o["key_here"], o["revoked_at"]) for o in listed] == [
        ("anna", "privacy_officer", True, None)
    ]


def test_keygen_then_add_public_key_keeps_the_private_key_with_the_officer(env: dict[str, str]) -> None:
    out = run(env, "keygen", "bob", "--no-passphrase")
    public = re.search(r"public key \S+: (\S+)", out).group(1)  # type: ignore[union-attr]
    assert "bob" not in run(env, "list")  # not registered yet
    run(env, "add", "bob", "--name", "Bob", "--role", "enrollment_operator", "--public-key", public)
    registry = officers(Settings(data_dir=Path(env["FACEGATE_DATA_DIR"])))
    assert registry.get("bob").role is Role.ENROLLMENT_OPERATOR  # type: ignore[union-attr]


def test_revoke_and_revoke_as_compromised(env: dict[str, str]) -> None:
    run(env, "add", "carl", "--name", "Carl", "--no-passphrase")
    assert "stay valid" in run(env, "revoke", "carl")
    assert "revoked" in run(env, "list")
    assert "every record" in run(env, "revoke", "carl", "--compromised")
    assert "COMPROMISED" in run(env, "list")
    assert "was revoked" in refused(env, "revoke", "carl")


def test_ids_are_never_reused(env: dict[str, str]) -> None:
    run(env, "add", "dora", "--name", "Dora", "--no-passphrase")
    assert "registered already" in refused(env, "add", "dora", "--name", "Dora 2", "--no-passphrase")
    assert "an officer id is" in refused(env, "add", "../x", "--name", "X", "--no-passphrase")


def test_the_embedded_stack_gets_a_first_officer_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    written = ensure_first_officer(settings)
    assert written is not None and load_key(written).officer_id == "dpo"
    assert ensure_first_officer(settings) is None
    configured = Settings(data_dir=tmp_path / "other", privacy={"officer_registry": tmp_path / "prod.json"})
    assert ensure_first_officer(configured) is None  # a production registry is never filled in


def test_a_failed_up_takes_its_first_officer_back(tmp_path: Path) -> None:
    from pipeline.stack.manager import _first_officer

    settings = Settings(data_dir=tmp_path / "data")
    with pytest.raises(RuntimeError), _first_officer(settings) as created:
        assert created is not None and created.exists()
        raise RuntimeError("a part failed to start")
    assert not created.exists() and not officers(settings).officers
    with _first_officer(settings) as kept:  # an up that succeeds keeps it
        pass
    assert kept is not None and kept.exists() and officers(settings).get("dpo") is not None

"""docker-compose.yml checked without a Docker engine: structure, wiring between services,
and that every FACEGATE_ variable it sets is a real Settings field."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from compose_spec import PyCompose
from pydantic import BaseModel, SecretStr

from pipeline.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "infra" / "compose.env.example"
PROMETHEUS_CONFIG = ROOT / "infra" / "prometheus" / "prometheus.yml"
GRAFANA_DATASOURCES = ROOT / "infra" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
QDRANT_HTTP_PORT = 6333  # the qdrant image's default; compose does not change it

_INTERPOLATION = re.compile(r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>\w+)")


def _env_example() -> dict[str, str]:
    env = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip()
    return env


def _filled_env() -> dict[str, str]:
    """The example .env with every secret an operator must set filled in."""
    return {name: value or f"test-{name.lower()}" for name, value in _env_example().items()}


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation (`$$`, `${VAR}`, `${VAR:-default}`, `${VAR:?error}`)."""
    if isinstance(value, dict):
        return {key: _interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        current = env.get(name, "")
        op, arg = match.group("op"), match.group("arg")
        if op in (":-", "-"):
            return current if current or (op == "-" and name in env) else arg
        if op in (":?", "?") and not current:
            raise AssertionError(f"compose needs {name}: {arg}")
        return current

    return _INTERPOLATION.sub(substitute, value)


RAW = yaml.safe_load(COMPOSE_FILE.read_text())
COMPOSE = _interpolate(RAW, _filled_env())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


def _environment(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _command(service: str) -> list[str]:
    command = SERVICES[service].get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _flag(service: str, name: str) -> str:
    """The value of ``--name=value`` or ``--name value`` in a service's command."""
    command = _command(service)
    for i, part in enumerate(command):
        if part.startswith(f"--{name}="):
            return part.split("=", 1)[1]
        if part == f"--{name}" and i + 1 < len(command):
            return command[i + 1]
    raise AssertionError(f"{service}: no --{name} in its command")


def _port(address: str) -> int:
    """The port of ``host:port``, ``:port`` or ``scheme://host:port``."""
    return int(address.rsplit(":", 1)[1].rstrip("/"))


def _host(address: str) -> str:
    if "://" in address:
        return urlsplit(address).hostname or ""
    return address.rsplit(":", 1)[0]


def _names_on_network() -> dict[str, set[str]]:
    """Each name the compose network resolves -> the services answering to it."""
    names: dict[str, set[str]] = {}
    for service, spec in SERVICES.items():
        aliases = set()
        for network in (spec.get("networks") or {}).values():
            aliases.update((network or {}).get("aliases", []))
        for name in {service, spec.get("hostname", service), *aliases}:
            names.setdefault(name, set()).add(service)
    return names


def _resolves(host: str) -> set[str]:
    services = _names_on_network().get(host, set())
    assert services, f"{host!r} is not a service, hostname or alias on the compose network"
    return services


def test_compose_file_follows_the_compose_specification() -> None:
    # The Rust compose_spec parser refuses unknown keys, bad enum values and malformed durations.
    # YAML merge keys (<<) are resolved first, as Docker Compose does.
    parsed = PyCompose.from_json(json.dumps(yaml.safe_load(COMPOSE_FILE.read_text())))
    assert set(parsed.service_names()) == set(SERVICES)


def test_the_production_services_exist() -> None:
    assert {
        "kafka",
        "kafka-init",
        "minio",
        "minio-init",
        "qdrant",
        "postgres",
        "triton",
        "triton-cpu",
        "worker",
        "prometheus",
        "grafana",
    } <= set(SERVICES)
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:")
    assert SERVICES["minio"]["image"].startswith("minio/minio:")
    assert SERVICES["minio-init"]["image"].startswith("minio/mc:")
    assert SERVICES["qdrant"]["image"].startswith("qdrant/qdrant:")
    assert SERVICES["postgres"]["image"].startswith("postgres:")
    assert SERVICES["worker"]["command"] == ["facegate", "worker"]


def test_depends_on_and_volumes_are_declared() -> None:
    for service, spec in SERVICES.items():
        for dependency in spec.get("depends_on", {}):
            assert dependency in SERVICES, f"{service} depends on unknown {dependency}"
        for volume in spec.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith(("./", "/")):
                assert source in COMPOSE["volumes"], f"{service}: volume {source} is not declared"


def test_every_variable_is_in_the_env_example_and_secrets_are_required() -> None:
    text = COMPOSE_FILE.read_text()
    example = _env_example()
    used = {m.group("name") or m.group("bare") for m in _INTERPOLATION.finditer(text) if m.group(0) != "$$"}
    assert used - {"COMPOSE_PROFILES"} <= set(example), used - set(example)
    required = {m.group("name") for m in _INTERPOLATION.finditer(text) if m.group("op") in (":?", "?")}
    secrets = {name for name, value in example.items() if not value}
    # Every value the operator must choose is refused when missing, and only those.
    assert secrets == required
    with pytest.raises(AssertionError, match="compose needs"):
        _interpolate(RAW, {name: value for name, value in example.items() if value})


def _field(settings: BaseModel, path: list[str]) -> Any:
    value: Any = settings
    for part in path:
        fields = type(value).model_fields
        assert part in fields, f"{'.'.join(path)}: {type(value).__name__} has no field {part!r}"
        value = getattr(value, part)
    return value


def _facegate_variables() -> dict[str, str]:
    found = {}
    for service in SERVICES:
        found.update({k: v for k, v in _environment(service).items() if k.startswith("FACEGATE_")})
    for dockerfile in (ROOT / "infra").glob("*Dockerfile"):
        for name, value in re.findall(r"\b(FACEGATE_\w+)=(\S+)", dockerfile.read_text()):
            found.setdefault(name, value)
    return found


def test_every_facegate_variable_is_a_settings_field(monkeypatch: pytest.MonkeyPatch) -> None:
    variables = _facegate_variables()
    assert "FACEGATE_KAFKA__BOOTSTRAP" in variables
    for name in [n for n in os.environ if n.startswith("FACEGATE_")]:
        monkeypatch.delenv(name)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    for name, value in variables.items():
        path = name.removeprefix("FACEGATE_").lower().split("__")
        actual = _field(settings, path)
        if isinstance(actual, SecretStr):
            actual = actual.get_secret_value()
        elif isinstance(actual, bool):
            actual = str(actual).lower()
        assert str(actual) == value, f"{name}={value!r} read as {actual!r}"


def _properties(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def _listeners(value: str) -> dict[str, str]:
    return dict(item.split("://") for item in value.split(","))


KAFKA_CONFIG = ROOT / "infra" / "kafka"
SERVER = _properties(KAFKA_CONFIG / "server.properties")


def test_kafka_listener_matches_every_client() -> None:
    # Mounted where start.sh reads it.
    assert _mounts("kafka")["/etc/facegate/kafka"] == KAFKA_CONFIG
    assert SERVICES["kafka"]["entrypoint"][-1] == "/etc/facegate/kafka/start.sh"
    listeners = _listeners(SERVER["listeners"])
    protocols = dict(item.split(":") for item in SERVER["listener.security.protocol.map"].split(","))
    controller = SERVER["controller.listener.names"]
    # Every listener a client can reach is SASL_SSL; the one without SASL is the controller's,
    # on the container's loopback.
    for name, address in listeners.items():
        if protocols[name] != "SASL_SSL":
            assert name == controller and _host(address) == "127.0.0.1", name
    advertised = _listeners(SERVER["advertised.listeners"])
    assert set(advertised) == {"SASL_SSL"} and SERVER["inter.broker.listener.name"] == "SASL_SSL"
    client = advertised["SASL_SSL"]
    assert "kafka" in _resolves(_host(client))
    assert _port(listeners["SASL_SSL"]) == _port(client)
    voter = SERVER["controller.quorum.voters"].split("@", 1)[1]
    assert voter == listeners[controller]
    assert _environment("worker")["FACEGATE_KAFKA__BOOTSTRAP"] == client
    assert _environment("minio")["MINIO_NOTIFY_KAFKA_BROKERS_FACEGATE"] == client
    assert f"server={client}\n" in (KAFKA_CONFIG / "setup.sh").read_text()
    assert f"--bootstrap-server {client}" in " ".join(SERVICES["kafka"]["healthcheck"]["test"])


def _minio_init_script() -> str:
    return "\n".join(_command("minio-init"))


def test_minio_notifies_the_topic_the_worker_reads() -> None:
    minio, worker = _environment("minio"), _environment("worker")
    targets = [
        k.removeprefix("MINIO_NOTIFY_KAFKA_ENABLE_")
        for k in minio
        if k.startswith("MINIO_NOTIFY_KAFKA_ENABLE_")
    ]
    assert targets == ["FACEGATE"]
    assert minio["MINIO_NOTIFY_KAFKA_ENABLE_FACEGATE"] == "on"
    topic = minio["MINIO_NOTIFY_KAFKA_TOPIC_FACEGATE"]
    assert worker["FACEGATE_KAFKA__TOPIC_OBJECT_EVENTS"] == topic
    assert _environment("kafka-init")["MINIO_TOPIC"] == topic
    assert topic != Settings().kafka.topic_assets, "raw S3 events are normalised into facegate.assets"

    script = _minio_init_script()
    bucket = worker["FACEGATE_S3__BUCKET"]
    alias = re.search(r"mc alias set (\S+) (\S+) ", script)
    assert alias, script
    name, url = alias.groups()
    assert "minio" in _resolves(_host(url))
    assert _port(url) == _port(_flag("minio", "address"))
    assert f"mc mb --ignore-existing {name}/{bucket}\n" in script
    event = re.search(rf"mc event add (?:--ignore-existing )?{name}/{bucket} (\S+) --event (\S+)", script)
    assert event, script
    assert event.group(1) == "arn:minio:sqs::FACEGATE:kafka"
    assert "put" in event.group(2).split(",")


def test_minio_keeps_events_on_a_volume_while_kafka_is_away() -> None:
    """Uploads during a Kafka outage are queued on disk and delivered later, restarts included."""
    queue = _environment("minio")["MINIO_NOTIFY_KAFKA_QUEUE_DIR_FACEGATE"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["minio"]["volumes"]}
    assert mounts.get(queue) in COMPOSE["volumes"], f"{queue} is not on a named volume"
    assert int(_environment("minio")["MINIO_NOTIFY_KAFKA_QUEUE_LIMIT_FACEGATE"]) >= 10_000


def test_worker_reaches_minio_with_its_own_least_privilege_user() -> None:
    worker, init = _environment("worker"), _environment("minio-init")
    endpoint = worker["FACEGATE_S3__ENDPOINT"]
    assert "minio" in _resolves(_host(endpoint))
    assert _port(endpoint) == _port(_flag("minio", "address"))
    assert worker["FACEGATE_S3__ACCESS_KEY"] == init["WORKER_ACCESS_KEY"]
    assert worker["FACEGATE_S3__SECRET_KEY"] == init["WORKER_SECRET_KEY"]
    assert worker["FACEGATE_S3__ACCESS_KEY"] != _environment("minio")["MINIO_ROOT_USER"]
    policy_mount = next(v for v in SERVICES["minio-init"]["volumes"] if "policy" in v)
    source, target = policy_mount.split(":")[:2]
    assert target in _minio_init_script()
    policy = json.loads((ROOT / source).read_text())
    assets = worker["FACEGATE_S3__BUCKET"]
    enrollments = worker.get("FACEGATE_S3__ENROLLMENT_BUCKET", Settings().s3.enrollment_bucket)
    assert f"mc mb --ignore-existing facegate/{enrollments}" in _minio_init_script()

    def allowed(action: str, resource: str) -> bool:
        return any(
            statement["Effect"] == "Allow"
            and action in statement["Action"]
            and any(fnmatch.fnmatchcase(resource, pattern) for pattern in statement["Resource"])
            for statement in policy["Statement"]
        )

    # What the worker does: read assets; read, re-seal, list and delete reference photos. Nothing
    # else: it can never write or delete a DAM original.
    arn = "arn:aws:s3:::"
    assert allowed("s3:GetObject", f"{arn}{assets}/photos/a.jpg")
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
        assert allowed(action, f"{arn}{enrollments}/S-1/front.jpg"), action
    assert allowed("s3:ListBucket", f"{arn}{enrollments}")
    for action in ("s3:PutObject", "s3:DeleteObject"):
        assert not allowed(action, f"{arn}{assets}/photos/a.jpg"), action
    resources = {r for statement in policy["Statement"] for r in statement["Resource"]}
    assert {r.removeprefix(arn).split("/")[0] for r in resources} == {assets, enrollments}


def test_worker_reaches_triton_in_both_profiles() -> None:
    worker = _environment("worker")
    grpc, http = worker["FACEGATE_TRITON__GRPC_URL"], worker["FACEGATE_TRITON__HTTP_URL"]
    answering = _resolves(_host(grpc))
    assert answering == {"triton", "triton-cpu"}
    assert _resolves(_host(http)) == answering
    for service in answering:
        assert _port(grpc) == int(_flag(service, "grpc-port"))
        assert _port(http) == int(_flag(service, "http-port"))
        assert _flag(service, "load-model") == Settings().triton.model
        assert _flag(service, "model-repository") == "/models"
    assert SERVICES["triton"]["profiles"] == ["gpu"]
    assert SERVICES["triton-cpu"]["profiles"] == ["cpu"]
    (device,) = SERVICES["triton"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "deploy" not in SERVICES["triton-cpu"]
    assert SERVICES["triton"]["build"].get("args", {}).get("DEVICE", "gpu") == "gpu"
    assert SERVICES["triton-cpu"]["build"]["args"]["DEVICE"] == "cpu"
    assert re.search(
        r"^ARG DEVICE=gpu$", (ROOT / SERVICES["triton"]["build"]["dockerfile"]).read_text(), re.M
    )
    for service in answering:
        assert SERVICES["worker"]["depends_on"][service]["required"] is False


def test_worker_reaches_qdrant_with_the_shared_api_key() -> None:
    worker = _environment("worker")
    url = worker["FACEGATE_QDRANT__URL"]
    assert _resolves(_host(url)) == {"qdrant"}
    assert _port(url) == QDRANT_HTTP_PORT
    assert worker["FACEGATE_QDRANT__API_KEY"] == _environment("qdrant")["QDRANT__SERVICE__API_KEY"]


def test_every_worker_shares_the_postgresql_vault() -> None:
    worker = _environment("worker")
    dsn = dict(part.split("=", 1) for part in worker["FACEGATE_VAULT__DSN"].split())
    assert _resolves(dsn["host"]) == {"postgres"}
    assert dsn["port"] == "5432"
    postgres = _environment("postgres")
    assert (dsn["dbname"], dsn["user"]) == (postgres["POSTGRES_DB"], postgres["POSTGRES_USER"])
    assert dsn["password"] == postgres["POSTGRES_PASSWORD"]
    assert SERVICES["worker"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    # the shared vault needs the master key from the settings, the same on every worker
    assert worker["FACEGATE_PRIVACY__MASTER_KEY"]


def test_prometheus_scrapes_the_workers_and_triton_where_they_listen() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    worker = _environment("worker")
    assert worker["FACEGATE_METRICS__HOST"] == "0.0.0.0"

    (dns,) = jobs["facegate"]["dns_sd_configs"]
    assert [s for name in dns["names"] for s in _resolves(name)] == ["worker"]
    assert dns["port"] == int(worker["FACEGATE_METRICS__PORT"])

    (triton_target,) = [t for c in jobs["triton"]["static_configs"] for t in c["targets"]]
    for service in _resolves(_host(triton_target)):
        assert _port(triton_target) == int(_flag(service, "metrics-port"))

    (minio_target,) = [t for c in jobs["minio"]["static_configs"] for t in c["targets"]]
    assert "minio" in _resolves(_host(minio_target))
    assert _port(minio_target) == _port(_flag("minio", "address"))
    assert _environment("minio")["MINIO_PROMETHEUS_AUTH_TYPE"] == "public"

    (self_target,) = [t for c in jobs["prometheus"]["static_configs"] for t in c["targets"]]
    assert _port(self_target) == _port(_flag("prometheus", "web.listen-address"))


def _mounts(service: str) -> dict[str, Path]:
    """Container path -> repository path of the service's bind mounts."""
    mounts = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            mounts[target] = ROOT / source
    return mounts


def test_prometheus_container_sees_its_config_and_rules() -> None:
    mounts = _mounts("prometheus")
    config_path = _flag("prometheus", "config.file")
    assert mounts[config_path] == PROMETHEUS_CONFIG
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    for pattern in config["rule_files"]:
        container_dir = str(Path(config_path).parent / Path(pattern).parent)
        assert container_dir in mounts, f"rule files {pattern} are not mounted"
        assert list(mounts[container_dir].glob(Path(pattern).name))


def test_grafana_is_provisioned_with_the_prometheus_service() -> None:
    mounts = _mounts("grafana")
    provisioning = mounts["/etc/grafana/provisioning"]
    assert provisioning == GRAFANA_DATASOURCES.parent.parent
    (datasource,) = yaml.safe_load(GRAFANA_DATASOURCES.read_text())["datasources"]
    assert _resolves(_host(datasource["url"])) == {"prometheus"}
    assert _port(datasource["url"]) == _port(_flag("prometheus", "web.listen-address"))
    providers = yaml.safe_load((provisioning / "dashboards" / "facegate.yml").read_text())["providers"]
    dashboards = mounts[providers[0]["options"]["path"]]
    assert list(dashboards.glob("*.json"))
    home = _environment("grafana")["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (dashboards / Path(home).name).is_file()


def test_mounted_and_built_files_exist() -> None:
    for service, spec in SERVICES.items():
        for target, source in _mounts(service).items():
            assert source.exists(), f"{service} mounts missing {source} at {target}"
        build = spec.get("build")
        if build:
            context = ROOT / build["context"]
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), f"{service}: no {dockerfile}"
            for line in dockerfile.read_text().splitlines():
                if line.startswith("COPY ") and "--from" not in line:
                    for source in line.split()[1:-1]:
                        assert (context / source).exists(), f"{dockerfile.name} copies missing {source}"


# --- Kafka: who may do what (design.md "Roles", invariant 8) ------------------------------------

ACL_FILE = KAFKA_CONFIG / "acls.txt"


def _acls() -> list[tuple[str, str, str, str, set[str]]]:
    """(principal, resource, pattern, name, operations) for each line of infra/kafka/acls.txt."""
    rows = []
    for line in ACL_FILE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            principal, resource, pattern, name, operations = line.split()
            rows.append((principal, resource, pattern, name, set(operations.split(","))))
    return rows


def _who(topic: str, operation: str) -> set[str]:
    """The principals the ACLs allow ``operation`` on ``topic``."""
    allowed = set()
    for principal, resource, pattern, name, operations in _acls():
        matches = name == topic if pattern == "literal" else topic.startswith(name)
        if resource == "topic" and matches and operation in operations:
            allowed.add(principal)
    return allowed


def test_kafka_refuses_whoever_has_no_acl() -> None:
    assert SERVER["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert SERVER["allow.everyone.if.no.acl.found"] == "false"
    assert SERVER["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    # The admin (kafka-init) and the broker itself on its loopback controller listener; nobody else.
    assert set(SERVER["super.users"].split(";")) == {"User:admin", "User:ANONYMOUS"}
    assert SERVER["auto.create.topics.enable"] == "false"
    # The TLS files are where make-certs.sh writes them, inside the mounted config dir.
    certs = (KAFKA_CONFIG / "make-certs.sh").read_text()
    for key in ("ssl.keystore.location", "ssl.truststore.location"):
        relative = SERVER[key].removeprefix("/etc/facegate/kafka/")
        assert SERVER[key].startswith("/etc/facegate/kafka/tls/") and relative.split("/", 1)[1] in certs


def test_each_role_writes_only_its_own_topics() -> None:
    k = Settings().kafka
    internal = {k.topic_subject_events, k.topic_asset_events, k.topic_gallery, k.topic_frames}
    consent_plane = {k.topic_consent, k.topic_enrollments, k.topic_erasures}
    outputs = {k.topic_tags, k.topic_purges, k.topic_audit, k.topic_dlq, k.topic_assets}
    every = {getattr(k, f) for f in type(k).model_fields if f.startswith("topic_")}
    assert internal | consent_plane | outputs | {k.topic_object_events} == every
    for topic in internal:
        assert _who(topic, "Write") == _who(topic, "Read") == {"worker"}, topic
    for topic in consent_plane:
        assert _who(topic, "Write") == {"officer"}, topic
        assert "worker" in _who(topic, "Read")
    for topic in outputs:
        assert _who(topic, "Write") == {"worker"}, topic
    assert _who(k.topic_object_events, "Write") == {"minio"}
    # DAM consumers read the tags and the receipts, the auditor the log and the receipts: no more.
    assert {t for t in every if "dam" in _who(t, "Read")} == {k.topic_tags, k.topic_purges}
    assert {t for t in every if "auditor" in _who(t, "Read")} == {k.topic_audit, k.topic_purges}
    assert {p for p, *_ in _acls()} == {"worker", "officer", "auditor", "dam", "minio"}
    for principal, resource, _pattern, name, operations in _acls():
        assert "All" not in operations and "*" not in name, (principal, name)
        assert resource in ("topic", "group"), "no cluster-wide rights for any role"
    # faust's changelogs (named after app_id) are the workers' alone.
    assert _who(f"{k.app_id}-subjects-changelog", "Write") == {"worker"}


def test_every_client_logs_in_as_its_role() -> None:
    init, worker, minio = _environment("kafka-init"), _environment("worker"), _environment("minio")
    setup = (KAFKA_CONFIG / "setup.sh").read_text()
    roles = re.search(r"for role in ([a-z ]+); do", setup)
    assert roles and set(roles.group(1).split()) == {p for p, *_ in _acls()}
    for role in roles.group(1).split():
        assert init[f"KAFKA_{role.upper()}_PASSWORD"].startswith("test-"), role  # required, from .env
    assert worker["FACEGATE_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
    assert worker["FACEGATE_KAFKA__SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert worker["FACEGATE_KAFKA__SASL_USERNAME"] == "worker"
    assert worker["FACEGATE_KAFKA__SASL_PASSWORD"] == init["KAFKA_WORKER_PASSWORD"]
    ca = Path(worker["FACEGATE_KAFKA__SSL_CA_FILE"])
    assert _mounts("worker")[str(ca.parent)] == KAFKA_CONFIG / "tls" / "ca"
    assert ca.name == Path(SERVER["ssl.truststore.location"]).name
    assert (minio["MINIO_NOTIFY_KAFKA_SASL_FACEGATE"], minio["MINIO_NOTIFY_KAFKA_TLS_FACEGATE"]) == (
        "on",
        "on",
    )
    assert minio["MINIO_NOTIFY_KAFKA_TLS_SKIP_VERIFY_FACEGATE"] == "off"
    assert minio["MINIO_NOTIFY_KAFKA_SASL_MECHANISM_FACEGATE"] == "sha512"
    assert minio["MINIO_NOTIFY_KAFKA_SASL_USERNAME_FACEGATE"] == "minio"
    assert minio["MINIO_NOTIFY_KAFKA_SASL_PASSWORD_FACEGATE"] == init["KAFKA_MINIO_PASSWORD"]
    assert _mounts("minio")["/root/.minio/certs/CAs"] == KAFKA_CONFIG / "tls" / "ca"
    # Only the broker mounts its private key.
    for service in SERVICES:
        for target, source in _mounts(service).items():
            if source == KAFKA_CONFIG or KAFKA_CONFIG / "tls" / "broker" in (source, *source.parents):
                assert service in ("kafka", "kafka-init"), f"{service} mounts the broker key at {target}"


def test_workers_trust_a_read_only_officer_registry_mounted_as_a_directory() -> None:
    worker = _environment("worker")
    registry = Path(worker["FACEGATE_PRIVACY__OFFICER_REGISTRY"])
    mount = next(v for v in SERVICES["worker"]["volumes"] if v.split(":")[1] == str(registry.parent))
    assert mount.endswith(":ro")
    source = _mounts("worker")[str(registry.parent)]
    assert json.loads((source / registry.name).read_text())["format"] == "facegate-officers/1"


def test_make_certs_gives_a_broker_certificate_for_kafka_signed_by_the_ca(tmp_path: Path) -> None:
    import subprocess

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    subprocess.run([str(KAFKA_CONFIG / "make-certs.sh"), str(tmp_path)], check=True, capture_output=True)
    assert sorted(p.name for p in (tmp_path / "ca").iterdir()) == ["ca.crt"]  # no key, no serial
    ca = x509.load_pem_x509_certificate((tmp_path / "ca" / "ca.crt").read_bytes())
    pem = (tmp_path / "broker" / "kafka.pem").read_bytes()
    assert (tmp_path / "broker" / "kafka.pem").stat().st_mode & 0o007 == 0
    key = load_pem_private_key(pem, password=None)  # Kafka's PEM keystore: unencrypted PKCS#8 first
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    broker, chain_ca = x509.load_pem_x509_certificates(pem)
    assert chain_ca == ca and broker.public_key() == key.public_key()
    names = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "kafka" in names.get_values_for_type(x509.DNSName)
    ca_key = ca.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    ca_key.verify(broker.signature, broker.tbs_certificate_bytes, ec.ECDSA(broker.signature_hash_algorithm))

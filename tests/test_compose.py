"""docker-compose.yml agrees with the code (no Docker engine runs here, so the file is
read, not run): every WHISTLE_ variable is a real setting and the production settings it
makes pass their own checks; ports, healthchecks, depends_on, volumes and the search
attributes match what the processes bind, serve and need."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from api.main import route_table
from whistle import search_attributes
from whistle.settings import PROJECT_ROOT, Settings

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DOCKERFILE = (PROJECT_ROOT / "Dockerfile").read_text(encoding="utf-8")
SETTINGS = {f"WHISTLE_{name.upper()}" for name in Settings.model_fields}
# ${VAR}, ${VAR:-default}, ${VAR:?message}
SUBST = re.compile(r"\$\{([A-Z0-9_]+)(?::?([-?])([^}]*))?\}")
# Variables the host's shell (or .env) gives compose itself, not a container's settings.
HOST_ONLY = {"POSTGRES_PASSWORD", "WHISTLE_DB_PASSWORD", "TEMPORAL_DB_PASSWORD",
             "TEMPORAL_RETENTION", "WHISTLE_IMAGE_TAG", "WHISTLE_API_PORT"}
SECRET_SETTINGS = {"WHISTLE_SECRET_KEY", "WHISTLE_METRICS_TOKEN", "WHISTLE_SMTP_PASSWORD"}
ONE_SHOT = {"temporal-admin-tools", "whistle-init"}


def ours() -> dict[str, dict[str, Any]]:
    """The services built from the Dockerfile (the API, the worker, `whistle init`)."""
    return {name: s for name, s in SERVICES.items() if "build" in s}


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def resolved(value: str) -> str:
    """A value as compose would make it, with a stand-in for each required variable."""
    def one(m: re.Match[str]) -> str:
        name, op, arg = m.groups()
        if op == "-":
            return arg
        return {"WHISTLE_SECRET_KEY": "s" * 48}.get(name, f"{name.lower()}-value")
    return SUBST.sub(one, value)


def dockerfile_cmd() -> list[str]:
    line = [ln for ln in DOCKERFILE.splitlines() if ln.startswith("CMD ")][-1]
    return json.loads(line.removeprefix("CMD "))


def command_of(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command", dockerfile_cmd() if "build" in service else [])
    return cmd.split() if isinstance(cmd, str) else list(cmd)


def published(service: dict[str, Any]) -> list[int]:
    """The container side of each published port ("127.0.0.1:8000:8000" → 8000)."""
    return [int(resolved(str(p)).rsplit(":", 1)[-1]) for p in service.get("ports", [])]


def test_the_services_are_the_production_stack():
    assert set(SERVICES) == {"postgresql", "temporal", "temporal-admin-tools", "temporal-ui",
                             "whistle-init", "worker", "api"}
    assert SERVICES["temporal"]["image"].startswith("temporalio/auto-setup:")
    assert SERVICES["temporal-ui"]["image"].startswith("temporalio/ui:")
    assert SERVICES["temporal-admin-tools"]["image"].startswith("temporalio/admin-tools:")
    assert SERVICES["postgresql"]["image"].startswith("postgres:")
    assert set(ours()) == {"whistle-init", "worker", "api"}
    assert command_of(SERVICES["worker"]) == ["python", "worker.py"]
    assert command_of(SERVICES["whistle-init"]) == ["whistle", "init"]
    assert command_of(SERVICES["api"])[:2] == ["uvicorn", "api.main:app"]


@pytest.mark.parametrize("name", ["whistle-init", "worker", "api"])
def test_every_whistle_variable_is_a_setting_and_production_accepts_them(name: str):
    env = environment(SERVICES[name])
    unknown = sorted(k for k in env if k.startswith("WHISTLE_") and k not in SETTINGS)
    assert unknown == [], f"{name}: not settings (whistle/settings.py): {unknown}"
    values = {k.removeprefix("WHISTLE_").lower(): resolved(v) for k, v in env.items()
              if k.startswith("WHISTLE_")}
    settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]  # runs the checks
    assert settings.env == "production" and settings.log_json
    url = urlsplit(settings.database_url)
    assert url.scheme == "postgresql+psycopg" and url.hostname == "postgresql"
    assert url.port == 5432 and url.path == "/whistle"
    host, port = settings.temporal_address.split(":")
    assert host == "temporal" and int(port) == 7233
    for secret in SECRET_SETTINGS & set(env):  # secrets come from the environment only
        assert SUBST.fullmatch(env[secret]), f"{secret} is written into the compose file"
    assert SUBST.fullmatch(env["WHISTLE_SECRET_KEY"]).group(2) == "?"  # type: ignore[union-attr]


def test_every_variable_compose_reads_is_a_setting_or_known_to_the_host():
    text = (PROJECT_ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    names = {m.group(1) for m in SUBST.finditer(text)}
    stray = sorted(n for n in names if n not in SETTINGS and n not in HOST_ONLY)
    assert stray == [], f"variables neither settings nor host-only: {stray}"


def test_the_database_roles_and_databases_match_the_urls():
    init = COMPOSE["configs"]["postgresql-init"]["content"]
    assert "CREATE DATABASE whistle OWNER whistle" in init
    temporal = environment(SERVICES["temporal"])
    for db in (temporal["DBNAME"], temporal["VISIBILITY_DBNAME"]):
        assert f"CREATE DATABASE {db} OWNER {temporal['POSTGRES_USER']}" in init
    assert temporal["POSTGRES_SEEDS"] == "postgresql" and temporal["DB_PORT"] == "5432"
    pg_env = environment(SERVICES["postgresql"])
    for var in re.findall(r"\\getenv \w+ (\w+)", init):
        assert var in pg_env, f"the init script reads {var}, which postgresql is not given"


def test_published_ports_are_what_the_processes_bind():
    api_cmd = command_of(SERVICES["api"])
    assert published(SERVICES["api"]) == [int(api_cmd[api_cmd.index("--port") + 1])]
    assert api_cmd[api_cmd.index("--host") + 1] == "0.0.0.0"
    assert published(SERVICES["temporal"]) == [7233]
    ui = environment(SERVICES["temporal-ui"])
    assert published(SERVICES["temporal-ui"]) == [int(ui["TEMPORAL_UI_PORT"])]
    worker = environment(SERVICES["worker"])
    assert [int(p) for p in SERVICES["worker"]["expose"]] == \
        [int(worker["WHISTLE_WORKER_METRICS_PORT"])]
    assert worker["WHISTLE_WORKER_METRICS_HOST"] == "0.0.0.0"
    for name, service in SERVICES.items():  # published only on the host's loopback
        for p in service.get("ports", []):
            assert str(p).startswith("127.0.0.1:"), f"{name} publishes {p} on every interface"


def test_long_running_services_have_healthchecks_that_hit_real_endpoints():
    for name, service in SERVICES.items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", name
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    api_check = " ".join(SERVICES["api"]["healthcheck"]["test"])
    url = urlsplit(re.search(r"http://[^'\" ]+", api_check).group(0))  # type: ignore[union-attr]
    api_cmd = command_of(SERVICES["api"])
    assert url.port == int(api_cmd[api_cmd.index("--port") + 1])
    assert ("GET", url.path) in route_table(), f"{url.path} is not a route of the API"
    worker_check = " ".join(SERVICES["worker"]["healthcheck"]["test"])
    port = environment(SERVICES["worker"])["WHISTLE_WORKER_METRICS_PORT"]
    assert f"127.0.0.1:{port}/metrics" in worker_check


def test_depends_on_names_real_services_with_conditions_they_can_meet():
    for name, service in SERVICES.items():
        for target, how in service.get("depends_on", {}).items():
            assert target in SERVICES, f"{name} depends on unknown {target}"
            condition = how["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[target], f"{name}: {target} has no health"
            elif condition == "service_completed_successfully":
                assert target in ONE_SHOT, f"{name}: {target} never completes"
            else:
                pytest.fail(f"{name} → {target}: condition {condition}")
    for name in ("worker", "api"):
        needs = SERVICES[name]["depends_on"]
        assert needs["whistle-init"]["condition"] == "service_completed_successfully"
        assert needs["temporal-admin-tools"]["condition"] == "service_completed_successfully"


def test_named_volumes_are_declared_and_used():
    declared = set(COMPOSE.get("volumes") or {})
    used = set()
    for service in SERVICES.values():
        for v in service.get("volumes", []):
            source = (v["source"] if isinstance(v, dict) else str(v).split(":", 1)[0])
            if not source.startswith((".", "/")):
                used.add(source)
    assert used == declared
    pgdata = [v for v in SERVICES["postgresql"]["volumes"]]
    assert any(str(v).endswith(":/var/lib/postgresql/data") for v in pgdata)


def test_the_search_attributes_registered_are_the_ones_cases_use():
    script = "\n".join(SERVICES["temporal-admin-tools"]["command"])
    registered = set(re.findall(r"(Whistle\w+)=(\w+)", script))
    expected = {(k.name, search_attributes._CLI_TYPE[k.indexed_value_type.name])
                for k in search_attributes.ALL}
    assert registered == expected


def test_the_image_runs_as_a_user_and_exposes_the_bound_ports():
    assert re.search(r"^USER \d+:\d+$", DOCKERFILE, re.M)
    exposed = {int(p) for line in DOCKERFILE.splitlines() if line.startswith("EXPOSE ")
               for p in line.split()[1:]}
    assert exposed == {*published(SERVICES["api"]),
                       int(environment(SERVICES["worker"])["WHISTLE_WORKER_METRICS_PORT"])}


def test_the_compose_header_documents_the_secrets_to_set():
    header = Path(PROJECT_ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    for name in ("POSTGRES_PASSWORD", "WHISTLE_DB_PASSWORD", "TEMPORAL_DB_PASSWORD",
                 "WHISTLE_SECRET_KEY", "WHISTLE_METRICS_TOKEN"):
        assert f"#   {name}=" in header, f"the header of docker-compose.yml omits {name}"

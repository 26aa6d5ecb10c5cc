"""docker-compose.yaml can't run here (no Docker engine), so it is checked by review and by this
test: it parses, every Airflow 3 component is present, and services agree on config."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def test_compose_has_every_airflow3_component():
    services = compose()["services"]
    commands = {name: svc.get("command") for name, svc in services.items()}
    for component in ("api-server", "scheduler", "dag-processor", "triggerer", "celery worker"):
        assert component in commands.values(), f"no service runs `airflow {component}`"
    assert "postgres" in services and "airflow-init" in services and "redis" in services


def test_services_share_environment_and_wait_for_init():
    services = compose()["services"]
    airflow = [n for n, s in services.items()
               if s.get("command") in ("api-server", "scheduler", "dag-processor", "triggerer", "celery worker")]
    assert len(airflow) == 5
    for name in airflow:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("fab_auth_manager.FabAuthManager")
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://") and "@redis:6379" in env["AIRFLOW__CELERY__BROKER_URL"]
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"].startswith("${")  # one secret shared by every component
        warehouse = env["AIRFLOW_CONN_MOOMARKETS_WAREHOUSE"]  # the warehouse is an Airflow Connection
        assert warehouse.startswith("postgresql://")
        assert "postgres:5432/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    init = "\n".join(services["airflow-init"]["command"])
    for step in ("airflow db migrate", "airflow users create", "--role Admin", "moomarkets db upgrade",
                 "moomarkets import", "moomarkets pools sync"):
        assert step in init


def test_no_secret_literals_in_compose():
    text = (ROOT / "docker-compose.yaml").read_text()
    # every password/secret/key value is an ${ENV} reference, never a literal
    for key, value in re.findall(r"^\s*(\w*(?:PASSWORD|SECRET|API_KEY)\w*):\s*(\S+)", text, re.M):
        if not key.endswith("_FILE"):
            assert value.startswith("${"), f"{key} has a literal value"
    assert (ROOT / ".env.example").exists()
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_files_the_compose_refers_to_exist():
    services = compose()["services"]
    for volume in services["postgres"]["volumes"]:
        if volume.startswith("./"):
            assert (ROOT / volume.split(":")[0]).exists()
    assert (ROOT / "Dockerfile").exists()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "apache/airflow:3.3.2" in dockerfile and "constraints.txt" in dockerfile
    # the production image gets the runtime pins only, never the test tools (browser driver, pytest)
    assert "requirements.txt" in dockerfile and "requirements-dev.txt" not in dockerfile
    runtime = (ROOT / "requirements.txt").read_text()
    assert "apache-airflow==" in runtime and "pytest" not in runtime and "playwright" not in runtime


def test_every_long_running_service_has_a_healthcheck():
    for name, svc in compose()["services"].items():
        if svc.get("restart") != "no":
            assert "healthcheck" in svc, f"{name} has no healthcheck"


def test_workers_scale_and_optional_profiles():
    services = compose()["services"]
    worker = services["airflow-worker"]
    # `--scale airflow-worker=3` needs no fixed container name and no published host port
    assert "container_name" not in worker and "ports" not in worker
    assert "inspect ping" in " ".join(worker["healthcheck"]["test"])
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["flower"]["profiles"] == ["flower"] and services["flower"]["command"] == "celery flower"
    assert services["fake-jquants"]["profiles"] == ["fake"]
    assert not services["redis"].get("profiles") and not worker.get("profiles")


def test_metadata_and_warehouse_are_separate_databases_and_roles():
    env = compose()["services"]["airflow-scheduler"]["environment"]
    assert "//airflow:${AIRFLOW_DB_PASSWORD" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    warehouse = env["AIRFLOW_CONN_MOOMARKETS_WAREHOUSE"]
    assert "MOOMARKETS_DATABASE_URL" not in env  # no override in production
    assert "//moomarkets:${MOOMARKETS_DB_PASSWORD" in warehouse and warehouse.endswith("/moomarkets")
    init_sql = (ROOT / "deploy" / "postgres-init.sh").read_text()
    for stmt in ("CREATE ROLE airflow", "CREATE DATABASE airflow OWNER airflow",
                 "CREATE ROLE moomarkets", "CREATE DATABASE moomarkets OWNER moomarkets"):
        assert stmt in init_sql


def test_env_example_lists_every_variable_the_compose_reads():
    text = (ROOT / "docker-compose.yaml").read_text()
    used = set(re.findall(r"(?<!\$)\$\{(\w+)", text))
    listed = {line.split("=", 1)[0] for line in (ROOT / ".env.example").read_text().splitlines()
              if line and not line.startswith("#")}
    assert used - {"AIRFLOW_BASE_URL", "AIRFLOW_WORKER_CONCURRENCY"} <= listed, used - listed


def test_runtime_has_the_scale_out_providers_and_the_image_no_test_tools():
    runtime = (ROOT / "requirements.txt").read_text()
    for pkg in ("apache-airflow-providers-celery==", "apache-airflow-providers-fab==", "redis=="):
        assert pkg in runtime
    dockerfile = (ROOT / "Dockerfile").read_text()
    for tool in ("pytest", "playwright", "chromium", "requirements-dev"):
        assert tool not in dockerfile

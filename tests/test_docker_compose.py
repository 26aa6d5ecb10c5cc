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
    for component in ("api-server", "scheduler", "dag-processor", "triggerer"):
        assert component in commands.values(), f"no service runs `airflow {component}`"
    assert "postgres" in services and "airflow-init" in services


def test_services_share_environment_and_wait_for_init():
    services = compose()["services"]
    airflow = [n for n, s in services.items() if s.get("command") in ("api-server", "scheduler", "dag-processor", "triggerer")]
    for name in airflow:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert env["MOOMARKETS_DATABASE_URL"].startswith("postgresql://")
        assert "postgres:5432/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    init = "\n".join(services["airflow-init"]["command"])
    for step in ("airflow db migrate", "moomarkets db upgrade", "moomarkets import", "moomarkets pools sync"):
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

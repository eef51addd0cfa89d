"""docker-compose.yml cannot run here, so this keeps it honest: the images, ports, mounts and file paths
it names must line up with the repository and with each other."""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from tests.test_rules import ALERTING_RULES, RECORDING_RULES, ROOT

COMPOSE = ROOT / "docker-compose.yml"


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def service(name: str) -> dict[str, Any]:
    services: dict[str, Any] = load(COMPOSE)["services"]
    return services[name]


def bind_mounts(name: str) -> list[tuple[str, str]]:
    """(host path, container path) of a service's bind mounts; named volumes are left out."""
    mounts = []
    for volume in service(name).get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append((source, target))
    return mounts


def host_path(name: str, container_path: str) -> Path:
    """Where a path inside a service's container comes from in the repository."""
    wanted = PurePosixPath(container_path)
    for source, target in bind_mounts(name):
        if wanted == PurePosixPath(target) or PurePosixPath(target) in wanted.parents:
            return ROOT / source / wanted.relative_to(target)
    raise AssertionError(f"{container_path} is not mounted into {name}")


def published_ports(name: str) -> dict[int, tuple[str, int]]:
    """container port -> (host address, host port)."""
    ports = {}
    for entry in service(name).get("ports", []):
        address, host_port, container_port = str(entry).split(":")
        ports[int(container_port)] = (address, int(host_port))
    return ports


def exporter_listen_port() -> int:
    command = service("exporter")["command"]
    (address,) = [arg.split("=", 1)[1] for arg in command if arg.startswith("--web.listen-address=")]
    return int(address.rpartition(":")[2])


def prometheus_config_path() -> str:
    (flag,) = [arg for arg in service("prometheus")["command"] if arg.startswith("--config.file=")]
    return flag.split("=", 1)[1]


def test_compose_runs_the_exporter_prometheus_and_grafana() -> None:
    assert set(load(COMPOSE)["services"]) == {"exporter", "prometheus", "grafana"}


def test_exporter_is_built_from_the_repository_dockerfile_with_vod_exporter_as_entrypoint() -> None:
    build = service("exporter")["build"]
    dockerfile = ROOT / build["context"] / build["dockerfile"]
    assert dockerfile.is_file()
    entrypoints = [line for line in dockerfile.read_text().splitlines() if line.startswith("ENTRYPOINT")]
    assert [json.loads(line.removeprefix("ENTRYPOINT")) for line in entrypoints[-1:]] == [["vod-exporter"]]


def test_exporter_runs_the_demo_on_all_interfaces_of_its_container() -> None:
    command = service("exporter")["command"]
    assert command[0] == "demo"
    # The demo's own default is loopback, which Prometheus in another container could not reach.
    assert f"--web.listen-address=:{exporter_listen_port()}" in command


@pytest.mark.parametrize(("name", "port"), [("exporter", None), ("prometheus", 9090), ("grafana", 3000)])
def test_each_service_port_is_published_on_loopback_only(name: str, port: int | None) -> None:
    port = port or exporter_listen_port()
    assert published_ports(name) == {port: ("127.0.0.1", port)}


@pytest.mark.parametrize(
    ("name", "repository"), [("prometheus", "prom/prometheus"), ("grafana", "grafana/grafana")]
)
def test_third_party_images_are_pinned_to_a_release(name: str, repository: str) -> None:
    image, _, tag = service(name)["image"].partition(":")
    assert image == repository
    assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name} image tag {tag!r} is not a release"


def test_every_mounted_host_path_exists_and_named_volumes_are_declared() -> None:
    declared = set(load(COMPOSE).get("volumes") or {})
    for name, definition in load(COMPOSE)["services"].items():
        for volume in definition.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"


def test_prometheus_runs_the_example_config() -> None:
    assert (
        host_path("prometheus", prometheus_config_path()).resolve() == ROOT / "prometheus" / "prometheus.yml"
    )


def test_prometheus_config_loads_both_rule_files_from_the_mounted_rules() -> None:
    config_path = PurePosixPath(prometheus_config_path())
    config = load(host_path("prometheus", str(config_path)))
    loaded: set[Path] = set()
    for pattern in config["rule_files"]:
        # Prometheus resolves rule files relative to the directory of its config file.
        in_container = config_path.parent / pattern
        directory = host_path("prometheus", str(in_container.parent))
        loaded |= {path.resolve() for path in directory.glob(in_container.name)}
    assert loaded == {RECORDING_RULES, ALERTING_RULES}


def test_prometheus_scrapes_the_exporter_service_on_its_listen_port() -> None:
    config = load(host_path("prometheus", prometheus_config_path()))
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "vod-exporter"]
    targets = [target for static in job["static_configs"] for target in static["targets"]]
    assert targets == [f"exporter:{exporter_listen_port()}"]


PROVISIONED_DASHBOARDS = ROOT / "grafana" / "provisioning" / "dashboards"


def test_grafana_provisioning_and_dashboards_come_from_the_grafana_folder() -> None:
    assert host_path("grafana", "/etc/grafana/provisioning").resolve() == ROOT / "grafana" / "provisioning"
    (provider,) = load(PROVISIONED_DASHBOARDS / "vod-exporter.yml")["providers"]
    assert provider["type"] == "file"
    dashboards = host_path("grafana", provider["options"]["path"])
    assert dashboards.resolve() == PROVISIONED_DASHBOARDS
    assert (dashboards / "vod-exporter.json").is_file()


def test_grafana_home_dashboard_is_the_mounted_dashboard() -> None:
    home = service("grafana")["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path("grafana", home).resolve() == PROVISIONED_DASHBOARDS / "vod-exporter.json"


def test_grafana_data_source_points_at_the_prometheus_service() -> None:
    (datasource,) = load(ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert 9090 in published_ports("prometheus")
    assert "prometheus" in service("grafana")["depends_on"]
    # $__rate_interval in the dashboard is derived from this: it must be the exporter job's interval.
    config = load(ROOT / "prometheus" / "prometheus.yml")
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "vod-exporter"]
    assert datasource["jsonData"]["timeInterval"] == job["scrape_interval"]

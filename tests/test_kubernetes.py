"""The Kubernetes manifests: ``deploy/kubernetes`` and every overlay render with kubectl's kustomize,
validate against the Kubernetes schemas and the Prometheus Operator's CRDs, lock the container down,
probe the exporter's real endpoints, take secrets only by reference, scrape within the exporter's
deadline, and carry exactly the groups of ``prometheus/rules/``.

No cluster is needed: what a cluster would reject at ``kubectl apply`` is checked against the same
schemas here, and the rest against the exporter's own defaults and endpoints.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from exporter.config import ScrapeSettings, WebSettings, parse_duration
from exporter.serving.web import WebApp
from tools import prometheusrule

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(path.parent for path in (KUBERNETES / "overlays").glob("*/kustomization.yaml"))
CRDS = Path(__file__).resolve().parent / "schemas" / "prometheus-operator"
# The oldest Kubernetes release the manifests promise to work on (and kubernetes-validate's lower
# bound in pyproject.toml carries its schemas).
KUBERNETES_VERSION = "1.31"

# Variables that hold a secret: never a literal value in a manifest.
SECRET_VARIABLES = frozenset(
    {
        "HUAWEICLOUD_SDK_AK",
        "HUAWEICLOUD_SDK_SK",
        "HUAWEICLOUD_SDK_SECURITY_TOKEN",
        "VOD_EXPORTER_AUTH_TOKEN",
        "VOD_EXPORTER_IAM_PASSWORD",
    }
)
# The base's credentials, each from the Secret the user creates (README, "Kubernetes").
BASE_CREDENTIALS = {
    "HUAWEICLOUD_SDK_AK": "ak",
    "HUAWEICLOUD_SDK_SK": "sk",
    "HUAWEICLOUD_SDK_PROJECT_ID": "project-id",
}


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl (1.27 or newer) is not installed: it renders the manifests (kubectl kustomize)")
    return found


@functools.cache
def _render(directory: Path) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {directory.relative_to(ROOT)}: {result.stderr}"
    return tuple(document for document in yaml.safe_load_all(result.stdout) if document)


def render(directory: Path) -> list[dict[str, Any]]:
    return list(_render(directory))


def only(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [document for document in documents if document["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def flag(container: dict[str, Any], name: str) -> str | None:
    """The value of ``--name=value`` in the container's arguments (the last one wins, as in click)."""
    values = [arg.partition("=")[2] for arg in container.get("args", []) if arg.startswith(f"{name}=")]
    assert all(arg != name for arg in container.get("args", [])), f"write {name}=VALUE, one argument"
    return values[-1] if values else None


RENDERED = [KUBERNETES, *OVERLAYS]
IDS = [str(path.relative_to(KUBERNETES)) if path != KUBERNETES else "base" for path in RENDERED]


@pytest.fixture(params=RENDERED, ids=IDS)
def documents(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(request.param)


@pytest.fixture
def deployment(documents: list[dict[str, Any]]) -> dict[str, Any]:
    return only(documents, "Deployment")


def exporter_container(deployment: dict[str, Any]) -> dict[str, Any]:
    pod = deployment["spec"]["template"]["spec"]
    (container,) = [container for container in pod["containers"] if container["name"] == "vod-exporter"]
    return container


@pytest.fixture
def exporter(deployment: dict[str, Any]) -> dict[str, Any]:
    return exporter_container(deployment)


def test_there_is_an_overlay_for_cce_workload_identity() -> None:
    assert KUBERNETES / "overlays" / "cce-workload-identity" in OVERLAYS


def test_the_base_holds_what_a_prometheus_operator_user_needs() -> None:
    kinds = sorted(document["kind"] for document in render(KUBERNETES))
    assert kinds == ["Deployment", "PrometheusRule", "Service", "ServiceAccount", "ServiceMonitor"]


# --- schemas -----------------------------------------------------------------------------------------


def test_core_kinds_validate_against_the_kubernetes_schemas(documents: list[dict[str, Any]]) -> None:
    import kubernetes_validate

    core = [document for document in documents if "monitoring.coreos.com" not in document["apiVersion"]]
    assert core
    for document in core:
        # Strict: an unknown field (a typo, say) fails, as kubectl apply's field validation does.
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_kubernetes_validation_does_catch_mistakes() -> None:
    import kubernetes_validate

    deployment = only(render(KUBERNETES), "Deployment")
    typo = {**deployment, "spec": {**deployment["spec"], "replica": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, KUBERNETES_VERSION, strict=True)


def _closed(schema: Any) -> Any:
    """The schema with unknown fields refused wherever it lists the known ones, as the API server's
    strict field validation does (the CRDs' structural schemas would otherwise let any typo through)."""
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: _closed(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        closed["additionalProperties"] = False
    return closed


@functools.cache
def _crd_validator(kind: str) -> Any:
    import jsonschema

    for path in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
            schema = _closed(version["schema"]["openAPIV3Schema"])
            # metadata is the API server's own ObjectMeta, checked by the core validation's rules.
            schema["properties"]["metadata"] = {"type": "object"}
            return jsonschema.Draft7Validator(schema)
    raise AssertionError(f"no CRD for {kind} in {CRDS}")


def crd_errors(document: dict[str, Any]) -> list[str]:
    validator = _crd_validator(document["kind"])
    return [f"{'.'.join(map(str, error.path))}: {error.message}" for error in validator.iter_errors(document)]


def test_servicemonitor_and_prometheusrule_validate_against_the_operator_crds(
    documents: list[dict[str, Any]],
) -> None:
    for kind in ("ServiceMonitor", "PrometheusRule"):
        document = only(documents, kind)
        assert document["apiVersion"] == "monitoring.coreos.com/v1"
        assert crd_errors(document) == []


def test_the_crd_validation_does_catch_mistakes() -> None:
    monitor = only(render(KUBERNETES), "ServiceMonitor")
    endpoint = {**monitor["spec"]["endpoints"][0], "scrapeTimout": "10s"}
    typo = {**monitor, "spec": {**monitor["spec"], "endpoints": [endpoint]}}
    assert any("scrapeTimout" in error for error in crd_errors(typo))
    endpoint = {"port": "http", "interval": "1 min"}
    bad_duration = {**monitor, "spec": {**monitor["spec"], "endpoints": [endpoint]}}
    assert any("interval" in error for error in crd_errors(bad_duration))


# --- security ----------------------------------------------------------------------------------------


def image_user() -> tuple[int, int]:
    """The numeric UID:GID of the Dockerfile's last USER."""
    users = re.findall(r"^USER\s+(\d+):(\d+)\s*$", (ROOT / "Dockerfile").read_text(), re.M)
    assert users, "the Dockerfile has no numeric USER"
    uid, gid = users[-1]
    return int(uid), int(gid)


def test_every_container_runs_locked_down(deployment: dict[str, Any]) -> None:
    pod = deployment["spec"]["template"]["spec"]
    pod_context = pod.get("securityContext", {})
    uid, gid = image_user()
    for container in containers(deployment):
        # The container's own setting wins over the pod's, as in Kubernetes.
        context = {**pod_context, **container.get("securityContext", {})}
        name = container["name"]
        assert context.get("runAsNonRoot") is True, name
        assert (context.get("runAsUser"), context.get("runAsGroup")) == (uid, gid), name
        assert context.get("allowPrivilegeEscalation") is False, name
        assert context.get("readOnlyRootFilesystem") is True, name
        assert context.get("privileged") is not True, name
        assert context.get("capabilities", {}).get("drop") == ["ALL"], name
        assert not context.get("capabilities", {}).get("add"), name
        assert context.get("seccompProfile") == {"type": "RuntimeDefault"}, name
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    # The exporter never calls the Kubernetes API: no token of the pod's own to steal.
    assert pod.get("automountServiceAccountToken") is False


def _quantity_bytes(text: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 1e3, "M": 1e6, "G": 1e9}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]i?)?", text)
    assert match, f"not a memory quantity: {text!r}"
    return float(match.group(1)) * units.get(match.group(2) or "", 1)


def _cpu(text: str) -> float:
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def measured_peak_rss_mb() -> list[int]:
    """The peak RSS figures of the README's performance tables (cells that hold just ``N MB``)."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("\n## Performance") :]
    section = section[: section.index("\n## ", 1)]
    figures = [int(figure) for figure in re.findall(r"\|\s*(\d+) MB\s*\|", section)]
    assert figures, "the README's Performance section has no peak RSS figures"
    return figures


def test_resources_are_requested_and_limited_from_the_measured_memory(deployment: dict[str, Any]) -> None:
    figures = measured_peak_rss_mb()
    for container in containers(deployment):
        resources = container.get("resources", {})
        requests, limits = resources.get("requests", {}), resources.get("limits", {})
        assert set(requests) >= {"cpu", "memory"} and set(limits) >= {"cpu", "memory"}, container["name"]
        assert _cpu(requests["cpu"]) <= _cpu(limits["cpu"])
        request, limit = _quantity_bytes(requests["memory"]), _quantity_bytes(limits["memory"])
        assert request <= limit
        # The request covers what the usual sizes take, the limit the largest measured with room to spare.
        assert request >= sorted(figures)[len(figures) // 2] * 1e6
        assert limit >= 1.5 * max(figures) * 1e6


# --- the exporter's endpoints -----------------------------------------------------------------------


def container_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    return int(number)


def answer(path: str, shutting_down: bool = False) -> str:
    """The status line the exporter's web app gives for a GET of ``path``."""
    app = WebApp(lambda deadline: True, CollectorRegistry(), WebSettings(), ScrapeSettings())
    if shutting_down:
        app.shutting_down.set()
    statuses: list[str] = []
    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    b"".join(app(environ, lambda status, headers, *_: statuses.append(status)))
    return statuses[0]


def test_probes_ask_the_exporters_health_endpoints_on_its_port(exporter: dict[str, Any]) -> None:
    default_port = WebSettings().port
    assert flag(exporter, "--web.listen-address") is None, "the probes and Service assume the default port"
    liveness, readiness = exporter["livenessProbe"]["httpGet"], exporter["readinessProbe"]["httpGet"]
    assert (liveness["path"], readiness["path"]) == ("/-/healthy", "/-/ready")
    ports = {container_port(exporter, liveness["port"]), container_port(exporter, readiness["port"])}
    assert ports == {default_port}
    # What the paths answer: liveness stays up while draining, readiness goes down.
    assert answer(liveness["path"]).startswith("200")
    assert answer(liveness["path"], shutting_down=True).startswith("200")
    assert answer(readiness["path"]).startswith("200")
    assert answer(readiness["path"], shutting_down=True).startswith("503")
    # A liveness probe must never wait on a listing: it is not the metrics path.
    assert liveness["path"] != WebSettings().telemetry_path


def test_the_service_and_servicemonitor_reach_the_exporters_metrics(documents: list[dict[str, Any]]) -> None:
    deployment, service = only(documents, "Deployment"), only(documents, "Service")
    monitor = only(documents, "ServiceMonitor")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    container = exporter_container(deployment)
    (endpoint,) = monitor["spec"]["endpoints"]
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    assert container_port(container, port["targetPort"]) == WebSettings().port
    assert endpoint.get("path", "/metrics") == WebSettings().telemetry_path
    assert endpoint.get("scheme", "http") == "http"


def test_scrape_interval_and_timeout_fit_the_exporters_deadline(documents: list[dict[str, Any]]) -> None:
    defaults = ScrapeSettings()
    exporter = exporter_container(only(documents, "Deployment"))
    (endpoint,) = only(documents, "ServiceMonitor")["spec"]["endpoints"]
    interval = parse_duration(endpoint["interval"], "interval")
    scrape_timeout = parse_duration(endpoint["scrapeTimeout"], "scrapeTimeout")

    def setting(name: str, default: float) -> float:
        value = flag(exporter, name)
        return default if value is None else parse_duration(value, name)

    cap = setting("--scrape.timeout", defaults.timeout)
    offset = setting("--scrape.timeout-offset", defaults.timeout_offset)
    min_interval = setting("--scrape.min-interval", defaults.min_refresh_interval)
    assert scrape_timeout <= interval, "Prometheus refuses a timeout longer than the interval"
    # The budget is Prometheus' timeout less the offset, capped: a cap below it would waste the rest.
    assert cap >= scrape_timeout - offset
    assert offset < scrape_timeout
    # Every scrape of one Prometheus server gets a fresh listing; an HA pair shares them.
    assert min_interval < interval


def test_the_servicemonitors_job_is_the_one_the_alerts_select(documents: list[dict[str, Any]]) -> None:
    service = only(documents, "Service")
    monitor = only(documents, "ServiceMonitor")
    # The operator names the job after the Service label named by jobLabel, else the Service.
    job_label = monitor["spec"].get("jobLabel")
    job = service["metadata"]["labels"][job_label] if job_label else service["metadata"]["name"]
    selected = set()
    for path in prometheusrule.rule_files():
        selected |= set(re.findall(r'\bjob\s*=\s*"([^"]*)"', path.read_text()))
    assert selected <= {job}


def test_image_is_pinned_to_the_projects_version() -> None:
    from exporter import __version__  # the one version: pyproject.toml reads it from there

    deployment = only(render(KUBERNETES), "Deployment")
    images = {container["image"] for container in containers(deployment)}
    assert images == {f"vod-exporter:{__version__}"}


# --- secrets -----------------------------------------------------------------------------------------


def environment(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in container.get("env", [])}


def test_secrets_are_only_referenced(documents: list[dict[str, Any]], deployment: dict[str, Any]) -> None:
    assert "Secret" not in {document["kind"] for document in documents}, "a Secret belongs to the user"
    for container in containers(deployment):
        for name, variable in environment(container).items():
            if name in SECRET_VARIABLES:
                assert "value" not in variable, f"{name} holds a literal value"
                assert "secretKeyRef" in variable["valueFrom"], f"{name} is not read from a Secret"
        assert not container.get("envFrom"), "envFrom would hide which variables come from where"
        for arg in container.get("args", []):
            assert not re.search(r"password|secret|token=|--iam\.password\b", arg, re.I), arg


def readme_secret_command() -> tuple[str, dict[str, str]]:
    """The Secret's name and its keys' variables, from the README's ``kubectl create secret`` command."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"kubectl create secret generic (\S+)((?:\s*\\?\n?\s*--from-literal=\S+)+)", readme)
    assert match, "the README shows no `kubectl create secret generic NAME --from-literal=...` command"
    keys = dict(re.findall(r"--from-literal=([\w-]+)=\"?\$(\w+)", match.group(2)))
    return match.group(1), keys


def test_the_base_reads_credentials_from_the_secret_the_readme_creates() -> None:
    exporter = exporter_container(only(render(KUBERNETES), "Deployment"))
    name, keys = readme_secret_command()
    env = environment(exporter)
    for variable, key in BASE_CREDENTIALS.items():
        reference = env[variable]["valueFrom"]["secretKeyRef"]
        assert (reference["name"], reference["key"]) == (name, key), variable
        assert keys[key] == variable, f"the README's command fills {key} from ${keys.get(key)}"


# --- the PrometheusRule ------------------------------------------------------------------------------


def test_the_prometheusrule_holds_exactly_the_rule_files_groups(documents: list[dict[str, Any]]) -> None:
    rule = only(documents, "PrometheusRule")
    assert rule["spec"]["groups"] == prometheusrule.load_groups(prometheusrule.rule_files())


def test_the_committed_prometheusrule_is_what_the_generator_writes() -> None:
    stale = "run python -m tools.prometheusrule and commit the result"
    assert prometheusrule.OUTPUT.read_text() == prometheusrule.generated(), stale
    assert prometheusrule.main(["--check"]) == 0


@pytest.fixture
def changed_rules(tmp_path: Path) -> Iterator[Path]:
    for path in prometheusrule.rule_files():
        (tmp_path / path.name).write_text(path.read_text().replace("for: 5m", "for: 6m", 1))
    yield tmp_path


def test_the_generator_notices_a_changed_rule_file(changed_rules: Path) -> None:
    assert prometheusrule.generated(changed_rules) != prometheusrule.generated()


def test_the_generator_refuses_repeated_group_names() -> None:
    group = {"name": "twice", "rules": []}
    with pytest.raises(SystemExit, match="twice"):
        prometheusrule.prometheus_rule([group, group])


# --- the CCE workload-identity overlay ---------------------------------------------------------------


def test_cce_workload_identity_reads_a_projected_token_and_no_access_key() -> None:
    deployment = only(render(KUBERNETES / "overlays" / "cce-workload-identity"), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    exporter = exporter_container(deployment)
    env = environment(exporter)
    assert flag(exporter, "--auth.method") == "oidc"
    assert not {"HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK"} & env.keys()
    assert not any("secretKeyRef" in variable.get("valueFrom", {}) for variable in env.values())
    assert env["HUAWEICLOUD_SDK_IDP_ID"]["value"]
    assert re.fullmatch(r"[0-9a-f]{32}", env["HUAWEICLOUD_SDK_PROJECT_ID"]["value"])

    # The token file the SDK is told about is the projected service-account token, for IAM's audience.
    token_file = Path(env["HUAWEICLOUD_SDK_ID_TOKEN_FILE"]["value"])
    (mount,) = [m for m in exporter["volumeMounts"] if token_file.is_relative_to(m["mountPath"])]
    assert mount.get("readOnly") is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    (source,) = volume["projected"]["sources"]
    token = source["serviceAccountToken"]
    assert Path(mount["mountPath"]) / token["path"] == token_file
    assert token["audience"], "IAM accepts only tokens made for the identity provider's client ID"
    # Kubernetes refuses less than 10 minutes; the kubelet renews the token at 80% of its life.
    assert 600 <= token["expirationSeconds"] <= 86400
    assert volume["projected"].get("defaultMode") == 0o400


# --- the many-targets overlay ------------------------------------------------------------------------

MANY_TARGETS = KUBERNETES / "overlays" / "many-targets"
# The options a --config.file replaces: giving one as well is a configuration error.
SINGLE_TARGET_OPTIONS = ("region", "project_id", "endpoint", "iam_endpoint")


def mounted_file(deployment: dict[str, Any], documents: list[dict[str, Any]], path: Path) -> str:
    """The text a container of ``deployment`` finds at ``path``, from the ConfigMap mounted there."""
    pod = deployment["spec"]["template"]["spec"]
    (mount,) = [
        m for m in exporter_container(deployment)["volumeMounts"] if path.is_relative_to(m["mountPath"])
    ]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    (config_map,) = [
        d
        for d in documents
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == volume["configMap"]["name"]
    ]
    return str(config_map["data"][str(path.relative_to(mount["mountPath"]))])


def test_many_targets_reads_the_targets_file_from_a_configmap() -> None:
    from exporter.cli import cli

    documents = render(MANY_TARGETS)
    deployment = only(documents, "Deployment")
    exporter = exporter_container(deployment)
    env = environment(exporter)
    path = flag(exporter, "--config.file")
    assert path, "the overlay gives no --config.file"
    targets = yaml.safe_load(mounted_file(deployment, documents, Path(path)))
    assert len(targets["targets"]) > 1

    # Nothing may set what the file replaces, neither as a flag nor through its variable.
    options = {param.name: param for param in cli.commands["serve"].params}
    for name in SINGLE_TARGET_OPTIONS:
        option = options[name]
        assert not any(arg.split("=")[0] in option.opts for arg in exporter["args"]), name
        assert option.envvar not in env, option.envvar
    assert "HUAWEICLOUD_SDK_PROJECT_ID" not in env

    # Every variable an entry names is set, from a Secret.
    named = [
        value
        for entry in targets.get("credentials", {}).values()
        for key, value in entry.items()
        if key.endswith("_env")
    ]
    assert named
    for variable in named:
        assert "secretKeyRef" in env[variable]["valueFrom"], variable


def test_many_targets_file_is_one_the_exporter_accepts(tmp_path: Path) -> None:
    targets = pytest.importorskip("exporter.targets", reason="--config.file is not in this version")
    documents = render(MANY_TARGETS)
    deployment = only(documents, "Deployment")
    path = flag(exporter_container(deployment), "--config.file")
    assert path
    copy = tmp_path / Path(path).name
    copy.write_text(mounted_file(deployment, documents, Path(path)))
    loaded = targets.load_targets(copy)
    assert len(loaded.targets) == len(yaml.safe_load(copy.read_text())["targets"])


def test_cce_workload_identity_is_one_the_exporter_accepts(tmp_path: Path) -> None:
    import click

    from exporter.cli import cli
    from exporter.cloud.credentials import resolve_credentials

    (auth_method,) = [param for param in cli.commands["serve"].params if param.name == "auth_method"]
    assert isinstance(auth_method.type, click.Choice)
    if "oidc" not in auth_method.type.choices:
        pytest.skip("--auth.method oidc (CCE workload identity) is not in this version")
    exporter = exporter_container(
        only(render(KUBERNETES / "overlays" / "cce-workload-identity"), "Deployment")
    )
    assert flag(exporter, "--auth.method") == "oidc"
    env = {name: variable["value"] for name, variable in environment(exporter).items() if "value" in variable}
    # The token the kubelet would have projected, here.
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl\n")
    token.chmod(0o400)
    env["HUAWEICLOUD_SDK_ID_TOKEN_FILE"] = str(token)
    credentials = resolve_credentials("oidc", env, home=tmp_path)
    assert credentials.idp_id == env["HUAWEICLOUD_SDK_IDP_ID"]
    assert credentials.project_id == env["HUAWEICLOUD_SDK_PROJECT_ID"]


@pytest.mark.parametrize("directory", [KUBERNETES, *OVERLAYS], ids=lambda p: p.name)
def test_a_read_only_root_still_has_a_writable_tmp(directory: Path) -> None:
    """TLS (--web.config.file) hands connections to the server over a Unix socket in a private
    temporary directory: with a read-only root filesystem, /tmp must be a volume."""
    deployment = only(render(directory), "Deployment")
    volumes = {volume["name"]: volume for volume in deployment["spec"]["template"]["spec"].get("volumes", [])}
    for container in containers(deployment):
        mounts = {mount["mountPath"]: mount["name"] for mount in container.get("volumeMounts", [])}
        assert "/tmp" in mounts, container["name"]
        assert "emptyDir" in volumes[mounts["/tmp"]]

"""The container and Kubernetes deployment, checked offline (no container
engine or cluster here): `make test` runs this as its own suite
(scripts/run-tests.sh), like deploy/prometheus/test_promtool.py.

- deploy/docker: the base image (locked hashes, crm_common, user 10001,
  CRM_BIND_HOST=0.0.0.0), one Dockerfile per service FROM it (its own code,
  port, HEALTHCHECK, non-root), the crmctl image (PostgreSQL client tools new
  enough for the servers), each one's .dockerignore sending what it copies, and
  the entrypoint's health check against a real HTTP server;
- deploy/compose.yaml: valid against the vendored Compose schema
  (compose-spec.json, run from deploy/tools/.venv), every container has a
  healthcheck, the CRM waits on healthy dependencies, environment from the
  configuration table (docs/configuration.md), ports at its defaults, every image
  built from its own Dockerfile on the `base` service's image, a one-shot
  `backup` service, and its Prometheus config (compose/prometheus.yml) in step
  with deploy/prometheus;
- deploy/k8s: each overlay renders (`kubectl kustomize`), every object of it
  is valid against the Kubernetes JSON schemas of K8S_VERSION
  (kubernetes-validate, strict, run from deploy/tools/.venv); the custom
  resources (RabbitmqCluster, CloudNativePG Cluster), for which no schema is
  bundled, are checked here field by field instead. Every service has a
  Deployment with probes, resources and a non-root securityContext, a Service
  on its documented port, an HPA on CPU and a PDB, and reads its database URL from
  the Secret of its own CloudNativePG Cluster; RabbitMQ makes the durable
  shared queues quorum queues; a nightly backup CronJob (crmctl, on a
  PersistentVolumeClaim, retention from a ConfigMap); images consistent
  everywhere.
"""
import http.server
import importlib.util
import json
import os
import re
import shutil
import subprocess
import threading
import tomllib
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SERVICES = ("customers", "sales", "notifications", "reporting", "gateway")
INFRA = ("rabbitmq", "postgres", "mailpit", "prometheus", "grafana")
OVERLAYS = sorted(path.name for path in (HERE / "k8s" / "overlays").iterdir() if path.is_dir())
SCHEMA_VENV_PYTHON = HERE / "tools" / ".venv" / "bin" / "python"
# The Kubernetes version the manifests are validated for (a schema set bundled
# in kubernetes-validate; raise it with the clusters, see deploy/tools).
K8S_VERSION = "1.30.0"
# Custom resources: kubernetes-validate has no schema for them (checked below).
CUSTOM_API_VERSIONS = ("rabbitmq.com/v1beta1", "postgresql.cnpg.io/v1")


def port_var(service):
    return "CRM_GATEWAY_PORT" if service == "gateway" else f"CRM_{service.upper()}_HTTP_PORT"


def readme_configuration():
    """{variable: default} from the Configuration table of docs/configuration.md; a row that
    names several variables (`A`, `B`) with as many defaults gives each its own."""
    readme = (ROOT / "docs" / "configuration.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    variables = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([A-Z0-9_<>]+)`", cells[0])
        defaults = re.findall(r"`([^`]*)`", cells[1])
        for i, name in enumerate(names):
            variables[name] = defaults[i] if len(defaults) == len(names) else None
    for pattern in [name for name in variables if "<SERVICE>" in name]:
        for service in SERVICES:
            variables[pattern.replace("<SERVICE>", service.upper())] = variables[pattern]
    return variables


README_VARS = readme_configuration()
README_PORTS = {service: int(README_VARS[port_var(service)]) for service in SERVICES}
VERSIONS = {service: tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())
            ["project"]["version"] for service in SERVICES}


def load_compose():
    return yaml.safe_load((HERE / "compose.yaml").read_text())


COMPOSE = load_compose()


# --- the images ---------------------------------------------------------------

DOCKER = HERE / "docker"
BASE_VERSION = tomllib.loads((ROOT / "services" / "common" / "pyproject.toml").read_text())["project"]["version"]
# Every image but the base builds on it: the five services and the admin CLI.
IMAGES_ON_BASE = SERVICES + ("crmctl",)
# The PostgreSQL client major version each Debian release ships (crmctl.Dockerfile
# installs `postgresql-client` from the base image's release).
DEBIAN_POSTGRESQL_CLIENT = {"bookworm": 15, "trixie": 17}


def dockerfile(name):
    return (DOCKER / f"{name}.Dockerfile").read_text()


def instructions(text, keyword):
    """The arguments of every `keyword` instruction, continuation lines joined."""
    joined = re.sub(r"\s*\\\n\s*", " ", text)
    return re.findall(rf"^{keyword} (.+)$", joined, re.M)


def load_entrypoint():
    spec = importlib.util.spec_from_file_location("crm_service_entrypoint", DOCKER / "crm-service.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_is_one_dockerfile_per_image_and_no_other():
    assert {path.name for path in DOCKER.glob("*Dockerfile")} == \
        {f"{name}.Dockerfile" for name in ("base",) + IMAGES_ON_BASE}


def test_base_image_installs_the_lock_and_the_kernel():
    base = dockerfile("base")
    assert re.search(r"^FROM python:3\.11-slim-\w+$", base, re.M)
    assert "--require-hashes -r /tmp/requirements.lock" in base
    assert "COPY requirements.lock" in base
    assert "COPY services/common services/common" in base
    assert "COPY deploy/docker/crm-service.py /usr/local/bin/crm-service" in base
    assert "useradd --system --uid 10001" in base
    assert "CRM_BIND_HOST=0.0.0.0" in base
    # Only the kernel: every service is in its own image.
    assert not any(f"services/{service}" in base for service in SERVICES)


@pytest.mark.parametrize("name", IMAGES_ON_BASE)
def test_every_image_builds_from_the_base_and_runs_non_root(name):
    text = dockerfile(name)
    assert instructions(text, "ARG")[0] == f"BASE_IMAGE=crm/base:{BASE_VERSION}"
    assert instructions(text, "FROM") == ["${BASE_IMAGE}"]
    users = instructions(text, "USER")
    assert users and users[-1] == "10001:10001", users


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_image_holds_its_service_on_its_port_with_a_healthcheck(service):
    text = dockerfile(service)
    assert instructions(text, "ENV") == [f"CRM_SERVICE={service}"]
    assert instructions(text, "COPY") == [f"services/{service} services/{service}"]
    assert f"pip install --no-deps --no-build-isolation services/{service}" in text
    assert instructions(text, "EXPOSE") == [str(README_PORTS[service])]
    assert instructions(text, "HEALTHCHECK") == [
        '--interval=15s --timeout=5s --start-period=60s --retries=3 CMD ["crm-service", "health"]']
    assert instructions(text, "ENTRYPOINT") == ['["crm-service"]']
    assert instructions(text, "CMD") == ['["run"]']


def postgres_server_majors():
    """The PostgreSQL major versions the deployment runs (compose and CloudNativePG)."""
    majors = {int(re.fullmatch(r"postgres:(\d+).*", COMPOSE["services"]["postgres"]["image"]).group(1))}
    for line in (HERE / "k8s" / "base" / "postgres.yaml").read_text().splitlines():
        found = re.search(r"imageName: ghcr\.io/cloudnative-pg/postgresql:(\d+)", line)
        if found:
            majors.add(int(found.group(1)))
    return majors


def test_crmctl_image_has_a_postgresql_client_for_the_servers():
    text = dockerfile("crmctl")
    assert "apt-get install -y --no-install-recommends postgresql-client" in text
    assert instructions(text, "ENTRYPOINT") == ['["crmctl"]']
    assert instructions(text, "HEALTHCHECK") == ["NONE"]
    # pg_dump refuses a server newer than itself.
    (release,) = re.findall(r"^FROM python:3\.11-slim-(\w+)$", dockerfile("base"), re.M)
    servers = postgres_server_majors()
    assert servers and DEBIAN_POSTGRESQL_CLIENT[release] >= max(servers), (release, servers)


def dockerignore_sends(ignore_text, path):
    """Whether a build context filtered by this .dockerignore holds `path` (relative
    to the root): the last pattern that matches the path or one of its parent
    directories decides, `!` re-includes (Docker's rules, `**` any depth)."""
    sent = True
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for line in ignore_text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*") \
            .replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            sent = include
    return sent


def context_files(source):
    """The files under `source` (relative to the root) an image needs: not caches,
    build leftovers or tests."""
    top = ROOT / source
    if top.is_file():
        return [source]
    files = []
    for folder, dirs, names in os.walk(top):
        dirs[:] = [d for d in dirs if d not in ("__pycache__", "tests") and not d.endswith(".egg-info")]
        files += [str(Path(folder, name).relative_to(ROOT)) for name in names]
    return files


@pytest.mark.parametrize("name", ("base",) + IMAGES_ON_BASE)
def test_dockerignore_sends_what_the_dockerfile_copies_and_little_else(name):
    # BuildKit reads <Dockerfile>.dockerignore beside the Dockerfile, whose context is the root.
    ignore = (DOCKER / f"{name}.Dockerfile.dockerignore").read_text()
    copied = [copy.split()[0] for copy in instructions(dockerfile(name), "COPY")]
    for source in copied:
        files = context_files(source)
        assert files, source
        assert [f for f in files if not dockerignore_sends(ignore, f)] == [], source
    for unwanted in (".venv/bin/python", ".git/HEAD", "var/admin-password", "README.md",
                     "services/common/tests/conftest.py", "services/common/crm_common/__pycache__/db.pyc"):
        assert not dockerignore_sends(ignore, unwanted), unwanted
    for service in SERVICES:
        if f"services/{service}" not in copied:
            assert not dockerignore_sends(ignore, f"services/{service}/pyproject.toml"), service


def test_entrypoint_knows_every_service_class_and_port():
    entrypoint = load_entrypoint()
    lib = (ROOT / "scripts" / "lib.sh").read_text()
    for service in SERVICES:
        assert f"[{service}]={entrypoint.CLASSES[service]}" in lib
        assert entrypoint.PORTS[service] == (port_var(service), README_PORTS[service])
        assert (ROOT / "services" / service / "config.yaml").exists()
        assert port_var(service) in (ROOT / "services" / service / "config.yaml").read_text()


@pytest.mark.parametrize("status,expected", [(200, 0), (503, 1)])
def test_image_healthcheck_follows_the_services_health(monkeypatch, status, expected):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("CRM_SERVICE", "sales")
        monkeypatch.setenv("CRM_SALES_HTTP_PORT", str(server.server_address[1]))
        assert load_entrypoint().main(["health"]) == expected
    finally:
        server.shutdown()
        server.server_close()


# --- compose -------------------------------------------------------------------

def compose_schema(tmp_path):
    """The vendored Compose schema plus the one later addition compose.yaml uses:
    build.additional_contexts (Compose 2.22+, the base image as `service:base`),
    defined as the current Compose Specification defines it."""
    schema = json.loads((HERE / "compose-spec.json").read_text())
    (build,) = [variant for variant in schema["definitions"]["service"]["properties"]["build"]["oneOf"]
                if variant["type"] == "object"]
    assert "additional_contexts" not in build["properties"], "the vendored schema has it now: drop this addition"
    build["properties"]["additional_contexts"] = {"$ref": "#/definitions/list_or_dict"}
    path = tmp_path / "compose-spec.json"
    path.write_text(json.dumps(schema))
    return path


def validate_compose(document, tmp_path):
    assert SCHEMA_VENV_PYTHON.exists(), "deploy/tools/.venv missing: run deploy/tools/ensure-venv.sh (`make test` does)"
    path = tmp_path / "compose.json"
    path.write_text(json.dumps(document))  # merge keys (<<) resolved, as compose does
    return subprocess.run([str(SCHEMA_VENV_PYTHON), str(HERE / "tools" / "validate_compose.py"),
                           str(compose_schema(tmp_path)), str(path)],
                          capture_output=True, text=True, timeout=120)


def test_compose_is_valid_against_the_compose_schema(tmp_path):
    result = validate_compose(COMPOSE, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Draft201909Validator: 0 errors" in result.stdout


def test_the_schema_check_catches_a_broken_compose_file(tmp_path):
    broken = load_compose()
    broken["services"]["gateway"]["depends_on"]["customers"] = {"condition": "service_ready"}
    broken["services"]["sales"]["helthcheck"] = {}
    broken["services"]["reporting"]["build"]["additional_context"] = broken["services"]["reporting"]["build"].pop(
        "additional_contexts")
    result = validate_compose(broken, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "services/sales" in result.stdout and "helthcheck" in result.stdout
    assert "services/gateway/depends_on" in result.stdout
    assert "services/reporting/build" in result.stdout and "additional_context" in result.stdout


def test_compose_runs_the_whole_system():
    assert set(COMPOSE["services"]) == set(SERVICES) | set(INFRA) | {"base", "backup"}


def test_compose_builds_the_base_image_but_never_runs_it():
    base = COMPOSE["services"]["base"]
    assert base["image"] == f"crm/base:{BASE_VERSION}"
    assert (HERE / base["build"]["context"] / base["build"]["dockerfile"]).resolve() == DOCKER / "base.Dockerfile"
    assert base["scale"] == 0


@pytest.mark.parametrize("name", SERVICES + INFRA)
def test_every_compose_service_has_a_healthcheck(name):
    check = COMPOSE["services"][name].get("healthcheck")
    assert check and check["test"] and not check.get("disable"), name
    assert check["test"][0] in ("CMD", "CMD-SHELL"), name


@pytest.mark.parametrize("service", SERVICES)
def test_crm_services_wait_for_healthy_dependencies(service):
    depends = COMPOSE["services"][service]["depends_on"]
    expected = {"rabbitmq", "postgres"} | ({*SERVICES} - {"gateway"} if service == "gateway" else set())
    assert set(depends) == expected
    assert {dep["condition"] for dep in depends.values()} == {"service_healthy"}


COMPOSE_IMAGES = {**{service: service for service in SERVICES}, "backup": "crmctl"}


@pytest.mark.parametrize("service,image", COMPOSE_IMAGES.items())
def test_compose_builds_each_image_from_its_own_dockerfile_on_the_base(service, image):
    spec = COMPOSE["services"][service]
    assert spec["image"] == f"crm/{image}:{VERSIONS.get(service, BASE_VERSION)}"
    build = spec["build"]
    assert (HERE / build["context"]).resolve() == ROOT
    assert (ROOT / build["dockerfile"]).resolve() == DOCKER / f"{image}.Dockerfile"
    # BASE_IMAGE names a build context that is the image of the service `base`:
    # Compose builds that first, whatever order it builds the others in.
    assert build["additional_contexts"] == {build["args"]["BASE_IMAGE"]: "service:base"}


@pytest.mark.parametrize("service", SERVICES)
def test_compose_environment_is_the_readmes_configuration(service):
    env = COMPOSE["services"][service]["environment"]
    assert set(env) - set(README_VARS) == set(), "variables docs/configuration.md does not document"
    assert env["CRM_BIND_HOST"] == "0.0.0.0"
    assert env["CRM_DB"] == "postgres"
    for other in SERVICES:
        assert env[f"CRM_{other.upper()}_DB_URL"].endswith(f"@postgres:5432/crm_{other}")
    assert "@rabbitmq:5672/" in env["AMQP_URI"]
    # Ports at the documented defaults, where Prometheus and the healthcheck look.
    assert int(env[port_var(service)]) == README_PORTS[service]
    exposed = COMPOSE["services"][service].get("expose", []) + [
        mapping.split(":")[-1] for mapping in COMPOSE["services"][service].get("ports", [])]
    assert str(README_PORTS[service]) in exposed


def test_compose_backup_is_a_one_shot_with_retention_on_a_volume():
    backup = COMPOSE["services"]["backup"]
    # Only when asked for (`docker compose run --rm backup`, from cron), never by `up`.
    assert backup["profiles"] == ["backup"]
    assert "restart" not in backup
    command = backup["command"]
    assert command[:3] == ["backup", "--dir", "/backups"]
    options = dict(zip(command[3::2], command[4::2]))
    assert set(options) == {"--keep-daily", "--keep-weekly"}
    for value in options.values():
        assert re.fullmatch(r"\$\{CRM_BACKUP_KEEP_(DAILY|WEEKLY):-[1-9]\d*\}", value), value
    (mount,) = backup["volumes"]
    volume, target = mount.split(":")
    assert target == "/backups" and volume in COMPOSE["volumes"]
    assert backup["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    # Exactly the services' databases, and the data keys only for their key ids.
    env = backup["environment"]
    service_env = COMPOSE["services"]["customers"]["environment"]
    urls = {name: value for name, value in service_env.items() if name.endswith("_DB_URL")}
    assert len(urls) == len(SERVICES)
    assert env == {**urls, "CRM_DB": "postgres", "CRM_DATA_KEYS": service_env["CRM_DATA_KEYS"]}


def test_postgres_init_creates_every_services_database():
    script = (HERE / "postgres" / "init-databases.sh").read_text()
    assert re.search(r"for service in " + " ".join(SERVICES) + r"; do", script)
    mounts = COMPOSE["services"]["postgres"]["volumes"]
    assert any(m.startswith("./postgres/init-databases.sh:/docker-entrypoint-initdb.d/") for m in mounts)


def test_rabbitmq_enables_management_and_prometheus():
    plugins = (HERE / "rabbitmq" / "enabled_plugins").read_text()
    assert re.fullmatch(r"\[rabbitmq_management,\s*rabbitmq_prometheus\]\.\s*", plugins)
    assert "./rabbitmq/enabled_plugins:/etc/rabbitmq/enabled_plugins:ro" in COMPOSE["services"]["rabbitmq"]["volumes"]


def test_compose_mounts_exist():
    for name, spec in COMPOSE["services"].items():
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (HERE / source).exists(), f"{name}: {volume}"
            else:
                assert source in COMPOSE["volumes"], f"{name}: {volume}"


def test_compose_prometheus_is_the_local_config_with_compose_host_names():
    """compose/prometheus.yml must stay deploy/prometheus/prometheus.yml with
    127.0.0.1:<port> replaced by the compose service that listens there."""
    local = yaml.safe_load((HERE / "prometheus" / "prometheus.yml").read_text())
    compose = yaml.safe_load((HERE / "compose" / "prometheus.yml").read_text())
    hosts = {f"127.0.0.1:{port}": f"{service}:{port}" for service, port in README_PORTS.items()}
    hosts["127.0.0.1:15692"] = "rabbitmq:15692"
    expected = json.loads(json.dumps(local))
    for job in expected["scrape_configs"]:
        for static in job.get("static_configs", []):
            static["targets"] = [hosts[target] for target in static["targets"]]
    assert compose == expected, "deploy/compose/prometheus.yml is out of step with deploy/prometheus/prometheus.yml"
    for job in compose["scrape_configs"]:
        for static in job["static_configs"]:
            for target in static["targets"]:
                assert target.split(":")[0] in COMPOSE["services"], target


def test_compose_prometheus_config_passes_promtool(tmp_path):
    binary = shutil.which("promtool")
    assert binary, "promtool not found: run scripts/ensure-promtool.sh (`make test` does)"
    shutil.copy(HERE / "compose" / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copytree(HERE / "prometheus" / "rules", tmp_path / "rules")
    result = subprocess.run([binary, "check", "config", "prometheus.yml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    rule_files = len(list((HERE / "prometheus" / "rules").glob("*.yml")))
    assert f"{rule_files} rule files found" in result.stdout + result.stderr


def test_grafana_provisioning_points_at_compose_prometheus():
    datasources = yaml.safe_load((HERE / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasources["datasources"][0]["url"] == "http://prometheus:9090"
    mounts = COMPOSE["services"]["grafana"]["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
    provider = yaml.safe_load((HERE / "grafana" / "provisioning" / "dashboards" / "crm.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert f"./grafana/dashboards:{path}:ro" in mounts


# --- Kubernetes ------------------------------------------------------------------

def kustomize(directory):
    if shutil.which("kubectl"):
        command = ["kubectl", "kustomize", str(directory)]
    elif shutil.which("kustomize"):
        command = ["kustomize", "build", str(directory)]
    else:
        pytest.fail("neither kubectl nor kustomize is installed: nothing can render deploy/k8s")
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request):
    docs = kustomize(HERE / "k8s" / "overlays" / request.param)
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    return request.param, by_kind


def test_there_are_dev_and_prod_overlays():
    assert {"dev", "prod"} <= set(OVERLAYS)


def test_every_service_has_deployment_service_hpa_and_pdb(rendered):
    _, by_kind = rendered
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert set(SERVICES) <= set(by_kind.get(kind, {})), kind
    for service in SERVICES:
        labels = by_kind["Deployment"][service]["spec"]["template"]["metadata"]["labels"]
        hpa = by_kind["HorizontalPodAutoscaler"][service]["spec"]
        assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": service}
        assert hpa["minReplicas"] >= 1 and hpa["maxReplicas"] > hpa["minReplicas"]
        assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]
        pdb = by_kind["PodDisruptionBudget"][service]["spec"]
        assert pdb["selector"]["matchLabels"].items() <= labels.items()
        # A PDB that can never be satisfied blocks every node drain.
        assert pdb.get("minAvailable", 0) < hpa["minReplicas"] or "maxUnavailable" in pdb
        svc = by_kind["Service"][service]["spec"]
        assert svc["selector"].items() <= labels.items()
        assert [p["port"] for p in svc["ports"]] == [README_PORTS[service]]


def test_every_deployment_has_probes_resources_and_runs_non_root(rendered):
    _, by_kind = rendered
    for service in SERVICES:
        pod = by_kind["Deployment"][service]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        (container,) = pod["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": README_PORTS[service]}
        ready = "/ready" if service == "gateway" else "/health"
        assert container["readinessProbe"]["httpGet"] == {"path": ready, "port": "http"}, service
        assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}, service
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind]), (service, kind)
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        env = {e["name"]: e for e in container["env"]}
        assert env[port_var(service)]["value"] == str(README_PORTS[service])
        assert "crm-rabbitmq:5672" in env["AMQP_URI"]["value"]


def test_config_comes_from_a_configmap_and_a_secret(rendered):
    overlay, by_kind = rendered
    config_maps = by_kind["ConfigMap"]
    for service in SERVICES:
        (container,) = by_kind["Deployment"][service]["spec"]["template"]["spec"]["containers"]
        sources = container["envFrom"]
        (config_ref,) = [s["configMapRef"]["name"] for s in sources if "configMapRef" in s]
        (secret_ref,) = [s["secretRef"]["name"] for s in sources if "secretRef" in s]
        config = config_maps[config_ref]["data"]
        assert config["CRM_BIND_HOST"] == "0.0.0.0"
        assert set(config) - set(README_VARS) == set()
        if overlay == "dev":
            secret = by_kind["Secret"][secret_ref]["data"]
            # Database credentials come from CloudNativePG, never from crm-secrets.
            assert set(secret) == {"CRM_JWT_SECRET", "CRM_ADMIN_PASSWORD", "CRM_DATA_KEYS", "CRM_BLIND_INDEX_KEY"}
        else:
            assert secret_ref == "crm-secrets"  # created out of band, never in the repository
            assert "Secret" not in by_kind


def test_broker_and_database_are_part_of_the_deployment(rendered):
    overlay, by_kind = rendered
    (cluster,) = by_kind["RabbitmqCluster"].values()
    assert cluster["apiVersion"] == "rabbitmq.com/v1beta1" and cluster["metadata"]["name"] == "crm-rabbitmq"
    assert {"rabbitmq_management", "rabbitmq_prometheus"} <= set(cluster["spec"]["rabbitmq"]["additionalPlugins"])
    # No home-made database server any more: CloudNativePG runs PostgreSQL.
    assert "StatefulSet" not in by_kind
    assert set(by_kind["Cluster"]) == {f"crm-{service}-db" for service in SERVICES}


def test_rabbitmq_makes_the_shared_queues_quorum_queues(rendered):
    """nameko declares its queues without a type: the broker-wide default
    decides, and it needs RabbitMQ 3.13+ (see base/rabbitmq.yaml)."""
    overlay, by_kind = rendered
    spec = by_kind["RabbitmqCluster"]["crm-rabbitmq"]["spec"]
    config = dict(line.split("=", 1) for line in spec["rabbitmq"]["additionalConfig"].splitlines() if "=" in line)
    assert {key.strip(): value.strip() for key, value in config.items()}["default_queue_type"] == "quorum"
    version = re.fullmatch(r"rabbitmq:(\d+)\.(\d+)(?:\.\d+)?(?:-management)?", spec["image"])
    assert version and tuple(map(int, version.groups())) >= (3, 13), spec["image"]
    # A quorum queue needs a majority of its nodes: an odd count, 3 or more in prod.
    assert spec["replicas"] % 2 == 1
    assert spec["replicas"] >= (3 if overlay == "prod" else 1)


def test_rabbitmq_cluster_has_the_operators_required_fields(rendered):
    """No schema is bundled for the operator's CRD: the fields it needs, by hand."""
    _, by_kind = rendered
    for cluster in by_kind["RabbitmqCluster"].values():
        spec = cluster["spec"]
        assert isinstance(spec["replicas"], int) and spec["replicas"] >= 1
        assert set(spec) <= {"replicas", "image", "rabbitmq", "resources", "persistence", "service",
                             "override", "tls", "affinity", "tolerations", "terminationGracePeriodSeconds"}, spec
        assert set(spec["rabbitmq"]) <= {"additionalPlugins", "additionalConfig", "advancedConfig", "envConfig"}
        assert isinstance(spec["rabbitmq"]["additionalConfig"], str)
        assert re.fullmatch(r"\d+(Gi|Mi)", spec["persistence"]["storage"])


def test_every_service_database_is_a_cloudnativepg_cluster(rendered):
    """No schema is bundled for CloudNativePG's CRD: its required fields and the
    ones our wiring depends on, by hand."""
    overlay, by_kind = rendered
    for service in SERVICES:
        cluster = by_kind["Cluster"][f"crm-{service}-db"]
        assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
        spec = cluster["spec"]
        assert isinstance(spec["instances"], int) and spec["instances"] >= (3 if overlay == "prod" else 1)
        assert re.fullmatch(r"\d+(Gi|Mi)", spec["storage"]["size"])
        assert re.fullmatch(r"ghcr\.io/cloudnative-pg/postgresql:\d+(\.\d+)?", spec["imageName"])
        # The database and its owner, as on a laptop: the app Secret's uri names them.
        assert spec["bootstrap"] == {"initdb": {"database": f"crm_{service}", "owner": f"crm_{service}"}}
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(spec["resources"][kind])


def test_every_service_reads_its_database_url_from_its_own_cluster(rendered):
    _, by_kind = rendered
    for service in SERVICES:
        (container,) = by_kind["Deployment"][service]["spec"]["template"]["spec"]["containers"]
        urls = {e["name"]: e for e in container["env"] if e["name"].endswith("_DB_URL")}
        # CloudNativePG's generated Secret <cluster>-app, key uri (postgresql://...).
        assert urls == {f"CRM_{service.upper()}_DB_URL": {
            "name": f"CRM_{service.upper()}_DB_URL",
            "valueFrom": {"secretKeyRef": {"name": f"crm-{service}-db-app", "key": "uri"}}}}, service


def validate_k8s(objects, tmp_path):
    assert SCHEMA_VENV_PYTHON.exists(), "deploy/tools/.venv missing: run deploy/tools/ensure-venv.sh (`make test` does)"
    document = tmp_path / "objects.json"
    document.write_text(json.dumps(objects))
    return subprocess.run([str(SCHEMA_VENV_PYTHON), str(HERE / "tools" / "validate_k8s.py"), K8S_VERSION,
                           str(document), *CUSTOM_API_VERSIONS], capture_output=True, text=True, timeout=300)


def test_every_manifest_is_valid_against_the_kubernetes_schemas(rendered, tmp_path):
    overlay, by_kind = rendered
    objects = [obj for kind in by_kind.values() for obj in kind.values()]
    result = validate_k8s(objects, tmp_path)
    assert result.returncode == 0, f"{overlay}:\n{result.stdout}{result.stderr}"
    custom = sum(len(by_kind.get(kind, {})) for kind in ("RabbitmqCluster", "Cluster"))
    assert f"kubernetes {K8S_VERSION}: {len(objects) - custom} valid, {custom} custom resources skipped, 0 errors" \
        in result.stdout, result.stdout


def test_the_kubernetes_schema_check_catches_broken_manifests(rendered, tmp_path):
    _, by_kind = rendered
    deployment = json.loads(json.dumps(by_kind["Deployment"]["customers"]))
    deployment["spec"]["replicas"] = "two"
    # strict: a misspelt field is an error, not silently dropped by the API server.
    service = json.loads(json.dumps(by_kind["Service"]["sales"]))
    (port,) = service["spec"]["ports"]
    port["targetPrt"] = port.pop("targetPort")
    hpa = json.loads(json.dumps(by_kind["HorizontalPodAutoscaler"]["sales"]))
    hpa["apiVersion"] = "autoscaling/v2beta9"
    result = validate_k8s([deployment, service, hpa, by_kind["RabbitmqCluster"]["crm-rabbitmq"],
                           by_kind["PodDisruptionBudget"]["gateway"]], tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Deployment/customers: spec/replicas: 'two' is not of type 'integer'" in result.stdout
    assert "Service/sales: spec/ports/0: " in result.stdout and "targetPrt" in result.stdout
    assert "HorizontalPodAutoscaler/sales: no schema for autoscaling/v2beta9" in result.stdout
    assert "1 valid, 1 custom resources skipped, 3 errors" in result.stdout


def backup_pod(by_kind):
    (cronjob,) = by_kind["CronJob"].values()
    return cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def test_images_are_the_compose_images_at_one_tag(rendered):
    overlay, by_kind = rendered
    (backup_container,) = backup_pod(by_kind)["containers"]
    images = {service: by_kind["Deployment"][service]["spec"]["template"]["spec"]["containers"][0]["image"]
              for service in SERVICES}
    images["backup"] = backup_container["image"]
    tags = set()
    for compose_service, image in images.items():
        name, tag = image.rsplit(":", 1)
        compose_name = COMPOSE["services"][compose_service]["image"].rsplit(":", 1)[0]
        assert name == compose_name or name.endswith("/" + compose_name), image
        tags.add(tag)
    assert tags == {VERSIONS["gateway"]}, f"{overlay}: every image at the release's version"


def test_a_nightly_cronjob_backs_up_every_database_with_retention(rendered):
    overlay, by_kind = rendered
    (cronjob,) = by_kind["CronJob"].values()
    spec = cronjob["spec"]
    minute, hour, *every = spec["schedule"].split()
    assert minute.isdigit() and hour.isdigit() and every == ["*", "*", "*"], spec["schedule"]
    assert spec["concurrencyPolicy"] == "Forbid"
    pod = backup_pod(by_kind)
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    (container,) = pod["containers"]
    assert container["image"].rsplit(":", 1)[0].endswith("crm/crmctl")
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    assert container["args"] == ["backup", "--dir", "/backups",
                                 "--keep-daily", "$(KEEP_DAILY)", "--keep-weekly", "$(KEEP_WEEKLY)"]
    env = {e["name"]: e for e in container["env"]}
    # The retention, from a ConfigMap of the overlay (Kubernetes expands $(VAR) from env).
    for name in ("KEEP_DAILY", "KEEP_WEEKLY"):
        ref = env[name]["valueFrom"]["configMapKeyRef"]
        assert int(by_kind["ConfigMap"][ref["name"]]["data"][ref["key"]]) >= 1, (overlay, name)
    # Every database with its service's own credentials, the data keys from the services' Secret.
    service_container = by_kind["Deployment"]["customers"]["spec"]["template"]["spec"]["containers"][0]
    (services_secret,) = [s["secretRef"]["name"] for s in service_container["envFrom"] if "secretRef" in s]
    for service in SERVICES:
        assert env[f"CRM_{service.upper()}_DB_URL"]["valueFrom"] == {
            "secretKeyRef": {"name": f"crm-{service}-db-app", "key": "uri"}}, service
    assert env["CRM_DATA_KEYS"]["valueFrom"] == {"secretKeyRef": {"name": services_secret, "key": "CRM_DATA_KEYS"}}
    assert not [s for s in container.get("envFrom", []) if "secretRef" in s], "no other secret than it needs"
    # /backups on a PersistentVolumeClaim of the overlay.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    claim = volumes[mounts["/backups"]]["persistentVolumeClaim"]["claimName"]
    assert claim in by_kind["PersistentVolumeClaim"]
    if container["securityContext"].get("readOnlyRootFilesystem"):
        assert "emptyDir" in volumes[mounts["/tmp"]], "pg_dump and Python need a writable /tmp"


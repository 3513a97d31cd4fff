"""Offline checks of the images (Dockerfile.*) and the kustomize base in deploy/k8s.

No Docker engine and no cluster: the manifests are built with `kubectl kustomize`, validated
against the Kubernetes OpenAPI schemas (kubernetes-validate), linted (yamllint, hadolint,
checkov), the alert rules checked and exercised with promtool, and the built objects read
back to assert the contract with the programs: console scripts, probe routes and settings,
secrets, and the security settings of every container.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

try:
    import kubernetes_validate
except ImportError:
    pytest.fail(
        "kubernetes-validate is not installed: pip install kubernetes-validate "
        "(or: bash scripts/install-deploy-tools.sh)",
        pytrace=False,
    )

from localk8s.manifests import Manifest, Sidecar, container, containers, literal_env, pod_spec
from localk8s.manifests import build as kustomize
from migrator.errors import EXIT_CODES
from migrator.termination import DEFAULT_PATH, TERMINATION_LOG_ENV
from tests.deploy_tools import ROOT, find_tool, run_tool
from tests.metric_families import probe_families

K8S = ROOT / "deploy" / "k8s"
COMPONENTS = K8S / "components"
DASHBOARD = ROOT / "deploy" / "grafana" / "kata-db.json"
DOCKERFILES = {"Dockerfile.migrator": "kata-migrate", "Dockerfile.probe": "kata-probe"}
VENV_BIN = "/opt/venv/bin"

# The probe's contract with the manifests: one port, these routes, these defaults.
PROBE_PORT = 8081
PROBE_INTERVAL = 5.0
PROBE_TIMEOUT = 2.0
STALENESS = 3 * PROBE_INTERVAL
LIVENESS_PATHS = {"/livez", "/healthz"}
READINESS_PATHS = {"/readyz"}
PROBE_ROUTES = {
    "/livez",
    "/healthz",
    "/readyz",
    "/readyz/database",
    "/readyz/pgvector",
    "/readyz/schema",
    "/metrics",
}
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
# The oldest Kubernetes this base targets (native sidecars on by default since 1.29; Job
# podFailurePolicy and PDB unhealthyPodEvictionPolicy GA in 1.31) and the newest schemas known.
K8S_VERSIONS = ("1.31.0", kubernetes_validate.latest_version())

MIGRATOR_IMAGE = "kata-context/db-migrator"
# A Job's name: a DNS-1123 subdomain of at most 63 characters (its pods' job-name label).
JOB_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def build(directory: Path) -> list[Manifest]:
    return kustomize(directory, find_tool("kubectl"))


@pytest.fixture(scope="module")
def manifests() -> list[Manifest]:
    """Every object `kubectl kustomize deploy/k8s` renders, as parsed YAML."""
    return build(K8S)


def migrator_tag() -> str:
    """The migrator image's tag in kustomization.yaml: the one place the release is set."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    (entry,) = [image for image in kustomization["images"] if image["name"] == MIGRATOR_IMAGE]
    tag: str = entry["newTag"]
    return tag


def migration_job(manifests: list[Manifest]) -> Manifest:
    """The one migration Job, whatever release its name carries."""
    jobs = [m for m in manifests if m["kind"] == "Job"]
    assert len(jobs) == 1, [j["metadata"]["name"] for j in jobs]
    assert jobs[0]["metadata"]["labels"]["app.kubernetes.io/name"] == "kata-db-migrate"
    return jobs[0]


def find(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    matches = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected exactly one {kind}/{name}, found {len(matches)}"
    return matches[0]


def env_of(c: Manifest) -> dict[str, Manifest]:
    return {e["name"]: e for e in c.get("env", [])}


def workloads(manifests: list[Manifest]) -> list[Manifest]:
    return [m for m in manifests if m["kind"] in {"Deployment", "Job"}]


def console_scripts() -> dict[str, str]:
    """[project.scripts] from pyproject.toml; the agreed names while it does not exist yet."""
    pyproject = ROOT / "pyproject.toml"
    if not pyproject.exists():
        return {"kata-migrate": "migrator.cli:main", "kata-probe": "probe.cli:main"}
    scripts: dict[str, str] = tomllib.loads(pyproject.read_text())["project"]["scripts"]
    return scripts


# --- the build and the schemas -------------------------------------------------------------


def test_kustomize_renders_the_base(manifests: list[Manifest]) -> None:
    kinds = sorted((m["kind"], m["metadata"]["name"]) for m in manifests)
    assert kinds == sorted(
        [
            ("Namespace", "kata-context"),
            ("ServiceAccount", "kata-context"),
            ("ServiceAccount", "kata-db-migrate"),
            ("Job", f"kata-db-migrate-{migrator_tag()}"),
            ("Deployment", "kata-context"),
            ("Service", "kata-context"),
            ("PodDisruptionBudget", "kata-context"),
            ("NetworkPolicy", "kata-context"),
            ("NetworkPolicy", "kata-db-migrate"),
            ("ServiceMonitor", "kata-context"),
            ("PrometheusRule", "kata-db"),
        ]
    )
    for m in manifests:
        if m["kind"] != "Namespace":
            assert m["metadata"]["namespace"] == "kata-context", m["metadata"]["name"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_objects_validate_strictly_against_kubernetes_schemas(
    manifests: list[Manifest], version: str
) -> None:
    unknown = []
    for m in manifests:
        try:
            kubernetes_validate.validate(m, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            unknown.append((m["apiVersion"], m["kind"]))
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{m['kind']}/{m['metadata']['name']} invalid for {version}: {exc}")
    # Only the Prometheus Operator CRDs may be unknown; they are checked structurally below.
    assert set(unknown) <= CRD_KINDS, unknown


def test_secret_example_is_valid_but_not_deployed(manifests: list[Manifest]) -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert "secret.example.yaml" not in kustomization["resources"]
    assert not [m for m in manifests if m["kind"] == "Secret"]
    examples = list(yaml.safe_load_all((K8S / "secret.example.yaml").read_text()))
    for example in examples:
        kubernetes_validate.validate(example, kubernetes_validate.latest_version(), strict=True)
    keys = {e["metadata"]["name"]: set(e["stringData"]) for e in examples}
    assert keys == {
        "kata-db-owner": {"DATABASE_URL", "DATABASE_URL_UNPOOLED"},
        "kata-db-app": {"DATABASE_URL"},
        "kata-db-probe": {"DATABASE_URL"},
    }
    # The Secrets the workloads reference are exactly these, with these keys.
    for secret, key in SECRET_OF.values():
        assert key in keys[secret]


# --- the contract with the programs --------------------------------------------------------


def test_job_runs_the_console_script(manifests: list[Manifest]) -> None:
    assert "kata-migrate" in console_scripts()
    migrate = container(migration_job(manifests), "migrate")
    assert migrate["command"] == [f"{VENV_BIN}/kata-migrate"]
    assert migrate["args"] == ["up"]


def test_deployment_runs_the_console_scripts(manifests: list[Manifest]) -> None:
    scripts = console_scripts()
    assert {"kata-migrate", "kata-probe"} <= set(scripts)
    deployment = find(manifests, "Deployment", "kata-context")
    assert container(deployment, "db-probe")["command"] == [f"{VENV_BIN}/kata-probe"]
    wait = container(deployment, "wait-for-schema")
    assert wait["command"] == [f"{VENV_BIN}/kata-migrate"]
    assert wait["args"][0] == "wait"
    assert "--timeout" in wait["args"]


def test_probe_is_a_native_sidecar_started_first(manifests: list[Manifest]) -> None:
    init = pod_spec(find(manifests, "Deployment", "kata-context"))["initContainers"]
    assert [c["name"] for c in init] == ["db-probe", "wait-for-schema"]
    assert init[0]["restartPolicy"] == "Always"
    assert "restartPolicy" not in init[1]


def test_probe_paths_and_ports_match_the_probe(manifests: list[Manifest]) -> None:
    deployment = find(manifests, "Deployment", "kata-context")
    sidecar = container(deployment, "db-probe")
    assert sidecar["ports"] == [{"name": "metrics", "containerPort": PROBE_PORT, "protocol": "TCP"}]
    assert env_of(sidecar)["PROBE_PORT"]["value"] == str(PROBE_PORT)
    for kind, paths in (
        ("startupProbe", LIVENESS_PATHS),
        ("livenessProbe", LIVENESS_PATHS),
        ("readinessProbe", READINESS_PATHS),
    ):
        get = sidecar[kind]["httpGet"]
        assert get["path"] in paths, (kind, get)
        assert get["port"] == PROBE_PORT, (kind, get)
    # The API container is gated by the sidecar's readiness, never restarted by it.
    api = container(deployment, "api")
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": PROBE_PORT}
    assert api["livenessProbe"].get("httpGet", {}).get("port") != PROBE_PORT

    service = find(manifests, "Service", "kata-context")
    metrics = [p for p in service["spec"]["ports"] if p["name"] == "metrics"]
    assert metrics == [{"name": "metrics", "port": PROBE_PORT, "targetPort": "metrics", "protocol": "TCP"}]
    monitor = find(manifests, "ServiceMonitor", "kata-context")
    assert [(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]] == [("metrics", "/metrics")]


def test_probe_paths_are_routes_of_the_probe_app(manifests: list[Manifest]) -> None:
    """The contract's routes always; the real app's router too once probe.app exists."""
    deployment = find(manifests, "Deployment", "kata-context")
    used = {
        c[kind]["httpGet"]["path"]
        for c in containers(deployment)
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
        if "httpGet" in c.get(kind, {})
    }
    used |= {e["path"] for e in find(manifests, "ServiceMonitor", "kata-context")["spec"]["endpoints"]}
    assert used <= PROBE_ROUTES, used - PROBE_ROUTES

    if importlib.util.find_spec("probe.app") is None:
        return  # the probe package is not written yet: the contract above is all we can check
    app_module = importlib.import_module("probe.app")
    settings_module = importlib.import_module("probe.settings")
    if not hasattr(app_module, "create_app"):
        return
    from prometheus_client import CollectorRegistry

    # The sidecar's own environment, as the probe would read it in the pod.
    sidecar = container(deployment, "db-probe")
    env = literal_env(sidecar)
    env["DATABASE_URL"] = "postgresql://probe@127.0.0.1:1/kata"
    settings = settings_module.ProbeSettings.load([], env)
    assert settings.port == PROBE_PORT
    assert settings.interval == PROBE_INTERVAL
    assert settings.timeout == PROBE_TIMEOUT
    assert settings.staleness == STALENESS
    defaults = settings_module.ProbeSettings.load([], {"DATABASE_URL": env["DATABASE_URL"]})
    assert defaults.port == PROBE_PORT, "the manifests assume the default PROBE_PORT"

    app = app_module.create_app(settings, CollectorRegistry())
    routes = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert used <= routes, f"manifests use {sorted(used - routes)} that probe.app does not serve"


def test_probe_timings_follow_the_probe_settings(manifests: list[Manifest]) -> None:
    sidecar = Sidecar(container(find(manifests, "Deployment", "kata-context"), "db-probe"))
    assert sidecar.interval == PROBE_INTERVAL
    assert sidecar.timeout == PROBE_TIMEOUT
    liveness, readiness, startup = sidecar.liveness, sidecar.readiness, sidecar.startup
    # A restart needs failures spanning more than the staleness bound: one stale window is
    # not enough to kill a pod.
    assert liveness.period * liveness.failure_threshold >= 2 * STALENESS
    # Polling readiness faster than one round per interval only re-reads the same result.
    assert readiness.period >= PROBE_INTERVAL
    # One failed round must not flap the endpoints; an outage must show within ~4 intervals.
    assert readiness.failure_threshold >= 2
    assert readiness.period * readiness.failure_threshold <= 4 * PROBE_INTERVAL
    for probe in (startup, liveness, readiness):
        assert probe.timeout >= 1
    assert startup.period * startup.failure_threshold >= 10


# Least privilege: each container reads the Secret of its own role (deploy/roles.sql).
SECRET_OF = {
    "migrate": ("kata-db-owner", "DATABASE_URL_UNPOOLED"),
    "db-probe": ("kata-db-probe", "DATABASE_URL"),
    "wait-for-schema": ("kata-db-probe", "DATABASE_URL"),
    "api": ("kata-db-app", "DATABASE_URL"),
}


def test_no_database_url_is_a_literal_value(manifests: list[Manifest]) -> None:
    seen = set()
    for m in workloads(manifests):
        for c in containers(m):
            for name, var in env_of(c).items():
                if name.startswith("DATABASE_URL"):
                    assert "value" not in var, f"{c['name']}: {name} is a literal"
                    ref = var["valueFrom"]["secretKeyRef"]
                    assert (ref["name"], ref["key"]) == (SECRET_OF[c["name"]][0], name), c["name"]
                    seen.add(c["name"])
    assert seen == set(SECRET_OF)
    rendered = yaml.safe_dump_all(manifests)
    assert not re.search(r"postgres(ql)?://", rendered), "a connection URL is in the manifests"


# The migrator's timeouts the Job's backoffLimit and activeDeadlineSeconds are sized from; the Job
# sets each itself, so the sizing never rests on a default that could change.
SIZING = (
    "MIGRATOR_CONNECT_TIMEOUT",
    "MIGRATOR_LOCK_TIMEOUT",
    "MIGRATOR_DDL_LOCK_TIMEOUT",
    "MIGRATOR_CONCURRENT_WAIT_TIMEOUT",
    "MIGRATOR_LOCK_RETRY_BUDGET",
    "MIGRATOR_STATEMENT_TIMEOUT",
)


def timeouts(job: Manifest) -> dict[str, float]:
    env = env_of(container(job, "migrate"))
    missing = [name for name in SIZING if "value" not in env.get(name, {})]
    assert not missing, f"the Job leaves {missing} to the migrator's defaults"
    return {name: float(env[name]["value"]) for name in SIZING}


def longest_blocked_attempt(seconds: dict[str, float]) -> float:
    """An attempt that ends in a lock timeout: a DDL statement's lock wait, or a concurrent index
    build's wait for older transactions."""
    return max(seconds["MIGRATOR_DDL_LOCK_TIMEOUT"], seconds["MIGRATOR_CONCURRENT_WAIT_TIMEOUT"])


def test_migration_job_settings(manifests: list[Manifest]) -> None:
    job = migration_job(manifests)
    spec = job["spec"]
    assert 1 <= spec["backoffLimit"] <= 6
    seconds = timeouts(job)
    # The deadline leaves room for the connect deadline, the lock wait, the first attempt blocked
    # by other sessions' locks, the retries within their budget and the last attempt's statement
    # limit (its lock wait included), so it never cuts a run short that the migrator would let
    # finish.
    longest_run = (
        seconds["MIGRATOR_CONNECT_TIMEOUT"]
        + seconds["MIGRATOR_LOCK_TIMEOUT"]
        + longest_blocked_attempt(seconds)
        + seconds["MIGRATOR_LOCK_RETRY_BUDGET"]
        + seconds["MIGRATOR_STATEMENT_TIMEOUT"]
    )
    assert spec["activeDeadlineSeconds"] > longest_run
    # A failed Job stays for its logs: no TTL deletes it (docs/deploy.md says how to clean up).
    assert "ttlSecondsAfterFinished" not in spec
    assert pod_spec(job)["restartPolicy"] == "Never"
    env = env_of(container(job, "migrate"))
    # The roles `up` grants to are the names deploy/roles.sql creates.
    roles_sql = (ROOT / "deploy" / "roles.sql").read_text()
    for name, role in (("MIGRATOR_APP_ROLE", "app"), ("MIGRATOR_PROBE_ROLE", "probe")):
        assert f"\\set {role} {env[name]['value']}" in roles_sql
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert "optional" not in env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert env["DATABASE_URL_UNPOOLED"]["valueFrom"]["secretKeyRef"]["optional"] is True


def pod_failure_action(rules: list[Manifest], code: int, *, disrupted: bool) -> str:
    """The action the Job controller takes for a pod whose `migrate` container exited `code`: the
    first rule that matches, else Count (the Job API's podFailurePolicy.rules)."""
    for rule in rules:
        if "onExitCodes" in rule and code in rule["onExitCodes"]["values"]:
            return str(rule["action"])
        conditions = rule.get("onPodConditions", [])
        if disrupted and {"type": "DisruptionTarget", "status": "True"} in conditions:
            return str(rule["action"])
    return "Count"


def test_pod_failure_policy_ends_the_job_on_permanent_codes_and_retries_transient_ones(
    manifests: list[Manifest],
) -> None:
    job = migration_job(manifests)
    spec = job["spec"]
    rules = spec["podFailurePolicy"]["rules"]
    exit_rules = {
        rule["action"]: set(rule["onExitCodes"]["values"]) for rule in rules if "onExitCodes" in rule
    }
    for rule in rules:
        if "onExitCodes" in rule:
            assert rule["onExitCodes"]["containerName"] == "migrate"
            assert rule["onExitCodes"]["operator"] == "In"
    assert exit_rules == {"FailJob": {2, 4, 5, 6, 9, 10}, "Count": {3, 7, 11}}
    # A drain or preemption never counts, whatever the code: the rules are evaluated in order and
    # the first match decides (the Job API's podFailurePolicy.rules), so Ignore comes first.
    actions = [rule["action"] for rule in rules]
    assert actions == ["Ignore", "FailJob", "Count"]
    assert rules[0]["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]
    for code in range(1, 256):
        assert pod_failure_action(rules, code, disrupted=True) == "Ignore", code
        expected = "FailJob" if code in exit_rules["FailJob"] else "Count"
        assert pod_failure_action(rules, code, disrupted=False) == expected, code
    # With every retry taking its longest transient path (exit 11: connect, lock wait, the first
    # blocked attempt, the retry budget and the one attempt it let start) and the Job
    # controller's back-off (10 s doubling), the retries fit in the deadline.
    seconds = timeouts(job)
    slowest = (
        seconds["MIGRATOR_CONNECT_TIMEOUT"]
        + seconds["MIGRATOR_LOCK_TIMEOUT"]
        + 2 * longest_blocked_attempt(seconds)
        + seconds["MIGRATOR_LOCK_RETRY_BUDGET"]
    )
    backoff = sum(10 * 2**attempt for attempt in range(spec["backoffLimit"]))
    assert (spec["backoffLimit"] + 1) * slowest + backoff < spec["activeDeadlineSeconds"]


def test_the_job_reports_its_final_event_in_the_termination_message(manifests: list[Manifest]) -> None:
    migrate = container(migration_job(manifests), "migrate")
    assert migrate["terminationMessagePolicy"] == "FallbackToLogsOnError"
    # kubelet's default path is where the migrator writes by default.
    assert "terminationMessagePath" not in migrate
    assert DEFAULT_PATH == "/dev/termination-log"
    assert TERMINATION_LOG_ENV not in env_of(migrate)


# --- the Job's name: one per release -------------------------------------------------------


def test_the_job_name_carries_the_migrator_tag_and_is_a_valid_name(manifests: list[Manifest]) -> None:
    job = migration_job(manifests)
    tag = migrator_tag()
    name = job["metadata"]["name"]
    assert name == f"kata-db-migrate-{tag}"
    assert JOB_NAME.fullmatch(name) and len(name) <= 63, name
    assert job["metadata"]["labels"]["app.kubernetes.io/version"] == tag
    assert container(job, "migrate")["image"] == f"{MIGRATOR_IMAGE}:{tag}"
    # The schema-wait init container runs the same release.
    wait = container(find(manifests, "Deployment", "kata-context"), "wait-for-schema")
    assert wait["image"] == container(job, "migrate")["image"]


DIGEST = "sha256:" + "0123456789abcdef" * 4


def copy_of_the_base(tmp_path: Path, image: dict[str, str]) -> Path:
    """deploy/k8s with the migrator's `images` entry replaced, as `kustomize edit set image` does."""
    base = tmp_path / "k8s"
    base.mkdir()
    for path in K8S.glob("*.yaml"):
        (base / path.name).write_text(path.read_text())
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    kustomization["images"] = [
        {"name": MIGRATOR_IMAGE, **image} if entry["name"] == MIGRATOR_IMAGE else entry
        for entry in kustomization["images"]
    ]
    (base / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return base


@pytest.mark.parametrize(
    ("image", "reference", "name"),
    [
        ({"newTag": "0.2.0"}, f"{MIGRATOR_IMAGE}:0.2.0", "kata-db-migrate-0.2.0"),
        (
            {"newName": "registry.example.com:5000/kata/db-migrator", "newTag": "0.2.0-rc.1"},
            "registry.example.com:5000/kata/db-migrator:0.2.0-rc.1",
            "kata-db-migrate-0.2.0-rc.1",
        ),
        (
            {"newName": "registry.example.com/kata/db-migrator", "newTag": "0.3.1", "digest": DIGEST},
            f"registry.example.com/kata/db-migrator:0.3.1@{DIGEST}",
            "kata-db-migrate-0.3.1",
        ),
    ],
    ids=["tag", "registry-with-port", "tag-and-digest"],
)
def test_each_release_is_a_job_of_its_own_name(
    tmp_path: Path, image: dict[str, str], reference: str, name: str
) -> None:
    job = migration_job(build(copy_of_the_base(tmp_path, image)))
    assert container(job, "migrate")["image"] == reference
    assert job["metadata"]["name"] == name
    assert JOB_NAME.fullmatch(name) and len(name) <= 63


def test_a_migrator_image_by_digest_alone_fails_the_build_instead_of_naming_the_job_wrongly(
    tmp_path: Path,
) -> None:
    base = copy_of_the_base(tmp_path, {"newName": "registry.example.com/kata/db-migrator", "digest": DIGEST})
    result = run_tool("kubectl", "kustomize", str(base))
    assert result.returncode != 0
    assert "options.index 1 is out of bounds for value migrate/kata/db-migrator" in result.stderr


def overlay(tmp_path: Path, **kustomization: object) -> Path:
    directory = tmp_path / "overlay"
    directory.mkdir()
    text = yaml.safe_dump({"resources": [os.path.relpath(K8S, directory)], **kustomization})
    (directory / "kustomization.yaml").write_text(text)
    return directory


# The check README.md, docs/deploy.md and both components give for an overlay's build: it prints
# the Job's name line, and fails when the name does not end with the migrator's tag.
NAME_CHECK = 'kubectl kustomize overlays/production | grep -x "  name: kata-db-migrate-$TAG"'
NAME_CHECK_DOCS = (
    ROOT / "README.md",
    ROOT / "docs" / "deploy.md",
    COMPONENTS / "argocd" / "kustomization.yaml",
    COMPONENTS / "flux" / "kustomization.yaml",
)


def documented_name_check(directory: Path, tag: str) -> subprocess.CompletedProcess[str]:
    """NAME_CHECK as a reader runs it, on `directory` instead of overlays/production."""
    kubectl = Path(find_tool("kubectl")).parent
    return subprocess.run(
        ["bash", "-c", "set -o pipefail; " + NAME_CHECK.replace("overlays/production", '"$OVERLAY"')],
        env={**os.environ, "TAG": tag, "OVERLAY": str(directory), "PATH": f"{kubectl}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_an_overlay_that_sets_the_migrator_tag_alone_misnames_the_job_and_the_documented_check_fails(
    tmp_path: Path,
) -> None:
    """kustomize builds the base, replacements included, before the overlay's `images`: the Job
    keeps the base's tag in its name while running the overlay's, and the cleanup by
    `app.kubernetes.io/version!=$TAG` would delete it. The docs say so and give a check."""
    directory = overlay(tmp_path, images=[{"name": MIGRATOR_IMAGE, "newTag": "0.3.0"}])
    job = migration_job(build(directory))
    assert container(job, "migrate")["image"] == f"{MIGRATOR_IMAGE}:0.3.0"
    assert job["metadata"]["name"] == f"kata-db-migrate-{migrator_tag()}" != "kata-db-migrate-0.3.0"
    assert job["metadata"]["labels"]["app.kubernetes.io/version"] == migrator_tag()
    check = documented_name_check(directory, "0.3.0")
    assert check.returncode == 1 and check.stdout == "", check.stdout + check.stderr
    for document in NAME_CHECK_DOCS:
        assert NAME_CHECK in document.read_text(), document


def test_an_overlay_that_sets_the_migrator_image_renames_the_job_by_repeating_the_replacements(
    tmp_path: Path,
) -> None:
    """docs/deploy.md's recipe: the base's replacements ran with the base's image, so an overlay
    with its own `images` copies the `replacements` block; the documented check passes."""
    replacements = yaml.safe_load((K8S / "kustomization.yaml").read_text())["replacements"]
    image = {"name": MIGRATOR_IMAGE, "newName": "registry.example.com/kata/db-migrator", "newTag": "0.4.0"}
    directory = overlay(tmp_path, images=[image], replacements=replacements)
    job = migration_job(build(directory))
    assert job["metadata"]["name"] == "kata-db-migrate-0.4.0"
    assert container(job, "migrate")["image"] == "registry.example.com/kata/db-migrator:0.4.0"
    check = documented_name_check(directory, "0.4.0")
    assert check.returncode == 0, check.stderr
    assert check.stdout == "  name: kata-db-migrate-0.4.0\n"


def with_component(tmp_path: Path, name: str) -> list[Manifest]:
    return build(overlay(tmp_path, components=[os.path.relpath(COMPONENTS / name, tmp_path / "overlay")]))


def test_argocd_component_runs_the_job_as_a_sync_hook_before_the_release(tmp_path: Path) -> None:
    built = with_component(tmp_path, "argocd")
    job = migration_job(built)
    assert job["metadata"]["name"] == f"kata-db-migrate-{migrator_tag()}"
    assert job["metadata"]["annotations"] == {
        "argocd.argoproj.io/hook": "Sync",
        "argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation",
        "argocd.argoproj.io/sync-wave": "-1",
    }

    def wave(obj: Manifest) -> int:
        return int(obj["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))

    # What the Job's pod needs exists before it; everything else comes after it completed.
    needed = {("Namespace", "kata-context"), ("ServiceAccount", "kata-db-migrate")}
    needed |= {("NetworkPolicy", "kata-db-migrate")}
    for obj in built:
        if obj is job:
            continue
        key = (obj["kind"], obj["metadata"]["name"])
        assert (wave(obj) < wave(job)) if key in needed else (wave(obj) > wave(job)), key
        if key not in needed:
            assert "annotations" not in obj["metadata"] or not any(
                k.startswith("argocd.argoproj.io/") for k in obj["metadata"]["annotations"]
            ), key
    for obj in built:
        if obj["apiVersion"] != "monitoring.coreos.com/v1":
            kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)


def test_flux_component_lets_flux_replace_the_job_and_nothing_else(tmp_path: Path) -> None:
    built = with_component(tmp_path, "flux")
    job = migration_job(built)
    assert job["metadata"]["annotations"] == {"kustomize.toolkit.fluxcd.io/force": "enabled"}
    others = [m for m in built if m is not job and "annotations" in m["metadata"]]
    assert not [m for m in others if "kustomize.toolkit.fluxcd.io/force" in m["metadata"]["annotations"]]
    kubernetes_validate.validate(job, kubernetes_validate.latest_version(), strict=True)


def test_every_container_is_locked_down_and_sized(manifests: list[Manifest]) -> None:
    problems = []
    for m in workloads(manifests):
        assert pod_spec(m)["automountServiceAccountToken"] is False
        for c in containers(m):
            where = f"{m['kind']}/{m['metadata']['name']}/{c['name']}"
            sc = c.get("securityContext", {})
            expected = {
                "runAsNonRoot": True,
                "readOnlyRootFilesystem": True,
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"},
            }
            problems += [f"{where}: {k}={sc.get(k)!r}" for k, v in expected.items() if sc.get(k) != v]
            if sc.get("runAsUser", 1) == 0:
                problems.append(f"{where}: runAsUser 0")
            resources = c.get("resources", {})
            for section in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in resources.get(section, {}):
                        problems.append(f"{where}: no {section}.{resource}")
    assert not problems, "\n".join(problems)


def test_probe_and_migrator_sizes(manifests: list[Manifest]) -> None:
    """64Mi request / 128Mi limit: docs/deploy.md says how these were measured."""
    deployment = find(manifests, "Deployment", "kata-context")
    job = migration_job(manifests)
    for c in (
        container(deployment, "db-probe"),
        container(deployment, "wait-for-schema"),
        container(job, "migrate"),
    ):
        assert c["resources"]["requests"]["memory"] == "64Mi", c["name"]
        assert c["resources"]["limits"]["memory"] == "128Mi", c["name"]


def test_service_monitor_and_pdb_select_the_api_pods(manifests: list[Manifest]) -> None:
    pod_labels = find(manifests, "Deployment", "kata-context")["spec"]["template"]["metadata"]["labels"]
    service = find(manifests, "Service", "kata-context")
    monitor = find(manifests, "ServiceMonitor", "kata-context")
    pdb = find(manifests, "PodDisruptionBudget", "kata-context")
    policy = find(manifests, "NetworkPolicy", "kata-context")
    for selector in (
        service["spec"]["selector"],
        pdb["spec"]["selector"]["matchLabels"],
        policy["spec"]["podSelector"]["matchLabels"],
    ):
        assert selector.items() <= pod_labels.items()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    # Structural check of the CRD (no schema offline): only known top-level fields.
    assert set(monitor["spec"]) <= {"selector", "endpoints", "targetLabels", "jobLabel", "namespaceSelector"}
    for label in monitor["spec"]["targetLabels"]:
        assert label in service["metadata"]["labels"]
    for endpoint in monitor["spec"]["endpoints"]:
        assert set(endpoint) <= {"port", "path", "scheme", "interval", "scrapeTimeout"}
        assert re.fullmatch(r"\d+s", endpoint["interval"]), endpoint
        assert re.fullmatch(r"\d+s", endpoint["scrapeTimeout"]), endpoint
    migrate_policy = find(manifests, "NetworkPolicy", "kata-db-migrate")
    job_labels = migration_job(manifests)["spec"]["template"]["metadata"]["labels"]
    assert migrate_policy["spec"]["podSelector"]["matchLabels"].items() <= job_labels.items()
    assert "ingress" not in migrate_policy["spec"]


# --- alerts --------------------------------------------------------------------------------

EXPECTED_ALERTS = {
    "KataDbDown": "kata_db_up",
    "KataDbLatencyHigh": 'kata_db_check_duration_seconds_bucket{check="database"}',
    "KataDbSchemaPending": "kata_db_schema_pending_migrations",
    "KataDbNotPooled": "kata_db_pooled",
    "KataDbProbeStale": "time() - kata_db_last_success_timestamp_seconds",
    "KataDbProbeAbsent": "absent(kata_db_up",
    "KataDbProbeDown": "up{",
    "KataDbPgvectorMissing": "kata_db_pgvector_installed",
    "KataDbSchemaDriftBreaking": 'kata_db_schema_drift_objects{class="breaking"}',
    "KataDbSchemaDriftDegraded": 'kata_db_schema_drift_objects{class="degraded"}',
    "KataDbMigrationFailed": 'kube_job_failed{job_name=~"kata-db-migrate-.+", condition="true"}',
}


@pytest.fixture(scope="module")
def rules_file(manifests: list[Manifest], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The PrometheusRule's spec as a plain Prometheus rules file."""
    rule = find(manifests, "PrometheusRule", "kata-db")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule["spec"]) == {"groups"}
    path = tmp_path_factory.mktemp("rules") / "kata-db.rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    return path


def test_prometheus_rule_structure(manifests: list[Manifest]) -> None:
    groups = find(manifests, "PrometheusRule", "kata-db")["spec"]["groups"]
    alerts = {r["alert"]: r for g in groups for r in g["rules"]}
    assert set(alerts) == set(EXPECTED_ALERTS)
    for name, fragment in EXPECTED_ALERTS.items():
        rule = alerts[name]
        assert fragment in " ".join(rule["expr"].split()), (name, rule["expr"])
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, name
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert {"summary", "description"} <= set(rule["annotations"]), name


def test_failed_migration_alert_has_a_runbook_for_every_exit_code(manifests: list[Manifest]) -> None:
    groups = find(manifests, "PrometheusRule", "kata-db")["spec"]["groups"]
    (rule,) = [r for g in groups for r in g["rules"] if r["alert"] == "KataDbMigrationFailed"]
    runbook = " ".join(rule["annotations"]["runbook"].split())
    # Every failing code of the one table (migrator/errors.py) but 8 (`up`, the Job's verb, never
    # exits 8), and 11 (lock contention) that the Job retries; each followed by what to do.
    for code in sorted(set(EXIT_CODES) - {"0", "8"} | {"11"}):
        assert re.search(rf"(^|\. ){re.escape(code)} [a-z]", runbook), code
    assert 'docs/deploy.md, "If the Job fails"' in runbook
    assert "### If the Job fails" in (ROOT / "docs" / "deploy.md").read_text()
    # Exit 6 is also a rollback onto a contracted schema and a ledger of the wrong shape, and the
    # repair it points to is run as docs/deploy.md says (tested below).
    for event, action in (
        ("schema_contracted", "roll forward"),
        ("ledger_drift", "rename it aside and baseline"),
    ):
        assert re.search(rf"{event}, [^:]+: {action}", runbook), event
    repair = (
        'kata-migrate repair as a Job made from this one (docs/deploy.md, "Running repair in the cluster")'
    )
    assert repair in runbook


# What the API server adds to a Job it created (uid, a selector on it, the pods' controller-uid and
# job-name labels, defaults, status): `kubectl get job -o json` returns it, a new Job must not
# carry it.
SERVER_JOB_LABELS = (
    "batch.kubernetes.io/controller-uid",
    "controller-uid",
    "batch.kubernetes.io/job-name",
    "job-name",
)
FAKE_KUBECTL = """#!/bin/sh
# Stand-in for kubectl talking to an API server, which cannot run here: `get job` answers
# with $FAKE_JOB, `create -f -` keeps what it reads in $CREATED, the rest goes to $OTHER.
case " $* " in
  *" get job "*) cat "$FAKE_JOB" ;;
  *" create -f - "*) cat > "$CREATED" ;;
  *) echo "$*" >> "$OTHER" ;;
esac
"""


def as_the_api_server_returns_it(job: Manifest) -> Manifest:
    served = json.loads(json.dumps(job))
    uid = "6f1c3a52-0d4e-4c51-9a7e-0b7d2f1e9c11"
    name = served["metadata"]["name"]
    served["metadata"].update(
        uid=uid,
        resourceVersion="4242",
        generation=1,
        creationTimestamp="2025-01-01T00:00:00Z",
        annotations={"kubectl.kubernetes.io/last-applied-configuration": json.dumps(job)},
    )
    spec = served["spec"]
    spec.update(completions=1, parallelism=1, completionMode="NonIndexed", suspend=False)
    spec.update(podReplacementPolicy="Failed")
    spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    labels = spec["template"]["metadata"]["labels"]
    labels.update(dict.fromkeys(SERVER_JOB_LABELS[:2], uid) | dict.fromkeys(SERVER_JOB_LABELS[2:], name))
    spec["template"]["spec"].update(dnsPolicy="ClusterFirst", schedulerName="default-scheduler")
    served["status"] = {"failed": 1, "conditions": [{"type": "Failed", "status": "True"}]}
    return served


def documented_block(document: Path, marker: str) -> str:
    """The first ```sh block of `document` that contains `marker`."""
    blocks = re.findall(r"^```sh\n(.*?)^```$", document.read_text(), flags=re.MULTILINE | re.DOTALL)
    return next(b for b in blocks if marker in b)


def test_the_documented_repair_job_is_the_migration_job_running_repair_with_its_pod_labels(
    manifests: list[Manifest], tmp_path: Path
) -> None:
    """docs/deploy.md's commands for `kata-migrate repair` in the cluster, run as written with the
    real jq; a stand-in kubectl (FAKE_KUBECTL: no API server runs here) serves the release's Job."""
    job = migration_job(manifests)
    served, created, other = tmp_path / "job.json", tmp_path / "created.json", tmp_path / "other.txt"
    served.write_text(json.dumps(as_the_api_server_returns_it(job)))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(FAKE_KUBECTL)
    (bin_dir / "kubectl").chmod(0o755)
    jq = Path(find_tool("jq")).parent
    env = {"TAG": migrator_tag(), "FAKE_JOB": str(served), "CREATED": str(created), "OTHER": str(other)}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", documented_block(ROOT / "docs" / "deploy.md", "kata-db-repair")],
        env={**os.environ, **env, "PATH": f"{bin_dir}:{jq}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    repair = json.loads(created.read_text())
    name = repair["metadata"]["name"]
    assert re.fullmatch(r"kata-db-repair-\d+", name) and JOB_NAME.fullmatch(name) and len(name) <= 63
    assert f"job/{name}" in other.read_text()  # the wait and the logs name the Job just created
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(repair, version, strict=True)
    # Nothing the API server generated for the migration Job, nor its metadata (so no GitOps
    # controller takes the repair Job for one of its objects).
    assert set(repair) == {"apiVersion", "kind", "metadata", "spec"}
    assert repair["metadata"] == {"name": name, "labels": {"app.kubernetes.io/name": "kata-db-repair"}}
    assert "selector" not in repair["spec"]
    pod_labels = repair["spec"]["template"]["metadata"]["labels"]
    assert pod_labels == job["spec"]["template"]["metadata"]["labels"]
    policy = find(manifests, "NetworkPolicy", "kata-db-migrate")["spec"]["podSelector"]["matchLabels"]
    assert policy.items() <= pod_labels.items()
    # The migration Job's pod, its limits and its failure handling, with `repair` as the verb.
    for key in ("podFailurePolicy", "activeDeadlineSeconds", "backoffLimit"):
        assert repair["spec"][key] == job["spec"][key], key
    migrate, original = container(repair, "migrate"), container(job, "migrate")
    assert migrate["args"] == ["repair"]
    unchanged = {k: v for k, v in original.items() if k != "args"}
    assert {k: v for k, v in migrate.items() if k != "args"} == unchanged
    assert pod_spec(repair)["serviceAccountName"] == pod_spec(job)["serviceAccountName"]


def test_promtool_checks_the_rules(rules_file: Path) -> None:
    result = run_tool("promtool", "check", "rules", str(rules_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in result.stdout


ALERT_TESTS = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'kata_db_up{{job="kata-context", namespace="ns", pod="a"}}'
        values: '1 1 0x5'
      - series: 'kata_db_up{{job="kata-context", namespace="ns", pod="b"}}'
        values: '1x7'
      - series: 'kata_db_pooled{{job="kata-context", namespace="ns", pod="a", pooling_expected="true"}}'
        values: '0x20'
      - series: 'kata_db_pooled{{job="kata-context", namespace="ns", pod="b", pooling_expected="false"}}'
        values: '0x20'
      - series: 'kata_db_schema_pending_migrations{{job="kata-context", namespace="ns", pod="a"}}'
        values: '2x25'
      # Pod a sees a dropped column from minute 1 on; pods a and b a dropped index from minute 2.
      - series: 'kata_db_schema_drift_objects{{class="breaking", namespace="ns", pod="a"}}'
        values: '0 1x25'
      - series: 'kata_db_schema_drift_objects{{class="breaking", namespace="ns", pod="b"}}'
        values: '0x25'
      - series: 'kata_db_schema_drift_objects{{class="degraded", namespace="ns", pod="a"}}'
        values: '0 0 1x25'
      - series: 'kata_db_schema_drift_objects{{class="degraded", namespace="ns", pod="b"}}'
        values: '0 0 1x25'
      # kube-state-metrics. Release 0.1.0: a pod failed (exit 3), the retry succeeded; the Job is
      # kept, its failed-pod count stays 1, it never had a Failed condition. Release 0.2.0 fails
      # for good at minute 3. Another application's failed Job is none of ours.
      - series: 'kube_job_status_failed{{namespace="ns", job_name="kata-db-migrate-0.1.0", reason=""}}'
        values: '0 1x25'
      - series: 'kube_job_complete{{namespace="ns", job_name="kata-db-migrate-0.1.0", condition="true"}}'
        values: '0 0 1x25'
      - series: 'kube_job_status_failed{{namespace="ns", job_name="kata-db-migrate-0.2.0", reason=""}}'
        values: '0 0 1 2x25'
      - series: 'kube_job_failed{{namespace="ns", job_name="kata-db-migrate-0.2.0", condition="true"}}'
        values: '0 0 0 1x25'
      - series: 'kube_job_failed{{namespace="ns", job_name="kata-db-migrate-0.2.0", condition="false"}}'
        values: '1 1 1 0x25'
      - series: 'kube_job_failed{{namespace="ns", job_name="nightly-report", condition="true"}}'
        values: '1x25'
    alert_rule_test:
      - eval_time: 3m
        alertname: KataDbMigrationFailed
      - eval_time: 4m
        alertname: KataDbMigrationFailed
        exp_alerts:
          - exp_labels: {{severity: warning, namespace: ns, job_name: kata-db-migrate-0.2.0}}
      - eval_time: 25m
        alertname: KataDbMigrationFailed
        exp_alerts:
          - exp_labels: {{severity: warning, namespace: ns, job_name: kata-db-migrate-0.2.0}}
      - eval_time: 4m
        alertname: KataDbDown
      - eval_time: 5m
        alertname: KataDbDown
        exp_alerts:
          - exp_labels: {{severity: critical, job: kata-context, namespace: ns, pod: a}}
      - eval_time: 16m
        alertname: KataDbNotPooled
        exp_alerts:
          - exp_labels:
              severity: warning
              job: kata-context
              namespace: ns
              pod: a
              pooling_expected: "true"
      - eval_time: 2m
        alertname: KataDbSchemaDriftBreaking
      - eval_time: 3m
        alertname: KataDbSchemaDriftBreaking
        exp_alerts:
          - exp_labels: {{severity: critical, namespace: ns}}
      - eval_time: 16m
        alertname: KataDbSchemaDriftDegraded
      - eval_time: 17m
        alertname: KataDbSchemaDriftDegraded
        exp_alerts:
          - exp_labels: {{severity: warning, namespace: ns}}
      - eval_time: 19m
        alertname: KataDbSchemaPending
      - eval_time: 21m
        alertname: KataDbSchemaPending
        exp_alerts:
          - exp_labels: {{severity: warning, namespace: ns, pod: a}}
  - interval: 15s
    input_series:
      # The probe's last success stops advancing at 60 s.
      - series: 'kata_db_last_success_timestamp_seconds{{job="kata-context", namespace="ns", pod="a"}}'
        values: '0+15x4 60x60'
      - series: 'kata_db_check_duration_seconds_bucket{{check="database", le="0.1", pod="a"}}'
        values: '0+4x80'
      - series: 'kata_db_check_duration_seconds_bucket{{check="database", le="0.5", pod="a"}}'
        values: '0+4x80'
      - series: 'kata_db_check_duration_seconds_bucket{{check="database", le="+Inf", pod="a"}}'
        values: '0+4x80'
      # Pod b: every round trip between 0.1 s and 0.5 s, so p95 is about 0.48 s.
      - series: 'kata_db_check_duration_seconds_bucket{{check="database", le="0.1", pod="b"}}'
        values: '0x80'
      - series: 'kata_db_check_duration_seconds_bucket{{check="database", le="0.5", pod="b"}}'
        values: '0+4x80'
      - series: 'kata_db_check_duration_seconds_bucket{{check="database", le="+Inf", pod="b"}}'
        values: '0+4x80'
    alert_rule_test:
      - eval_time: 5m
        alertname: KataDbProbeStale
      - eval_time: 8m
        alertname: KataDbProbeStale
        exp_alerts:
          - exp_labels: {{severity: warning, job: kata-context, namespace: ns, pod: a}}
      - eval_time: 16m
        alertname: KataDbLatencyHigh
        exp_alerts:
          - exp_labels: {{severity: warning, pod: b}}
      - eval_time: 16m
        alertname: KataDbProbeAbsent
        exp_alerts:
          - exp_labels: {{severity: warning, job: kata-context}}
"""


def test_alerts_fire_when_they_should(rules_file: Path, tmp_path: Path) -> None:
    """promtool's rule unit tests: each alert fires on its condition after its `for`, not before."""
    # promtool compares annotations too; their templates are checked by `check rules` above,
    # so the unit tests run on the same rules without them.
    spec = yaml.safe_load(rules_file.read_text())
    for group in spec["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    bare = tmp_path / "bare.rules.yaml"
    bare.write_text(yaml.safe_dump(spec))
    tests = tmp_path / "alerts.test.yaml"
    tests.write_text(ALERT_TESTS.format(rules=json.dumps(str(bare))))
    result = run_tool("promtool", "test", "rules", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr


# --- images --------------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", sorted(DOCKERFILES))
def test_hadolint_passes(dockerfile: str) -> None:
    result = run_tool("hadolint", "--no-color", dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr
    # Any inline ignore must carry a justification comment on the line above it.
    lines = (ROOT / dockerfile).read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore" in line:
            assert i > 0 and lines[i - 1].startswith("#") and "hadolint" not in lines[i - 1], line


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / dockerfile).read_text())
    pairs = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


@pytest.mark.parametrize("dockerfile", sorted(DOCKERFILES))
def test_dockerfile_shape(dockerfile: str) -> None:
    text = (ROOT / dockerfile).read_text()
    assert "# syntax=" not in text, "a syntax line makes BuildKit fetch a frontend image"
    steps = instructions(dockerfile)
    args = dict(a.split("=", 1) for k, a in steps if k == "ARG" and "=" in a)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", args["PYTHON_IMAGE"])
    froms = [i for i, (k, _) in enumerate(steps) if k == "FROM"]
    build, runtime = steps[froms[0] : froms[-1]], steps[froms[-1] :]
    assert runtime[0] == ("FROM", "${PYTHON_IMAGE}")
    installs = [a for k, a in build if k == "RUN" and "pip install" in a]
    for install in installs:  # every install is by hash from a lock, or of the local wheel
        locked = "--require-hashes" in install and "-r requirements/" in install
        assert locked or "--no-index" in install, install
        if "--no-index" not in install:  # pip's index and CA only as build secrets
            assert "--mount=type=secret,id=pip.conf" in install, install
    assert any(k == "RUN" and "pip uninstall --yes --quiet setuptools pip" in a for k, a in build)
    assert not [a for k, a in runtime if k == "RUN"], "the runtime stage needs no shell"
    assert ("COPY", "--from=deps /opt/venv /opt/venv") in runtime
    users = [a for k, a in runtime if k == "USER"]
    assert len(users) == 1 and re.fullmatch(r"[1-9]\d{3,}:[1-9]\d{3,}", users[0]), users
    entrypoint = [json.loads(a) for k, a in runtime if k == "ENTRYPOINT"]
    assert entrypoint == [[f"{VENV_BIN}/{DOCKERFILES[dockerfile]}"]]
    assert DOCKERFILES[dockerfile] in console_scripts()
    labels = " ".join(a for k, a in runtime if k == "LABEL")
    for key in ("title", "description", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    # One source each: pyproject.toml's version (checked in the build), the base actually used.
    assert 'org.opencontainers.image.version="${VERSION}"' in labels
    assert 'org.opencontainers.image.base.name="${PYTHON_IMAGE}"' in labels


def test_both_dockerfiles_are_the_same_up_to_the_user_so_the_images_share_their_layers() -> None:
    prefixes = []
    for dockerfile in sorted(DOCKERFILES):
        steps = instructions(dockerfile)
        prefixes.append(steps[: steps.index(next(s for s in steps if s[0] == "USER")) + 1])
    assert prefixes[0] == prefixes[1]


def test_migrator_image_defaults_to_up() -> None:
    steps = instructions("Dockerfile.migrator")
    assert [json.loads(a) for k, a in steps if k == "CMD"] == [["up"]]
    assert ("EXPOSE", str(PROBE_PORT)) in instructions("Dockerfile.probe")


def test_dockerignore_keeps_the_context_small_and_complete() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for required in (
        ".git",
        ".venv*",
        ".data/",
        "**/__pycache__",
        ".pytest_cache/",
        ".mypy_cache/",
        "tests/",
    ):
        assert required in patterns, required
    assert not [p for p in patterns if p.startswith("!")]
    # Nothing the images COPY may be ignored.
    copied = {
        src.rstrip("/")
        for dockerfile in DOCKERFILES
        for k, a in instructions(dockerfile)
        if k == "COPY" and not a.startswith("--from")
        for src in a.split()[:-1]
    }
    assert copied == {
        "pyproject.toml",
        "README.md",
        "pgconn",
        "schema",
        "migrator",
        "probe",
        "migrations",
        "requirements/build.txt",
        "requirements/runtime.txt",
    }
    ignored_roots = {p.rstrip("/").rstrip("*") for p in patterns}
    assert not copied & ignored_roots


# --- linters -------------------------------------------------------------------------------


def test_yamllint_passes() -> None:
    result = run_tool("yamllint", "--strict", "-c", str(K8S / ".yamllint.yaml"), str(K8S))
    assert result.returncode == 0, result.stdout + result.stderr


def test_checkov_passes(manifests: list[Manifest], tmp_path: Path) -> None:
    built = tmp_path / "kata-context.yaml"
    built.write_text(yaml.safe_dump_all(manifests))
    config = K8S / ".checkov.yaml"
    result = run_tool("checkov", "--config-file", str(config), "-f", str(built), "-o", "json", timeout=300)
    assert result.stdout.strip(), result.stderr
    report = json.loads(result.stdout)
    failed = [
        f"{c['check_id']} {c['check_name']}: {c['resource']}" for c in report["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    assert report["summary"]["passed"] > 100 and report["summary"]["parsing_errors"] == 0
    # Every skip is explained in the config file, right above it.
    skips = yaml.safe_load(config.read_text())["skip-check"]
    text = config.read_text()
    for check in skips:
        assert re.search(rf"# {check} \"[^\"]+\": .+\n", text), f"{check} has no reason"


# --- dashboard -----------------------------------------------------------------------------


def test_grafana_dashboard_queries_the_probe_metrics(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"kata_db_[a-z_]+", e)}
    used = {re.sub(r"_(bucket|count|sum)$", "", m) for m in used}
    families = probe_families()
    assert used == families, used ^ families
    # Every query is valid PromQL: substitute the dashboard variables, let promtool parse.
    substitutions = {"$namespace": "ns", "$pod": ".*", "$__rate_interval": "1m"}
    rules = []
    for i, expr in enumerate(exprs):
        for var, value in substitutions.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_tool("promtool", "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr

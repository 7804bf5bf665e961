"""deploy/: every instance file against Dagster's own schemas, the Helm values, compose file and
Dockerfile against each other and the code, and the demo graph on a real PostgreSQL.

The PostgreSQL tests need a server (``eval "$(.ci/postgres)"`` starts one on 127.0.0.1:5432); they
skip without one unless INTEGRITY_REQUIRE_POSTGRES=1, as in CI, where they fail instead.
"""

import importlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import boto3
import psycopg2
import pytest
import yaml
from dagster import DagsterInstance, materialize
from dagster._config import process_config, resolve_to_config_type
from dagster._core.instance.config import dagster_instance_config_schema
from dagster._core.instance.ref import InstanceRef
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.workspace.config_schema import process_workspace_config
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._serdes.config_class import ConfigurableClass, ConfigurableClassData
from dagster_aws.s3.compute_log_manager import S3ComputeLogManager

from assets.resources import EncoderResource, IntegrityResource
from definitions import defs
from demo.generate import DemoConfig, generate
from tests.models import DEMO_MODEL_YAML

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
INSTANCE_FILES = sorted(path.name for path in DEPLOY.glob("dagster*.yaml"))
LAUNCHER_VARIANTS = {"dagster.k8s.yaml": "K8sRunLauncher", "dagster.ecs.yaml": "EcsRunLauncher"}
LOCAL_DEV = "dagster.dev.yaml"  # the local instance of make demo / make ui
# Classes whose constructor connects to a service: their config is validated, not constructed
# (Postgres storage is constructed for real by the PostgreSQL tests below).
NEEDS_A_SERVICE = {"DagsterPostgresStorage", "PostgresRunStorage", "PostgresEventLogStorage",
                   "PostgresScheduleStorage", "K8sRunLauncher"}
AUDIT = ["raw_sft", "scored_sft", "duplicate_index", "audited_sft"]


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _env_names(node: Any) -> set[str]:
    """Every variable named by an ``{env: NAME}`` source anywhere in a Dagster config tree."""
    if isinstance(node, dict):
        if set(node) == {"env"} and isinstance(node["env"], str):
            return {node["env"]}
        return set().union(*(_env_names(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_env_names(value) for value in node))
    return set()


def _dummy_env(monkeypatch, names: set[str]) -> None:
    for name in names:
        monkeypatch.setenv(name, "5432" if name.endswith("_PORT") else f"test-{name.lower()}")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # boto3 clients need one to exist


def _components(ref: InstanceRef) -> dict[str, ConfigurableClassData]:
    return {field: value for field, value in ref._asdict().items()
            if isinstance(value, ConfigurableClassData)}


def _assets(names: list[str]) -> list:
    """The named assets with every check of theirs, from the code location itself."""
    chosen = [item for item in defs.assets if item.key.to_user_string() in names]
    checks = [check for check in defs.asset_checks
              if next(iter(check.check_keys)).asset_key.to_user_string() in names]
    return chosen + checks


# --- the instance files against Dagster's schemas ---------------------------------------------

def test_deploy_has_every_instance_file():
    assert INSTANCE_FILES == ["dagster.dev.yaml", "dagster.ecs.yaml", "dagster.k8s.yaml",
                              "dagster.local-postgres.yaml", "dagster.yaml"]


@pytest.mark.parametrize("filename", INSTANCE_FILES)
def test_instance_file_passes_dagsters_schema_and_each_classs_own(filename, tmp_path,
                                                                   monkeypatch):
    """What DagsterInstance does at load: the instance schema, then every module/class pair is
    imported and its config processed against that class's config_type(), then constructed."""
    _dummy_env(monkeypatch, _env_names(_load(DEPLOY / filename)))
    ref = InstanceRef.from_dir(str(tmp_path), config_dir=str(DEPLOY), config_filename=filename)
    components = _components(ref)
    for field, data in components.items():
        if data.class_name in NEEDS_A_SERVICE:
            klass = getattr(importlib.import_module(data.module_name), data.class_name)
            assert issubclass(klass, ConfigurableClass), f"{field}: {data.class_name}"
            result = process_config(resolve_to_config_type(klass.config_type()), data.config_dict)
            assert result.success, f"{filename} {field}: {[e.message for e in result.errors]}"
        else:
            data.rehydrate()  # raises DagsterInvalidConfigError naming the bad key
    assert ref.settings["telemetry"] == {"enabled": False}
    if filename == LOCAL_DEV:  # make demo / make ui: one machine, storage under DAGSTER_HOME
        assert components["storage_data"].class_name == "DagsterSqliteStorage"
        assert ref.settings["nux"] == {"enabled": False}  # no first-run dialog over the UI
        return
    assert components["storage_data"].class_name == "DagsterPostgresStorage"
    assert components["run_coordinator_data"].class_name == "QueuedRunCoordinator"
    assert components["run_launcher_data"].class_name == LAUNCHER_VARIANTS.get(
        filename, "DefaultRunLauncher")


@pytest.mark.parametrize("mistake", ["misspelled key", "unset variable"])
def test_the_schema_check_catches_a_mistake(mistake, tmp_path, monkeypatch):
    config = _load(DEPLOY / "dagster.yaml")
    _dummy_env(monkeypatch, _env_names(config))
    if mistake == "misspelled key":
        config["compute_logs"]["config"]["bukcet"] = config["compute_logs"]["config"].pop("bucket")
    else:
        monkeypatch.delenv("DAGSTER_COMPUTE_LOG_BUCKET")
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    ref = InstanceRef.from_dir(str(tmp_path))
    with pytest.raises(Exception, match="bukcet|DAGSTER_COMPUTE_LOG_BUCKET"):
        ref.compute_logs_data.rehydrate()


@pytest.mark.parametrize("filename", sorted(LAUNCHER_VARIANTS))
def test_a_launcher_variant_is_the_base_file_plus_its_launcher(filename):
    base, variant = _load(DEPLOY / "dagster.yaml"), _load(DEPLOY / filename)
    assert "run_launcher" not in base
    launcher = variant.pop("run_launcher")
    assert variant == base
    assert launcher["class"] == LAUNCHER_VARIANTS[filename]


@pytest.mark.parametrize("filename", sorted(LAUNCHER_VARIANTS))
def test_launched_runs_get_every_variable_the_instance_reads(filename):
    """A run worker loads the same instance: without these it could not reach Postgres or S3."""
    config = _load(DEPLOY / filename)
    launcher = config.pop("run_launcher")["config"]
    forwarded = set(launcher["env_vars"]) | {"DAGSTER_PG_PASSWORD"}  # from a secret, below
    assert _env_names(config) <= forwarded
    if filename == "dagster.k8s.yaml":
        assert launcher["postgres_password_secret"]  # becomes DAGSTER_PG_PASSWORD in each pod
    else:
        assert {s["name"] for s in launcher["secrets"]} == {"DAGSTER_PG_PASSWORD"}


def test_the_ecs_launcher_reads_only_the_secrets_it_names(monkeypatch, tmp_path):
    _dummy_env(monkeypatch, _env_names(_load(DEPLOY / "dagster.ecs.yaml")))
    ref = InstanceRef.from_dir(str(tmp_path), config_dir=str(DEPLOY),
                               config_filename="dagster.ecs.yaml")
    launcher = ref.run_launcher_data.rehydrate()
    assert launcher.secrets_tags == []  # no scan of Secrets Manager by tag
    assert launcher.secrets == [{"name": "DAGSTER_PG_PASSWORD",
                                 "valueFrom": "test-dagster_pg_password_secret_arn"}]


def test_every_variable_the_deploy_files_read_is_documented():
    readme = (DEPLOY / "README.md").read_text()
    names = set().union(*(_env_names(_load(DEPLOY / name)) for name in INSTANCE_FILES))
    assert sorted(name for name in names if f"`{name}`" not in readme) == []


def test_the_image_installs_every_integration_the_instance_files_name():
    """The image installs pyproject's dependencies with the deploy extra: each integration named
    here must be one of them."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pinned = {re.split(r"[=<>\[ ]", dep)[0].lower()
              for dep in project["dependencies"] + project["optional-dependencies"]["deploy"]}
    needed = {"dagster-postgres"}  # `storage: postgres:` resolves to dagster_postgres
    for name in INSTANCE_FILES:
        config = _load(DEPLOY / name)
        needed |= {config[key]["module"].split(".")[0].replace("_", "-")
                   for key in ("compute_logs", "run_coordinator", "run_launcher") if key in config}
    assert sorted(needed - {"dagster"} - pinned) == []


# --- Dockerfile, compose, workspace, Helm ------------------------------------------------------

def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1])
            for line in lines if line and not line.startswith("#")]


def _code_server_command() -> list[str]:
    [cmd] = [json.loads(args) for op, args in _dockerfile() if op == "CMD"]
    return cmd


def test_the_dockerfile_serves_definitions_py_from_the_pinned_project():
    instructions = _dockerfile()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    assert _code_server_command() == ["dagster", "code-server", "start", "-h", "0.0.0.0",
                                      "-p", "4000", "-f", "definitions.py"]
    ops = [op for op, _ in instructions]
    assert "ENTRYPOINT" not in ops  # the Helm chart's args replace CMD; an ENTRYPOINT would stay
    assert ("EXPOSE", "4000") in instructions
    copied = [arg for op, args in instructions if op == "COPY" for arg in args.split()[:-1]]
    assert [source for source in copied if not (REPO / source).exists()] == []
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]["include"]
    code_location = ["definitions.py", "workspace.yaml", "assets", "checks"]
    for package in [pattern.rstrip("*") for pattern in packages] + code_location:
        assert any(source.rstrip("/") == package for source in copied), package
    assert any("pip install -c constraints.txt -r" in args and "'deploy'" in args
               for op, args in instructions if op == "RUN")


def test_the_grpc_workspace_names_the_compose_code_server():
    config = _load(DEPLOY / "workspace.grpc.yaml")
    assert process_workspace_config(config).success
    [entry] = config["load_from"]
    compose = _load(DEPLOY / "compose.yaml")
    assert entry["grpc_server"]["host"] in compose["services"]
    assert str(entry["grpc_server"]["port"]) == _code_server_command()[6]


def _compose_volumes(service: dict) -> dict[str, str]:
    """Mount target -> source (a ./path relative to deploy/, or a named volume)."""
    return {volume.split(":")[1]: volume.split(":")[0] for volume in service.get("volumes", [])}


def test_compose_runs_postgres_code_server_webserver_and_daemon():
    compose = _load(DEPLOY / "compose.yaml")
    services = compose["services"]
    assert set(services) == {"postgres", "code-server", "webserver", "daemon"}
    build = services["code-server"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    assert "command" not in services["code-server"]  # the image's CMD: the gRPC code server
    assert services["webserver"]["ports"] == ["3000:3000"]
    assert services["webserver"]["command"][:1] == ["dagster-webserver"]
    assert services["daemon"]["command"][:2] == ["dagster-daemon", "run"]
    home = "/opt/dagster/dagster_home"
    for name in ("code-server", "webserver", "daemon"):
        service = services[name]
        mounts = _compose_volumes(service)
        for source in mounts.values():
            if source.startswith("."):
                assert (DEPLOY / source).is_file(), f"{name} mounts missing {source}"
            else:
                assert source in compose["volumes"], f"{name}: undeclared volume {source}"
        instance_file = mounts[f"{home}/dagster.yaml"]
        assert _env_names(_load(DEPLOY / instance_file)) <= set(service["environment"]), name
        # Runs write compute logs in code-server; the webserver shows them from the same volume.
        assert mounts[f"{home}/storage"] == "dagster-storage"
        if name != "code-server":
            workspace = service["command"][service["command"].index("-w") + 1]
            assert mounts[workspace] == "./workspace.grpc.yaml"
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}
            assert "healthcheck" in services[dependency]
    postgres, env = services["postgres"]["environment"], services["daemon"]["environment"]
    assert (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"]) \
        == (env["DAGSTER_PG_USERNAME"], env["DAGSTER_PG_PASSWORD"], env["DAGSTER_PG_DB"])
    assert env["DAGSTER_PG_HOST"] == "postgres"


# Keys the official chart accepts (its schema: helm/dagster/schema/schema/charts/, dagster 1.13).
CHART_KEYS = {
    "": {"dagsterWebserver", "dagster-user-deployments", "postgresql",
         "generatePostgresqlPasswordSecret", "generateCeleryConfigSecret", "rabbitmq", "redis",
         "flower", "ingress", "imagePullSecrets", "computeLogManager", "scheduler", "runLauncher",
         "pythonLogs", "dagsterDaemon", "busybox", "migrate", "telemetry", "serviceAccount",
         "global", "retention", "concurrency", "additionalInstanceConfig"},
    "global": {"postgresqlSecretName", "dagsterHome", "serviceAccountName",
               "celeryConfigSecretName", "dagsterInstanceConfigMap"},
    "dagster-user-deployments": {"enabled", "enableSubchart", "imagePullSecrets", "deployments"},
    "deployment": {"name", "image", "port", "dagsterApiGrpcArgs", "codeServerArgs",
                   "includeConfigInLaunchedRuns", "env", "envConfigMaps", "envSecrets",
                   "annotations", "nodeSelector", "affinity", "tolerations", "podSecurityContext",
                   "securityContext", "resources", "livenessProbe", "readinessProbe",
                   "startupProbe", "labels", "volumeMounts", "volumes", "schedulerName"},
    "postgresql": {"postgresqlScheme", "image", "enabled", "postgresqlHost", "postgresqlUsername",
                   "postgresqlPassword", "postgresqlDatabase", "postgresqlParams", "service"},
    "k8sRunLauncher": {"image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig",
                       "kubeconfigFile", "envConfigMaps", "envSecrets", "envVars", "volumeMounts",
                       "volumes", "labels", "failPodOnRunFailure", "resources", "schedulerName",
                       "securityContext", "runK8sConfig"},
    "runK8sConfig": {"containerConfig", "podSpecConfig", "podTemplateSpecMetadata",
                     "jobSpecConfig", "jobMetadata"},
    "dagsterDaemon": {"enabled", "image", "runCoordinator", "heartbeatTolerance", "env",
                      "envConfigMaps", "envSecrets", "deploymentLabels", "labels", "nodeSelector",
                      "affinity", "tolerations", "podSecurityContext", "securityContext",
                      "resources", "livenessProbe", "readinessProbe", "startupProbe",
                      "annotations", "runMonitoring", "runRetries", "sensors", "schedules",
                      "schedulerName", "volumeMounts", "volumes"},
}


def _snake(config: dict) -> dict:
    """The chart's camelCase keys as the snake_case keys it writes into dagster.yaml."""
    return {re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower(): value for key, value in config.items()}


def _valid(klass, config: dict) -> dict:
    result = process_config(resolve_to_config_type(klass.config_type()), config)
    assert result.success, [error.message for error in result.errors]
    return config


def test_helm_values_use_only_keys_the_chart_knows():
    values = _load(DEPLOY / "helm" / "values.yaml")
    assert set(values) <= CHART_KEYS[""]
    assert set(values["global"]) <= CHART_KEYS["global"]
    user_deployments = values["dagster-user-deployments"]
    assert set(user_deployments) <= CHART_KEYS["dagster-user-deployments"]
    assert user_deployments["enabled"] is True
    [deployment] = user_deployments["deployments"]
    assert set(deployment) <= CHART_KEYS["deployment"]
    assert set(values["postgresql"]) <= CHART_KEYS["postgresql"]
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher" and set(launcher["config"]) == {"k8sRunLauncher"}
    assert set(launcher["config"]["k8sRunLauncher"]) <= CHART_KEYS["k8sRunLauncher"]
    assert set(launcher["config"]["k8sRunLauncher"]["runK8sConfig"]) <= CHART_KEYS["runK8sConfig"]
    assert set(values["dagsterDaemon"]) <= CHART_KEYS["dagsterDaemon"]


def test_helm_values_deploy_our_image_and_match_the_instance_files():
    values = _load(DEPLOY / "helm" / "values.yaml")
    base = _load(DEPLOY / "dagster.yaml")
    [deployment] = values["dagster-user-deployments"]["deployments"]
    # The chart runs `dagster code-server start -h 0.0.0.0 -p <port> <codeServerArgs>`: the
    # Dockerfile's own command.
    command = _code_server_command()
    assert deployment["codeServerArgs"] == command[7:] and str(deployment["port"]) == command[6]
    assert (REPO / deployment["codeServerArgs"][1]).is_file()
    assert deployment["image"]["repository"] and deployment["image"]["tag"]
    postgres = values["postgresql"]
    assert postgres["postgresqlScheme"] == base["storage"]["postgres"]["postgres_db"]["scheme"]
    logs = values["computeLogManager"]
    assert logs["type"] == "S3ComputeLogManager"
    _valid(S3ComputeLogManager, _snake(logs["config"]["s3ComputeLogManager"]))
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] and coordinator["type"] == "QueuedRunCoordinator"
    limits = _valid(QueuedRunCoordinator, _snake(coordinator["config"]["queuedRunCoordinator"]))
    assert limits == base["run_coordinator"]["config"]
    extra = values["additionalInstanceConfig"]
    result = process_config(resolve_to_config_type(dagster_instance_config_schema()), extra)
    assert result.success, [error.message for error in result.errors]
    assert extra == {"run_retries": base["run_retries"]}
    assert values["telemetry"] == base["telemetry"] == {"enabled": False}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_dockerfile_command_serves_the_code_location_to_the_grpc_workspace(tmp_path):
    """The image's CMD run here (host and port changed), loaded through workspace.grpc.yaml."""
    port = _free_port()
    command = _code_server_command()
    command[command.index("-h") + 1], command[command.index("-p") + 1] = "127.0.0.1", str(port)
    executable = Path(sys.executable).parent / command[0]
    workspace = _load(DEPLOY / "workspace.grpc.yaml")
    workspace["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=port)
    (tmp_path / "workspace.yaml").write_text(yaml.safe_dump(workspace))
    (tmp_path / "home").mkdir()
    # Its own process group: the code server runs the code location in a child process.
    log = (tmp_path / "code-server.log").open("w")
    server = subprocess.Popen([str(executable), *command[1:]], cwd=REPO, start_new_session=True,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        health = [str(executable), "api", "grpc-health-check", "-p", str(port)]
        deadline = time.monotonic() + 120
        while subprocess.run(health, capture_output=True).returncode != 0:
            assert server.poll() is None, (tmp_path / "code-server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "code server did not answer in 120 s"
            time.sleep(1)
        target = WorkspaceFileTarget(paths=[str(tmp_path / "workspace.yaml")])
        with DagsterInstance.local_temp(str(tmp_path / "home")) as instance, \
                WorkspaceProcessContext(instance, target) as ctx:
            request = ctx.create_request_context()
            assert request.get_code_location_error("sft_integrity") is None
            location = request.get_code_location("sft_integrity")
            [repository] = location.get_repositories().values()
            keys = {node.asset_key.to_user_string() for node in repository.get_asset_node_snaps()}
            assert {"raw_sft", "scored_sft", "audited_sft", "training_mix"} <= keys
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


# --- a real PostgreSQL ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def postgres() -> dict[str, str]:
    """DAGSTER_PG_* of a server that answers (defaults: .ci/postgres's dagster@127.0.0.1:5432)."""
    env = {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": "5432",
           "DAGSTER_PG_USERNAME": "dagster", "DAGSTER_PG_PASSWORD": "dagster",
           "DAGSTER_PG_DB": "dagster"}
    env = {name: os.environ.get(name, default) for name, default in env.items()}
    try:
        psycopg2.connect(host=env["DAGSTER_PG_HOST"], port=env["DAGSTER_PG_PORT"],
                         user=env["DAGSTER_PG_USERNAME"], password=env["DAGSTER_PG_PASSWORD"],
                         dbname=env["DAGSTER_PG_DB"], connect_timeout=5).close()
    except psycopg2.OperationalError as error:
        reason = (f"no PostgreSQL takes {env['DAGSTER_PG_USERNAME']}@{env['DAGSTER_PG_HOST']}:"
                  f"{env['DAGSTER_PG_PORT']}/{env['DAGSTER_PG_DB']} (start one: eval \"$(.ci/"
                  f"postgres)\"): {' '.join(str(error).split())}")
        if os.environ.get("INTEGRITY_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return env


def _query(postgres: dict[str, str], sql: str, *args) -> list[tuple]:
    with psycopg2.connect(host=postgres["DAGSTER_PG_HOST"], port=postgres["DAGSTER_PG_PORT"],
                          user=postgres["DAGSTER_PG_USERNAME"],
                          password=postgres["DAGSTER_PG_PASSWORD"],
                          dbname=postgres["DAGSTER_PG_DB"]) as connection:
        with connection.cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.fetchall()


@pytest.fixture
def dagster_home(tmp_path, monkeypatch, postgres):
    """A DAGSTER_HOME whose dagster.yaml is the named deploy/ file, with Postgres's variables."""
    def make(filename: str) -> str:
        home = tmp_path / "dagster_home"
        home.mkdir()
        shutil.copy(DEPLOY / filename, home / "dagster.yaml")
        for name, value in postgres.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        return str(home)
    return make


def _demo_world(tmp_path: Path, source: str) -> IntegrityResource:
    generate(tmp_path / "demo", DemoConfig(rows=240, seed=3))
    (tmp_path / "sources.yaml").write_text(
        DEMO_MODEL_YAML
        + f"sources:\n  - {{name: {source}, uri: {tmp_path / 'demo' / 'llava.jsonl'}}}\n")
    return IntegrityResource(sources_file=str(tmp_path / "sources.yaml"),
                             store_root=str(tmp_path / "store"))


def test_the_demo_graph_runs_on_postgres_with_the_local_postgres_instance(tmp_path,
                                                                           dagster_home,
                                                                           postgres):
    home = dagster_home("dagster.local-postgres.yaml")
    integrity = _demo_world(tmp_path, "deploy_demo")
    with DagsterInstance.from_config(home) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        instance.add_dynamic_partitions("sources", ["deploy_demo"])
        result = materialize(_assets(AUDIT), partition_key="deploy_demo", instance=instance,
                             resources={"integrity": integrity,
                                        "encoder": EncoderResource(workers=0)})
    checks = {evaluation.check_name for evaluation in result.get_asset_check_evaluations()}
    assert result.success and len(checks) >= 8
    # What landed, read back with psycopg2 from PostgreSQL's own tables.
    assert _query(postgres, "SELECT status, partition FROM runs WHERE run_id = %s",
                  result.run_id) == [("SUCCESS", "deploy_demo")]
    executions = _query(postgres, "SELECT check_name, execution_status FROM "
                        "asset_check_executions WHERE run_id = %s", result.run_id)
    assert dict(executions) == {name: "SUCCEEDED" for name in checks}
    materialized = _query(postgres, "SELECT asset_key FROM event_logs WHERE run_id = %s AND "
                          "dagster_event_type = 'ASSET_MATERIALIZATION'", result.run_id)
    assert sorted(json.loads(key)[0] for (key,) in materialized) == sorted(AUDIT)
    # A fresh instance from the same file (as the webserver would load it) sees all of it.
    with DagsterInstance.from_config(home) as reloaded:
        assert reloaded.get_run_by_id(result.run_id).is_success
        assert "deploy_demo" in reloaded.get_dynamic_partitions("sources")


def test_the_production_instance_writes_runs_to_postgres_and_compute_logs_to_s3(
        tmp_path, dagster_home, postgres, s3_server, monkeypatch):
    home = dagster_home("dagster.yaml")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server["endpoint_url"])  # boto3 reads it
    monkeypatch.setenv("DAGSTER_COMPUTE_LOG_BUCKET", "deploy-logs")
    monkeypatch.setenv("DAGSTER_COMPUTE_LOG_PREFIX", "sft-integrity")
    s3 = boto3.client("s3", endpoint_url=s3_server["endpoint_url"])
    if "deploy-logs" not in [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket="deploy-logs")
    integrity = _demo_world(tmp_path, "deploy_prod")
    with DagsterInstance.from_config(home) as instance:
        assert type(instance.compute_log_manager).__name__ == "S3ComputeLogManager"
        instance.add_dynamic_partitions("sources", ["deploy_prod"])
        result = materialize(_assets(["raw_sft"]), partition_key="deploy_prod",
                             instance=instance, resources={"integrity": integrity})
    assert result.success
    assert _query(postgres, "SELECT status FROM runs WHERE run_id = %s",
                  result.run_id) == [("SUCCESS",)]
    listed = s3.list_objects_v2(Bucket="deploy-logs", Prefix=f"sft-integrity/storage/"
                                f"{result.run_id}/compute_logs/")
    # stderr holds the run's log lines; an empty stdout is not uploaded (skip_empty_files).
    [stderr] = [item["Key"] for item in listed.get("Contents", []) if item["Key"].endswith(".err")]
    text = s3.get_object(Bucket="deploy-logs", Key=stderr)["Body"].read().decode()
    assert 'Started execution of step "raw_sft"' in text

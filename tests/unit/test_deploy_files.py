"""The deployment files, checked without a Docker engine.

There is no Docker engine on the development machines or in CI, so a broken compose file would only
show on the first real deployment. These tests read the files the way their tools do: the compose file
against the Compose Specification schema and (when installed) Debian's ``docker-compose config``;
``deploy/nameko.yaml`` with nameko's own env-var loader; ``prometheus.yml`` with ``promtool``. Then they
check what no schema knows: every dependency is waited on properly, every variable is documented,
no secret is written down, and every command names code that exists.

``tests/data/compose_spec.json`` is ``compose/config/compose_spec.json`` copied unchanged from the PyPI
wheel ``docker-compose==1.29.2`` (sha256 0dc04bd346dcfee1b1419628fff79937bbf076925f298f272a2b490e2b112bac):
the Compose Specification schema by Docker, Inc. and the Compose Specification authors, Apache License 2.0.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from lianhu.config import SERVICE_NAMES, KitSettings
from lianhu.metrics import MetricsSettings
from services.intake.config import IntakeSettings
from services.registry.config import RegistrySettings
from services.speech.config import SpeechSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
NAMEKO_CONFIG = ROOT / "deploy" / "nameko.yaml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GATEWAY_LOGGING = ROOT / "deploy" / "logging.yaml"
RABBITMQ_PLUGINS = ROOT / "deploy" / "rabbitmq" / "enabled_plugins"
POSTGRES_INIT = ROOT / "deploy" / "postgres" / "init-databases.sql"
COMPOSE_SCHEMA = ROOT / "tests" / "data" / "compose_spec.json"

# Variables that hold secrets: compose must take them from the environment, .env.example leaves them empty.
SECRET_VARIABLES = {
    "POSTGRES_PASSWORD",
    "RABBITMQ_PASSWORD",
    "LIANHU_SECRET_KEY",
    "LIANHU_REGISTRY_ENCRYPTION_KEY",
    "LIANHU_REGISTRY_INDEX_KEY",
    "GRAFANA_ADMIN_PASSWORD",
}
SECRET_KEY_PATTERN = re.compile(r"(PASSWORD|PASS|SECRET|TOKEN|_KEY)$")
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")
ONLY_AN_INTERPOLATION = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:?[?-][^}]*)?\}$")
DURATION = re.compile(r"^(\d+(\.\d+)?(us|ms|s|m|h))+$")
DATABASE_URL = re.compile(
    r"^postgresql\+psycopg2://lianhu:\$\{POSTGRES_PASSWORD(:\?[^}]*)?\}@postgres:5432/lianhu_(?P<db>\w+)$"
)
LIANHU_IMAGE = "lianhu:local"


class PlainYamlLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader as shipped.

    nameko's CLI registers a ``${VAR}`` resolver on ``yaml.SafeLoader`` itself, for the whole process;
    compose and Prometheus files must be read with their ``${VAR}`` left as written.
    """


PlainYamlLoader.yaml_implicit_resolvers = {
    first: list(resolvers) for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
}
PlainYamlLoader.yaml_constructors = dict(yaml.constructor.SafeConstructor.yaml_constructors)


def load_yaml(path: Path):
    return yaml.load(path.read_text(encoding="utf-8"), Loader=PlainYamlLoader)


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def env_example() -> dict[str, str]:
    return dict(_env_example_entries())


def _env_example_entries():
    previous = ""
    for number, line in enumerate(ENV_EXAMPLE.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            name, separator, value = stripped.partition("=")
            assert separator, f".env.example line {number} is not NAME=value: {line!r}"
            assert previous.startswith("#"), f".env.example: {name} needs a comment on the line above"
            yield name, value
        previous = stripped


def is_one_shot(service: dict) -> bool:
    return service.get("restart") == "no"


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "write environment as a mapping, so anchors can merge"
    return {name: "" if value is None else str(value) for name, value in env.items()}


def command_lines(service: dict) -> list[list[str]]:
    """The command as argument lists; ``sh -c "a && b"`` gives one list per step."""
    command = service.get("command")
    if command is None:
        return []
    if isinstance(command, str):
        command = shlex.split(command)
    if command[:2] == ["sh", "-c"]:
        return [shlex.split(step) for step in command[2].split("&&")]
    return [list(command)]


def lianhu_services(services: dict) -> dict[str, dict]:
    return {name: service for name, service in services.items() if service.get("image") == LIANHU_IMAGE}


def walk_strings(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk_strings(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk_strings(value, (*path, str(index)))
    elif isinstance(node, str):
        yield path, node


# --- (a) the Compose Specification ----------------------------------------------------------------


def test_compose_file_matches_the_compose_specification_schema(compose):
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft201909Validator.check_schema(schema)
    errors = sorted(
        jsonschema.Draft201909Validator(schema).iter_errors(compose), key=lambda error: list(error.path)
    )
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_compose_file_has_no_version_key(compose):
    assert "version" not in compose, "the Compose Specification has no version; compose v2 warns on it"


def test_compose_durations_are_well_formed(services):
    # The schema names the "duration" format but jsonschema does not check it.
    for name, service in services.items():
        healthcheck = service.get("healthcheck") or {}
        durations = {
            key: healthcheck[key] for key in ("interval", "timeout", "start_period") if key in healthcheck
        }
        if "stop_grace_period" in service:
            durations["stop_grace_period"] = service["stop_grace_period"]
        for field, value in durations.items():
            assert DURATION.match(str(value)), f"{name}.{field}: {value!r} is not a duration"


# --- (b) what the schema cannot know --------------------------------------------------------------


def test_every_long_running_service_has_a_healthcheck_and_a_restart_policy(services):
    for name, service in services.items():
        if is_one_shot(service):
            assert "healthcheck" not in service, f"{name} is one-shot: it is waited on by exit code"
            continue
        healthcheck = service.get("healthcheck")
        assert healthcheck and healthcheck.get("test"), f"{name} runs for ever but has no healthcheck"
        assert not healthcheck.get("disable"), f"{name} disables its healthcheck"
        assert service.get("restart") in {"always", "unless-stopped", "on-failure"}, name


def test_depends_on_waits_for_health_or_completion(services):
    for name, service in services.items():
        depends_on = service.get("depends_on") or {}
        assert isinstance(depends_on, dict), f"{name}: a depends_on list waits only for the start"
        for target, options in depends_on.items():
            assert target in services, f"{name} depends on unknown service {target}"
            condition = (options or {}).get("condition")
            if is_one_shot(services[target]):
                assert condition == "service_completed_successfully", f"{name} -> {target}: {condition}"
            else:
                assert condition == "service_healthy", f"{name} -> {target}: {condition}"
                assert "healthcheck" in services[target], f"{name} waits for {target}'s missing healthcheck"


def test_one_shot_services_are_waited_for_by_every_lianhu_service(services):
    one_shots = {name for name, service in services.items() if is_one_shot(service)}
    assert {"migrate", "topology"} <= one_shots
    for name, service in lianhu_services(services).items():
        if name in one_shots:
            continue
        assert one_shots <= set(service.get("depends_on") or {}), f"{name} may start before {one_shots}"


def test_every_compose_variable_is_in_env_example_and_nothing_else_is(compose):
    used = {variable for _, value in walk_strings(compose) for variable in INTERPOLATION.findall(value)}
    listed = set(env_example())
    assert used - listed == set(), (
        f"used in docker-compose.yml but missing from .env.example: {used - listed}"
    )
    assert listed - used == set(), f"listed in .env.example but unused by docker-compose.yml: {listed - used}"


def test_secrets_are_never_written_down(compose):
    for path, value in walk_strings(compose):
        where = ".".join(path)
        if SECRET_KEY_PATTERN.search(path[-1]):
            assert ONLY_AN_INTERPOLATION.match(value), f"{where} must come from the environment: {value!r}"
        for password in re.findall(r"://[^:/@\s]+:([^@\s]+)@", value):
            assert ONLY_AN_INTERPOLATION.match(password), f"{where} has a literal password in a URL"
    # Required secrets fail loudly when unset instead of falling back to an empty password.
    values = [value for _, value in walk_strings(compose)]
    for variable in SECRET_VARIABLES:
        uses = [use for value in values for use in re.findall(r"\$\{" + variable + r"([^}]*)\}", value)]
        assert uses, f"{variable} is never used"
        assert all(use.startswith(":?") for use in uses), (
            f"{variable} must be required with ${{{variable}:?…}}"
        )
    values = env_example()
    for variable in SECRET_VARIABLES:
        assert values[variable] == "", f".env.example must not carry a value for the secret {variable}"


def test_lianhu_variables_are_settings_fields(services):
    known = {
        f"LIANHU_{field.upper()}"
        for settings in (KitSettings, IntakeSettings, RegistrySettings, SpeechSettings, MetricsSettings)
        for field in settings.model_fields
    }
    known |= {f"LIANHU_{service.upper()}_DATABASE_URL" for service in SERVICE_NAMES}
    for name, service in services.items():
        for variable in environment(service):
            if variable.startswith("LIANHU_"):
                assert variable in known, f"{name} sets {variable}, which no setting reads"
    for variable in re.findall(r"^ENV\s+(LIANHU_\w+)", DOCKERFILE.read_text(encoding="utf-8"), re.M):
        assert variable in known, f"the Dockerfile sets {variable}, which no setting reads"


def test_each_service_reaches_only_its_own_database(services):
    databases_created = set(
        re.findall(r"CREATE DATABASE\s+(\w+)", POSTGRES_INIT.read_text(encoding="utf-8"), re.I)
    )
    assert databases_created == {f"lianhu_{service}" for service in SERVICE_NAMES}
    for name, service in lianhu_services(services).items():
        urls = {key: value for key, value in environment(service).items() if key.endswith("_DATABASE_URL")}
        for key, url in urls.items():
            match = DATABASE_URL.match(url)
            assert match, f"{name}.{key} = {url!r}"
            assert key == f"LIANHU_{match['db'].upper()}_DATABASE_URL", (
                f"{name}.{key} points at {match['db']}"
            )
        if name == "migrate":
            expected = {f"LIANHU_{service.upper()}_DATABASE_URL" for service in SERVICE_NAMES}
        elif name in SERVICE_NAMES:
            expected = {f"LIANHU_{name.upper()}_DATABASE_URL"}
        else:
            expected = set()
        assert set(urls) == expected, f"{name} gets database URLs {sorted(urls)}"
        if urls:
            assert "postgres" in service.get("depends_on", {}), f"{name} uses PostgreSQL without waiting"


def _function_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}


def _service_class_names(path: Path) -> set[str]:
    """String literals assigned to ``name`` in a class body: nameko's service names."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ClassDef):
            for statement in node.body:
                if (
                    isinstance(statement, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "name" for t in statement.targets)
                    and isinstance(statement.value, ast.Constant)
                ):
                    names.add(statement.value.value)
    return names


def test_commands_name_code_that_exists(services):
    seen = set()
    for name, service in lianhu_services(services).items():
        for argv in command_lines(service):
            program = argv[0]
            seen.add(program)
            if program == "uvicorn":
                module, _, factory = argv[1].partition(":")
                path = ROOT / (module.replace(".", "/") + ".py")
                assert path.is_file(), f"{name}: {path.relative_to(ROOT)} does not exist yet"
                assert factory in _function_names(path), f"{name}: {module} defines no {factory}()"
                assert "--factory" in argv
            elif program == "nameko":
                assert argv[1] == "run"
                config = argv[argv.index("--config") + 1]
                assert (ROOT / config).is_file(), f"{name}: {config} does not exist"
                module = argv[-1]
                path = ROOT / (module.replace(".", "/") + ".py")
                assert path.is_file(), f"{name}: {path.relative_to(ROOT)} does not exist yet"
                assert module == f"services.{name}.service", f"compose service {name} runs {module}"
                declared = _service_class_names(path)
                assert not declared or name in declared, f"{module} declares services {declared}, not {name}"
                assert service["healthcheck"]["test"] == ["CMD", "lianhu", "health", name]
            else:
                assert program == "lianhu", f"{name} runs {program}"
    assert {"uvicorn", "nameko", "lianhu"} <= seen


def _lianhu_invocations(services: dict) -> dict[str, set[str]]:
    """Each ``lianhu`` subcommand compose runs (commands and healthchecks), with the options it passes."""
    invocations: dict[str, set[str]] = {}
    for service in lianhu_services(services).values():
        argvs = command_lines(service)
        test = (service.get("healthcheck") or {}).get("test") or []
        if test[:2] == ["CMD", "lianhu"]:
            argvs.append(test[1:])
        for argv in argvs:
            if argv[0] == "lianhu":
                invocations.setdefault(argv[1], set()).update(arg for arg in argv[2:] if arg.startswith("-"))
    return invocations


def test_lianhu_cli_has_every_subcommand_and_option_compose_uses(services):
    invocations = _lianhu_invocations(services)
    assert set(invocations) == {"migrate", "seed", "topology", "health"}
    assert (ROOT / "lianhu" / "cli.py").is_file(), "lianhu/cli.py (the `lianhu` command) does not exist yet"
    for subcommand, options in sorted(invocations.items()):
        result = subprocess.run(
            [sys.executable, "-c", "from lianhu.cli import main; raise SystemExit(main())", subcommand, "-h"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"lianhu {subcommand} -h failed:\n{result.stderr[-2000:]}"
        for option in options:
            assert option in result.stdout, f"lianhu {subcommand} has no {option} option"


def test_the_gateway_logs_json_lines_of_its_own(services):
    (argv,) = command_lines(services["intake"])
    assert argv[argv.index("--log-config") + 1] == str(GATEWAY_LOGGING.relative_to(ROOT))
    # uvicorn's access lines carry the query string, which may hold an ID number.
    assert "--no-access-log" in argv
    procfile_intake = next(
        line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("intake:")
    )
    assert "--log-config deploy/logging.yaml" in procfile_intake and "--no-access-log" in procfile_intake


def test_intake_port_is_the_same_everywhere(services):
    intake = services["intake"]
    (argv,) = command_lines(intake)
    port = argv[argv.index("--port") + 1]
    assert port in [str(mapping).rsplit(":", 1)[-1] for mapping in intake["ports"]], "port not published"
    assert f"127.0.0.1:{port}/readyz" in " ".join(intake["healthcheck"]["test"])


def test_dockerfile_builds_a_lean_non_root_image():
    text = DOCKERFILE.read_text(encoding="utf-8")
    instructions = [
        line.split(None, 1) for line in text.splitlines() if line and not line.startswith(("#", " "))
    ]
    # Stages: the platform's image (`app`), the speech model's download, `speech` and the default
    # (last) stage are built on the slim base or on an earlier stage, never on anything else.
    stages: list[str] = []
    for words in instructions:
        if words[0] == "FROM":
            base, _, name = words[1].partition(" AS ")
            assert base == "python:3.11-slim" or base in stages, f"stage built on {base}"
            stages.append(name or base)
    assert stages[0] == "app" and stages[-1] == "app", "built without --target, the image is the platform's"
    assert ["WORKDIR", "/app"] in instructions
    users = [words[1] for words in instructions if words[0] == "USER"]
    assert users and users[-1] not in {"root", "0"}, "the image must not run as root"
    assert "ENV LIANHU_VAR_DIR=/app/var" in text
    assert 'VOLUME ["/app/var"]' in text
    assert "--no-install-recommends ffmpeg" in text
    assert "pip install --no-deps ." in text
    assert "[dev]" not in text, "no dev extras in the image"
    assert not re.search(r"^(ENV|ARG)\s+\S*(PASSWORD|SECRET|TOKEN)", text, re.M | re.I), "secret baked in"


def _dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_dockerignore_keeps_local_state_and_secrets_out():
    patterns = set(_dockerignore_patterns())
    assert {".git", ".venv", "var", ".env", ".pytest_cache", ".ruff_cache", "**/__pycache__"} <= patterns


def test_dockerfile_copies_only_files_that_exist_and_are_sent():
    sources = []
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if line.startswith("COPY ") and "--from=" not in line:  # from a stage, not the context
            sources += [word for word in line.split()[1:-1] if not word.startswith("--")]
    ignored = {pattern.rstrip("/") for pattern in _dockerignore_patterns() if not pattern.startswith("!")}
    for source in sources:
        assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which does not exist yet"
        assert source.rstrip("/") not in ignored, f"the Dockerfile copies {source}, which .dockerignore drops"


# --- (c) nameko's own reading of deploy/nameko.yaml -----------------------------------------------

NAMEKO_LOADER = """
import json, logging.config, sys, yaml
from nameko.cli.main import setup_yaml_parser
setup_yaml_parser()  # what `nameko run` does before reading --config
with open(sys.argv[1]) as handle:
    config = yaml.safe_load(handle)
logging.config.dictConfig(config["LOGGING"])
print(json.dumps(config))
"""


def _nameko_config(**env: str) -> dict:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("LIANHU_")}
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", NAMEKO_LOADER, str(NAMEKO_CONFIG)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def test_nameko_config_observes_every_service_and_logs_json():
    config = _nameko_config()
    module, _, name = config["SERVICE_CONTAINER_CLS"].rpartition(".")
    tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text(encoding="utf-8"))
    (container,) = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == name]
    assert [base.id for base in container.bases] == ["ServiceContainer"]
    assert config["LOGGING"]["formatters"]["json"] == {"()": "lianhu.logs.JsonFormatter"}


def test_gateway_logging_config_is_the_nameko_one_with_its_level_from_the_environment():
    gateway = yaml.safe_load(GATEWAY_LOGGING.read_text(encoding="utf-8"))
    nameko = _nameko_config()["LOGGING"]
    assert gateway["formatters"] == nameko["formatters"]
    assert gateway["handlers"] == nameko["handlers"]
    probe = (
        "import logging, logging.config, sys, yaml; "
        "logging.config.dictConfig(yaml.safe_load(open(sys.argv[1]))); "
        "print(logging.getLevelName(logging.getLogger().level))"
    )
    clean = {key: value for key, value in os.environ.items() if not key.startswith("LIANHU_")}
    result = subprocess.run(
        [sys.executable, "-c", probe, str(GATEWAY_LOGGING)],
        env={**clean, "LIANHU_LOG_LEVEL": "warning"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "WARNING"


def test_nameko_config_takes_the_broker_from_the_environment():
    uri = "amqp://lianhu:p%40ss#w{o}rd: x@rabbitmq:5672/"
    config = _nameko_config(LIANHU_AMQP_URI=uri, LIANHU_MAX_WORKERS="4", LIANHU_LOG_LEVEL="DEBUG")
    assert config["AMQP_URI"] == uri
    assert config["max_workers"] == 4
    assert config["LOGGING"]["root"]["level"] == "DEBUG"


def test_nameko_config_defaults_match_the_kit_settings():
    config = _nameko_config()
    assert config["AMQP_URI"] == KitSettings.model_fields["amqp_uri"].default
    assert config["max_workers"] == 10
    assert config["LOGGING"]["root"]["level"] == KitSettings.model_fields["log_level"].default
    assert config["LOGGING"]["handlers"]["stderr"]["stream"] == "ext://sys.stderr"


# --- (d) Prometheus -------------------------------------------------------------------------------


def _metrics_port(service: dict) -> str:
    """Where a compose service serves /metrics: the gateway on its HTTP port, nameko services on
    LIANHU_METRICS_PORT."""
    (argv,) = command_lines(service)
    if argv[0] == "uvicorn":
        return argv[argv.index("--port") + 1]
    return environment(service)["LIANHU_METRICS_PORT"]


def test_prometheus_scrapes_every_lianhu_service_and_the_broker(services):
    config = load_yaml(PROMETHEUS_CONFIG)
    prometheus = services["prometheus"]
    assert (
        f"./{PROMETHEUS_CONFIG.relative_to(ROOT)}:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    )
    assert "./deploy/prometheus/rules:/etc/prometheus/rules:ro" in prometheus["volumes"]
    assert config["rule_files"] == ["rules/*.yml"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    long_running = {name for name, service in services.items() if not is_one_shot(service)}
    lianhu = {name for name in lianhu_services(services) if name in long_running} | {"speech"}
    assert lianhu | {"prometheus", "rabbitmq"} == set(jobs)
    for job_name, job in jobs.items():
        assert job.get("metrics_path", "/metrics") == "/metrics"
        (static,) = job["static_configs"]
        (target,) = static["targets"]
        host, port = target.rsplit(":", 1)
        if job_name == "prometheus":
            assert target == "localhost:9090"
        elif job_name == "rabbitmq":
            assert port == "15692"
            assert "rabbitmq_prometheus" in RABBITMQ_PLUGINS.read_text()
            mount = f"./{RABBITMQ_PLUGINS.relative_to(ROOT)}:/etc/rabbitmq/enabled_plugins:ro"
            assert mount in services["rabbitmq"]["volumes"]
        else:
            # The rules and dashboards group Lianhu's targets by this label.
            assert host == job_name and static["labels"] == {"service": job_name}
            assert port == _metrics_port(services[host]), f"{target}: {host} serves its metrics elsewhere"


def test_grafana_is_provisioned_from_the_repository(services):
    grafana = services["grafana"]
    assert grafana["image"].startswith("grafana/grafana:") and "latest" not in grafana["image"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    (provider,) = load_yaml(ROOT / "deploy/grafana/provisioning/dashboards/lianhu.yml")["providers"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in grafana["volumes"]
    (datasource,) = load_yaml(ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml")["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    assert environment(grafana)["GF_AUTH_ANONYMOUS_ENABLED"] == "false"


def test_long_running_services_have_resource_limits_and_named_volumes(compose, services):
    for name, service in services.items():
        limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
        assert {"cpus", "memory"} <= set(limits), f"{name} has no cpu or memory limit"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith("./"):
                assert source in compose["volumes"], f"{name} mounts {source}, which is no named volume"


# --- (e) the tools themselves, when installed (`apt-get install prometheus docker-compose`) ---------


def _tool(name: str, package: str) -> str:
    """The tool's path. `make test` installs it; in CI its absence is a failure, not a skip."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not on PATH (Debian package `{package}` provides it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_promtool_accepts_the_prometheus_config_and_its_rules():
    promtool = _tool("promtool", "prometheus")
    result = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_CONFIG)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # check config also checks the rule files it names: make sure it found them.
    assert "SUCCESS: 14 rules found" in result.stdout + result.stderr


def _docker_compose_config(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    docker_compose = _tool("docker-compose", "docker-compose")
    empty_env_file = tmp_path / "empty.env"  # a developer's own .env must not hide a missing secret
    empty_env_file.write_text("")
    clean = {key: value for key, value in os.environ.items() if key not in SECRET_VARIABLES}
    return subprocess.run(
        [docker_compose, "--env-file", str(empty_env_file), "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_docker_compose_accepts_the_file_once_secrets_are_set(tmp_path):
    secrets = {variable: "placeholder-for-the-test" for variable in SECRET_VARIABLES}
    result = _docker_compose_config(tmp_path, **secrets)
    assert result.returncode == 0, result.stderr


def test_docker_compose_refuses_to_start_without_the_secrets(tmp_path):
    result = _docker_compose_config(tmp_path)
    assert result.returncode != 0
    assert "Missing mandatory value" in result.stderr

"""From `pip install` to a running edge, as a new user goes, with nothing the publish record does not say.

The joey wheel in a fresh venv outside the checkout (the session's `wheel_venv`); `podman login` to an htpasswd
registry on loopback, which leaves its credentials where the container world keeps them
($XDG_RUNTIME_DIR/containers/auth.json); `packager image build` (the session's `engine_image`, shared with
test_container.py); `packager publish --registry HOST/NS --plain-http` of the ccfraud example. Then the record's
`podman_run` command runs verbatim through bash, the only host quirk (no rlimit changes in containers here) in
a containers.conf named by CONTAINERS_CONF, and answers /infer; the record's helm command, as bash expands it,
names a chart and `--set` values that real Helm pulls and renders.
"""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import helm_python
import pytest
import requests
import yaml
from support.engine import ARROW_FILE, encode, features, run_model, tensor_table
from support.procs import free_port, start, stop, wait_http

from joey import envvars
from joey.pipeline_config import EngineConfig
from packager.commands import render_commands
from packager.image import CONTAINERS_CONF

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ccfraud"
NAMESPACE = "journey"
# The seeds' numbers for the seeds' ccfraud-xgboost model on cc_data_10k (../shared/reference/README.md).
SEED_ROWS_0_3, SEED_ROW_4 = 1.0094898, -1.9073486e-06
# What the printed commands ask the user to set (the record's `notes`).
HELM_VARIABLES = {"HELM_INSTALL_NAME": "ccfraud-edge", "HELM_INSTALL_NAMESPACE": "edges"}
# helm flags that take a value, in the printed helm command.
HELM_VALUE_FLAGS = {"--namespace", "--version", "--set"}


@pytest.fixture()
def user_env(wheel_venv, tmp_path, monkeypatch) -> dict[str, str]:
    """A user's shell: the wheel venv's tools first on PATH, their own runtime directory for logins, this host's
    containers.conf, and none of the test session's registry settings."""
    for var in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    conf = tmp_path / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    (tmp_path / "run").mkdir(mode=0o700)
    return wheel_venv.env(XDG_RUNTIME_DIR=str(tmp_path / "run"), CONTAINERS_CONF=str(conf))


def _example(work: Path, wheel_venv, env: dict[str, str], model: Path | None) -> Path:
    """The ccfraud example copied out as a user would, its models generated; with `model`, that model in
    place of the example's own (the seeds' ccfraud-xgboost)."""
    work.mkdir()
    spec = (EXAMPLE / "pipeline.yaml").read_text()
    wheel_venv.run(work, "python", str(EXAMPLE / "make_models.py"), "models", env=env)
    if model is not None:
        shutil.copy(model, work / "models" / model.name)
        spec = spec.replace("ccfraud-logreg", model.stem)
    (work / "pipeline.yaml").write_text(spec)
    return work / "pipeline.yaml"


def _engine_container_ids(engine_url: str, env: dict[str, str]) -> list[str]:
    out = subprocess.run(["podman", "ps", "--all", "--format", "{{.ID}} {{.Image}}"], env=env, check=True,
                         capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.split()[1:] == [engine_url]]


def _infer(port: int, data: bytes) -> list[dict]:
    answer = requests.post(f"http://127.0.0.1:{port}/infer", data=data, headers={"Content-Type": ARROW_FILE},
                           timeout=120)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _helm_argv(command: str, env: dict[str, str]) -> list[str]:
    """The arguments the printed helm command hands helm, expanded by bash itself: `helm` is a shell function
    there that prints them."""
    out = subprocess.run(["bash", "-c", 'helm() { printf "%s\\0" "$@"; }\n' + command], env=env, check=True,
                         capture_output=True, text=True)
    return out.stdout.split("\0")[:-1]


def _deep_merge(into: dict, values: dict) -> dict:
    """Helm's merge of successive --set flags: later keys win, maps merge."""
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value
    return into


def _render_helm_command(argv: list[str], reg, tmp_path: Path) -> list[dict]:
    """What `helm install` with these arguments installs, rendered: the chart pulled at --version from the
    registry (after the `helm registry login` the notes ask for), the --set values parsed by Helm's own parser."""
    words = iter(argv)
    positional, flags = [], {}
    for word in words:
        if word in HELM_VALUE_FLAGS:
            flags.setdefault(word, []).append(next(words))
        elif word.startswith("--"):
            flags[word] = []
        else:
            positional.append(word)
    verb, name, chart = positional
    assert verb == "install" and name == HELM_VARIABLES["HELM_INSTALL_NAME"]
    (namespace,), (version,) = flags["--namespace"], flags["--version"]
    values: dict = {}
    for expression in flags["--set"]:
        _deep_merge(values, helm_python.parse_set_string(expression))
    dest = tmp_path / "pulled"
    dest.mkdir()
    with helm_python.RegistryClient(plain_http="--plain-http" in flags,
                                    credentials_file=tmp_path / "helm-registry.json") as client:
        client.login(reg.host, reg.username, reg.password, plain_http=True)
        client.pull(chart, version=version, destination=dest)
    (tgz,) = dest.glob("*.tgz")
    with tarfile.open(tgz) as t:
        t.extractall(tmp_path / "chart", filter="data")
    (chart_dir,) = (tmp_path / "chart").iterdir()
    rendered = helm_python.Chart.load(str(chart_dir)).render(values, name=name, namespace=namespace,
                                                             is_install=True)
    return [d for path, text in rendered.items() if path.endswith(".yaml") for d in yaml.safe_load_all(text) if d]


@pytest.mark.container
@pytest.mark.parametrize("model", ["example", pytest.param("seed", marks=pytest.mark.reference)])
def test_from_the_wheel_to_a_running_edge(model, wheel_venv, engine_image, auth_registry, user_env, request,
                                          tmp_path):
    reg, env = auth_registry, user_env
    seed_dir = request.getfixturevalue("reference_dir") if model == "seed" else None
    wheel_venv.run(tmp_path, "podman", "login", "--tls-verify=false", "--username", reg.username,
                   "--password-stdin", reg.host, env=env, stdin=reg.password)
    assert reg.host in json.loads((tmp_path / "run" / "containers" / "auth.json").read_text())["auths"]
    spec = _example(tmp_path / "ccfraud", wheel_venv, env,
                    seed_dir / "models" / "ccfraud-xgboost.onnx" if seed_dir else None)

    record = json.loads(wheel_venv.run(spec.parent, "packager", "publish", spec.name, "--registry",
                                       f"{reg.host}/{NAMESPACE}", "--plain-http", "--json", env=env))
    assert record["engine_url"].startswith(f"{reg.host}/{NAMESPACE}/engines/joey-engine@sha256:")
    for ref, raw in ((record["engine_url"], []), (record["helm"]["reference"], ["--raw"])):
        wheel_venv.run(tmp_path, "skopeo", "inspect", "--tls-verify=false", *raw, f"docker://{ref}", env=env)

    port, log = free_port(), tmp_path / "podman-run.log"
    secrets = {"OCI_USERNAME": reg.username, "OCI_PASSWORD": reg.password}
    proc = start(["bash", "-c", record["commands"]["podman_run"]], log, env=env | secrets | {"EDGE_PORT": str(port)})
    try:
        wait_http(f"http://127.0.0.1:{port}/ready", ok=(200,), timeout=180, proc=proc, log=log)
        if seed_dir:
            records = _infer(port, (seed_dir / "data" / "cc_data_10k.arrow").read_bytes())
            assert [r["out"]["variable"] for r in records[:5]] == [[SEED_ROWS_0_3]] * 4 + [[SEED_ROW_4]]
        else:
            x = features(5, seed=3)
            records = _infer(port, encode(tensor_table(x), ARROW_FILE))
            expected = run_model(spec.parent / "models" / "ccfraud-logreg.onnx", x)
            assert [v for r in records for v in r["out"]["variable"]] == pytest.approx(expected[:, 0].tolist(),
                                                                                        rel=1e-6)
        stop(proc, timeout=60)
        assert proc.returncode == 0, log.read_text()[-3000:]
    finally:
        stop(proc)
        for container in _engine_container_ids(record["engine_url"], env):
            subprocess.run(["podman", "rm", "--force", "--volumes", container], env=env, capture_output=True)
        subprocess.run(["podman", "rmi", "--ignore", record["engine_url"]], env=env, capture_output=True)

    docs = _render_helm_command(_helm_argv(record["commands"]["helm_install"], env | secrets | HELM_VARIABLES),
                                reg, tmp_path)
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == record["engine_url"]
    env_values = {e["name"]: e.get("value") for e in container["env"]}
    assert env_values[envvars.PIPELINE_URL] == record["pipeline_url"] and env_values[envvars.PLAIN_HTTP] == "true"
    (secret,) = [d for d in docs if d["kind"] == "Secret" and "OCI_USERNAME" in d.get("data", {})]
    assert secret["data"]["OCI_USERNAME"] == base64.b64encode(reg.username.encode()).decode()


def test_only_a_loopback_registry_puts_the_engine_on_the_host_network():
    """A container on its own network cannot reach the host's 127.0.0.1; a registry anywhere else keeps -p."""
    def podman_run(url: str, plain_http: bool) -> list[str]:
        return render_commands(pipeline_url=f"{url}/ns/pipelines/p:1", engine_url=f"{url}/ns/engines/e@sha256:ab",
                               engine=EngineConfig(), oci_registry=url, chart=None, chart_version=None,
                               plain_http=plain_http)["podman_run"].replace("\\\n", " ").split()

    for loopback in ("127.0.0.1:5000", "localhost:5000", "[::1]:5000"):
        words = podman_run(loopback, plain_http=True)
        assert words[2:4] == ["--network", "host"] and words[-2:] == ["--port", "$EDGE_PORT"]
        assert "-p" not in words and "--tls-verify=false" in words
    words = podman_run("registry.example.com", plain_http=False)
    assert words[2:4] == ["-p", "$EDGE_PORT:8080"] and words[-1] == "registry.example.com/ns/engines/e@sha256:ab"
    assert "--network" not in words and "--tls-verify=false" not in words

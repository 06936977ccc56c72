"""Every command a publish prints runs as printed: on a plain-HTTP registry (helm `--plain-http`, the engine's
JOEY_PLAIN_HTTP, the chart's ociRegistry.plainHttp), and from the local store (serve it, push it), whose export
names no store; an engine that cannot read a mounted store says so in one line."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tarfile

import helm_python
import yaml
from support.procs import free_port, start, stop, wait_for, wait_http
from support.specs import one_step

from joey import envvars
from packager.airgap import export_publish
from packager.publish import publish

CLI = [sys.executable, "-m", "packager.cli"]


def _engine_env(command: str, variables: dict[str, str]) -> dict[str, str]:
    """The environment a `docker run` command gives its container: its `-e NAME=VALUE` flags, `$VARS` set."""
    words = shlex.split(command)
    pairs = [words[i + 1] for i, w in enumerate(words) if w == "-e"]
    env = dict(p.split("=", 1) for p in pairs)
    return {k: variables.get(v[1:], v) if v.startswith("$") else v for k, v in env.items()}


def test_plain_http_docker_run_gives_the_engine_what_it_needs(example_models, write_spec, registry, tmp_path,
                                                              monkeypatch):
    rec = publish(write_spec(one_step()), registry=f"{registry.host}/plain", plain_http=True, with_chart=False,
                  with_engine_image=False)
    env = _engine_env(rec["commands"]["docker_run"], {"OCI_USERNAME": "", "OCI_PASSWORD": ""})
    assert env[envvars.PLAIN_HTTP] == "true"
    assert _engine_env(rec["commands"]["podman_run"], {})[envvars.PLAIN_HTTP] == "true"
    assert yaml.safe_load(rec["commands"]["compose"])["services"]["engine"]["environment"][envvars.PLAIN_HTTP] == \
        "true"
    # the engine, given exactly that environment (and nothing of the test's), serves the pipeline
    monkeypatch.delenv(envvars.PLAIN_HTTP, raising=False)
    port, log = free_port(), tmp_path / "engine.log"
    proc = start([sys.executable, "-m", "engine", "--host", "127.0.0.1", "--port", str(port)], log,
                 env={**env, envvars.PERSIST_DIR: str(tmp_path / "persist")})
    try:
        wait_http(f"http://127.0.0.1:{port}/ready", ok=(200,), timeout=90, proc=proc, log=log)
    finally:
        stop(proc)


def test_plain_http_helm_install_pulls_and_renders(example_models, write_spec, registry, tmp_path):
    rec = publish(write_spec(one_step()), registry=f"{registry.host}/plainchart", plain_http=True,
                  with_engine_image=False)
    words = shlex.split(rec["commands"]["helm_install"])
    assert "--plain-http" in words
    assert rec["helm"]["values"]["ociRegistry"]["plainHttp"] is True
    # what that command installs: the chart at --version from the plain-HTTP registry, with its --set values
    dest = tmp_path / "pulled"
    dest.mkdir()
    with helm_python.RegistryClient(plain_http=True) as client:
        client.pull(words[words.index("install") + 3], version=words[words.index("--version") + 1], destination=dest)
    with tarfile.open(next(dest.glob("*.tgz"))) as t:
        t.extractall(tmp_path / "chart", filter="data")
    sets = [words[i + 1].replace("$OCI_USERNAME", "u").replace("$OCI_PASSWORD", "p")
            for i, w in enumerate(words) if w == "--set"]
    values = {"ociRegistry": {k.split(".", 1)[1]: v for k, v in (s.split("=", 1) for s in sets)}}
    rendered = helm_python.Chart.load(str(tmp_path / "chart" / "edge-pipeline")).render(values, name="e",
                                                                                         namespace="n")
    docs = [d for name, text in rendered.items() if name.endswith(".yaml") for d in yaml.safe_load_all(text) if d]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env[envvars.PLAIN_HTTP] == "true"


def test_local_store_publish_prints_steps_that_work_from_there(example_models, write_spec, registry, tmp_path):
    out = subprocess.run([*CLI, "publish", str(write_spec(one_step())), "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rec = json.loads(out.stdout)
    commands = rec["commands"]
    assert {"docker_run", "podman_run", "compose", "helm_install"}.isdisjoint(commands)
    assert commands["serve"] == f"packager serve {rec['pipeline_url']}"
    # push, as printed, with $REGISTRY set (and --plain-http, which its note says a registry without TLS needs)
    pushed = subprocess.run(["bash", "-c", commands["push"].replace("packager", shlex.join(CLI), 1) +
                             " --plain-http --json"], env={**os.environ, "REGISTRY": f"{registry.host}/fromstore"},
                            capture_output=True, text=True)
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout)["digest"] == rec["pipeline_digest"]
    # serve, as printed (on a free port of its own), answers
    port, log = free_port(), tmp_path / "serve.log"
    argv = [*CLI, *shlex.split(commands["serve"])[1:], "--port", str(port)]
    proc = start(argv, log, env={envvars.PERSIST_DIR: str(tmp_path / "persist")})
    try:
        wait_http(f"http://127.0.0.1:{port}/ready", ok=(200,), timeout=90, proc=proc, log=log)
    finally:
        stop(proc)


def test_exporting_a_local_store_publish_names_no_store(example_models, write_spec, tmp_path):
    rec = publish(write_spec(one_step()))
    store = os.environ["JOEY_STORE"]
    assert rec["pipeline_url"].startswith(f"oci:{store}:")
    out = tmp_path / "bundle.tar"
    export_publish(rec["pipeline_url"], out)
    with tarfile.open(out) as t:
        blobs = [t.extractfile(m).read() for m in t.getmembers() if m.isfile()]
    assert not [b for b in blobs if store.encode() in b]
    records = [json.loads(b) for b in blobs if b"pipeline_digest" in b and b.startswith(b"{")]
    (exported,) = [r for r in records if "pipeline_name" in r]
    assert exported["pipeline_url"] == f"pipelines/edge-pipeline:{rec['pipeline_version']}"
    assert exported["pipeline_digest"] == rec["pipeline_digest"]


def test_engine_given_an_unreadable_store_says_so_in_one_line(example_models, write_spec, tmp_path):
    rec = publish(write_spec(one_step()))
    store = os.environ["JOEY_STORE"]
    # The store as another uid owns it with mode 0600 (what Joey wrote before), read by a process that, like
    # the engine image's uid 10001, may not read it: root without the capabilities that bypass file modes.
    for path in [store, *(os.path.join(d, f) for d, _, fs in os.walk(store) for f in fs)]:
        os.chown(path, 65534, 65534)
        os.chmod(path, 0o700 if os.path.isdir(path) else 0o600)
    os.chmod(store, 0o755)
    port, log = free_port(), tmp_path / "engine.log"
    drop = "-dac_override,-dac_read_search"
    proc = start(["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}", "--", sys.executable, "-m", "engine",
                  "--host", "127.0.0.1", "--port", str(port)], log,
                 env={envvars.PIPELINE_URL: rec["pipeline_url"], envvars.PERSIST_DIR: str(tmp_path / "persist")})
    try:
        wait_for("the engine's verdict", lambda: proc.poll() is not None or "permission denied" in log.read_text())
    finally:
        stop(proc)
    text = log.read_text()
    assert "Traceback" not in text and "PermissionError" not in text
    (line,) = [x for x in text.splitlines() if "permission denied" in x]
    assert f"{store}/index.json" in line and "not readable" in line

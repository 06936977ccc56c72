"""The ready-to-paste deployment commands of a publish (jinja2 templates in templates/).

Values are shell-quoted (shlex) or YAML-quoted where they land; `$VARS` are left for the DevOps engineer to set,
and `notes` says which. Every command runs as printed: a plain-HTTP registry gets `--plain-http` (helm),
`--tls-verify=false` (podman's pull) and JOEY_PLAIN_HTTP (the engine); a registry on the host's loopback,
which a container on its own network cannot reach, gets the host's network (`--network host`, the engine
listening on $EDGE_PORT itself, as docs/container.md shows); a publish to the local store, which no container
or cluster can reach, gets the steps that work from there instead: serve it here, or push it to a registry to
deploy it.
"""
from __future__ import annotations

import json
import shlex
from functools import lru_cache
from urllib.parse import urlsplit

import jinja2

from joey import envvars
from joey.bundle import is_loopback
from joey.names import registry_host
from joey.pipeline_config import EngineConfig
from joey.quantity import docker_memory, format_cpus

NOTES = {
    "docker_run": "Set EDGE_PORT, OCI_USERNAME, OCI_PASSWORD{persist} before running.",
    "podman_run": "Set EDGE_PORT, OCI_USERNAME, OCI_PASSWORD{persist} before running.",
    "compose": "Save as compose.yaml; set OCI_USERNAME, OCI_PASSWORD (and EDGE_PORT{persist}); "
               "then `docker compose up -d`.",
    "helm_install": "Set HELM_INSTALL_NAME, HELM_INSTALL_NAMESPACE, OCI_USERNAME, OCI_PASSWORD; "
                    "run `helm registry login` first for a private registry.",
}
LOCAL_NOTES = {
    "serve": "Serves the pipeline on 127.0.0.1:8080 with the engine; `curl localhost:8080/pipelines` to check.",
    "push": "Set REGISTRY (HOST[:PORT]/NAMESPACE) to deploy it: then publish with --registry $REGISTRY for "
            "the docker, podman and helm commands (add --plain-http for a registry without TLS).",
}


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("packager", "templates"), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=False, autoescape=False)
    env.filters["q"] = lambda v: shlex.quote(str(v))
    # A JSON string is a valid YAML scalar; `$$` because compose interpolates `$`.
    env.filters["yq"] = lambda v: json.dumps(str(v)).replace("$", "$$")
    return env


def _on_loopback(pipeline_url: str) -> bool:
    """Whether the registry the engine fetches from is on this host's loopback (127.0.0.1:5000, localhost, [::1])."""
    host = urlsplit(f"//{registry_host(pipeline_url) or ''}").hostname
    return bool(host) and is_loopback(host)


def render_commands(*, pipeline_url: str, engine_url: str, engine: EngineConfig, oci_registry: str,
                    chart: str | None, chart_version: str | None, edge_bundle: str | None = None,
                    upgrade: bool = False, plain_http: bool = False) -> dict[str, str]:
    """docker_run, podman_run, compose, helm_install (when a chart was pushed) and their notes; for a publish in
    a local layout (`oci:DIR:...`), serve and push."""
    env = _env()
    if pipeline_url.startswith("oci:"):
        out = {name: env.get_template(f"{name}.j2").render(pipeline_url=pipeline_url).strip() for name in LOCAL_NOTES}
        return out | {"notes": dict(LOCAL_NOTES)}
    ctx = dict(pipeline_url=pipeline_url, engine_url=engine_url, cpus=format_cpus(engine.cpus), gpus=engine.gpus,
               docker_memory=docker_memory(engine.memory), oci_registry=oci_registry, edge_bundle=edge_bundle,
               chart=chart, chart_version=chart_version, upgrade=upgrade, plain_http=plain_http,
               plain_http_var=envvars.PLAIN_HTTP, host_network=_on_loopback(pipeline_url))
    run = env.get_template("container_run.j2")
    out = {
        "docker_run": run.render(ctx, tool="docker").strip(),
        "podman_run": run.render(ctx, tool="podman").strip(),
        "compose": env.get_template("compose.yaml.j2").render(ctx).strip() + "\n",
    }
    if chart and chart_version:
        out["helm_install"] = env.get_template("helm_install.j2").render(ctx).strip()
    persist = ", PERSISTENT_VOLUME_DIR" if edge_bundle else ""
    out["notes"] = {k: v.format(persist=persist) for k, v in NOTES.items() if k in out}
    return out

"""The per-publish Helm chart: a copy of the engine chart (charts/engine) named after the pipeline, with the
publish's values as its defaults, linted, packaged and pushed with real Helm (helm-python-sdk: Helm's Go SDK
through ctypes).

A publish's chart lands at oci://HOST/NS/charts/<pipeline> with version 0.0.1-<pipeline version>, so that
`helm install --atomic NAME oci://HOST/NS/charts/<pipeline> --version 0.0.1-<version>` needs nothing but the
registry credentials (and, for an edge location, the edge bundle).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

from joey import credentials, envvars
from joey.errors import ConfigError, JoeyError, RegistryError, RegistryUnreachable
from joey.fsutil import atomic_writer
from joey.names import chart_reference, chart_url, chart_version, is_dns_label

# Helm stamps each tar entry, and the `created` annotation of the pushed manifest, with the chart files'
# mtimes. Fixing them (1980-01-01, as zip and wheels do) makes a rebuild byte-identical on any checkout.
CHART_EPOCH = 315532800
LINT_ERROR = 3  # helm_python.lint severity


class ChartError(JoeyError):
    """A chart that Helm refuses: lint errors, values its schema rejects, a template that fails to render."""

    exit_code = 2
    http_status = 400

    def __init__(self, chart: str, problem: str):
        self.chart, self.problem = chart, problem
        super().__init__(f"chart {chart}: {problem}",
                         hint="docs/chart.md lists every value with its type and default")


class ChartPushError(JoeyError):
    """A push Helm failed for a reason that is neither an HTTP status nor a connection problem."""

    exit_code = 4
    http_status = 502

    def __init__(self, url: str, detail: str):
        super().__init__(f"Failed to push chart to {url}: {detail}")


@dataclass(frozen=True)
class ChartRef:
    """Where a pushed chart lives, in the seeds' `helm` record form."""

    chart: str       # oci://HOST/NS/charts/<name>
    reference: str   # HOST/NS/charts@sha256:<manifest digest>
    version: str     # 0.0.1-<pipeline version>
    digest: str      # sha256:<manifest digest>

    def record(self, values: dict[str, Any]) -> dict[str, Any]:
        """The publish record's `helm` field; `values` are the ones to pass at install time."""
        return {"chart": self.chart, "reference": self.reference, "version": self.version, "values": values}


def chart_source() -> Path:
    """The engine chart to copy: $JOEY_CHART_DIR, else the one shipped in the package (packager/data/chart,
    which the repository also shows as charts/engine), so that an installed wheel publishes as a checkout does."""
    configured = os.environ.get(envvars.CHART_DIR)
    path = Path(configured) if configured else Path(str(resources.files("packager") / "data" / "chart"))
    if not (path / "Chart.yaml").is_file():
        raise ConfigError(envvars.CHART_DIR, f"{path} is not a Helm chart directory (no Chart.yaml); "
                                             "set it to the engine chart, e.g. charts/engine of the Joey repository")
    return path


def build_publish_chart(pipeline_name: str, pipeline_version: str, values: dict[str, Any], out_dir: Path) -> Path:
    """Package this publish's chart into out_dir and return the .tgz (`<name>-0.0.1-<version>.tgz`).

    `values` (pipelineUrl, image, engine resources, ...) become the chart's defaults, merged into values.yaml
    so that its comments stay. The chart must lint without errors and render with those defaults alone.
    """
    if not is_dns_label(pipeline_name):
        raise ChartError(pipeline_name, "a chart name must be lower-case letters, digits and '-' (a DNS-1123 label)")
    with tempfile.TemporaryDirectory(prefix="joey-chart-") as tmp:
        chart_dir = Path(tmp) / pipeline_name
        shutil.copytree(chart_source(), chart_dir, ignore=shutil.ignore_patterns(".git"))
        _set_metadata(chart_dir / "Chart.yaml", pipeline_name, pipeline_version)
        values_file = chart_dir / "values.yaml"
        values_file.write_text(with_defaults(values_file.read_text(), values))
        for path in [chart_dir, *chart_dir.rglob("*")]:
            os.utime(path, (CHART_EPOCH, CHART_EPOCH))

        _lint(chart_dir, pipeline_name)
        render(chart_dir, {}, name=pipeline_name)  # a publish must install with its own defaults
        staged = Path(_helm(pipeline_name, helm.package, chart_dir, destination=tmp))
        target = Path(out_dir) / staged.name
        with staged.open("rb") as src, atomic_writer(target) as dst:
            shutil.copyfileobj(src, dst)
        os.utime(target, (CHART_EPOCH, CHART_EPOCH))  # helm push stamps `created` from the archive's mtime
    return target


def push_chart(tgz: Path, host: str, namespace: str, *, plain_http: bool, username: str | None = None,
               password: str | None = None) -> ChartRef:
    """Push a packaged chart to oci://HOST/NAMESPACE/charts/<name>:<version> and resolve its manifest digest.

    Credentials: the arguments, else OCI_USERNAME/OCI_PASSWORD, else the logins the registry pushes use
    (joey/credentials.py: podman's auth.json, the docker config), else Helm's own `helm registry login` store.
    """
    username = username if username is not None else os.environ.get(envvars.OCI_USERNAME)
    password = password if password is not None else os.environ.get(envvars.OCI_PASSWORD)
    if not (username and password):
        username, password = credentials.lookup(host) or (username, password)
    tgz = Path(tgz)
    with _helm(tgz.name, helm.Chart.load, tgz) as chart:
        name, version = chart.name, chart.version
    remote, chart_ref = chart_url("", host=host, namespace=namespace), chart_url(name, host=host, namespace=namespace)
    with tempfile.TemporaryDirectory(prefix="joey-helm-") as tmp:
        # Logins go to a throwaway credentials file, never into the user's Helm configuration.
        creds = Path(tmp) / "registry.json" if username and password else None
        try:
            with helm.RegistryClient(plain_http=plain_http, credentials_file=creds) as client:
                if creds:
                    client.login(host, username, password, plain_http=plain_http)
                client.push(tgz, remote)
                digest = client.resolve(f"{chart_ref}:{version}")["digest"]
        except helm.HelmError as e:
            raise _registry_error(e, host, f"{chart_ref}:{version}", plain_http) from None
    return ChartRef(chart=chart_ref, reference=chart_reference(digest, host=host, namespace=namespace),
                    version=version, digest=digest)


def render(chart: Path, values: dict[str, Any], name: str = "engine",
           namespace: str = "default") -> list[dict[str, Any]]:
    """The Kubernetes objects `helm template` would produce for `values`, parsed (NOTES.txt left out)."""
    objects = []
    for template, text in sorted(_rendered(chart, values, name, namespace).items()):
        if not template.endswith("NOTES.txt"):
            objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def render_notes(chart: Path, values: dict[str, Any], name: str = "engine", namespace: str = "default") -> str:
    """The NOTES.txt Helm prints after an install."""
    return next(text for template, text in _rendered(chart, values, name, namespace).items()
                if template.endswith("NOTES.txt"))


# ---------------------------------------------------------------- values.yaml with comments kept

_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_][A-Za-z0-9_.-]*):(?:\s|$)")


def with_defaults(text: str, overrides: dict[str, Any]) -> str:
    """values.yaml text with `overrides` deep-merged in (as Helm merges values), its comments kept.

    Each overridden leaf's line is rewritten with the value in JSON, which is YAML; a key the file does not
    have rewrites its parent mapping the same way. Helm's own parser checks the result.
    """
    original = helm.values_from_yaml(text)
    expected = _merge(original, overrides)
    lines = text.splitlines()
    key_lines = _key_lines(lines)
    # Bottom-up, so that rewriting a line leaves the line numbers above it valid; appended keys first.
    for path, value in sorted(_replacements(original, overrides, key_lines),
                              key=lambda r: -key_lines.get(r[0], len(lines))):
        if path in key_lines:
            start = key_lines[path]
            indent = len(lines[start]) - len(lines[start].lstrip(" "))
            end = start + 1
            while end < len(lines) and _inside(lines[end], indent):
                end += 1
            while end > start + 1 and not lines[end - 1].strip():
                end -= 1  # blank lines before the next key stay
            lines[start:end] = [f"{' ' * indent}{path[-1]}: {json.dumps(value)}"]
        else:
            lines.append(f"{path[-1]}: {json.dumps(value)}")
    result = "\n".join(lines) + "\n"
    if helm.values_from_yaml(result) != expected:
        raise ChartError("values.yaml", "could not merge the publish's values into it without changing other keys")
    return result


def _inside(line: str, indent: int) -> bool:
    """Whether `line` still belongs to the value of a key at `indent` (blank, deeper, or a `- ` item beside it)."""
    depth = len(line) - len(line.lstrip(" "))
    return not line.strip() or depth > indent or (depth == indent and line.lstrip().startswith("- "))


def _key_lines(lines: list[str]) -> dict[tuple[str, ...], int]:
    """The line of each block-mapping key, by its path of keys."""
    found: dict[tuple[str, ...], int] = {}
    stack: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        m = _KEY_LINE.match(line)
        if not m:
            continue
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m["key"]))
        found[tuple(k for _, k in stack)] = i
    return found


def _replacements(original: dict, overrides: dict, key_lines: dict, prefix: tuple[str, ...] = ()) -> list:
    """(path, new value) pairs that turn `original` into the merge; a path under a missing key is replaced
    by its whole parent (or, at the top, appended)."""
    found = []
    for key, value in overrides.items():
        path = (*prefix, key)
        if path not in key_lines:
            if prefix:
                return [(prefix, _merge(original, overrides))]
            found.append((path, value))
        elif isinstance(value, dict) and isinstance(original.get(key), dict):
            found.extend(_replacements(original[key], value, key_lines, path))
        else:
            found.append((path, value))
    return found


def _merge(base: dict, overrides: dict) -> dict:
    merged = dict(base)
    for key, value in overrides.items():
        merged[key] = (_merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict)
                       else value)
    return merged


# ---------------------------------------------------------------- Helm calls

def _set_metadata(chart_yaml: Path, name: str, pipeline_version: str) -> None:
    meta = yaml.safe_load(chart_yaml.read_text())
    meta.update(name=name, version=chart_version(pipeline_version), appVersion=pipeline_version)
    chart_yaml.write_text(yaml.safe_dump(meta, sort_keys=False))


def _rendered(chart: Path, values: dict[str, Any], name: str, namespace: str) -> dict[str, str]:
    with helm.Chart.load(chart) as loaded:
        return _helm(loaded.name, loaded.render, values, name=name, namespace=namespace)


def _lint(chart_dir: Path, name: str) -> None:
    report = _helm(name, helm.lint, chart_dir)
    found = [(m["path"], m["error"].strip()) for m in report["messages"] if m["severity"] >= LINT_ERROR]
    # Helm reports a schema violation twice: on values.yaml and again, wrapped, on templates/.
    errors = [f"{path}: {error}" for path, error in found if not any(o != error and o in error for _, o in found)]
    if errors:
        raise ChartError(name, "; ".join(errors))


def _helm(chart: str, call, *args, **kwargs):
    """Run a Helm SDK call; Helm's refusals (bad values, templates, charts) become a ChartError."""
    try:
        return call(*args, **kwargs)
    except (helm.HelmValuesError, helm.HelmRenderError, helm.HelmChartInvalidError, helm.HelmChartLoadError) as e:
        raise ChartError(chart, e.detail) from None


_STATUS = re.compile(r"status code (\d{3})")
_UNREACHABLE = ("connection refused", "no such host", "i/o timeout", "server gave HTTP response to HTTPS client",
                "tls:", "x509:", "connection reset")


def _registry_error(e: helm.HelmError, host: str, url: str, plain_http: bool) -> JoeyError:
    """Helm reports registry failures as text; map them to the packager's registry errors and their hints."""
    detail = e.detail
    if any(marker in detail for marker in _UNREACHABLE):
        return RegistryUnreachable(host, detail, plain_http)
    if m := _STATUS.search(detail):
        return RegistryError("push chart", int(m[1]), url, detail)
    if "credential" in detail or "unauthorized" in detail:
        return RegistryError("push chart", 401, url, detail)
    return ChartPushError(url, detail)

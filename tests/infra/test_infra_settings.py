"""Pulumi.yaml, the stack files and infra/settings.py agree, and bad settings are refused by name."""
from __future__ import annotations

import json
import re

import pytest
import yaml
from support.infra import STACK_NAMES, config_from, edge_stack, load_stack, project, stack_file, walk

from infra import settings
from joey.errors import ConfigError

REQUIRED = {"registryMode", "registryHost", "opsMode"}


def test_pulumi_yaml_is_the_project_the_program_expects():
    p = project()
    assert p["name"] == settings.PROJECT
    assert p["runtime"] == {"name": "python", "options": {"virtualenv": ".venv"}}
    assert p["main"] == "infra/" and p["stackConfigDir"] == "stacks"


def test_every_setting_is_declared_and_documented():
    decls = project()["config"]
    assert set(decls) == set(settings.config_keys())
    for key, decl in decls.items():
        assert len(decl.get("description", "")) > 20, key
        assert set(decl) <= {"type", "description", "default", "secret"}, key
        if key in settings.SECRET_KEYS:
            # Typed secrets with an empty default would fail every stack that leaves them unset.
            assert decl.get("secret") is True and "type" not in decl and decl["description"].startswith("SECRET"), key
        else:
            assert "secret" not in decl, key
        if key in REQUIRED:
            assert "default" not in decl, key
        else:
            assert "default" in decl, key
        if "type" in decl:
            assert decl["type"] in ("string", "boolean", "integer"), key
            if key in REQUIRED:
                continue
            python_type = {"string": str, "boolean": bool, "integer": int}[decl["type"]]
            assert isinstance(decl["default"], python_type), key


@pytest.mark.parametrize("name", STACK_NAMES)
def test_stack_files_parse_and_keep_secrets_encrypted(name):
    raw = yaml.safe_load(stack_file(name).read_text())
    assert set(raw) == {"config"}
    for key, value in raw["config"].items():
        short = key.split(":", 1)[1]
        if key.startswith("joey:") and short in settings.SECRET_KEYS:
            leaves = [leaf for path, leaf in walk(value) if path[-1:] != ("secure",)]
            assert leaves == [], f"{key} holds plain text"
            assert all(isinstance(v, str) and v.startswith("v1:") for _, v in walk(value)), key
    stack = load_stack(name)
    cfg = settings.parse(stack.raw(), stack.secret_names())
    for secret_key in stack.secret_names():
        assert secret_key in settings.SECRET_KEYS
    assert cfg.model_dump(by_alias=True).keys() == set(settings.config_keys())


def parse(config: dict, *, plain_secrets: set[str] = frozenset()) -> settings.StackConfig:
    stack = config_from(config)
    return settings.parse(stack.raw(), stack.secret_names() - set(plain_secrets))


def problems(config: dict, **kw) -> str:
    with pytest.raises(ConfigError) as err:
        parse(config, **kw)
    return str(err.value)


def test_a_plain_secret_is_refused_without_echoing_it():
    config = edge_stack(opsToken="s3cr3t-plain-token-value")
    text = problems(config)
    assert "joey:opsToken: is a secret but its stack value is plain text" in text
    assert "pulumi config set --secret joey:opsToken" in text
    assert "s3cr3t-plain-token-value" not in text


def test_an_encrypted_secret_that_arrives_unmarked_is_refused():
    assert "joey:registryPassword: is a secret" in problems(edge_stack(), plain_secrets={"registryPassword"})


@pytest.mark.parametrize("overrides,message", [
    ({"edges": [{"name": "a", "publish": "ccfraud"}, {"name": "a", "publish": "ccfraud"}]},
     "edges: the name 'a' is used twice"),
    ({"edges": [{"name": "a", "publish": "nope"}]}, "edges[0].publish: 'nope' is not a key of publishes"),
    ({"edges": [{"name": "Store_042", "publish": "ccfraud"}]}, "joey:edges[0].name: must be a DNS-1123 label"),
    ({"edges": [{"name": "a", "publish": "ccfraud", "kind": "docker"}]}, "a docker edge needs dockerHost"),
    ({"edges": [{"name": "a", "publish": "ccfraud", "colour": "red"}]}, "joey:edges[0].colour: Extra inputs"),
    ({"registryImage": "docker.io/library/registry:2.8.3"}, "joey:registryImage: must be pinned by digest"),
    ({"registryMode": "external", "registryPassword": ""}, "registryPassword: required with registryMode=external"),
    ({"registryMode": "cluster"}, "registryPassword: the cluster registry's password is generated"),
    ({"opsMode": "external", "opsUrl": ""}, "opsUrl: required with opsMode=external"),
    ({"opsToken": ""}, "opsToken: edge 'store-042' enrolls through the external Ops center"),
    ({"opsMode": "cluster"}, "opsHost: required with opsMode=cluster"),
    ({"edgeBundles": {"elsewhere": {"secure": "v1:x"}}}, "edgeBundles.elsewhere: no edge of that name"),
    ({"registryIngress": "yes"}, "joey:registryIngress: expected true or false"),
    ({"opsUrl": "ops.example.com"}, "joey:opsUrl: must be an http:// or https:// URL"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_settings_are_named(overrides, message):
    assert message in problems(edge_stack(**overrides))


def test_a_publish_without_id_cannot_enroll_through_ops():
    config = edge_stack()
    config["joey:publishes"]["ccfraud"].pop("id")
    assert "publishes.ccfraud.id: edge 'store-042' enrolls through Ops" in problems(config)


def test_undeclared_and_missing_keys_are_refused():
    stack = config_from(edge_stack())
    raw = stack.raw()
    raw["registryPasword"] = "x"
    del raw["opsMode"]
    text = str(pytest.raises(ConfigError, settings.parse, raw, stack.secret_names()).value)
    assert "joey:registryPasword: not declared in Pulumi.yaml" in text
    assert "joey:opsMode: missing" in text


def test_given_bundles_replace_enrollment():
    cfg = parse(edge_stack(edgeBundles={"store-042": {"secure": "v1:x"}}, opsToken=""))
    edge = cfg.edges[0]
    assert not cfg.enrolls_through_ops(edge)
    assert cfg.edge_bundle("store-042").get_secret_value().startswith("test-secret-")
    assert "test-secret" not in repr(cfg)   # SecretStr keeps secrets out of reprs and logs


def test_publish_urls_follow_the_seeds_layout():
    cfg = parse(edge_stack())
    publish = cfg.publishes["ccfraud"]
    assert publish.chart_url(cfg.registry_host, cfg.registry_namespace) == \
        "oci://registry.joey.example.com/joey/charts/ccfraud"
    assert re.fullmatch(r"0\.0\.1-[0-9a-f-]{36}", publish.chart_version)
    assert publish.pipeline_url(cfg.registry_host, cfg.registry_namespace) == \
        f"registry.joey.example.com/joey/pipelines/ccfraud:{publish.version}"
    assert publish.engine_config.cpus == 2.0 and publish.engine_config.memory == "2Gi"
    assert json.loads(config_from(edge_stack()).config["joey:edges"])[0]["name"] == "store-042"

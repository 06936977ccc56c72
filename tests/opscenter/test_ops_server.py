"""Starting joey-ops: settings it refuses, and the public URL that bundles and SPIFFE IDs name."""
from __future__ import annotations

import subprocess

import pytest
from support.procs import free_port, start, stop, wait_http

from joey.bundle import EdgeBundle
from joey.opsclient import OpsClient

TOKEN = "t0ken-for-tests-0123456789"


def run_ops(joey_ops: str, args: list[str], env: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([joey_ops, *args], env={"PATH": "/usr/bin:/bin", **env}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args,env,message", [
    ([], {}, "JOEY_OPS_TOKEN: must be set to a secret of at least 16 characters"),
    ([], {"JOEY_OPS_TOKEN": "short"}, "JOEY_OPS_TOKEN: must be set"),
    (["--host", "0.0.0.0"], {"JOEY_OPS_TOKEN": TOKEN}, "--public-url: required when listening on 0.0.0.0"),
    (["--public-url", "http://ops.example.com"], {"JOEY_OPS_TOKEN": TOKEN}, "edges must reach Ops over https"),
    (["--public-url", "ftp://ops"], {"JOEY_OPS_TOKEN": TOKEN}, "expected http(s)://HOST"),
    (["--database", "mysql://x"], {"JOEY_OPS_TOKEN": TOKEN}, "expected sqlite:///PATH or postgresql://"),
])
def test_bad_settings_stop_the_server_with_a_message(joey_ops, args, env, message, tmp_path):
    done = run_ops(joey_ops, ["--port", str(free_port()), *args], env, tmp_path)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_bundles_name_the_public_url(joey_ops, tmp_path, make_record):
    port = free_port()
    log = tmp_path / "ops.log"
    proc = start([joey_ops, "--port", str(port), "--public-url", "https://Ops.Example.com/joey/"], log,
                 env={"JOEY_OPS_TOKEN": TOKEN, "JOEY_OPS_DATABASE": f"sqlite:///{tmp_path}/ops.db"})
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc, log=log)
        with OpsClient(f"http://127.0.0.1:{port}", TOKEN) as c:
            pub = c.publish(make_record("ccfraud"))
            b = EdgeBundle.decode(c.add_edge(pub["id"], "edge-1")["docker_run_variables"]["EDGE_BUNDLE"])
            assert b.opscenter_host == "Ops.Example.com/joey/edge"  # no scheme: https, as in the seeds
            assert b.opscenter_url == "https://Ops.Example.com/joey/edge"
            assert c.list_edges()[0]["spiffe_id"] == "spiffe://ops.example.com/edge/edge-1"
        assert (tmp_path / "ops.db").exists()  # JOEY_OPS_DATABASE was used
    finally:
        stop(proc)

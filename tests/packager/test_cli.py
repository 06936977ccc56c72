"""The `packager` command's manners, run as the installed command: --debug anywhere, a closed stdout, exit codes
(none 70 for a user's mistake; the docs' table matches the errors), JSON errors, completion, progress bars on a
terminal only, and one clean line for TLS spoken to a plain-HTTP registry."""
from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support.models import identity_model
from support.procs import free_port
from support.specs import one_step

from joey import errors
from packager.build import build
from packager.cli import INTERNAL_ERROR, INTERRUPTED

PACKAGER = str(Path(sys.executable).parent / "packager")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
BIG = "name: big\nsteps:\n  - name: big\n    model: models/big.onnx\n"
TLS_CAUSE = "TLS handshake failed (the server may speak plain HTTP)"


def cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([PACKAGER, *args], capture_output=True, text=True, **kw)


def on_a_terminal(*args: str) -> tuple[int, str]:
    """Run the CLI with stderr on a pseudo-terminal: (exit code, what the terminal showed)."""
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "120"}
    proc = subprocess.Popen([PACKAGER, *args], stdout=subprocess.DEVNULL, stderr=slave, env=env)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:   # EIO: the command closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    return proc.wait(), shown.decode(errors="replace")


@pytest.fixture()
def built(example_models, write_spec):
    return build(write_spec(one_step()))


def test_debug_is_accepted_after_the_verb(tmp_path):
    for args in (["--debug", "inspect", "nothere:1"], ["inspect", "nothere:1", "--debug"]):
        done = cli(*args)
        assert done.returncode == errors.NotFound.exit_code, done.stderr
        assert "Traceback" in done.stderr and "error: not found" in done.stderr


def test_a_closed_stdout_ends_quietly(built):
    read, write = os.pipe()
    os.close(read)   # the reader is gone before a byte is written, as `| head -1` once it has its line
    try:
        done = subprocess.run([PACKAGER, "inspect", "--json", f"edge-pipeline:{built.artifact.config.version}"],
                              stdout=write, stderr=subprocess.PIPE, text=True)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.parametrize("args", [
    ["import", "{tmp}/missing.tar", "--registry", "127.0.0.1:1/ns"],
    ["import", "{tmp}", "--registry", "127.0.0.1:1/ns"],
    ["keygen", "--out", "{tmp}/a-file/key"],
    ["logs", "export", "--pipeline", "p", "--dir", "{tmp}/a-file/logs", "--ops", "http://127.0.0.1:1"],
])
def test_a_users_mistake_never_exits_70(args, tmp_path):
    (tmp_path / "a-file").write_text("")
    done = cli(*(a.format(tmp=tmp_path) for a in args), env={**os.environ, "JOEY_OPS_TOKEN": "t"})
    assert done.returncode not in (0, INTERNAL_ERROR), done.stderr
    assert done.stderr.startswith("error: ") and "internal error" not in done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr


def test_with_json_an_error_is_one_json_object_on_stderr():
    done = cli("inspect", "nothere:1", "--json")
    answer = json.loads(done.stderr)
    assert answer == {"error": answer["error"], "hint": answer["hint"], "exit_code": 3} and done.returncode == 3
    assert answer["error"].startswith("not found: OCI layout") and answer["hint"]
    usage = cli("push", "--json")   # argparse's own complaints too
    assert json.loads(usage.stderr)["exit_code"] == usage.returncode == 2
    assert "--registry" in json.loads(usage.stderr)["error"] and usage.stdout == ""


def _complete(script: str, *words: str) -> list[str]:
    """What bash offers after `words` (the last one is being typed) with the script loaded."""
    line = " ".join(f"'{w}'" for w in words)
    done = subprocess.run(["bash", "-c", f'{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _packager; '
                                         'printf "%s\\n" "${COMPREPLY[@]}"'],
                          capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_completion_scripts():
    bash = cli("completion", "bash")
    assert bash.returncode == 0, bash.stderr
    assert _complete(bash.stdout, "packager", "pu") == ["push", "publish", "publishes", "pull"]
    assert _complete(bash.stdout, "packager", "--debug", "edge", "") == ["add", "remove", "list", "--help",
                                                                         "--debug"]
    assert "--registry" in _complete(bash.stdout, "packager", "push", "ref", "--re")
    zsh = cli("completion", "zsh")
    assert zsh.returncode == 0 and "bashcompinit" in zsh.stdout and bash.stdout in zsh.stdout


def test_progress_bars_on_a_terminal_only(write_spec, registry, tmp_path):
    identity_model(tmp_path / "models" / "big.onnx", 33)   # above PROGRESS_MIN_BYTES
    spec = write_spec(BIG)
    version = build(spec).artifact.config.version
    ns = f"{registry.host}/bars"
    runs = {
        "push bars/pipelines/big": ["push", f"big:{version}", "--registry", ns, "--plain-http"],
        "pull pipelines/big": ["pull", f"big:{version}", "--out", str(tmp_path / "pulled")],
        "push bars2/pipelines/big": ["publish", str(spec), "--registry", f"{registry.host}/bars2", "--plain-http",
                                     "--no-chart"],
    }
    for label, args in runs.items():
        code, shown = on_a_terminal(*args)
        assert code == 0, shown
        assert label in shown and "MB" in shown, (args, shown)
    cli("publish", str(spec), "--no-chart", check=True)   # a publish record in the store, for export
    code, shown = on_a_terminal("export", f"big:{version}", "--out", str(tmp_path / "big.tar"))
    assert code == 0 and "push pipelines/big" in shown, shown
    code, shown = on_a_terminal("import", str(tmp_path / "big.tar"), "--registry", f"{registry.host}/bars3",
                                "--plain-http")
    assert code == 0 and "push bars3/pipelines/big" in shown, shown

    code, shown = on_a_terminal("pull", f"big:{version}", "--out", str(tmp_path / "pulled-json"), "--json")
    assert code == 0 and "pull pipelines/big" not in shown, shown
    off = cli("pull", f"big:{version}", "--out", str(tmp_path / "pulled-off"))
    assert off.returncode == 0 and off.stderr == ""


def test_tls_to_a_plain_http_registry_is_one_clean_line(registry):
    done = cli("inspect", f"{registry.host}/ns/pipelines/x:1")
    assert done.returncode == errors.RegistryUnreachable.exit_code
    assert done.stderr == f"error: registry {registry.host} unreachable: {TLS_CAUSE} — " \
                          f"{errors.PlainHTTPRegistry.hint}\n"


def test_serve_stops_at_once_on_tls_to_a_plain_http_registry(registry, tmp_path):
    # Before, the engine retried this forever; the timeout only keeps a regression from hanging the suite.
    done = cli("serve", f"{registry.host}/ns/pipelines/x:1", "--port", str(free_port()),
               "--persist", str(tmp_path / "persist"), timeout=120)
    out = done.stdout + done.stderr
    assert done.returncode == errors.RegistryUnreachable.exit_code, out
    assert [line for line in out.splitlines() if TLS_CAUSE in line] == \
        [f"ERROR: registry {registry.host} unreachable: {TLS_CAUSE} — {errors.PlainHTTPRegistry.hint}"], out
    assert "Traceback" not in out and "retrying" not in out


def test_the_exit_code_table_names_every_code_once():
    table = DOCS.read_text().split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = [int(code) for code in re.findall(r"^\| (\d+) \|", table, re.M)]
    codes = {c.exit_code for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.JoeyError)}
    assert len(rows) == len(set(rows)), "a code with two rows"
    assert set(rows) == codes | {0, INTERNAL_ERROR, INTERRUPTED}

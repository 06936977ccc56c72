"""`packager serve REF`: the pipeline served locally by the engine, the seeds' "simulated edge" test.

The engine is another app (the packager never imports it): this process becomes `python -m engine`, configured
the way an edge configures it, through its environment. Signals, logs and the exit code are then the engine's.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

from joey import envvars
from packager.cli.flags import verb


def register(sub) -> None:
    s = verb(sub, "serve", cmd_serve, "serve a pipeline locally with the engine (from the store or a registry)",
             json_=False, store=False, net=True)
    s.add_argument("ref", help="NAME:VERSION in the local store, oci:DIR:REPO:TAG, or HOST/NS/pipelines/NAME:VERSION")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--persist", type=Path, help="the engine's persistent directory (default "
                                                 "~/.local/state/joey/serve)")


def cmd_serve(a) -> NoReturn:
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    env = {**os.environ, envvars.PIPELINE_URL: a.ref,
           envvars.PERSIST_DIR: str(a.persist or state / "joey" / "serve")}
    if a.plain_http:   # without the flag JOEY_PLAIN_HTTP from the environment still counts, as for the engine
        env[envvars.PLAIN_HTTP] = "true"
    argv = [sys.executable, "-m", "engine", "--host", a.host, "--port", str(a.port)]
    sys.stdout.flush()
    os.execvpe(argv[0], argv, env)

"""`packager login HOST`: check a registry login and store it in the docker config, as `docker login` does."""
from __future__ import annotations

import getpass
import os
import sys

from joey import envvars
from joey.errors import ConfigError
from packager.cli.flags import verb
from packager.cli.output import emit


def register(sub) -> None:
    s = verb(sub, "login", cmd_login, "log in to a registry: the login is checked, then stored in the docker "
                                      "config ($DOCKER_CONFIG/config.json or ~/.docker/config.json)",
             store=False, net=True)
    s.add_argument("host", metavar="HOST[:PORT]")
    s.add_argument("-u", "--username", help=f"the user (default ${envvars.OCI_USERNAME})")
    s.add_argument("--password-stdin", action="store_true",
                   help="read the password from stdin (without it: a prompt on the terminal)")


def cmd_login(a) -> int:
    from joey.credentials import store_login
    from joey.registry import Registry

    username = a.username or os.environ.get(envvars.OCI_USERNAME)
    if not username:
        raise ConfigError("--username", f"name the user with -u USER (or set {envvars.OCI_USERNAME})")
    # A password never goes on the command line, where `ps` and the shell history would show it.
    password = sys.stdin.read().rstrip("\r\n") if a.password_stdin else getpass.getpass(f"Password for {username}: ")
    if not password:
        raise ConfigError("--password-stdin" if a.password_stdin else "password", "no password given")
    Registry(a.host, plain_http=a.plain_http, username=username, password=password).check_login()
    path = store_login(a.host, username, password)
    return emit(a, {"host": a.host, "username": username, "config": str(path)},
                lambda: f"Login Succeeded ({username} at {a.host}, stored in {path})")

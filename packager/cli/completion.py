"""`packager completion bash|zsh`: a shell completion script for verbs and flags, made from the parser itself
(so it cannot drift from the verbs). zsh runs the bash one through bashcompinit."""
from __future__ import annotations

import argparse

from packager.cli.flags import verb
from packager.cli.output import emit

BASH = """\
# packager completion for bash. Install: packager completion bash > /etc/bash_completion.d/packager
_packager() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" path="" w i
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${{COMP_WORDS[i]}}"
        [[ $w == -* ]] && continue
        case "${{path:+$path }}$w" in
            {paths}) path="${{path:+$path }}$w" ;;
        esac
    done
    local words=""
    case "$path" in
{cases}
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
complete -o default -F _packager packager
"""
ZSH_PREAMBLE = "# packager completion for zsh. Install: packager completion zsh > \"${fpath[1]}/_packager\"\n" \
               "autoload -U +X bashcompinit && bashcompinit\n"


def register(sub) -> None:
    s = verb(sub, "completion", cmd_completion, "print a shell completion script (bash or zsh)", json_=False,
             store=False)
    s.add_argument("shell", choices=("bash", "zsh"))


def cmd_completion(a) -> int:
    from packager.cli import parser

    script = bash_script(parser())
    return emit(a, None, lambda: (ZSH_PREAMBLE + script if a.shell == "zsh" else script).rstrip("\n"))


def bash_script(p: argparse.ArgumentParser) -> str:
    words = dict(_words(p, ""))
    paths = "|".join(f'"{w}"' for w in words if w)
    cases = "\n".join(f'        "{w}") words="{" ".join(ws)}" ;;' for w, ws in words.items())
    return BASH.format(paths=paths, cases=cases)


def _words(p: argparse.ArgumentParser, path: str):
    """(verb path, what may follow it) for `p` and every verb below it."""
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    flags = [o for a in p._actions for o in a.option_strings if o.startswith("--")]
    choices = [c for a in p._actions if not a.option_strings and a not in subs for c in a.choices or ()]
    yield path, [*(name for s in subs for name in s.choices), *choices, *flags]
    for s in subs:
        for name, child in s.choices.items():
            yield from _words(child, f"{path} {name}".strip())

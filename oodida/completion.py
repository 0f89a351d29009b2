"""`oodida completion bash|zsh`: shell completion, generated from the parsers.

The script is built at run time from the same argparse parsers that read the command
lines (every command the usage lists, each one's flags and subcommands, the values of
flags that take a fixed choice), so a new flag is completed the day it is added and a
removed one is never offered. zsh gets the same function through its bash
compatibility layer (`bashcompinit`), which every zsh since 4.3 ships.

Install: `source <(oodida completion bash)` in ~/.bashrc, or
`source <(oodida completion zsh)` in ~/.zshrc.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from oodida.core.suggest import SuggestingParser


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """Every command's parser, by the name the usage gives it."""
    from oodida.agent.cli import build_parser as agent_parser  # the dispatcher's level: may see both packages
    from oodida.agent.trial import build_parser as trial_parser
    from oodida.cli import commands
    from oodida.dashboard.cli import parser as dashboard_parser  # argparse only: no web framework imported
    from oodida.demo import build_parser as demo_parser
    from oodida.keygen import build_parser as keygen_parser
    from oodida.parser import build_parser as commands_parser

    top = commands_parser()
    found: dict[str, argparse.ArgumentParser] = {}
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    found.update(agent=agent_parser(), demo=demo_parser(), keygen=keygen_parser(), completion=build_parser())
    found["try"] = trial_parser()
    found["dashboard"] = dashboard_parser()
    missing = [c for c in commands() if c not in found]
    if missing:  # a test holds this: a command in the usage that completion cannot see
        raise RuntimeError(f"no parser for {', '.join(missing)}")
    return {c: found[c] for c in commands()}


def _spec(
    parser: argparse.ArgumentParser,
) -> tuple[list[str], dict[str, list[str]], dict[str, argparse.ArgumentParser]]:
    """(flags, {flag: its choices}, {subcommand: parser})."""
    flags: list[str] = []
    choices: dict[str, list[str]] = {}
    subs: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            subs.update(action.choices)
            continue
        for option in action.option_strings:
            if option.startswith("--"):
                flags.append(option)
                if action.choices:
                    choices[option] = [str(c) for c in action.choices]
    return flags, choices, subs


def _case(name: str, parser: argparse.ArgumentParser, depth: int) -> list[str]:
    flags, choices, subs = _spec(parser)
    q = shlex.quote
    lines = [f"    {q(name)})"]
    inner = []
    for flag, values in choices.items():
        inner.append(f"        {q(flag)}) COMPREPLY=( $(compgen -W {q(' '.join(values))} -- \"$cur\") ); return;;")
    if inner:
        lines += ['      case "$prev" in', *inner, "      esac"]
    if subs:
        lines.append(f'      if [[ $COMP_CWORD -eq {depth + 1} ]]; then')
        lines.append(f"        COMPREPLY=( $(compgen -W {q(' '.join(sorted(subs)))} -- \"$cur\") ); return")
        lines.append("      fi")
        lines.append(f'      case "${{COMP_WORDS[{depth + 1}]}}" in')
        for sub, p in sorted(subs.items()):
            sub_flags, sub_choices, _ = _spec(p)
            lines.append(f"        {q(sub)}) opts={q(' '.join(sub_flags))};;")
        lines.append("      esac")
    else:
        lines.append(f"      opts={q(' '.join(flags))}")
    lines.append("      ;;")
    return lines


def bash_script() -> str:
    from oodida.cli import commands

    parsers = _parsers()
    body = [line for name, parser in parsers.items() for line in _case(name, parser, 1)]
    words = " ".join([*commands(), "--help", "--version"])
    return "\n".join([
        "# oodida completion for bash, generated from its parsers (oodida completion bash)",
        "_oodida() {",
        '  [[ -n "${ZSH_VERSION:-}" ]] && setopt localoptions ksharrays  # arrays from 0, as in bash',
        '  local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}" opts=""',
        "  if [[ $COMP_CWORD -eq 1 ]]; then",
        f"    COMPREPLY=( $(compgen -W {shlex.quote(words)} -- \"$cur\") ); return",
        "  fi",
        '  case "${COMP_WORDS[1]}" in',
        *body,
        "  esac",
        '  if [[ "$cur" == -* ]]; then',
        '    COMPREPLY=( $(compgen -W "$opts --help" -- "$cur") )',
        "  else",
        '    COMPREPLY=( $(compgen -f -- "$cur") )',
        "  fi",
        "}",
        "complete -o default -F _oodida oodida",
        "",
    ])


def zsh_script() -> str:
    return "\n".join([
        "# oodida completion for zsh (through bashcompinit), generated from its parsers",
        "autoload -U +X compinit && compinit -u",
        "autoload -U +X bashcompinit && bashcompinit",
        bash_script(),
    ])


def build_parser() -> argparse.ArgumentParser:
    parser = SuggestingParser(
        prog="oodida completion",
        description="Print shell completion for oodida: source <(oodida completion bash) in ~/.bashrc, "
        "source <(oodida completion zsh) in ~/.zshrc.",
    )
    parser.add_argument("shell", choices=["bash", "zsh"])
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    sys.stdout.write(bash_script() if args.shell == "bash" else zsh_script())
    return 0

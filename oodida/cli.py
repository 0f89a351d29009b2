"""The one `oodida` command. It only dispatches: `agent` goes to the agent package,
`demo` to the demo, everything else to oodida.commands (the analysts' commands, and
`server`, `init`, `credentials` of the server package). The imports are lazy so the
agent never loads server code and vice versa.
"""

from __future__ import annotations

import sys

from oodida import terminal
from oodida.core import exitcodes
from oodida.core.exitcodes import Exit

USAGE = """usage: oodida COMMAND [options]

commands:
  init       a new deployment: CA, certificates, configs, credentials (oodida init DIR --vehicles car-1)
  credentials  add, revoke or list who may connect (oodida credentials add alice --role analyst --config server.toml)
  dashboard  a live fleet dashboard in the browser (oodida dashboard --server HOST:PORT --ca ca.pem)
  demo       run a local fleet (a server and 5 agents replaying a real drive) and an assignment
  server     run the off-board server          (oodida server --config server.toml)
  agent      run a vehicle's on-board agent    (oodida agent --config agent.toml)
  submit     start an assignment               (oodida submit [FILE.toml] [--signals ...] [--wait])
  status     vehicles connected, assignments and their progress
  results    an assignment's results           (oodida results ID [--follow] \
[--format table|json|csv|parquet] [--out FILE])
  plot       a figure of an assignment's results (oodida plot ID [--signal S] [--method M] --out fig.png)
  cancel     stop an assignment                (oodida cancel ID)
  deploy     replace a running assignment's module, no restarts (oodida deploy mine.py --assignment ID --on-board)
  versions   every version of an assignment's modules (oodida versions ID)
  rollback   deploy an earlier version again   (oodida rollback ID HASH)
  keygen     make a key pair to sign your modules with (oodida keygen NAME; then --sign NAME)
  check      check your modules under the sandbox policy (oodida check mine.py)
  try        run your module in the sandbox on a recorded log (oodida try mine.py --log LOG --dbc DBC)
  signals    every signal the vehicles can serve: unit, range, rate (oodida signals [--vehicle V])
  completion shell completion for bash or zsh (source <(oodida completion bash))

Every command takes --help. oodida --version prints the version.

"""


USAGE += exitcodes.HELP


def commands() -> list[str]:
    """The commands USAGE lists: the one list the dispatcher and completion go by."""
    _, _, rest = USAGE.partition("commands:\n")
    block = rest.split("\n\n", 1)[0]
    return [line.split()[0] for line in block.splitlines() if line.startswith("  ") and line.strip()]


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("oodida")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    """Dispatch, and end every way a command can end with its exit status, never a
    traceback for the user's terminal or pipe (oodida.core.exitcodes says which)."""
    terminal.prepare_streams()
    try:
        return _dispatch(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:
        return exitcodes.interrupted()
    except BrokenPipeError:
        terminal.silence_stdout()
        return Exit.CLOSED_PIPE


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if argv else 2
    if argv[0] in ("--version", "-V"):
        print(f"oodida {version()}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in commands():
        from oodida.core.suggest import did_you_mean

        print(f"oodida: unknown command {command!r}{did_you_mean(command, commands())}"
              f"\n(oodida --help lists the commands)", file=sys.stderr)
        return Exit.USAGE
    if command == "completion":
        from oodida.completion import main as completion_main

        return completion_main(rest)
    if command == "agent":
        from oodida.agent.cli import main as agent_main

        return agent_main(rest)
    if command == "try":  # the agent's own code path, on a recorded log
        from oodida.agent.trial import main as trial_main
        from oodida.commands.render import render_report  # the agent may not import it; the dispatcher may

        return trial_main(rest, render=render_report)
    if command == "keygen":  # no server needed
        from oodida.keygen import main as keygen_main

        return keygen_main(rest)
    if command == "dashboard":  # a web front end over the analysts' client
        from oodida.dashboard.cli import main as dashboard_main

        return dashboard_main(rest)
    if command == "demo":
        from oodida.demo import main as demo_main

        return demo_main(rest)
    from oodida.parser import main as commands_main

    return commands_main(argv)

"""`python -m remote_agent` and the `remote-agent` command: a quick answer when one is on record, else the CLI."""

import sys


def main() -> int:
    from remote_agent.commands.quick import answer

    try:
        code = answer(sys.argv[1:])
    except KeyboardInterrupt:  # while it asks Jupyter or the agent: as the CLI says it, without a traceback
        from remote_agent.core.errors import ExitCode

        sys.stderr.write("\nInterrupted. Whatever was already started keeps running.\n")
        return ExitCode.INTERRUPTED
    if code is not None:
        return code
    from remote_agent.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    raise SystemExit(main())

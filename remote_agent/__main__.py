"""`python -m remote_agent` and the `remote-agent` command: a quick answer when one is on record, else the CLI."""

import sys


def main() -> int:
    from remote_agent.commands.quick import answer

    code = answer(sys.argv[1:])
    if code is not None:
        return code
    from remote_agent.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    raise SystemExit(main())

from remote_agent.cli import main

raise SystemExit(main())

"""Allow ``python -m backuppc_agent``."""

from backuppc_agent.cli.main import main

raise SystemExit(main())

"""BackupPC integration: hooks, server messages, config.pl snippets, the on-ready notifier."""

"""backuppc-agent: an ssh-agent supervisor and readiness-gated hooks for BackupPC."""

__version__ = "0.1.0"

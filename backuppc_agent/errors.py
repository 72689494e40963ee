"""One exception hierarchy: every expected failure is a BackupPCAgentError."""

from backuppc_agent import exitcodes


class BackupPCAgentError(Exception):
    """An expected failure: ``main()`` prints it as one line and exits ``exit_code``."""

    exit_code: int = exitcodes.FAILED


class ConfigError(BackupPCAgentError):
    """The configuration file is unreadable or invalid; carries every problem found."""

    exit_code = exitcodes.USAGE

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


class UsageError(BackupPCAgentError):
    """Bad command-line arguments."""

    exit_code = exitcodes.USAGE


class UnsafePathError(BackupPCAgentError):
    """A path we must own is a symlink, foreign-owned, or in a writable directory."""

    exit_code = exitcodes.UNSAFE_PATH


class AgentError(BackupPCAgentError):
    """ssh-agent could not be started, or the socket holds something else."""

    exit_code = exitcodes.AGENT_FAILED


class ProtocolError(BackupPCAgentError):
    """A peer on a socket answered with something that is not the expected protocol."""

    exit_code = exitcodes.AGENT_FAILED


class BadNameError(BackupPCAgentError):
    """A name from BackupPC would be unsafe in a path or an argv."""

    exit_code = exitcodes.BAD_NAME

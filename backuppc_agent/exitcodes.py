"""Exit codes of every command: an interface, documented in docs/commands.md."""

OK = 0
#: status: not ready; wait: timed out; doctor: a check failed; install: a conflict to merge.
NOT_READY = 1
#: Bad command line or bad configuration file.
USAGE = 2
#: A path we must own (socket, state dir, env file, control dir) is unsafe.
UNSAFE_PATH = 3
#: ssh-agent could not be started or something else answers on its socket.
AGENT_FAILED = 4
#: A pre hook gave up: SSH keys not loaded within [hooks] wait_seconds.
HOOK_NOT_READY = 5
#: A pre hook could not open or reach the client's ssh master.
HOOK_SSH_FAILED = 6
#: A name passed in from BackupPC (client, host, share) was refused.
BAD_NAME = 7
#: Unattended unlock: the passphrase is wrong or missing.
BAD_PASSPHRASE = 8
#: The command failed: a program it ran (ssh-keygen, ssh-keyscan, ssh-add), the keyring
#: or a file failed, or it refused (trust: a different host key). Never means "not ready".
FAILED = 9
#: An unexpected internal error (a bug): one line on stderr, details with --debug.
INTERNAL = 70

"""The table of subcommands: names, modules and help."""

PROG = "backuppc-agent"
#: name -> (module under backuppc_agent.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "run the supervisor (foreground; for supervisord, systemd, sysvinit)"),
    "agent": ("agent_cmd", "run ssh-agent itself on the socket (systemd's backuppc-ssh-agent)"),
    "status": ("status", "show agent readiness; exit 0 when ready, 1 when not"),
    "wait": ("wait", "wait until SSH auth is ready; exit 1 on timeout"),
    "env": ("env", "print SSH_AUTH_SOCK for sh, csh or fish"),
    "add": ("add", "run ssh-add against the supervised agent"),
    "config": ("config_cmd", "check or show the configuration"),
    "hook": ("hook", "BackupPC pre/post user command (dump, restore, archive)"),
    "backuppc-config": ("backuppc_config", "print the lines to add to BackupPC's config.pl"),
    "ssh-config": ("ssh_config", "print or write the ssh_config used for client pulls"),
    "master": ("master", "list, open, check, close ssh master connections"),
    "install": ("install", "install config, ssh_config, service files and BackupPC lines"),
    "doctor": ("doctor", "check the setup and explain each problem with a fix"),
    "swap": ("swap", "show swap use, swapping rates and the processes in swap"),
    "trust": ("trust", "add a client's host key to known_hosts"),
    "client-setup": ("client_setup", "restrict the backup key on a client to the gate"),
    "passphrase": ("passphrase", "store or delete a key passphrase in the keyring"),
}

# shellcheck shell=sh
# backuppc-agent: the BackupPC account's login (sourced from ~/.profile).
# After `su - backuppc` a plain `ssh-add` talks to the supervised agent.
if [ -r /var/lib/backuppc/.ssh/agent.env ]; then
    # The env file is `ssh-agent -s` syntax: keep its "Agent pid" echo quiet.
    # shellcheck source=/dev/null
    . /var/lib/backuppc/.ssh/agent.env >/dev/null
else
    SSH_AUTH_SOCK=/var/lib/backuppc/.ssh/agent.socket
    export SSH_AUTH_SOCK
fi
# Interactive logins only: one line when backups are held for want of keys.
case $- in
    *i*)
        case $(/usr/bin/backuppc-agent --config /etc/backuppc-agent/config.toml status --json 2>/dev/null) in
            *'"state": "waiting"'*)
                echo "backuppc-agent: no SSH keys loaded, backups are held: run ssh-add" ;;
            *'"state": "down"'*)
                echo "backuppc-agent: no agent on $SSH_AUTH_SOCK, backups are held: start the backuppc-agent service" ;;
        esac
        ;;
esac

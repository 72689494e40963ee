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
# Interactive logins only: one line when backups are held, with status's reason.
case $- in
    *i*)
        _bpa_state=$(/usr/bin/backuppc-agent --config /etc/backuppc-agent/config.toml status 2>/dev/null | sed -n '1s/^state: *//p')
        case $_bpa_state in
            'waiting ('*)
                _bpa_why=${_bpa_state#waiting (}
                echo "backuppc-agent: backups are held: ${_bpa_why%)}" ;;
            'down ('*)
                echo "backuppc-agent: no agent on $SSH_AUTH_SOCK, backups are held: start the backuppc-agent service" ;;
        esac
        unset _bpa_state _bpa_why
        ;;
esac

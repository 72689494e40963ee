"""The sh script a kill session feeds to the client's ``sh -s -- MODE ID`` (tests shellcheck it).

A string, not a data file, so every install form ships it.
"""

KILL_SCRIPT = r"""# backuppc-agent: end what a backup started on this client (`sh -s -- MODE ID`).
# Jobs are marked in their environment (BACKUPPC_AGENT_JOB=TAG.TOKEN, set with env(1)
# on the remote command), which their children inherit: MODE "job" matches one
# transfer, MODE "client" every transfer of one BackupPC client. Each match's
# process group is sent TERM, then KILL after a grace period. Needs /proc and
# GNU grep -z (Linux clients).
mode=$1
id=$2
case $mode in
    job) pattern="^BACKUPPC_AGENT_JOB=$id\$" ;;
    client) pattern="^BACKUPPC_AGENT_JOB=${id}[.]" ;;
    *) echo "backuppc-agent: kill-remote: bad mode '$mode'"; exit 2 ;;
esac
case $id in
    ''|*[!0-9a-f.]*) echo "backuppc-agent: kill-remote: bad id"; exit 2 ;;
esac

find_pids() {
    grep -lsz -e "$pattern" /proc/[0-9]*/environ 2>/dev/null |
        sed -n 's#^/proc/\([0-9][0-9]*\)/environ$#\1#p'
}

pids=$(find_pids)
if [ -z "$pids" ]; then
    echo "killed 0"
    exit 0
fi
self=$(ps -o pgid= -p $$ | tr -d ' ')
groups=""
for pid in $pids; do
    group=$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ')
    if [ -z "$group" ] || [ "$group" -le 1 ] || [ "$group" = "$self" ]; then
        continue
    fi
    case " $groups " in *" $group "*) ;; *) groups="$groups $group" ;; esac
done
# shellcheck disable=SC2086  # pids are digits separated by newlines: split on purpose
count=$(echo $pids | wc -w)
for group in $groups; do kill -s TERM -- "-$group" 2>/dev/null; done
# shellcheck disable=SC2086
kill -s TERM $pids 2>/dev/null
tries=0
while [ $tries -lt 30 ] && [ -n "$(find_pids)" ]; do
    sleep 0.1
    tries=$((tries + 1))
done
left=$(find_pids)
if [ -n "$left" ]; then
    for group in $groups; do kill -s KILL -- "-$group" 2>/dev/null; done
    # shellcheck disable=SC2086
    kill -s KILL $left 2>/dev/null
fi
echo "killed $count"
"""

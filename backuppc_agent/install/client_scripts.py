r"""The sh scripts ``client-setup`` runs on a client (fed on stdin to ``sh -s -- ARGS``).

Fixed text: every value (paths, checksums, base64 contents) arrives as a
positional argument, never inside the script. Each prints MARKER first, so
whatever a login shell's rc files print before it is skipped. They need a
POSIX sh and coreutils (base64, sha256sum, head -c, stat): Debian, Ubuntu, RHEL.
"""

MARKER = "backuppc-agent-client-setup"

#: No arguments. Prints ``addr ADDR`` (the server as the client sees it), ``home``,
#: ``user``, ``uid``, then ``akf VALUE`` from ``sshd -T`` or ``akf-unknown WHY``.
INSPECT_SCRIPT = r"""# backuppc-agent client-setup: which authorized_keys this account's sshd reads.
echo backuppc-agent-client-setup
addr=${SSH_CONNECTION:-}
addr=${addr%% *}
user=$(id -un)
printf 'addr %s\nhome %s\nuser %s\nuid %s\n' "$addr" "${HOME:-}" "$user" "$(id -u)"
for sshd in /usr/sbin/sshd /usr/local/sbin/sshd /sbin/sshd; do
    [ -x "$sshd" ] || continue
    # -T needs root (it loads the host keys): anyone else gets the default.
    if out=$("$sshd" -T -C "user=$user,host=$addr,addr=$addr" 2>/dev/null); then
        printf '%s\n' "$out" | sed -n 's/^authorizedkeysfile /akf /p'
        exit 0
    fi
    echo "akf-unknown $sshd -T failed (not root?)"
    exit 0
done
echo "akf-unknown no sshd found"
"""

#: ``MAX_BYTES PATH...``: per path one line ``file SIZE SAVED`` then SIZE bytes, or
#: ``absent``, ``symlink``, ``unreadable``, ``toolarge SIZE`` (SAVED: 1 if the saved
#: copy exists).
READ_SCRIPT = r"""# backuppc-agent client-setup: read authorized_keys files.
echo backuppc-agent-client-setup
max=$1
shift
for path in "$@"; do
    saved=0
    [ -e "$path.backuppc-agent-saved" ] && saved=1
    if [ -L "$path" ]; then
        echo symlink
    elif [ ! -e "$path" ]; then
        echo absent
    elif [ ! -f "$path" ] || [ ! -r "$path" ]; then
        echo unreadable
    else
        size=$(wc -c < "$path" | tr -d ' ')
        if [ "$size" -gt "$max" ]; then
            echo "toolarge $size"
        else
            echo "file $size $saved"
            head -c "$size" "$path"
        fi
    fi
done
"""

#: ``AUTHKEYS SHA256 GATE_BASE64 NEW_BASE64``: keep the saved copy (only if none
#: exists), install the gate (0755), then replace AUTHKEYS (same owner and mode),
#: each through a temporary file and mv; refuse if AUTHKEYS no longer hashes to SHA256.
WRITE_SCRIPT = r"""# backuppc-agent client-setup: install the gate and the new authorized_keys.
echo backuppc-agent-client-setup
umask 077
ak=$1
want=$2
gate_b64=$3
new_b64=$4
dir=$(dirname -- "$ak")
gate=$dir/backuppc-agent-gate
saved=$ak.backuppc-agent-saved
tmp=$dir/.backuppc-agent-tmp.$$
fail() {
    rm -f -- "$tmp"
    echo "error $*"
    exit 1
}
if [ -L "$ak" ] || [ ! -f "$ak" ]; then fail "$ak is not a regular file"; fi
have=$(sha256sum < "$ak") || fail "cannot read $ak"
[ "${have%% *}" = "$want" ] || fail "$ak changed since it was read: run client-setup again"
if [ ! -e "$saved" ]; then
    { cp -- "$ak" "$tmp" && chmod 600 -- "$tmp" && mv -f -- "$tmp" "$saved"; } ||
        fail "cannot keep a copy in $saved"
fi
rm -f -- "$tmp"
{ printf '%s' "$gate_b64" | base64 -d > "$tmp" && chmod 755 -- "$tmp" &&
    mv -f -- "$tmp" "$gate"; } || fail "cannot install $gate"
# cp -p, then truncate and write: the new file keeps the old one's mode and owner.
{ cp -p -- "$ak" "$tmp" && printf '%s' "$new_b64" | base64 -d > "$tmp" &&
    mv -f -- "$tmp" "$ak"; } || fail "cannot replace $ak"
echo written
"""

#: ``AUTHKEYS...``: put the first saved copy found back and remove its gate. Prints
#: ``restored PATH`` or ``nothing``.
UNDO_SCRIPT = r"""# backuppc-agent client-setup --undo: put the saved authorized_keys back.
echo backuppc-agent-client-setup
for ak in "$@"; do
    saved=$ak.backuppc-agent-saved
    if [ -f "$saved" ] && [ ! -L "$saved" ]; then
        mv -f -- "$saved" "$ak" || { echo "error cannot move $saved back"; exit 1; }
        rm -f -- "$(dirname -- "$ak")/backuppc-agent-gate"
        echo "restored $ak"
        exit 0
    fi
done
echo nothing
"""

#!/bin/sh
# fleetdeploy-run: runs its arguments as a command in a session and process
# group of its own, and watches the SSH channel's stdin: when the channel
# closes (the client cancelled, timed out or vanished) the whole group gets
# SIGTERM, then SIGKILL 3 s later. sshd alone would leave it running.
#
# It starts as few processes as it can (each costs about a millisecond of CPU
# on a small VM, and a deploy runs a few commands on every host): setsid execs
# the command without another shell in between, and the watcher is a subshell
# using the shell's own read rather than cat.
#
# Usage: sh -c "$(cat run.sh)" fleetdeploy-run COMMAND [ARG...]
exec 3<&0
if command -v setsid >/dev/null 2>&1; then setsid "$@" </dev/null & else "$@" </dev/null & fi
p=$!
(
	while read -r _ <&3; do :; done
	kill -TERM -"$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null
	sleep 3
	kill -KILL -"$p" 2>/dev/null
) >/dev/null 2>&1 &
w=$!
exec 3<&-
wait "$p"
rc=$?
kill "$w" 2>/dev/null
exit "$rc"

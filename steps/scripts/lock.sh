#!/bin/sh
# fleetdeploy-lock takes the deploy lock with ln(1), making its folder first
# if needed: for a new host, or to learn why SFTP's symlink failed (its status
# codes drop errno; ln names the cause).
#
# Parameters: root=DIR holder=TEXT

# Exit statuses; steps/scripts.go holds the same numbers.
EXIT_LOCKED=75 # the lock is held: its holder on stdout

set -e
root='' holder=''
for kv do
	case $kv in
	root=*) root=${kv#*=} ;;
	holder=*) holder=${kv#*=} ;;
	esac
done
if [ -L "$root/.fleetdeploy" ]; then
	echo "$root/.fleetdeploy is a symlink: fleetdeploy never works through one; move it away" >&2
	exit 1
fi
if [ ! -d "$root/.fleetdeploy" ]; then mkdir -p -- "$root/.fleetdeploy"; fi
if ! ln -s -- "$holder" "$root/.fleetdeploy/lock" 2>/dev/null; then
	if [ -L "$root/.fleetdeploy/lock" ]; then
		printf '%s' "$(readlink "$root/.fleetdeploy/lock")"
		exit "$EXIT_LOCKED"
	fi
	if [ -e "$root/.fleetdeploy/lock" ]; then
		echo "$root/.fleetdeploy/lock is not a symlink, not fleetdeploy's lock: look at it, then remove it" >&2
		exit 1
	fi
	ln -s -- "$holder" "$root/.fleetdeploy/lock"
fi

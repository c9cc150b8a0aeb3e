#!/bin/sh
# Functions shared by the host scripts: Go puts this file in front of each
# script that needs it (steps/scripts.go), so they cost no process start.

# identities lists the files below the current folder, one per line, as
# "path<TAB>size<TAB>mtime<TAB>inode". The record written after a deploy and
# the check made before the next must use the very same listing, or every
# file looks changed. (Records made from a delta by earlier versions hold
# lines for the files sent listed as "./path"; readers drop that prefix.)
identities() {
	find . -type f -printf '%P\t%s\t%T@\t%i\n'
}

# own_folders fails when a folder fleetdeploy works in, under root $1, is a
# symlink or not a folder: it would write, move and remove through it.
own_folders() {
	for d in builds shared .fleetdeploy .fleetdeploy/staging .fleetdeploy/pending .fleetdeploy/builds .fleetdeploy/trash; do
		if [ -L "$1/$d" ] || { [ -e "$1/$d" ] && [ ! -d "$1/$d" ]; }; then
			echo "$1/$d is not a folder (a symlink?): fleetdeploy never works through one; move it away" >&2
			exit 1
		fi
	done
}

# no_links fails when a folder on the way from $1 (trusted) to $1/$2 is a
# symlink, or when $1/$2 itself is: a shared path must never lead elsewhere.
no_links() {
	nl_p=$1
	nl_rest=$2
	while :; do
		nl_p=$nl_p/${nl_rest%%/*}
		if [ -L "$nl_p" ]; then
			echo "$nl_p is a symlink: fleetdeploy never works through one" >&2
			exit 1
		fi
		case $nl_rest in
		*/*) nl_rest=${nl_rest#*/} ;;
		*) return 0 ;;
		esac
	done
}

# discard removes the folder $1 (relative to the root, the current folder)
# completely, or fails: it is first moved into .fleetdeploy/trash/$2 in one
# rename, so that a folder removed in part is never taken for a build; then
# removed, after making its folders writable if it held read-only ones.
# What stays in the trash is removed by the next run.
discard() {
	if [ ! -e "$1" ] && [ ! -L "$1" ]; then return 0; fi
	if [ ! -d .fleetdeploy/trash ]; then mkdir -p .fleetdeploy/trash || return 1; fi
	if [ -e ".fleetdeploy/trash/$2" ]; then empty ".fleetdeploy/trash/$2" || return 1; fi
	mv -- "$1" ".fleetdeploy/trash/$2" || return 1
	empty ".fleetdeploy/trash/$2"
}

# empty removes $1 completely, or fails saying what is left.
empty() {
	if rm -rf -- "$1" 2>/dev/null; then return 0; fi
	chmod -R u+rwx -- "$1" 2>/dev/null
	rm -rf -- "$1" && return 0
	echo "$PWD/$1 could not be removed completely" >&2
	return 1
}

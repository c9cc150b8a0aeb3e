#!/bin/sh
# fleetdeploy-finish ends a run on a host, in one command (one round trip):
#   - appends the run's line to the live history (record=), on a line of its
#     own, and removes the never-live mark of the build it names;
#   - removes the staged links (unstage=next, unstage=back);
#   - removes old builds (id=), unless a process still uses them (below);
#   - gives the deploy lock back (lock=TEXT) when it still holds TEXT: a lock
#     taken over or removed meanwhile is left alone, and said so.
# Every part is tried even when one before failed, the lock last: a run
# that could not record its history still unlocks. It fails (EXIT_FAILED,
# stderr says what) when a part failed, and ends with EXIT_LOCK_LOST, the
# lock's text on stdout as "lock<TAB>TEXT", when the lock is not this run's.
#
# An old build is removed unless a process still uses it: its
# working or root directory, an open file or a mapped file is inside the
# build, compared by device and inode (paths differ through symlinks). Files
# shared by hard links with other builds do not count: removing this build's
# link leaves them whole. It prints NOTE lines about what it kept. A build is
# removed whole or not at all (see discard): it fails, saying what is left,
# when a build could not be removed completely, and that build is no longer
# in builds/ (never a rollback target).
#
# Removing a build unlinks files it shares with the live one, which changes
# their ctime: the live build's record of file identities is sealed again
# (its mtime), so that the next deploy does not take them for files changed
# by hand (see prepare's suspects).
#
# Parameters: root=DIR live=ID id=ID (list: the builds to remove)
#   record=LINE unmark=ID unstage=next|back (list) lock=TEXT

# Exit statuses; steps/scripts.go holds the same numbers.
EXIT_FAILED=1    # a part failed: stderr says what
EXIT_LOCK_LOST=76 # the lock is not this run's: "lock<TAB>TEXT" on stdout

root='' live='' record='' unmark='' lock=''
for kv do
	case $kv in
	root=*) root=${kv#*=} ;;
	live=*) live=${kv#*=} ;;
	record=*) record=${kv#*=} ;;
	unmark=*) unmark=${kv#*=} ;;
	lock=*) lock=${kv#*=} ;;
	esac
done
cd -- "$root" || exit "$EXIT_FAILED"
own_folders .
ok=1

if [ -n "$record" ]; then
	h=.fleetdeploy/history
	if [ -L "$h" ] || { [ -e "$h" ] && [ ! -f "$h" ]; }; then
		echo "$root/$h is not a regular file: the switch is not recorded in it" >&2
		ok=
	elif ! {
		if [ -s "$h" ] && [ -n "$(tail -c 1 "$h")" ]; then echo; fi
		printf '%s\n' "$record"
	} >>"$h"; then
		ok=
	fi
fi
# What goes at the end, in one rm (a process costs a host about a
# millisecond): the never-live mark, the staged links, the lock.
gone=
case $unmark in '' | *[!0-9-]*) ;; *) gone=".fleetdeploy/pending/$unmark" ;; esac
for kv do
	case $kv in
	unstage=next) gone="$gone .fleetdeploy/next" ;;
	unstage=back) gone="$gone .fleetdeploy/back" ;;
	esac
done

# in_use lists the open files, working directories and mapped files of every
# process we may see, as "pid<TAB>dev:inode" (st_dev in decimal, as find's %D
# prints it), into $procs; and counts the processes seen.
in_use() {
	{
		find -L /proc/[0-9]*/cwd /proc/[0-9]*/root -maxdepth 0 -printf '%H\t%D:%i\n' 2>/dev/null
		find -L /proc/[0-9]*/fd -mindepth 1 -maxdepth 1 -printf '%H\t%D:%i\n' 2>/dev/null
		grep -H '' /proc/[0-9]*/maps 2>/dev/null | awk '
      function hex(s,   i, c, v) { v = 0; s = tolower(s); for (i = 1; i <= length(s); i++) { c = index("0123456789abcdef", substr(s, i, 1)) - 1; v = v * 16 + c }; return v }
      { split($1, a, ":"); if ($5 == 0) next; split($4, d, ":"); printf "%s\t%d:%s\n", a[1], hex(d[1]) * 256 + hex(d[2]), $5 }'
	} >"$procs"
	visible=0
	total=0
	for p in /proc/[0-9]*; do
		total=$((total + 1))
		if [ -r "$p/maps" ] && [ -r "$p/fd" ]; then visible=$((visible + 1)); fi
	done
}

# user prints the pid of a process using build $1, if any.
user() {
	find "$1" -xdev \( -type d -o -type f -links 1 \) -printf '%D:%i\n' >"$procs.ids"
	awk -F'\t' -v ids="$procs.ids" 'BEGIN { while ((getline l < ids) > 0) k[l] = 1 } ($2 in k) { sub("/proc/", "", $1); sub("/.*", "", $1); print $1; exit }' "$procs"
}

remove=
for kv do case $kv in id=*) remove=1 ;; esac; done
if [ -n "$remove" ]; then
	procs=$(mktemp) || exit "$EXIT_FAILED"
	trap 'rm -f "$procs" "$procs.ids"' EXIT
	in_use
fi
for kv do
	case $kv in id=*) ;; *) continue ;; esac
	id=${kv#id=}
	case $id in '' | *[!0-9-]*) continue ;; esac
	b="builds/$id"
	if [ -L "$b" ] || [ ! -d "$b" ]; then continue; fi
	who=$(user "$b")
	if [ -n "$who" ]; then
		cmd=$(tr '\0' ' ' <"/proc/$who/cmdline" 2>/dev/null | cut -c1-80)
		echo "NOTE: keeping $b: in use by process $who ($cmd); a later deploy removes it"
		continue
	fi
	if discard "$b" "$id"; then
		rm -f -- ".fleetdeploy/builds/$id" ".fleetdeploy/builds/$id.manifest" ".fleetdeploy/builds/$id.stat" ".fleetdeploy/builds/$id.bad" || ok=
	else
		ok=
		# Moved out of builds/ but not all gone: its marker goes, so that it
		# can never be taken for a build; the next run empties the trash.
		if [ ! -e "$b" ]; then rm -f -- ".fleetdeploy/builds/$id" ".fleetdeploy/builds/$id.manifest" ".fleetdeploy/builds/$id.stat" ".fleetdeploy/builds/$id.bad"; fi
	fi
done
case $live in '' | *[!0-9-]*) ;; *)
	r=".fleetdeploy/builds/$live.stat"
	if [ -f "$r" ] && [ ! -L "$r" ]; then touch -c -- "$r" || ok=; fi
	;;
esac
if [ -n "$remove" ] && [ "$visible" -lt "$total" ]; then
	echo "NOTE: the in-use check saw $visible of $total processes (others belong to other users or are hidden): builds used only by those may have been removed"
fi
lost=
if [ -n "$lock" ]; then
	l=.fleetdeploy/lock
	if [ -L "$l" ]; then
		now=$(readlink -- "$l")
		if [ "$now" = "$lock" ]; then
			gone="$gone $l"
		else
			lost=1
		fi
	elif [ -e "$l" ]; then
		echo "$root/$l is not a symlink, not fleetdeploy's lock: left alone" >&2
		ok=
	fi
fi
# $gone holds fleetdeploy's own names, no blanks in them: split on purpose.
# shellcheck disable=SC2086
if [ -n "$gone" ]; then rm -f -- $gone || ok=; fi
if [ -n "$lost" ]; then
	printf 'lock\t%s\n' "$now"
	exit "$EXIT_LOCK_LOST"
fi
if [ -z "$ok" ]; then exit "$EXIT_FAILED"; fi
exit 0

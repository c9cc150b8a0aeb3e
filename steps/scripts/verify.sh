#!/bin/sh
# fleetdeploy-verify re-hashes every file of a build against its manifest,
# files below shared paths excepted, and prints what differs. It writes
# nothing.
#
# Parameters: root=DIR id=ID shared=PATH (list)

root='' id=''
for kv do
	case $kv in
	root=*) root=${kv#*=} ;;
	id=*) id=${kv#*=} ;;
	esac
done
cd -- "$root/builds/$id" || exit 1
awk -F'\t' 'BEGIN {
    for (i = 2; i < ARGC; i++) { if (index(ARGV[i], "shared=") == 1) sh[i] = substr(ARGV[i], 8); delete ARGV[i] }
  }
  $1 == "f" { for (i in sh) if ($5 == sh[i] || index($5, sh[i] "/") == 1) next; print $4 "  " $5 }' \
	"$root/.fleetdeploy/builds/$id.manifest" "$@" | sha256sum -c --quiet - 2>&1
exit 0

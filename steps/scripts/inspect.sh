#!/bin/sh
# fleetdeploy-inspect checks a live build for `status`: it prints the digest
# of its manifest, and the files changed on the host since the build was
# made (their size, mtime or inode differ from the identities recorded
# then; or their inode changed since the record was sealed, its mtime, and
# their content no longer matches the manifest), one "key<TAB>value" line
# each. It writes nothing. Everything else
# status shows is read over SFTP (steps.Look).
#
# Parameters: root=DIR id=ID

root='' id=''
for kv do
	case $kv in
	root=*) root=${kv#*=} ;;
	id=*) id=${kv#*=} ;;
	esac
done
case $id in '' | *[!0-9-]*)
	echo "bad build ID $id" >&2
	exit 1
	;;
esac
cd -- "$root" || exit 1
m=.fleetdeploy/builds/$id.manifest
k=.fleetdeploy/builds/$id.stat
# Only fleetdeploy's own files: never through a symlink, never a FIFO.
if [ -L .fleetdeploy ] || [ -L .fleetdeploy/builds ] || [ -L builds ] || [ -L "builds/$id" ] || [ ! -d "builds/$id" ]; then exit 0; fi
if [ -f "$m" ] && [ ! -L "$m" ]; then
	sum=$(sha256sum <"$m")
	printf 'manifest\tsha256:%s\n' "${sum%% *}"
fi
if [ -f "$k" ] && [ ! -L "$k" ]; then
	(cd "builds/$id" && identities) | K=$k LC_ALL=C awk -F'\t' '
    BEGIN { while ((getline x < ENVIRON["K"]) > 0) { if (substr(x, 1, 2) == "./") x = substr(x, 3); k[x] = 1 } }
    ($0 in k) { delete k[$0]; next }
    { d[$1] = 1 }
    END {
      for (x in k) { split(x, f, "\t"); d[f[1]] = 1 }
      for (p in d) print "dirty\t" p
    }'
	if [ -f "$m" ] && [ ! -L "$m" ]; then
		(cd "builds/$id" && find . -type f -cnewer "../../$k" -printf '%P\n') 2>/dev/null |
			LC_ALL=C awk -F'\t' 'FNR == NR { s[$0] = 1; next } $1 == "f" && ($5 in s) { print $4 "  " $5 }' - "$m" |
			(cd "builds/$id" && LC_ALL=C sha256sum -c - 2>/dev/null) |
			LC_ALL=C awk '/: FAILED/ { sub(/: FAILED.*$/, ""); print "dirty\t" $0 }'
	fi
fi
exit 0

#!/bin/sh
# fleetdeploy-inspect reports a root's state, one "key<TAB>value" line each
# (steps.parseState reads them). It writes nothing, and starts few processes:
# where latest points comes from the snapshot taken just before (no
# readlink); one awk prints the history's tail and the marker and compares
# the live build's files with their recorded identities.
#
# Parameters: root=DIR latest=link:TARGET|none|dir|other shared=PATH (list)

r='' lt=''
for kv do
	case $kv in
	root=*) r=${kv#*=} ;;
	latest=*) lt=${kv#*=} ;;
	esac
done
if [ ! -d "$r" ]; then
	echo "root	missing"
	exit 0
fi
cd -- "$r" || exit 1
echo "root	ok"
t=
case $lt in
link:*)
	t=${lt#link:}
	printf 'latest	link	%s\n' "$t"
	;;
*) printf 'latest	%s\n' "$lt" ;;
esac
for d in builds/* .fleetdeploy/staging/* .fleetdeploy/pending/*; do
	if [ -e "$d" ] || [ -L "$d" ]; then printf 'entry	%s\n' "$d"; fi
done
if [ -L .fleetdeploy/lock ]; then printf 'lock	%s\n' "$(readlink .fleetdeploy/lock)"; fi
id=${t#builds/}
h='' m='' k=''
if [ -f .fleetdeploy/history ]; then h=.fleetdeploy/history; fi
if [ -n "$id" ] && [ -f ".fleetdeploy/builds/$id" ]; then m=".fleetdeploy/builds/$id"; fi
if [ -n "$id" ] && [ -f ".fleetdeploy/builds/$id.manifest" ]; then
	sum=$(sha256sum <".fleetdeploy/builds/$id.manifest")
	printf 'manifest	sha256:%s\n' "${sum%% *}"
	if [ -f ".fleetdeploy/builds/$id.stat" ] && [ -d "builds/$id" ]; then k=".fleetdeploy/builds/$id.stat"; fi
fi
if [ -n "$h$m$k" ]; then
	{ if [ -n "$k" ]; then cd "builds/$id" && identities; fi; } | H=$h M=$m K=$k awk -F'\t' '
    BEGIN {
      if (ENVIRON["H"] != "") {
        while ((getline x < ENVIRON["H"]) > 0) l[++n] = x
        for (i = (n > 2000 ? n - 1999 : 1); i <= n; i++) print "history\t" l[i]
      }
      if (ENVIRON["M"] != "") while ((getline x < ENVIRON["M"]) > 0) print "marker\t" x
      if (ENVIRON["K"] == "") exit
      while ((getline x < ENVIRON["K"]) > 0) { sub(/^\.\//, "", x); k[x] = 1 }
    }
    ($0 in k) { delete k[$0]; next }
    { d[$1] = 1 }
    END {
      if (ENVIRON["K"] == "") exit
      for (x in k) { split(x, f, "\t"); d[f[1]] = 1 }
      for (p in d) print "dirty\t" p
    }'
fi
for kv do
	case $kv in shared=*) ;; *) continue ;; esac
	s=${kv#shared=}
	if [ ! -e "shared/$s" ] && [ ! -L "shared/$s" ]; then printf 'noshared	%s\n' "$s"; fi
done
exit 0

#!/bin/sh
# fleetdeploy-unprepare undoes fleetdeploy-prepare, however far it got, and
# only what this run made: the never-live mark must hold this run's token.
# It fails, saying what is left, when something could not be removed.
#
# Parameters: root=DIR id=ID token=TEXT

root='' id='' token=''
for kv do
	case $kv in
	root=*) root=${kv#*=} ;;
	id=*) id=${kv#*=} ;;
	token=*) token=${kv#*=} ;;
	esac
done
case $id in '' | *[!0-9-]*)
	echo "bad build ID $id" >&2
	exit 1
	;;
esac
cd -- "$root" || exit 0
own_folders .
s=".fleetdeploy/staging/$id"
ok=1
discard "$s" "$id.staging" || ok=
rm -f -- "$s.skip" "$s.reuse" "$s.shared" "$s.found" "$s.dirty" "$s.suspect" || ok=
tok=
p=".fleetdeploy/pending/$id"
if [ -L "$p" ]; then
	tok=$(readlink -- "$p")
elif [ -f "$p" ]; then
	IFS= read -r tok <"$p" || : # a mark of an older version
fi
if [ -n "$tok" ] && [ "$tok" = "$token" ]; then
	discard "builds/$id" "$id" || ok=
	rm -f -- ".fleetdeploy/builds/$id" ".fleetdeploy/builds/$id.manifest" ".fleetdeploy/builds/$id.stat" || ok=
	if [ -n "$ok" ]; then rm -f -- "$p" || ok=; fi
fi
if [ -z "$ok" ]; then exit 1; fi

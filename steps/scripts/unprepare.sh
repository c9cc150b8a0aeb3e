#!/bin/sh
# fleetdeploy-unprepare undoes fleetdeploy-prepare, however far it got, and
# only what this run made: the never-live mark must hold this run's token.
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
cd -- "$root" || exit 0
s=".fleetdeploy/staging/$id"
rm -rf -- "$s" "$s.skip" "$s.reuse" "$s.shared" "$s.found" "$s.dirty"
tok=
if [ -f ".fleetdeploy/pending/$id" ]; then IFS= read -r tok <".fleetdeploy/pending/$id" || :; fi
if [ -n "$tok" ] && [ "$tok" = "$token" ]; then
	rm -rf -- "builds/$id" ".fleetdeploy/builds/$id" ".fleetdeploy/builds/$id.manifest" ".fleetdeploy/builds/$id.stat" ".fleetdeploy/pending/$id"
fi

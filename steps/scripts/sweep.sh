#!/bin/sh
# fleetdeploy-sweep removes what a killed run left behind: staging folders
# and the files beside them, builds that were complete but never went live
# (with their markers), stale never-live marks, staged links and the trash.
# Every name is checked first: only names fleetdeploy makes are removed, and
# never through a symlink. It fails, saying what is left, when something
# could not be removed.
#
# Parameters: root=DIR staging=NAME build=ID mark=ID (lists)

root=''
for kv do
	case $kv in root=*) root=${kv#*=} ;; esac
done
cd -- "$root" || exit 1
own_folders .
ok=1
for kv do
	case $kv in root=*) continue ;; esac
	v=${kv#*=}
	case $v in '' | *[!0-9A-Za-z.-]* | .*)
		echo "not a name fleetdeploy makes: $v" >&2
		ok=
		continue
		;;
	esac
	case $kv in
	staging=*)
		if [ -d ".fleetdeploy/staging/$v" ] && [ ! -L ".fleetdeploy/staging/$v" ]; then
			discard ".fleetdeploy/staging/$v" "$v.staging" || ok=
		else
			rm -f -- ".fleetdeploy/staging/$v" || ok=
		fi
		;;
	build=*)
		case $v in *[!0-9-]*) continue ;; esac
		discard "builds/$v" "$v" || ok=
		rm -f -- ".fleetdeploy/builds/$v" ".fleetdeploy/builds/$v.manifest" ".fleetdeploy/builds/$v.stat" ".fleetdeploy/builds/$v.bad" || ok=
		if [ -n "$ok" ]; then rm -f -- ".fleetdeploy/pending/$v" || ok=; fi
		;;
	mark=*)
		case $v in *[!0-9-]*) continue ;; esac
		rm -f -- ".fleetdeploy/pending/$v" || ok=
		;;
	esac
done
rm -f -- .fleetdeploy/next .fleetdeploy/back || ok=
if [ -d .fleetdeploy/trash ]; then
	for t in .fleetdeploy/trash/* .fleetdeploy/trash/.[!.]*; do
		if [ -e "$t" ] || [ -L "$t" ]; then empty "$t" || ok=; fi
	done
fi
if [ -z "$ok" ]; then exit 1; fi

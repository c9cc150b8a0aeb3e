#!/usr/bin/env bash
# The fleetdeploy benchmark in one command (see bench/README.md):
#
#   bench/run.sh                                 # 4, 8, 16, 64 OpenSSH hosts, median of 3 (~5 min)
#   bench/run.sh -versions 59f725d,worktree      # an old build and this checkout side by side (~9 min)
#   bench/run.sh -hosts '' -sandbox 200          # 200 `fleetdeploy sandbox` hosts (~3 min)
#   bench/run.sh -hosts 4 -reps 1 -link delay=10ms,rate=200mbit  # over a slow link (~40 s)
#   bench/run.sh -hosts 4,8 -reps 3 -app mediawiki  # a real-world tree, 23,500 files (~3 min)
#   bench/run.sh -scale                          # growth in file count: 5k to 80k files (~1 min)
#
# Every flag but -disk and -scale goes to the bench (go test -args). Results are printed
# and put at the top of BENCHMARKS.md. Runs as root on Debian 12: installs
# openssh-server, rsync and nftables when missing, without letting a system
# sshd start.
#
# The hosts' files (and the app, and fleetdeploy's scratch copy) live on a
# tmpfs mounted in a private mount namespace, gone when the run ends: this
# machine's disk is ext4 without a journal, where creating files right after
# removing many is slow for minutes, so deploys on it time the disk's recent
# history (other sessions' tests included) more than the tools. -disk keeps
# everything in $TMPDIR on disk instead (implied by -keep; needed where builds
# outgrow the 16 GB tmpfs, e.g. -sandbox 200 with a fleetdeploy that uploads
# full copies: 200 hosts x 2 builds x 45 MB).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

missing=()
for pkg in openssh-server openssh-client rsync nftables; do
	if ! dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
		missing+=("$pkg")
	fi
done
if ((${#missing[@]})); then
	if ((EUID != 0)); then
		echo "bench: missing packages ${missing[*]} (run as root to install them); going on without" >&2
	else
		policy_created=
		if [[ ! -e /usr/sbin/policy-rc.d ]]; then
			printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
			chmod 0755 /usr/sbin/policy-rc.d
			policy_created=1
		fi
		echo "bench: installing ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "${missing[@]}" >/dev/null
		if [[ -n $policy_created ]]; then rm -f /usr/sbin/policy-rc.d; fi
	fi
fi
if [[ ! -d /run/sshd && $EUID -eq 0 ]]; then
	install -d -m 0755 /run/sshd
fi

# The command as a person would type it, for BENCHMARKS.md.
quoted=
for a in "$@"; do
	if [[ $a =~ ^[A-Za-z0-9_./,:=@+-]+$ ]]; then
		quoted+=" $a"
	else
		quoted+=" '${a//\'/\'\\\'\'}'"
	fi
done
export FDBENCH_COMMAND="bench/run.sh$quoted"
disk=
test='^TestBench$'
args=()
for a in "$@"; do
	case $a in
	-disk | --disk) disk=1 ;;
	-scale | --scale) test='^TestScale$' ;;
	-keep | --keep) disk=1 args+=("$a") ;; # a tmpfs would vanish with the run
	*) args+=("$a") ;;
	esac
done
cmd=(go test -tags bench -run "$test" -count=1 -timeout 120m -v ./bench -args "${args[@]}")
if [[ -n $disk || $EUID -ne 0 ]] || ! command -v unshare >/dev/null; then
	exec "${cmd[@]}"
fi
mnt=$(mktemp -d /tmp/fdbench-tmpfs.XXXXXX)
chmod 0755 "$mnt"
trap 'rmdir "$mnt" 2>/dev/null || true' EXIT
unshare --mount --propagation private -- bash -c 'mount -t tmpfs -o size=16g,mode=0755 fdbench "$0" && TMPDIR="$0" exec "$@"' "$mnt" "${cmd[@]}"

#!/bin/sh
# fleetdeploy-probe tells `fleetdeploy check` whether a host has what
# fleetdeploy needs, changing nothing: one "key<TAB>value..." line each.
#   tool<TAB>NAME<TAB>ok|missing|wrong<TAB>detail   for each tool the scripts use
#   free<TAB>KIB<TAB>DIR                             free space where the root is (or will be)
#   write<TAB>ok|no<TAB>DIR<TAB>detail               a symlink made and removed there (the root, or
#                                                    the folder it will be made in)
#   now<TAB>SECONDS                                  the host's clock
#
# Parameters: root=DIR

root=''
for kv do
	case $kv in root=*) root=${kv#*=} ;; esac
done

# tool NAME STATUS DETAIL prints one tool's line.
tool() {
	printf 'tool\t%s\t%s\t%s\n' "$1" "$2" "$3"
}

# have NAME tells whether a command exists, and says so when it does not.
have() {
	if command -v "$1" >/dev/null 2>&1; then return 0; fi
	tool "$1" missing "not found in PATH"
	return 1
}

if have tar; then
	v=$(tar --version 2>/dev/null | sed -n 1p)
	case $v in
	*"GNU tar"*)
		if tar --help 2>/dev/null | grep -q -- '--transform'; then
			tool tar ok "$v"
		else
			tool tar wrong "$v: no --transform (GNU tar 1.20 or newer needed)"
		fi
		;;
	*) tool tar wrong "${v:-unknown}: GNU tar needed (--transform, --checkpoint)" ;;
	esac
fi
if have find; then
	if find / -maxdepth 0 -printf '' 2>/dev/null; then tool find ok "-printf"; else tool find wrong "no -printf: GNU findutils needed"; fi
fi
if have xargs; then
	if printf 'x\n' | xargs -d '\n' true 2>/dev/null; then tool xargs ok "-d"; else tool xargs wrong "no -d: GNU findutils needed"; fi
fi
if have cp; then
	if cp --help 2>/dev/null | grep -q -- '--reflink'; then tool cp ok "--reflink, --parents"; else tool cp wrong "no --reflink: GNU coreutils needed"; fi
fi
for t in b2sum sha256sum gzip base64 mktemp awk setsid mkdir mv rm ln readlink chmod date df; do
	if have "$t"; then tool "$t" ok ""; fi
done

# The nearest folder that exists on the way to the root: where it will be made.
d=$root
while [ -n "$d" ] && [ ! -d "$d" ]; do
	case $d in */*) d=${d%/*} ;; *) d= ;; esac
done
[ -n "$d" ] || d=/
free=$(df -Pk -- "$d" 2>/dev/null | awk 'NR == 2 { print $4 }')
printf 'free\t%s\t%s\n' "${free:--1}" "$d"
p="$d/.fleetdeploy-check-$$"
if out=$(ln -s probe "$p" 2>&1) && rm -f -- "$p"; then
	printf 'write\tok\t%s\t\n' "$d"
else
	printf 'write\tno\t%s\t%s\n' "$d" "$(printf '%s' "$out" | tr '\t\n' '  ')"
fi
printf 'now\t%s\n' "$(date +%s)"
exit 0

#!/bin/sh
# fleetdeploy-prepare makes a build complete beside the live one, in one
# session fed the payload (a tar) on stdin:
#   - unpack the payload into a staging folder; in link mode its hard-link
#     entries make the unchanged files from the live build (one link(2) each);
#   - for a delta, make the new manifest from the old one in one awk pass
#     (merging the delta in path order), with the list of files reused; the
#     same pass checks, against one find over the new build (link mode: its
#     reused files are the live build's) or over the live build (copy mode),
#     that every reused file still has the size, mtime and inode recorded
#     when the live build was made, and in link mode writes the new build's
#     record from the same listing. Files changed or removed by hand since
#     end the script with EXIT_DIRTY and their list on stdout, once the
#     manifest is known right: the client then sends them (Payload.Redo);
#   - check the files sent and the manifest against their BLAKE2b checksums
#     (one b2sum run); a manifest assembled from a corrupt old one ends the
#     script with EXIT_CORRUPT, and the client sends the whole build;
#   - in copy mode (a hook could rewrite reused files in place), copy the
#     unchanged files from the live build;
#   - publish: write the marker, mark the build as never live, move it to builds/;
#   - replace shared paths by relative links into shared/;
#   - (other than in link mode) record every file's size, mtime and inode, so
#     that a later deploy notices files changed by hand;
#   - with stage=1, stage the cutover: next -> the new build, back -> the live
#     one, and check that the lock still holds this run's text (else
#     EXIT_LOCK_LOST, its text on stdout as "lock<TAB>TEXT"), which saves the
#     round trip of a staging step of its own.
#
# A small payload comes in the command itself (inline=BASE64, a round trip
# less than stdin, which OpenSSH opens only once the command runs).
#
# The never-live mark is made first and holds a token of this run (a
# symlink's target; older versions wrote a file): the undo
# (fleetdeploy-unprepare) removes the build only when the mark holds that
# token, so it can never remove a build this run did not make.
#
# It starts few processes, each about a millisecond of CPU on a small VM on
# every host: 15 for a delta in link mode, staging included (ln, mkdir, find
# twice, gzip, tar, awk, b2sum, touch, rm twice, mv, ln twice, readlink); a
# payload in the command adds mktemp and base64; see docs/REDEPLOY.md.
#
# Parameters (name=value words; lists repeat the name):
#   root=DIR      the deploy root
#   id=ID         the new build
#   from=ID       the live build whose unchanged files are reused ("" for a whole build)
#   how=link|copy reused files are hard links of the live build's, or copies
#   z=gzip|paced|plain  the payload is gzipped; or plain, and tar reports its progress (remote.Pace)
#   want=HEX      BLAKE2b-256 of the build's manifest
#   marker=TEXT   the build's marker (release, checksum, previous, created, by)
#   token=TEXT    names this run in the never-live mark
#   shared=d:PATH or f:PATH  a shared folder or file (list)
#   skip=PATH     a file of the live build not to reuse (list)
#   inline=BASE64 the payload itself, instead of stdin
#   stage=1       stage the cutover; back=ID the live build ("" for none); lock=TEXT the lock's text

# Exit statuses; steps/scripts.go holds the same numbers, and a test fails
# when the two disagree.
EXIT_FAILED=1         # anything else: stderr says what
EXIT_SHARED_MISSING=3 # a shared file is missing on the host
EXIT_EXISTS=17        # builds/ID exists already
EXIT_LOCK_LOST=76     # the lock is no longer this run's: "lock<TAB>TEXT" on stdout
EXIT_CORRUPT=78       # the live build's manifest is corrupt: send the whole build
EXIT_DIRTY=79         # reused files changed by hand: their paths on stdout, "dirty<TAB>path"

set -e

params() {
	root='' id='' from='' how='' z='' want='' marker='' token='' inline='' stage='' back='' lock=''
	for kv do
		case $kv in
		root=*) root=${kv#*=} ;;
		id=*) id=${kv#*=} ;;
		from=*) from=${kv#*=} ;;
		how=*) how=${kv#*=} ;;
		z=*) z=${kv#*=} ;;
		want=*) want=${kv#*=} ;;
		marker=*) marker=${kv#*=} ;;
		token=*) token=${kv#*=} ;;
		inline=*) inline=${kv#*=} ;;
		stage=*) stage=${kv#*=} ;;
		back=*) back=${kv#*=} ;;
		lock=*) lock=${kv#*=} ;;
		shared=* | skip=*) ;;
		*)
			echo "fleetdeploy-prepare: unknown parameter ${kv%%=*}" >&2
			exit "$EXIT_FAILED"
			;;
		esac
	done
	case $id$from$back in *[!0-9-]*)
		echo "bad build ID $id or $from" >&2
		exit "$EXIT_FAILED"
		;;
	esac
	st="$root/.fleetdeploy/staging/$id"
	b="$root/builds/$id"
	m="$root/.fleetdeploy/builds/$id"
	old="$root/.fleetdeploy/builds/$from"
}

# lists writes the shared and skip lists into files beside the staging folder.
lists() {
	: >"$st.shared"
	: >"$st.skip"
	for kv do
		case $kv in
		shared=*) printf '%s\n' "${kv#shared=?:}" >>"$st.shared" ;;
		skip=*) printf '%s\n' "${kv#skip=}" >>"$st.skip" ;;
		esac
	done
}

# start makes the layout's folders (once) and the never-live mark.
start() {
	own_folders "$root"
	for d in "$root/builds" "$root/shared" "$root/.fleetdeploy/pending" "$root/.fleetdeploy/builds" "$root/.fleetdeploy/staging"; do
		if [ ! -d "$d" ]; then
			mkdir -p -- "$root/builds" "$root/shared" "$root/.fleetdeploy/pending" "$root/.fleetdeploy/builds" "$root/.fleetdeploy/staging"
			break
		fi
	done
	pm="$root/.fleetdeploy/pending/$id"
	if [ -e "$b" ] || [ -L "$b" ] || [ -e "$pm" ] || [ -L "$pm" ]; then
		echo "builds/$id exists already" >&2
		exit "$EXIT_EXISTS"
	fi
	# The mark is a symlink to the token, made in one symlink(2): never there
	# without its token (a file written by a run killed at that moment was
	# left empty, and no undo could tell it was its own).
	ln -s -- "$token" "$pm"
}

# unpack extracts the payload. Members land in the staging folder, the
# payload's manifest (or its delta) and checksums too. Reused files, in link
# mode, are hard-link entries naming their own path, mapped into the live
# build: one link(2) each. (Each --transform costs tar about 1 us per member:
# two only.) 64 KiB records (-b 128), a pipe's buffer, instead of 10 KiB: a
# fifth of the reads and of the writes into files. Modes as the payload has
# them: umask 0 rather than -p, which costs tar an open, a stat, a chmod and a
# close more per folder; the same result, since builds carry permission bits
# only (never setuid, setgid or sticky, which -p alone would keep). The
# staging folder itself is made first, under the usual umask.
# Sets tarok (empty when tar failed) and rec (1: link mode with a record).
unpack() {
	xs="s,^,.fleetdeploy/staging/$id/,rSH"
	xh="s,^,builds/$from/,RSh"
	rec=0
	if [ -n "$from" ] && [ "$how" = link ] && [ -f "$old.stat" ] && [ ! -L "$old.stat" ]; then rec=1; fi
	mkdir -p -- "$st"
	suspects
	tarok=1
	case $z in
	gzip)
		if ! gzip -dc | (
			umask 0
			exec tar -xf - -b 128 --no-same-owner -C "$root" --transform "$xs" --transform "$xh"
		); then tarok=; fi
		;;
	paced)
		# tar reports on stderr every 2 records (128 KiB) read, and the client
		# keeps its input within a window of that (remote.Pace).
		if ! (
			umask 0
			exec tar -xf - -b 128 --no-same-owner -C "$root" --transform "$xs" --transform "$xh" \
				--checkpoint=2 --checkpoint-action=echo=fleetdeploy-read:%u
		); then tarok=; fi
		;;
	*)
		if ! (
			umask 0
			exec tar -xf - -b 128 --no-same-owner -C "$root" --transform "$xs" --transform "$xh"
		); then tarok=; fi
		;;
	esac
	# In link mode a failed tar may only mean that a reused file is gone from
	# the live build: the check below tells, and the files go into the redo.
	if [ -z "$tarok" ] && [ "$rec" = 0 ]; then exit "$EXIT_FAILED"; fi
}

# suspects lists, before anything links them, the files of the live build
# whose inode changed after its record was sealed (the record's own mtime):
# a hand edit that kept the size and put the mtime back changes the ctime
# all the same. fleetdeploy's own links and removals change it too (a run
# undone, a rollback): merge hashes the reused ones among them to tell.
suspects() {
	: >"$st.suspect"
	if [ -n "$from" ] && [ -f "$old.stat" ] && [ ! -L "$old.stat" ] && [ -d "$root/builds/$from" ]; then
		(cd -- "$root/builds/$from" && find . -type f -cnewer "$old.stat" -printf '%P\n') >"$st.suspect"
	fi
}

# verify_suspects adds to the dirty list the reused files among the suspects
# (those the client sends anyway are in the skip list) whose content no
# longer matches the live build's manifest: one sha256sum run, only when
# there are suspects.
verify_suspects() {
	if [ ! -s "$st.suspect" ]; then return 0; fi
	LC_ALL=C awk -F'\t' -v sus="$st.suspect" -v skip="$st.skip" '
    BEGIN { while ((getline l < sus) > 0) s[l] = 1; while ((getline l < skip) > 0) delete s[l] }
    $1 == "f" && ($5 in s) { print $4 "  " $5 }' "$old.manifest" |
		(cd -- "$root/builds/$from" && LC_ALL=C sha256sum -c - 2>/dev/null) |
		LC_ALL=C awk '/: FAILED/ { sub(/: FAILED.*$/, ""); print "dirty\t" $0 }' >>"../$id.dirty"
}

# merge makes the new manifest from the old one and the delta, lists the
# reused files, and (with a record) checks them: see the top. Runs in the
# staging folder; sets mf, the manifest to check.
merge() {
	# The files to check: the new build's in link mode (its reused files are
	# the live build's, linked), else the live build's, about to be copied.
	# The live build's manifest, read below, is fleetdeploy's own file: a
	# link or anything but a file there counts as corrupt (the client then
	# sends the whole build).
	if [ ! -f "$old.manifest" ] || [ -L "$old.manifest" ] || [ -L "$root/builds/$from" ]; then
		echo "the live build's manifest is not a regular file" >&2
		exit "$EXIT_CORRUPT"
	fi
	chk=0
	if [ "$rec" = 1 ]; then
		chk=1
		identities >"../$id.found"
	elif [ -f "$old.stat" ] && [ ! -L "$old.stat" ]; then
		chk=1
		(cd -- "$root/builds/$from" && identities) >"../$id.found"
	fi
	# One pass: the new manifest, merged from the old one and the delta (both
	# in path order; "" makes every comparison one of strings, never of
	# numbers), and the files reused; in link mode, the new build's record of
	# file identities, and the check that each reused file (a hard link of the
	# live build's) still has the identity recorded when that build was made:
	# the files changed or removed by hand since are printed, to be sent again.
	# Paths relative to the staging folder: awk would read escapes in the root's.
	LC_ALL=C awk -F'\t' -v skip="../$id.skip" -v delta=.fleetdeploy-manifest.delta -v man="../../builds/$id.manifest" \
		-v reuse="../$id.reuse" -v rec="$rec" -v chk="$chk" -v oldstat="../../builds/$from.stat" -v found="../$id.found" \
		-v stat="../../builds/$id.stat" -v shared="../$id.shared" '
    BEGIN {
      while ((getline l < skip) > 0) s[l] = 1
      while ((getline l < delta) > 0) { d[++nd] = l; split(l, f, "\t"); dp[nd] = f[5] ""; dt[nd] = f[1] }
      i = 1; printf "" > man; if (!rec) printf "" > reuse
    }
    $1 == "f" && !($5 in s) {
      p = $5 ""
      while (i <= nd && dp[i] < p) print d[i++] > man
      print > man; r[p] = 1; nr++
      if (!rec) print p > reuse
    }
    # The next line of the record, in ol, and its path, in op (substr and
    # index rather than sub: no regex for each of ~6,000 lines).
    function nextold() {
      if ((getline ol < oldstat) <= 0) { ol = ""; return 0 }
      if (substr(ol, 1, 2) == "./") ol = substr(ol, 3)
      op = substr(ol, 1, index(ol, "\t") - 1)
      return 1
    }
    # File q is l here and w in the record: a reused file that differs is dirty.
    function settle(q, l, w) { if (q in r) { nseen++; if (l != w) print "dirty\t" q } }
    END {
      while (i <= nd) print d[i++] > man
      if (!chk) exit
      if (rec) printf "" > stat
      while ((getline l < shared) > 0) sh[++ns] = l
      # The listing and the record list (nearly) the same tree, made in the
      # same order, and a folder lists in the same order the same names made
      # in the same order: walked side by side, most lines are equal and
      # nothing is kept. Lines that are not wait in N (here) and O (record)
      # until the other side shows their path, which brings the two in step
      # again after a file added or removed.
      ok = nextold()
      while ((getline l < found) > 0) {
        q = substr(l, 1, index(l, "\t") - 1)
        if (q == ".fleetdeploy-upload.b2sum" || q == ".fleetdeploy-manifest.delta") continue
        for (k = 1; k <= ns; k++) if (q == sh[k] || index(q, sh[k] "/") == 1) break
        if (k <= ns) continue
        if (rec) print l > stat
        if (ok && l == ol) { if (q in r) nseen++; ok = nextold(); continue }
        while (ok && (op in N)) { settle(op, N[op], ol); delete N[op]; ok = nextold() }
        if (ok && l == ol) { if (q in r) nseen++; ok = nextold(); continue }
        if (ok && q == op) { settle(q, l, ol); ok = nextold(); continue }
        if (q in O) { settle(q, l, O[q]); delete O[q]; continue }
        N[q] = l
        if (ok) { O[op] = ol; ok = nextold() }
      }
      for (; ok; ok = nextold()) if (op in N) { settle(op, N[op], ol); delete N[op] } else O[op] = ol
      for (q in N) if (q in r) { nseen++; print "dirty\t" q }
      for (q in O) if (q in r) { nseen++; print "dirty\t" q }
      # Reused files in neither (gone, and missing from the record): rare.
      # (A record with a line twice could hide one here; tar then fails to
      # link it, or cp to copy it, and the deploy stops with an error.)
      if (nseen < nr) {
        close(found)
        while ((getline l < found) > 0) F[substr(l, 1, index(l, "\t") - 1)] = 1
        for (q in r) if (!(q in F) && !(q in O)) print "dirty\t" q
      }
    }' "../../builds/$from.manifest" >"../$id.dirty"
	verify_suspects
	# A failed tar with nothing changed by hand is a failure of its own.
	if [ -z "$tarok" ] && [ ! -s "../$id.dirty" ]; then exit "$EXIT_FAILED"; fi
	mf="../../builds/$id.manifest"
}

# check verifies the files sent and the manifest against their checksums;
# then, for a delta, that no reused file was changed by hand.
check() {
	printf '%s  %s\n' "$want" "$mf" >>.fleetdeploy-upload.b2sum
	if ! out=$(b2sum -l 256 -c --quiet --strict .fleetdeploy-upload.b2sum 2>&1); then
		printf '%s\n' "$out" >&2
		case $out in
		*"$mf: FAILED"*)
			if [ -n "$from" ]; then
				echo "the build assembled here does not match the build's manifest (is the live build's manifest on this host corrupt?)" >&2
				exit "$EXIT_CORRUPT"
			fi
			echo "the manifest received does not match the build's" >&2
			;;
		*) echo "uploaded files do not match their checksums: the upload is corrupt" >&2 ;;
		esac
		exit "$EXIT_FAILED"
	fi
	# Files changed by hand, now that the manifest is known to be right (a
	# corrupt one would make up the reused files): the client sends them.
	if [ -n "$from" ] && [ -s "../$id.dirty" ]; then
		phase="checking the reused files against their record"
		echo "files of builds/$from changed or removed by hand since it was made: $(wc -l <"../$id.dirty")" >&2
		cat "../$id.dirty"
		exit "$EXIT_DIRTY"
	fi
}

# reseal re-dates the live build's record once this run's hard links to its
# files are made (link(2) changes a file's ctime, as a hand edit does): when
# nothing of that build had changed since its record was sealed (no
# suspects), every change since is this run's own, and whoever looks at
# that build next (status after a rollback to it, a deploy from it) need not
# hash every file it shares with the new one. Before assemble, which removes
# the suspects' list.
reseal() {
	if [ "$rec" = 1 ] && [ ! -s "$st.suspect" ]; then touch -c -- "$old.stat"; fi
}

# assemble completes the staging folder: the manifest beside the build, and
# in copy mode the unchanged files copied from the live build.
assemble() {
	if [ -z "$from" ]; then mv -f -- .fleetdeploy-manifest "$m.manifest"; fi
	if [ -n "$from" ] && [ "$how" = copy ]; then
		phase="copying unchanged files of builds/$from"
		cd -- "$root/builds/$from"
		xargs -d '\n' -r cp -p --reflink=auto --parents -t "$st" -- <"$st.reuse"
	fi
	rm -f -- "$st/.fleetdeploy-upload.b2sum" "$st/.fleetdeploy-manifest.delta" "$st.skip" "$st.shared" "$st.reuse" "$st.found" "$st.dirty" "$st.suspect"
}

# publish writes the marker and moves the build to builds/ID.
publish() {
	printf '%s' "$marker" >"$m"
	mv -- "$st" "$b"
}

# link_shared replaces each shared path of the build by a relative link into
# shared/. A missing shared folder is made, seeded from the build once; a
# missing shared file is an error (it is never taken from the build).
link_shared() {
	for kv do
		case $kv in shared=*) ;; *) continue ;; esac
		spec=${kv#shared=}
		kind=${spec%%:*}
		p=${spec#*:}
		s="$root/shared/$p"
		up=../..
		rest=$p
		while :; do
			case $rest in
			*/*)
				up="$up/.."
				rest=${rest#*/}
				;;
			*) break ;;
			esac
		done
		# Never through a symlink: on the build's side none may lead there;
		# on shared/'s side, links you made (a mounted volume) are followed,
		# but nothing is created or moved through one.
		case $p in */*) no_links "$b" "${p%/*}" ;; esac
		if [ "$kind" = d ]; then
			if [ ! -e "$s" ] && [ ! -L "$s" ]; then
				case $p in */*) no_links "$root/shared" "${p%/*}" ;; esac
				mkdir -p -- "${s%/*}"
				if [ -d "$b/$p" ] && [ ! -L "$b/$p" ]; then mv -- "$b/$p" "$s"; else mkdir -p -- "$s"; fi
			fi
		elif [ ! -e "$s" ]; then
			echo "shared file $p is missing: create $s on this host (a shared file is never taken from the build)" >&2
			exit "$EXIT_SHARED_MISSING"
		fi
		t="$b/$p"
		# rm and mkdir only when needed: usually the build holds nothing there
		# (the payload leaves out shared folders the host has) and the parent
		# exists, and each process costs about a millisecond on every host.
		if [ -e "$t" ] || [ -L "$t" ]; then rm -rf -- "$t"; fi
		if [ ! -d "${t%/*}" ]; then mkdir -p -- "${t%/*}"; fi
		ln -s -- "$up/shared/$p" "$t"
	done
}

# record writes every file's identity (other than in link mode, where merge
# wrote the record from its listing), for the next deploy's check.
record() {
	if [ "$rec" = 0 ]; then
		phase="recording file identities"
		cd -- "$b"
		identities >"$m.stat"
	fi
}

# inline_input makes the payload given in the command the script's input:
# decoded into a file that is gone once open.
inline_input() {
	if [ -z "$inline" ]; then return 0; fi
	in=$(mktemp)
	printf '%s' "$inline" | base64 -d >"$in"
	exec <"$in"
	rm -f -- "$in"
	inline=
}

# stage makes the links the cutover renames and puts back (what a killed
# run left there goes first), then checks that the lock is still this run's.
stage() {
	if [ "$stage" != 1 ]; then return 0; fi
	phase="staging the cutover"
	rm -f -- "$root/.fleetdeploy/next" "$root/.fleetdeploy/back"
	ln -s -- "builds/$id" "$root/.fleetdeploy/next"
	if [ -n "$back" ]; then ln -s -- "builds/$back" "$root/.fleetdeploy/back"; fi
	held=
	if [ -L "$root/.fleetdeploy/lock" ]; then held=$(readlink -- "$root/.fleetdeploy/lock"); fi
	if [ "$held" != "$lock" ]; then
		printf 'lock\t%s\n' "$held"
		exit "$EXIT_LOCK_LOST"
	fi
}

# failed says, when the script fails, in which phase.
failed() {
	rc=$?
	if [ "$rc" != 0 ]; then echo "(failed while $phase)" >&2; fi
}

params "$@"
phase=unpacking
trap failed EXIT
start
lists "$@"
inline_input
unpack
cd -- "$st"
if [ -n "$from" ]; then
	phase="reusing unchanged files of builds/$from"
	merge
else
	mf=.fleetdeploy-manifest
fi
phase="checking the files sent and the manifest"
check
reseal
assemble
phase=publishing
publish
phase="linking shared paths"
link_shared "$@"
record
stage

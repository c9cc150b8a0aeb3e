package steps

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/remote"
)

// Lock takes the host's deploy lock atomically (symlink(2) fails when the
// lock exists), then checks that nothing changed since the state the plan was
// made from was read. Both over SFTP: no process is started.
func Lock(l Layout, holder string, fingerprint string) Step {
	lock := Op{
		Desc: fmt.Sprintf("sftp symlink %s -> %s (fails if it exists; then reads the state again)", remote.Quote(l.Lock()), remote.Quote(holder)),
		Run: func(ctx context.Context, h remote.Host, _ io.Writer) error {
			if err := takeLock(ctx, h, l, holder); err != nil {
				return err
			}
			snap, err := Snapshot(ctx, h, l)
			if err != nil {
				return err
			}
			if snap != fingerprint {
				return errors.New("the host changed between planning and locking (another deploy just ran?): run again")
			}
			return nil
		}}
	return Step{
		Name: "locking",
		Ops:  []Op{lock},
		Undo: Unlock(l, holder).Ops,
	}
}

func takeLock(ctx context.Context, h remote.Host, l Layout, holder string) error {
	if h.Symlink(ctx, holder, l.Lock()) == nil {
		return nil
	}
	if who, err := h.Readlink(ctx, l.Lock()); err == nil {
		return &LockedError{Holder: who}
	}
	// No lock there, and SFTP cannot say why it failed (its status codes drop
	// errno): the folder may be missing (a new host), or the disk read-only.
	// ln in a shell makes the folder and names the cause.
	out, err := h.Run(ctx, remote.Cmd{Script: lockScript, Args: []string{l.Root, holder}})
	var ee *remote.ExitError
	if errors.As(err, &ee) && ee.Status == 75 {
		return &LockedError{Holder: string(out)}
	}
	return err
}

// lockScript takes the lock with ln(1), making its folder first if needed;
// exit 75 prints the holder of a lock already there.
var lockScript = &remote.Script{Name: "lock", Brief: true, Body: `set -e
if [ ! -d "$1/.fleetdeploy" ]; then mkdir -p -- "$1/.fleetdeploy"; fi
if ! ln -s -- "$2" "$1/.fleetdeploy/lock" 2>/dev/null; then
  if [ -L "$1/.fleetdeploy/lock" ]; then printf '%s' "$(readlink "$1/.fleetdeploy/lock")"; exit 75; fi
  ln -s -- "$2" "$1/.fleetdeploy/lock"
fi`}

// Unlock removes the lock if this run holds it.
func Unlock(l Layout, holder string) Step {
	return Step{Name: "unlocking", Ops: []Op{{
		Desc: fmt.Sprintf("sftp remove %s (if it is ours)", remote.Quote(l.Lock())),
		Run: func(ctx context.Context, h remote.Host, _ io.Writer) error {
			who, err := h.Readlink(ctx, l.Lock())
			if isNotExist(err) {
				return nil
			}
			if err != nil {
				return err
			}
			if who != holder {
				return fmt.Errorf("the lock is now held by %s: leaving it", who)
			}
			return h.Remove(ctx, l.Lock())
		}}}}
}

// ForceUnlock removes any lock, for `fleetdeploy unlock`.
func ForceUnlock(l Layout) Step {
	return Step{Name: "unlocking", Ops: []Op{RemoveIfExists(l.Lock())}}
}

// Leftovers removes what a killed run left behind: staging folders, builds that
// were complete but never went live, and staged links.
func Leftovers(l Layout, st *State) (Step, bool) {
	var paths []string
	for _, s := range st.Staging {
		paths = append(paths, l.Staging(s))
	}
	for _, p := range st.Pending {
		if !IsRelease(p) || p == st.Latest {
			continue
		}
		if st.WentLive(p) {
			paths = append(paths, l.Pending(p)) // only the stale mark
			continue
		}
		paths = append(paths, l.Build(p), l.Marker(p), l.Marker(p)+".manifest", l.Marker(p)+".stat", l.Pending(p))
	}
	if len(paths) == 0 {
		return Step{}, false
	}
	paths = append(paths, l.Next(), l.Back())
	return Step{Name: "removing leftovers of an earlier run", Ops: []Op{
		Exec(remote.Cmd{Args: append([]string{"rm", "-rf", "--"}, paths...)}),
	}}, true
}

// prepareScript makes a build complete beside the live one, in one session:
//   - unpack the payload into a staging folder; in link mode its hard-link
//     entries make the unchanged files from the live build (one link(2) each);
//   - for a delta, make the new manifest from the old one in one awk pass
//     (merging the delta in path order), with the list of files reused; the
//     same pass checks, against one find over the new build (link mode: its
//     reused files are the live build's) or over the live build (copy mode),
//     that every reused file still has the size, mtime and inode recorded
//     when the live build was made, and in link mode writes the new build's
//     record from the same listing. Files changed or removed by hand since
//     end the script with exit 79 and their list on stdout, once the
//     manifest is known right: Prepare then sends them (Payload.Redo);
//   - check the files sent and the manifest against their BLAKE2b checksums
//     (one b2sum run); a manifest assembled from a corrupt old one ends the
//     script with exit 78, and Prepare sends the whole build;
//   - in copy mode (a hook could rewrite reused files in place), copy the
//     unchanged files from the live build;
//   - publish: write the marker, mark the build as never live, move it to builds/;
//   - replace shared paths by relative links into shared/;
//   - (other than in link mode) record every file's size, mtime and inode, so
//     that a later deploy notices files changed by hand.
//
// The never-live mark is made first and holds a token of this run: the step's
// undo removes the build only when the mark holds that token, so it can never
// remove a build this run did not make.
// It starts few processes (see remote's killOnHangup): 8 for a delta in link
// mode (mkdir, gzip, tar, find, awk, b2sum, rm, mv); see docs/REDEPLOY.md.
//
// Parameters: root id from how z manifest-b2 marker token n shared-spec*n skip-path*
var prepareScript = &remote.Script{Name: "prepare", Body: `set -e
root=$1; id=$2; from=$3; how=$4; z=$5; want=$6; marker=$7; token=$8; n=$9; shift 9
st="$root/.fleetdeploy/staging/$id"; b="$root/builds/$id"; m="$root/.fleetdeploy/builds/$id"; old="$root/.fleetdeploy/builds/$from"
case $id$from in *[!0-9-]*) echo "bad build ID $id or $from" >&2; exit 1;; esac
phase=unpacking
trap 'rc=$?; if [ "$rc" != 0 ]; then echo "(failed while $phase)" >&2; fi' EXIT
for d in "$root/builds" "$root/shared" "$root/.fleetdeploy/pending" "$root/.fleetdeploy/builds" "$root/.fleetdeploy/staging"; do
  if [ ! -d "$d" ]; then mkdir -p -- "$root/builds" "$root/shared" "$root/.fleetdeploy/pending" "$root/.fleetdeploy/builds" "$root/.fleetdeploy/staging"; break; fi
done
if [ -e "$b" ] || [ -L "$b" ] || [ -e "$root/.fleetdeploy/pending/$id" ]; then echo "builds/$id exists already" >&2; exit 17; fi
printf '%s\n' "$token" > "$root/.fleetdeploy/pending/$id"
: > "$st.shared"; : > "$st.skip"
i=0
for a in "$@"; do
  i=$((i + 1))
  if [ "$i" -le "$n" ]; then printf '%s\n' "${a#*:}" >> "$st.shared"; else printf '%s\n' "$a" >> "$st.skip"; fi
done
# Members land in the staging folder, the payload's manifest (or its delta)
# and checksums too. Reused files, in link mode, are hard-link entries naming
# their own path, mapped into the live build: one link(2) each. (Each
# --transform costs tar about 1 us per member: two only.)
# 64 KiB records (-b 128), a pipe's buffer, instead of 10 KiB: a fifth of the
# reads and of the writes into files.
# Modes as the payload has them: umask 0 rather than -p, which costs tar an
# open, a stat, a chmod and a close more per folder; the same result, since
# builds carry permission bits only (never setuid, setgid or sticky, which -p
# alone would keep). The staging folder itself is made first, under the
# usual umask.
xs="s,^,.fleetdeploy/staging/$id/,rSH"; xh="s,^,builds/$from/,RSh"
rec=0
if [ -n "$from" ] && [ "$how" = link ] && [ -f "$old.stat" ]; then rec=1; fi
mkdir -p -- "$st"
tarok=1
case $z in
gzip) if ! gzip -dc | (umask 0; exec tar -xf - -b 128 --no-same-owner -C "$root" --transform "$xs" --transform "$xh"); then tarok=; fi;;
# Paced: tar reports on stderr every 2 records (128 KiB) read, and the
# client keeps its input within a window of that (remote.Pace).
paced) if ! (umask 0; exec tar -xf - -b 128 --no-same-owner -C "$root" --transform "$xs" --transform "$xh" --checkpoint=2 --checkpoint-action=echo=fleetdeploy-read:%u); then tarok=; fi;;
*) if ! (umask 0; exec tar -xf - -b 128 --no-same-owner -C "$root" --transform "$xs" --transform "$xh"); then tarok=; fi;;
esac
# In link mode a failed tar may only mean that a reused file is gone from
# the live build: the check below tells, and the files go into the redo.
if [ -z "$tarok" ] && [ "$rec" = 0 ]; then exit 1; fi
cd -- "$st"
if [ -n "$from" ]; then
  phase="reusing unchanged files of builds/$from"
  # The files to check: the new build's in link mode (its reused files are
  # the live build's, linked), else the live build's, about to be copied.
  chk=0
  if [ "$rec" = 1 ]; then chk=1; ` + fileIdentities + ` > "../$id.found"
  elif [ -f "$old.stat" ]; then chk=1; (cd -- "$root/builds/$from" && ` + fileIdentities + `) > "../$id.found"; fi
  # One pass: the new manifest, merged from the old one and the delta (both
  # in path order; "" makes every comparison one of strings, never of
  # numbers), and the files reused; in link mode, the new build's record of
  # file identities, and the check that each reused file (a hard link of the
  # live build's) still has the identity recorded when that build was made:
  # the files changed or removed by hand since are printed, to be sent again.
  # Paths relative to the staging folder: awk would read escapes in the root's.
  LC_ALL=C awk -F'\t' -v skip="../$id.skip" -v delta=.fleetdeploy-manifest.delta -v man="../../builds/$id.manifest" \
    -v reuse="../$id.reuse" -v rec="$rec" -v chk="$chk" -v oldstat="../../builds/$from.stat" -v found="../$id.found" -v stat="../../builds/$id.stat" -v shared="../$id.shared" '
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
    }' "../../builds/$from.manifest" > "../$id.dirty"
  # A failed tar with nothing changed by hand is a failure of its own.
  if [ -z "$tarok" ] && [ ! -s "../$id.dirty" ]; then exit 1; fi
  mf="../../builds/$id.manifest"
else
  mf=.fleetdeploy-manifest
fi
phase="checking the files sent and the manifest"
printf '%s  %s\n' "$want" "$mf" >> .fleetdeploy-upload.b2sum
if ! out=$(b2sum -l 256 -c --quiet --strict .fleetdeploy-upload.b2sum 2>&1); then
  printf '%s\n' "$out" >&2
  case $out in
  *"$mf: FAILED"*)
    if [ -n "$from" ]; then echo "the build assembled here does not match the build's manifest (is the live build's manifest on this host corrupt?)" >&2; exit 78
    else echo "the manifest received does not match the build's" >&2; fi;;
  *) echo "uploaded files do not match their checksums: the upload is corrupt" >&2;;
  esac
  exit 1
fi
# Files changed by hand, now that the manifest is known to be right (a
# corrupt one would make up the reused files): the client sends them.
if [ -n "$from" ] && [ -s "../$id.dirty" ]; then
  phase="checking the reused files against their record"
  echo "files of builds/$from changed or removed by hand since it was made: $(wc -l < "../$id.dirty")" >&2
  cat "../$id.dirty"; exit 79
fi
if [ -z "$from" ]; then mv -f -- .fleetdeploy-manifest "$m.manifest"; fi
if [ -n "$from" ] && [ "$how" = copy ]; then
  phase="copying unchanged files of builds/$from"
  cd -- "$root/builds/$from"
  xargs -d '\n' -r cp -p --reflink=auto --parents -t "$st" -- < "$st.reuse"
fi
rm -f -- "$st/.fleetdeploy-upload.b2sum" "$st/.fleetdeploy-manifest.delta" "$st.skip" "$st.shared" "$st.reuse" "$st.found" "$st.dirty"
phase=publishing
printf '%s' "$marker" > "$m"
mv -- "$st" "$b"
phase="linking shared paths"
i=0
for spec in "$@"; do
  i=$((i + 1)); if [ "$i" -gt "$n" ]; then break; fi
  kind=${spec%%:*}; p=${spec#*:}
  s="$root/shared/$p"
  up=../..; rest=$p
  while :; do case $rest in */*) up="$up/.."; rest=${rest#*/};; *) break;; esac; done
  if [ "$kind" = d ]; then
    if [ ! -e "$s" ] && [ ! -L "$s" ]; then
      mkdir -p -- "${s%/*}"
      if [ -d "$b/$p" ] && [ ! -L "$b/$p" ]; then mv -- "$b/$p" "$s"; else mkdir -p -- "$s"; fi
    fi
  elif [ ! -e "$s" ]; then
    echo "shared file $p is missing: create $s on this host (a shared file is never taken from the build)" >&2
    exit 3
  fi
  t="$b/$p"
  # rm and mkdir only when needed: usually the build holds nothing there
  # (the payload leaves out shared folders the host has) and the parent
  # exists, and each process costs about a millisecond on every host.
  if [ -e "$t" ] || [ -L "$t" ]; then rm -rf -- "$t"; fi
  if [ ! -d "${t%/*}" ]; then mkdir -p -- "${t%/*}"; fi
  ln -s -- "$up/shared/$p" "$t"
done
if [ "$rec" = 0 ]; then
  phase="recording file identities"
  cd -- "$b"
  ` + fileIdentities + ` > "$m.stat"
fi`}

// Payload is what a host receives of a build.
type Payload struct {
	Open func() (io.ReadCloser, error)
	From string   // live build whose unchanged files are reused; "" for a full upload
	Copy bool     // copy reused files (hooks may rewrite them in place) instead of hard-linking
	Skip []string // files of From not to reuse
	Gzip bool     // the payload is gzip-compressed
	// ManifestSum is the BLAKE2b-256 (hex) of the build's manifest, which the
	// manifest a host receives, or assembles from its old one and the
	// payload's delta, must match.
	ManifestSum string
	Sent        int   // files sent, for display
	Size        int64 // bytes sent, for display
	// Window, when not 0, paces an uncompressed payload: at most this many
	// bytes ahead of what the host's tar reports having read (see
	// remote.Pace). Prepare makes it at least 2 tarReports.
	Window int64
	// Redo, when set, gives the payload to send instead when the host finds
	// reused files changed or removed by hand since its live build was made
	// (dirty), or the live build's manifest corrupt (whole: send everything).
	// Prepare undoes the first attempt and sends that payload, once.
	Redo func(dirty []string, whole bool) (Payload, error)
}

func (p Payload) describe() string {
	if p.Open == nil {
		return "< payload (computed by the build)"
	}
	if p.From == "" {
		return fmt.Sprintf("< payload (all %d files)", p.Sent)
	}
	how := "hard links"
	if p.Copy {
		how = "copies"
	}
	return fmt.Sprintf("< payload (%d changed files; the rest reused from %s as %s)", p.Sent, p.From, how)
}

// Prepare makes the build complete on the host, beside the live one and
// without touching it (see prepareScript): upload, check, reuse of unchanged
// files, publishing as builds/<ID> marked never live, shared links, and the
// record of file identities. Its undo removes all of it.
func Prepare(l Layout, m Marker, p Payload, shared []inventory.SharedPath) Step {
	id := m.Release
	token := m.token()
	var specs []string
	for _, s := range shared {
		kind := "f"
		if s.Dir {
			kind = "d"
		}
		specs = append(specs, kind+":"+s.Path)
	}
	// The command for payload p.
	cmd := func(p Payload) remote.Cmd {
		how := "link"
		if p.Copy {
			how = "copy"
		}
		z := "plain"
		var pace *remote.Pace
		switch {
		case p.Gzip:
			z = "gzip"
		case p.Window > 0:
			z = "paced"
			pace = &remote.Pace{Window: max(p.Window, 2*tarReport), Read: tarRead}
		}
		args := []string{l.Root, id, p.From, how, z, p.ManifestSum, m.text(), token, strconv.Itoa(len(shared))}
		args = append(append(args, specs...), p.Skip...)
		return remote.Cmd{Script: prepareScript, Args: args, Pace: pace}
	}
	// Shown without what depends on the payload (unknown to a dry run, and
	// described by it) nor the skip list.
	display := remote.Cmd{Script: prepareScript, Args: append([]string{l.Root, id, m.text()}, specs...)}
	undo := remote.Cmd{Script: unprepareScript, Args: []string{l.Root, id, token}}
	return Step{
		Name: "uploading build " + id,
		Ops: []Op{{
			Desc: display.String() + " " + p.describe(),
			Run: func(ctx context.Context, h remote.Host, out io.Writer) error {
				stdout, err := send(ctx, h, cmd(p), p)
				var x *remote.ExitError
				if p.Redo == nil || !errors.As(err, &x) || (x.Status != exitDirty && x.Status != exitCorruptManifest) {
					return err
				}
				var dirty []string
				for _, line := range strings.Split(string(stdout), "\n") {
					if d, ok := strings.CutPrefix(line, "dirty\t"); ok {
						dirty = append(dirty, d)
					}
				}
				if _, uerr := h.Run(ctx, undo); uerr != nil {
					return errors.Join(err, uerr)
				}
				again, rerr := p.Redo(dirty, x.Status == exitCorruptManifest)
				if rerr != nil {
					return errors.Join(err, rerr)
				}
				if out != nil {
					fmt.Fprintf(out, "%s %s\n", display.String(), again.describe())
				}
				_, err = send(ctx, h, cmd(again), again)
				return err
			}}},
		Undo: []Op{Exec(undo)},
	}
}

// tarReport is how often prepareScript's tar reports its progress when
// paced: every 2 records of 64 KiB (tar -b 128 --checkpoint=2).
const tarReport = 2 * 128 * 512

// tarRead reads a progress line of prepareScript's tar ("tar:
// fleetdeploy-read:N", N records read): the bytes of payload read so far.
func tarRead(line []byte) (int64, bool) {
	_, n, ok := bytes.Cut(line, []byte("fleetdeploy-read:"))
	if !ok {
		return 0, false
	}
	records, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil {
		return 0, false
	}
	return records * 128 * 512, true
}

// Exit statuses of prepareScript that Prepare answers with another payload.
const (
	exitDirty           = 79 // reused files changed by hand: their paths on stdout
	exitCorruptManifest = 78 // the live build's manifest is corrupt
)

// send runs the prepare command with p's payload as its input.
func send(ctx context.Context, h remote.Host, c remote.Cmd, p Payload) ([]byte, error) {
	if p.Open == nil {
		return nil, errors.New("no payload")
	}
	r, err := p.Open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	c.Stdin = r
	return h.Run(ctx, c)
}

// unprepareScript undoes prepareScript, however far it got, and only what
// this run made (the never-live mark holds its token).
var unprepareScript = &remote.Script{Name: "unprepare", Brief: true, Body: `cd -- "$1" || exit 0
s=".fleetdeploy/staging/$2"
rm -rf -- "$s" "$s.skip" "$s.reuse" "$s.shared" "$s.found" "$s.dirty"
tok=
if [ -f ".fleetdeploy/pending/$2" ]; then IFS= read -r tok < ".fleetdeploy/pending/$2" || :; fi
if [ -n "$tok" ] && [ "$tok" = "$3" ]; then
  rm -rf -- "builds/$2" ".fleetdeploy/builds/$2" ".fleetdeploy/builds/$2.manifest" ".fleetdeploy/builds/$2.stat" ".fleetdeploy/pending/$2"
fi`}

// HookEnv is what a hook learns from its environment.
func HookEnv(root, release, previous string) []string {
	return []string{"FLEETDEPLOY_RELEASE=" + release, "FLEETDEPLOY_ROOT=" + root, "FLEETDEPLOY_PREVIOUS=" + previous}
}

// Hook runs a user's command with `sh -c` in the build's folder, bounded by its timeout.
func Hook(l Layout, phase string, id string, hk inventory.Hook, env []string) Step {
	c := remote.Cmd{Dir: l.Build(id), Env: env, Args: []string{"sh", "-c", hk.Run}}
	op := Exec(c)
	run := op.Run
	timeout := hk.Timeout
	if timeout <= 0 {
		timeout = inventory.DefaultHookTimeout
	}
	op.Run = func(ctx context.Context, h remote.Host, out io.Writer) error {
		hctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		err := run(hctx, h, out)
		if err != nil && hctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
			return fmt.Errorf("timed out after %s (killed on the host)", timeout)
		}
		return err
	}
	return Step{Name: fmt.Sprintf("running %s hook %q", phase, oneLine(hk.Run)), Ops: []Op{op}}
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

// Stage creates the symlinks the cutover needs: next -> the new build and
// back -> the build live now (when there is one).
func Stage(l Layout, id, current string) Step {
	links := []Op{Symlink(LinkTarget(id), l.Next())}
	if current != "" {
		links = append(links, Symlink(LinkTarget(current), l.Back()))
	}
	ops := []Op{Together(RemoveIfExists(l.Next()), RemoveIfExists(l.Back())), Together(links...)}
	return Step{Name: "staging cutover", Ops: ops, Undo: []Op{RemoveIfExists(l.Next()), RemoveIfExists(l.Back())}}
}

// Swap is the cutover: one rename of next over latest. Undo puts back the build
// live before (or removes latest when there was none).
func Swap(l Layout, hadCurrent bool) Step {
	undo := []Op{RemoveIfExists(l.Latest())}
	if hadCurrent {
		undo = []Op{Rename(l.Back(), l.Latest())}
	}
	return Step{Name: "switching latest", Ops: []Op{Rename(l.Next(), l.Latest())}, Undo: undo}
}

// Record appends the switch to the host's live history and clears the
// never-live mark and the staged links, through SFTP: no process starts on the
// host.
func Record(l Layout, e HistoryEntry) Step {
	line := e.line() + "\n"
	return Step{Name: "recording live history", Ops: []Op{Together(
		Op{Desc: fmt.Sprintf("sftp append %s %s", remote.Quote(l.History()), remote.Quote(strings.TrimSuffix(line, "\n"))),
			Run: func(ctx context.Context, h remote.Host, _ io.Writer) error {
				return h.AppendFile(ctx, l.History(), []byte(line))
			}},
		RemoveIfExists(l.Pending(e.Release)),
		RemoveIfExists(l.Back()),
		RemoveIfExists(l.Next()),
	)}}
}

// cleanupScript removes builds unless a process still uses them: its working
// or root directory, an open file or a mapped file is inside the build,
// compared by device and inode (paths differ through symlinks). Files shared
// by hard links with other builds do not count: removing this build's link
// leaves them whole. It prints NOTE lines about what it kept.
var cleanupScript = &remote.Script{Name: "cleanup", Brief: true, Body: `root=$1; shift
cd -- "$root" || exit 1
# Open files, working directories and mapped files of every process we may see,
# as "pid<TAB>dev:inode" (st_dev in decimal, as find's %D prints it).
procs=$(mktemp) || exit 1
trap 'rm -f "$procs" "$procs.ids"' EXIT
find -L /proc/[0-9]*/cwd /proc/[0-9]*/root -maxdepth 0 -printf '%H\t%D:%i\n' 2>/dev/null >> "$procs"
find -L /proc/[0-9]*/fd -mindepth 1 -maxdepth 1 -printf '%H\t%D:%i\n' 2>/dev/null >> "$procs"
grep -H '' /proc/[0-9]*/maps 2>/dev/null | awk '
  function hex(s,   i, c, v) { v = 0; s = tolower(s); for (i = 1; i <= length(s); i++) { c = index("0123456789abcdef", substr(s, i, 1)) - 1; v = v * 16 + c }; return v }
  { split($1, a, ":"); if ($5 == 0) next; split($4, d, ":"); printf "%s\t%d:%s\n", a[1], hex(d[1]) * 256 + hex(d[2]), $5 }' >> "$procs"
visible=0; total=0
for p in /proc/[0-9]*; do total=$((total + 1)); if [ -r "$p/maps" ] && [ -r "$p/fd" ]; then visible=$((visible + 1)); fi; done
for id in "$@"; do
  b="builds/$id"
  [ -d "$b" ] || continue
  { find "$b" -xdev -type d -printf '%D:%i\n'; find "$b" -xdev -type f -links 1 -printf '%D:%i\n'; } > "$procs.ids"
  who=$(awk -F'\t' -v ids="$procs.ids" 'BEGIN { while ((getline l < ids) > 0) k[l] = 1 } ($2 in k) { sub("/proc/", "", $1); sub("/.*", "", $1); print $1; exit }' "$procs")
  if [ -n "$who" ]; then
    cmd=$(tr '\0' ' ' < "/proc/$who/cmdline" 2>/dev/null | cut -c1-80)
    echo "NOTE: keeping $b: in use by process $who ($cmd); a later deploy removes it"
    continue
  fi
  rm -rf -- "$b" ".fleetdeploy/builds/$id" ".fleetdeploy/builds/$id.manifest" ".fleetdeploy/builds/$id.stat"
done
if [ "$visible" -lt "$total" ]; then
  echo "NOTE: the in-use check saw $visible of $total processes (others belong to other users or are hidden): builds used only by those may have been removed"
fi
exit 0`}

// Cleanup removes old builds and their markers, keeping any still in use.
func Cleanup(l Layout, ids []string) (Step, bool) {
	if len(ids) == 0 {
		return Step{}, false
	}
	return Step{Name: "removing old builds " + strings.Join(ids, ", "), Ops: []Op{
		Exec(remote.Cmd{Script: cleanupScript, Args: append([]string{l.Root}, ids...)}),
	}}, true
}

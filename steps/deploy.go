package steps

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/remote"
)

// Leftovers removes what a killed run left behind: staging folders, builds
// that were complete but never went live, stale marks, staged links and
// the trash (see scripts/sweep.sh). The live build is never among them.
func Leftovers(l Layout, st *State) (Step, bool) {
	var staging, builds, marks []string
	staging = append(staging, st.Staging...)
	for _, p := range st.Pending {
		if !IsRelease(p) || p == st.Latest {
			continue
		}
		if st.WentLive(p) {
			marks = append(marks, p) // only the stale mark
			continue
		}
		builds = append(builds, p)
	}
	if len(staging)+len(builds)+len(marks) == 0 {
		return Step{}, false
	}
	ps := list(list(list(params("root", l.Root), "staging", staging), "build", builds), "mark", marks)
	return Step{Name: "removing leftovers of an earlier run", Ops: []Op{
		Exec(remote.Cmd{Script: sweepScript, Params: ps}),
	}}, true
}

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

// input says what the payload holds, for people.
func (p Payload) input() string {
	if p.Open == nil {
		return "payload (computed by the build)"
	}
	if p.From == "" {
		return fmt.Sprintf("payload (all %d files)", p.Sent)
	}
	how := "hard links"
	if p.Copy {
		how = "copies"
	}
	return fmt.Sprintf("payload (%d changed files; the rest reused from %s as %s)", p.Sent, p.From, how)
}

// Prepare makes the build complete on the host, beside the live one and
// without touching it (see scripts/prepare.sh): upload, check, reuse of
// unchanged files, publishing as builds/<ID> marked never live, shared links,
// and the record of file identities. Its undo removes all of it.
func Prepare(l Layout, m Marker, p Payload, shared []inventory.SharedPath) Step {
	u := Upload{Layout: l, Marker: m, Payload: p, Shared: shared}
	return Step{
		Name: "uploading build " + m.Release,
		Ops:  []Op{u},
		Undo: []Op{Exec(u.undo())},
	}
}

// Upload runs the prepare script fed the payload. When the host finds files
// of its live build changed by hand (or its manifest corrupt), it undoes the
// attempt and sends, once, the payload Payload.Redo gives.
type Upload struct {
	Layout  Layout
	Marker  Marker
	Payload Payload
	Shared  []inventory.SharedPath
}

// Calls is the prepare command with its payload.
func (u Upload) Calls() []remote.Call { return []remote.Call{remote.Run(u.cmd(u.Payload))} }

// Note says what a dirty host makes it do.
func (u Upload) Note() string {
	if u.Payload.Redo == nil {
		return ""
	}
	return "(files changed on the host by hand are sent again)"
}

// cmd is the prepare command for payload p. Before the build is made (a dry
// run), what depends on the payload is unknown, and left out.
func (u Upload) cmd(p Payload) remote.Cmd {
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
	ps := params("root", u.Layout.Root, "id", u.Marker.Release)
	if p.Open != nil {
		ps = append(ps, params("from", p.From, "how", how, "z", z, "want", p.ManifestSum)...)
	}
	ps = append(ps, params("marker", u.Marker.text(), "token", u.Marker.token())...)
	for _, s := range u.Shared {
		kind := "f"
		if s.Dir {
			kind = "d"
		}
		ps = append(ps, remote.Param{Name: "shared", Value: kind + ":" + s.Path})
	}
	ps = list(ps, "skip", p.Skip)
	return remote.Cmd{Script: prepareScript, Params: ps, Pace: pace, Input: p.input()}
}

// undo is the command that removes what this run's prepare made.
func (u Upload) undo() remote.Cmd {
	return remote.Cmd{Script: unprepareScript, Params: params("root", u.Layout.Root, "id", u.Marker.Release, "token", u.Marker.token())}
}

// Run sends the payload, and the redo when the host asks for it.
func (u Upload) Run(ctx context.Context, h remote.Host, out io.Writer) error {
	p := u.Payload
	stdout, err := send(ctx, h, u.cmd(p), p)
	var x *remote.ExitError
	if p.Redo == nil || !errors.As(err, &x) || (x.Status != exitDirty && x.Status != exitCorrupt) {
		return err
	}
	var dirty []string
	for _, line := range strings.Split(string(stdout), "\n") {
		if d, ok := strings.CutPrefix(line, "dirty\t"); ok {
			dirty = append(dirty, d)
		}
	}
	slices.Sort(dirty) // a file can be found by its record and by its hash
	dirty = slices.Compact(dirty)
	if _, uerr := h.Run(ctx, u.undo()); uerr != nil {
		return errors.Join(err, uerr)
	}
	again, rerr := p.Redo(dirty, x.Status == exitCorrupt)
	if rerr != nil {
		return errors.Join(err, rerr)
	}
	c := u.cmd(again)
	if out != nil {
		fmt.Fprintf(out, "%s\n", c.String())
	}
	_, err = send(ctx, h, c, again)
	return err
}

// tarReport is how often the prepare script's tar reports its progress when
// paced: every 2 records of 64 KiB (tar -b 128 --checkpoint=2).
const tarReport = 2 * 128 * 512

// tarRead reads a progress line of the prepare script's tar ("tar:
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

// HookEnv is what a hook learns from its environment.
func HookEnv(root, release, previous string) []string {
	return []string{"FLEETDEPLOY_RELEASE=" + release, "FLEETDEPLOY_ROOT=" + root, "FLEETDEPLOY_PREVIOUS=" + previous}
}

// Hook runs a user's command with `sh -c` in the build's folder, bounded by its timeout.
func Hook(l Layout, phase string, id string, hk inventory.Hook, env []string) Step {
	timeout := hk.Timeout
	if timeout <= 0 {
		timeout = inventory.DefaultHookTimeout
	}
	op := HookRun{Cmd: remote.Cmd{Dir: l.Build(id), Env: env, Args: []string{"sh", "-c", hk.Run}}, Timeout: timeout}
	return Step{Name: fmt.Sprintf("running %s hook %q", phase, oneLine(hk.Run)), Ops: []Op{op}}
}

// HookRun is a user's command, killed on the host when Timeout runs out.
type HookRun struct {
	Cmd     remote.Cmd
	Timeout time.Duration
}

// Calls is the command.
func (k HookRun) Calls() []remote.Call { return []remote.Call{remote.Run(k.Cmd)} }

// Run runs the command within its timeout, its output going to out.
func (k HookRun) Run(ctx context.Context, h remote.Host, out io.Writer) error {
	hctx, cancel := context.WithTimeout(ctx, k.Timeout)
	defer cancel()
	err := Exec(k.Cmd).Run(hctx, h, out)
	if err != nil && hctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
		return fmt.Errorf("timed out after %s (killed on the host)", k.Timeout)
	}
	return err
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

// Stage creates the symlinks the cutover needs: next -> the new build and
// back -> the build live now (when there is one); and checks, in the same
// round trip, that the lock is still this run's.
func Stage(l Layout, id, current string, ls *Lease) Step {
	links := []Op{Symlink(LinkTarget(id), l.Next())}
	if current != "" {
		links = append(links, Symlink(LinkTarget(current), l.Back()))
	}
	links = append(links, HoldsLock{Lease: ls})
	ops := []Op{Together{RemoveIfExists(l.Next()), RemoveIfExists(l.Back())}, Together(links)}
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
	return Step{Name: "recording live history", Ops: []Op{Together{
		Append(l.History(), e.line()+"\n"),
		RemoveIfExists(l.Pending(e.Release)),
		RemoveIfExists(l.Back()),
		RemoveIfExists(l.Next()),
	}}}
}

// Cleanup removes old builds and their markers, keeping any still in use,
// and seals the record of live's files again (see scripts/cleanup.sh).
func Cleanup(l Layout, live string, ids []string) (Step, bool) {
	if len(ids) == 0 {
		return Step{}, false
	}
	return Step{Name: "removing old builds " + strings.Join(ids, ", "), Ops: []Op{
		Exec(remote.Cmd{Script: cleanupScript, Params: list(params("root", l.Root, "live", live), "id", ids)}),
	}}, true
}

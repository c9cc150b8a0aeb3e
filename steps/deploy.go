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

// PrepareAndStage is Prepare, then Stage in the same command: a round trip
// less, for a host with no hook to run in between.
func PrepareAndStage(l Layout, m Marker, p Payload, shared []inventory.SharedPath, current string, ls *Lease) Step {
	s := Prepare(l, m, p, shared)
	u := s.Ops[0].(Upload)
	u.Stage = &Staging{Current: current, Lease: ls}
	s.Name += " and staging cutover"
	s.Ops[0] = u
	s.Undo = append(s.Undo, RemoveIfExists(l.Next()), RemoveIfExists(l.Back()))
	return s
}

// Upload runs the prepare script fed the payload. When the host finds files
// of its live build changed by hand (or its manifest corrupt), it undoes the
// attempt and sends, once, the payload Payload.Redo gives.
type Upload struct {
	Layout  Layout
	Marker  Marker
	Payload Payload
	Shared  []inventory.SharedPath
	Stage   *Staging // when set, the script stages the cutover too
}

// Staging is what staging the cutover needs: the build live now (the way
// back; "" for none) and the lock, checked to be still this run's.
type Staging struct {
	Current string
	Lease   *Lease
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
	case p.Window > 0 && !inline(p):
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
	if u.Stage != nil {
		ps = append(ps, params("stage", "1", "back", u.Stage.Current, "lock", u.Stage.Lease.Holder.String())...)
	}
	return remote.Cmd{Script: prepareScript, Params: ps, Pace: pace, Input: p.input()}
}

// undo is the command that removes what this run's prepare made.
func (u Upload) undo() remote.Cmd {
	return remote.Cmd{Script: unprepareScript, Params: params("root", u.Layout.Root, "id", u.Marker.Release, "token", u.Marker.token())}
}

// Run sends the payload, and the redo when the host asks for it; when it
// stages too, a lock found not to be this run's is the error.
func (u Upload) Run(ctx context.Context, h remote.Host, out io.Writer) error {
	stdout, err := u.run(ctx, h, out)
	if u.Stage == nil {
		return err
	}
	var x *remote.ExitError
	if errors.As(err, &x) && x.Status == exitLockLost {
		held, _ := lockLine(stdout)
		return lostLock(held)
	}
	if err == nil {
		return u.Stage.Lease.holds(u.Stage.Lease.Holder.String(), nil) // the refresher's word
	}
	return err
}

// lockLine finds a script's "lock<TAB>TEXT" line in its output.
func lockLine(stdout []byte) (string, bool) {
	for _, line := range strings.Split(string(stdout), "\n") {
		if text, ok := strings.CutPrefix(line, "lock\t"); ok {
			return text, true
		}
	}
	return "", false
}

func (u Upload) run(ctx context.Context, h remote.Host, out io.Writer) ([]byte, error) {
	p := u.Payload
	stdout, err := send(ctx, h, u.cmd(p), p)
	var x *remote.ExitError
	if p.Redo == nil || !errors.As(err, &x) || (x.Status != exitDirty && x.Status != exitCorrupt) {
		return stdout, err
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
		return nil, errors.Join(err, uerr)
	}
	again, rerr := p.Redo(dirty, x.Status == exitCorrupt)
	if rerr != nil {
		return nil, errors.Join(err, rerr)
	}
	c := u.cmd(again)
	if out != nil {
		fmt.Fprintf(out, "%s\n", c.String())
	}
	return send(ctx, h, c, again)
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

// inlineMax bounds a payload sent in the command itself (remote.Cmd.Inline;
// base64 makes it a third larger): the prepare script takes some 20 KiB of
// the 128 KiB a command may have.
const inlineMax = 48 << 10

// inline reports whether payload p goes in the command itself: a small one
// (a redeploy's few files), which then costs no round trip of its own.
func inline(p Payload) bool { return p.Open != nil && p.Size > 0 && p.Size <= inlineMax }

// send runs the prepare command with p's payload as its input: in the
// command itself when small (inline), else on stdin.
func send(ctx context.Context, h remote.Host, c remote.Cmd, p Payload) ([]byte, error) {
	if p.Open == nil {
		return nil, errors.New("no payload")
	}
	r, err := p.Open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if inline(p) {
		data, err := io.ReadAll(io.LimitReader(r, inlineMax+1))
		if err != nil {
			return nil, err
		}
		if len(data) > inlineMax {
			return nil, fmt.Errorf("the payload is larger than its size said (%d bytes)", p.Size)
		}
		c.Inline = data
		return h.Run(ctx, c)
	}
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
// back -> the build live now (when there is one), replacing any left there;
// and checks that the lock is still this run's: all in one round trip.
func Stage(l Layout, id, current string, ls *Lease) Step {
	return Step{Name: "staging cutover", Ops: []Op{staging{l: l, id: id, current: current, lease: ls}},
		Undo: []Op{RemoveIfExists(l.Next()), RemoveIfExists(l.Back())}}
}

// staging sends its requests in one pipeline, in order: the removes of
// what a killed run may have left, then the new links, then the lock read.
type staging struct {
	l           Layout
	id, current string
	lease       *Lease
}

// Calls are the removes and the links.
func (s staging) Calls() []remote.Call {
	calls := []remote.Call{
		{Method: remote.MethodRemove, Path: s.l.Next()},
		{Method: remote.MethodRemove, Path: s.l.Back()},
		{Method: remote.MethodSymlink, Path: s.l.Next(), Arg: LinkTarget(s.id)},
	}
	if s.current != "" {
		calls = append(calls, remote.Call{Method: remote.MethodSymlink, Path: s.l.Back(), Arg: LinkTarget(s.current)})
	}
	return calls
}

// Note says what else it does.
func (staging) Note() string {
	return "(in order, in one round trip; then checks that the lock is still this run's)"
}

// Run sends the requests and reads their answers.
func (s staging) Run(ctx context.Context, h remote.Host, _ io.Writer) error {
	p := remote.NewPipeline(h)
	var results []*remote.Result[[]byte]
	for _, c := range s.Calls() {
		results = append(results, p.Do(c))
	}
	lock := p.Readlink(s.l.Lock())
	if err := p.Wait(ctx); err != nil {
		return err
	}
	var errs []error
	for i, r := range results {
		if err := r.Err(); err != nil && !(i < 2 && isNotExist(err)) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	who, err := lock.Get()
	return s.lease.holds(who, err)
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

// Finishing is what a run does last on a host, in one command (see
// scripts/finish.sh), one round trip where it took five: record the switch
// in the live history, remove the staged links, remove old builds, give the
// lock back. Each part is tried even when one before it failed, the lock
// last, so that a run that could not write its history still unlocks.
type Finishing struct {
	Record  *HistoryEntry // appended to the live history, its never-live mark removed; nil: none
	Unstage []string      // staged links to remove: "next", "back"
	Live    string        // the live build (its record of files is sealed again after a removal)
	Remove  []string      // old builds to remove
	Lease   *Lease        // the lock given back, when it still names this run; nil: kept
}

// Finish is the step that does f.
func Finish(l Layout, f Finishing) Step {
	var what []string
	ps := params("root", l.Root)
	if f.Record != nil {
		what = append(what, "recording live history")
		ps = append(ps, params("record", f.Record.line(), "unmark", f.Record.Release)...)
	}
	if f.Record == nil && len(f.Unstage) > 0 {
		what = append(what, "removing the way back")
		if !slices.Equal(f.Unstage, []string{"back"}) {
			what[len(what)-1] = "removing the staged links"
		}
	}
	ps = list(ps, "unstage", f.Unstage)
	if len(f.Remove) > 0 {
		what = append(what, "removing old builds "+strings.Join(f.Remove, ", "))
		ps = list(append(ps, params("live", f.Live)...), "id", f.Remove)
	}
	if f.Lease != nil {
		what = append(what, "unlocking")
		ps = append(ps, params("lock", f.Lease.Holder.String())...)
	}
	if len(what) == 0 {
		what = append(what, "finishing")
	}
	return Step{Name: strings.Join(what, ", "), Ops: []Op{finishOp{cmd: remote.Cmd{Script: finishScript, Params: ps}, lease: f.Lease}}}
}

// finishOp runs the finish script, once the lease's refresher is stopped (it
// could put the lock back after the script removed it).
type finishOp struct {
	cmd   remote.Cmd
	lease *Lease
}

// Calls is the command.
func (f finishOp) Calls() []remote.Call { return []remote.Call{remote.Run(f.cmd)} }

// Run stops the refresher, runs the script and tells its NOTE lines.
func (f finishOp) Run(ctx context.Context, h remote.Host, out io.Writer) error {
	if f.lease != nil {
		f.lease.halt()
	}
	stdout, err := h.Run(ctx, f.cmd)
	var ee *remote.ExitError
	if held, ok := lockLine(stdout); ok && errors.As(err, &ee) && ee.Status == exitLockLost {
		err = fmt.Errorf("the lock is now held by %s: leaving it", remote.Sanitize(ParseHolder(held).Who()))
	}
	for _, line := range strings.SplitAfter(string(stdout), "\n") {
		if out != nil && line != "" && !strings.HasPrefix(line, "lock\t") {
			io.WriteString(out, line)
		}
	}
	return err
}

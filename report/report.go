// Package report shows a run to people and to programs: one Reporter takes
// the run's own stages (building, connecting), the scheduler's events and
// the bytes sent to each host, and renders them as a live view redrawn in
// place on a terminal, as plain lines elsewhere, and as a stream of JSON
// events (docs/EVENTS.md), with a summary table at the end.
package report

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetdeploy/fleetdeploy/plan"
	"github.com/fleetdeploy/fleetdeploy/remote"
)

// Level says how much of a run people are shown.
type Level int

const (
	// Quiet shows errors and the result line only.
	Quiet Level = iota - 1
	// Normal shows progress, hook output, notes, the summary.
	Normal
	// Verbose adds every step and remote operation as it runs.
	Verbose
)

// Options say where a run is shown and how.
type Options struct {
	// Human receives the view for people (nil: none); Live when it is a
	// terminal, where progress is redrawn in place.
	Human io.Writer
	Live  bool
	// JSON receives one event per line (nil: no event stream).
	JSON  io.Writer
	Level Level
	// Width is the terminal's width in columns (nil: 80), read at each redraw.
	Width func() int
	Now   func() time.Time
	// Refresh is how often a live view is redrawn (0: 100 ms); Heartbeat how
	// long a plain view may stay silent before a progress line (0: 10 s;
	// negative: never). Tests set both negative and draw frames themselves.
	Refresh, Heartbeat time.Duration
	// Slowest is how many working hosts a live view lists (0: 8).
	Slowest int
	// Version is fleetdeploy's, for the start event.
	Version string
}

// Reporter is the one place a run's progress goes. It is safe for
// concurrent use; Result ends it.
type Reporter struct {
	o     Options
	start time.Time

	mu       sync.Mutex
	command  string
	env      string
	action   string
	release  string
	started  bool // Start was called
	deploys  bool // the command is up or rollback: -q hides its chatter
	hosts    []*host
	byName   map[string]*host
	stages   []*stage
	phase    string // the scheduler's current phase, "" before and after
	phaseAt  time.Time
	phases   []timed     // the fleet's phases as they ended
	swaps    []plan.Swap // the cutover's
	switched []plan.Swap // the Switch phase under way: the cutover, or a switch back
	switches int         // Switch phases seen
	ran      bool        // the scheduler started
	inUse    []inUse
	pending  []string // lines to print above a live view
	drawn    int      // lines of the live view on screen
	samples  []sample
	spin     int
	last     time.Time // a line was last written (plain view)
	finished bool

	stop chan struct{}
	done chan struct{}
}

// host is what the view knows of one host.
type host struct {
	name      string
	connected bool
	phase     string // current phase ("" when none)
	since     time.Time
	step      string
	stepAt    time.Time
	total     int64 // payload bytes planned
	files     int
	sent      atomic.Int64
	phases    []timed // phases as they ended
	upload    time.Duration
	hooks     time.Duration
	swap      *plan.Swap
	failed    string // the step that failed
	undone    bool
	reverted  bool
	tails     map[string]*tail // stream -> the current step's last lines
}

type timed struct {
	name   string
	d      time.Duration
	policy plan.Policy // of a fleet's phase
}

type stage struct {
	name, detail string
	at           time.Time
	end          time.Time
	running      bool
}

type sample struct {
	at   time.Time
	sent int64
}

type inUse struct{ host, text string }

// New starts a reporter; a live view starts redrawing at once.
func New(o Options) *Reporter {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Width == nil {
		o.Width = func() int { return 80 }
	}
	if o.Refresh == 0 {
		o.Refresh = 100 * time.Millisecond
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = 10 * time.Second
	}
	if o.Slowest <= 0 {
		o.Slowest = 8
	}
	r := &Reporter{o: o, start: o.Now(), byName: map[string]*host{}}
	r.last = r.start
	every := o.Refresh
	if !o.Live {
		every = o.Heartbeat / 2
	}
	if o.Human != nil && every > 0 && (o.Live || o.Heartbeat > 0) {
		if o.Live {
			r.redraw() // at once: a run is never silent
		}
		r.stop, r.done = make(chan struct{}), make(chan struct{})
		go r.tick(every, r.stop, r.done)
	}
	return r
}

// tick redraws a live view, or writes a plain view's heartbeat.
func (r *Reporter) tick(every time.Duration, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		r.mu.Lock()
		if r.o.Live {
			r.redraw()
		} else if now := r.o.Now(); now.Sub(r.last) >= r.o.Heartbeat && !r.finished {
			r.write(fmt.Sprintf("... %s %s", clockTime(now.Sub(r.start)), r.progressLine(now)))
		}
		r.mu.Unlock()
	}
}

// Start says what this run is: a command on an environment's hosts (in
// inventory order).
func (r *Reporter) Start(command, env string, hosts []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.command, r.env, r.started = command, env, true
	r.deploys = command == "up" || command == "rollback"
	for _, h := range hosts {
		r.host(h)
	}
	r.emit(startEvent{header: r.header("start"), Command: command, Environment: env, Hosts: nonNil(hosts), Version: r.o.Version})
}

// Named says which command runs, when Start could not (the inventory
// could not be read): the result names it.
func (r *Reporter) Named(command string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.command == "" {
		r.command = command
	}
}

// host finds or adds a host.
func (r *Reporter) host(name string) *host {
	h, ok := r.byName[name]
	if !ok {
		h = &host{name: name}
		r.byName[name] = h
		r.hosts = append(r.hosts, h)
	}
	return h
}

// Stage says one of the run's own steps began: "building", "connecting",
// "making payloads". detail is shown with it ("./app").
func (r *Reporter) Stage(name, detail string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.o.Now()
	r.stages = append(r.stages, &stage{name: name, detail: detail, at: now, running: true})
	r.emit(stageEvent{header: r.header("stage_start"), Stage: name})
	if !r.chatty() {
		return
	}
	switch name {
	case StageConnecting:
		r.human(Normal, fmt.Sprintf("connecting to %s", count(len(r.hosts), "host", "hosts")))
	case StageBuilding:
		r.human(Normal, strings.TrimSpace(name+" "+detail))
	default:
		r.human(Verbose, strings.TrimSpace(name+" "+detail))
	}
}

// chatty says whether the run's stages are told in lines: for up, rollback
// and plan; status and unlock only answer.
func (r *Reporter) chatty() bool { return r.deploys || r.command == "plan" }

// The run's own stages.
const (
	StageBuilding   = "building"
	StageConnecting = "connecting"
	StageMaking     = "making payloads"
)

// Built is what a build made, for StageDone.
type Built struct {
	Files    int
	Bytes    int64
	Checksum string
	From     string // what it was made from: the source folder, a git commit, an artifact's sha256
}

// StageDone says a stage ended; built, for "building", says what it made.
func (r *Reporter) StageDone(name string, err error, built *Built) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.o.Now()
	var took time.Duration
	for _, s := range slices.Backward(r.stages) {
		if s.name == name && s.running {
			s.running, s.end = false, now
			took = now.Sub(s.at)
			break
		}
	}
	e := stageEvent{header: r.header("stage_end"), Stage: name, DurationMS: msp(took), OK: ptr(err == nil), Error: errText(err)}
	if built != nil {
		e.Files, e.Bytes, e.Checksum, e.From = &built.Files, &built.Bytes, built.Checksum, built.From
	}
	r.emit(e)
	if err != nil || !r.chatty() {
		return // an error ends the run, and says so itself
	}
	switch {
	case name == StageBuilding && built != nil:
		from := ""
		if built.From != "" {
			from = ", from " + built.From
		}
		r.human(Normal, fmt.Sprintf("built %d files, %s in %s (%s)%s", built.Files, Bytes(built.Bytes), Seconds(took), short(built.Checksum), from))
	case name == StageConnecting:
		n := 0
		for _, h := range r.hosts {
			if h.connected {
				n++
			}
		}
		r.human(Normal, fmt.Sprintf("connected to %d hosts in %s", n, Seconds(took)))
	default:
		r.human(Verbose, fmt.Sprintf("%s: done in %s", name, Seconds(took)))
	}
}

// Connected says a host was reached (or not: err).
func (r *Reporter) Connected(name string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.host(name)
	h.connected = err == nil
	var took time.Duration
	for _, s := range slices.Backward(r.stages) {
		if s.name == StageConnecting {
			took = r.o.Now().Sub(s.at)
			break
		}
	}
	r.emit(connectedEvent{header: r.header("connected"), Host: name, OK: err == nil, Error: errText(err), DurationMS: ms(took)})
	if err == nil {
		r.human(Verbose, fmt.Sprintf("%s connected (%s)", name, Seconds(took)))
	}
}

// Planned is what a run will do, known once the hosts were read and the
// payloads decided.
type Planned struct {
	Action  string // "deploy", "rollback"
	App     string
	Release string
	Hosts   []PlannedHost // inventory order
}

// PlannedHost is what one host is sent.
type PlannedHost struct {
	Host string
	Live string // the host's live build, "" for none
	// Files and Bytes are what the host is sent; Known is false until the
	// build is made (a dry run of a build with commands).
	Files int
	Bytes int64
	Known bool
	From  string // the live build whose other files are reused; "" for a whole build
	Gzip  bool
}

// Planned says what the run is about to do.
func (r *Reporter) Planned(p Planned) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.action, r.release = p.Action, p.Release
	e := plannedEvent{header: r.header("planned"), Action: p.Action, Release: p.Release, Hosts: []plannedHostJSON{}}
	for _, ph := range p.Hosts {
		h := r.host(ph.Host)
		h.total, h.files = ph.Bytes, ph.Files
		whole := ph.From == "" && (ph.Files > 0 || !ph.Known)
		j := plannedHostJSON{Host: ph.Host, Live: strp(ph.Live), Whole: whole, Gzip: ph.Gzip, From: strp(ph.From)}
		if ph.Known {
			j.Files, j.Bytes = &ph.Files, &ph.Bytes
		}
		e.Hosts = append(e.Hosts, j)
	}
	r.emit(e)
	if r.command == "plan" {
		return // a dry run's view says it all, per host
	}
	what := p.Action + " " + strings.TrimSpace(p.App+" "+p.Release)
	r.human(Normal, fmt.Sprintf("%s to %s: %s", what, r.env, count(len(p.Hosts), "host", "hosts")))
	for _, g := range groupShipments(p.Hosts) {
		r.human(Normal, "  "+g)
	}
}

// groupShipments says what the hosts are sent, one line per distinct
// shipment: at 200 hosts, a line or two rather than 200.
func groupShipments(hosts []PlannedHost) []string {
	type key struct {
		files int
		bytes int64
		known bool
		from  string
		gzip  bool
	}
	var order []key
	by := map[key][]string{}
	for _, h := range hosts {
		if h.Files == 0 && h.Bytes == 0 && h.Known {
			continue // a rollback sends nothing
		}
		k := key{h.Files, h.Bytes, h.Known, h.From, h.Gzip}
		if _, ok := by[k]; !ok {
			order = append(order, k)
		}
		by[k] = append(by[k], h.Host)
	}
	var out []string
	for _, k := range order {
		what := "the whole build"
		if k.from != "" {
			what = "the files that changed"
		}
		size := "size unknown until built"
		if k.known {
			size = fmt.Sprintf("%d files, %s", k.files, Bytes(k.bytes))
			if k.gzip {
				size += " gzipped"
			}
		}
		line := fmt.Sprintf("sending %s (%s) to %s", what, size, names(by[k], 3))
		if k.known {
			// "sending N files" is what scripts and people grep for.
			line = fmt.Sprintf("sending %s to %s", size, names(by[k], 3))
		}
		if k.from != "" {
			line += "; the rest reused from " + k.from
		}
		out = append(out, line)
	}
	return out
}

// CountSent wraps a payload's opener so that what is read from it, as it
// is sent to the host, counts as that host's bytes sent.
func (r *Reporter) CountSent(name string, open func() (io.ReadCloser, error)) func() (io.ReadCloser, error) {
	if open == nil {
		return nil
	}
	r.mu.Lock()
	h := r.host(name)
	r.mu.Unlock()
	return func() (io.ReadCloser, error) {
		rc, err := open()
		if err != nil {
			return nil, err
		}
		return &counting{ReadCloser: rc, n: &h.sent}, nil
	}
}

type counting struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *counting) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// HostStatus is one host's row of `status`, for the JSON stream (people
// get the command's table, as a Message): unreachable hosts have ok false
// and their error; lock is the lock's description, null when unlocked.
func (r *Reporter) HostStatus(h plan.HostStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := hostStatusEvent{header: r.header("host_status"), Host: h.Host, OK: h.Unreachable == nil,
		Builds: nonNil(h.Builds), Problems: nonNil(h.Problems), Notes: nonNil(h.Notes)}
	if h.Unreachable != nil {
		e.Error = errText(h.Unreachable)
	} else {
		e.Live, e.Source, e.Previous = strp(h.Live), strp(h.Source), strp(h.Previous)
	}
	if h.Lock != nil {
		e.Lock = strp(h.Lock.Describe())
	}
	r.emit(e)
}

// Message is free text for people (a command's own lines): shown as it is,
// and as a message event in the JSON stream. During a run, -q hides it.
func (r *Reporter) Message(text string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	text = strings.TrimSuffix(text, "\n")
	for _, line := range strings.Split(text, "\n") {
		r.emit(messageEvent{header: r.header("message"), Text: line})
	}
	level := Normal
	if !r.deploys {
		level = Quiet // not a deploy: what a command prints is its answer
	}
	r.human(level, text)
}

// Notice is something people must see whatever the level (a host key
// recorded): a line of their view and a message event. It reports whether
// people's view showed it (with --json off a terminal, there is none).
func (r *Reporter) Notice(text string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.emit(messageEvent{header: r.header("message"), Text: text})
	if r.o.Human == nil || r.finished {
		return false
	}
	r.human(Quiet, text)
	return true
}

// Answer is a command's answer (a dry run's view): shown at every level,
// and as message events in the JSON stream.
func (r *Reporter) Answer(text string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	text = strings.TrimSuffix(text, "\n")
	for _, line := range strings.Split(text, "\n") {
		r.emit(messageEvent{header: r.header("message"), Text: line})
	}
	r.human(Quiet, text)
}

// Event renders one of the scheduler's events.
func (r *Reporter) Event(e plan.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ran = true
	var h *host
	if e.Host != "" {
		h = r.host(e.Host)
	}
	switch e.Kind {
	case plan.PhaseStarted:
		r.phaseStarted(e, h)
	case plan.PhaseDone:
		r.phaseDone(e, h)
	case plan.StepStarted:
		h.step, h.stepAt = e.Step, e.Time
		h.tails = nil
		r.emit(stepEvent{header: r.headerAt("step_start", e.Time), Phase: e.Phase, Host: e.Host, Step: e.Step})
		r.human(Verbose, fmt.Sprintf("%s %s  %s", r.clock(e.Time), e.Host, e.Step))
	case plan.OpStarted:
		if r.o.Level >= Verbose {
			r.emit(opEvent{header: r.headerAt("op", e.Time), Phase: e.Phase, Host: e.Host, Step: e.Step, Op: e.Op})
		}
		r.human(Verbose, fmt.Sprintf("%s %s    %s", r.clock(e.Time), e.Host, plan.Indent(e.Op)))
	case plan.Output:
		r.output(e, h)
	case plan.StepDone, plan.StepFailed:
		r.stepDone(e, h)
	case plan.Undoing:
		if e.Phase != plan.UndoPhase {
			h.reverted = true // a switched host switched back
		}
		r.emit(undoEvent{header: r.headerAt("undo", e.Time), Host: e.Host, Step: e.Step})
		r.human(Verbose, fmt.Sprintf("  %s  undoing %s", e.Host, e.Step))
	case plan.Swapped:
		if e.Swap != nil {
			s := *e.Swap // the scheduler's own stays its own
			r.switched = append(r.switched, s)
			if r.switches <= 1 {
				r.swaps = append(r.swaps, s)
				h.swap = &s
			}
		}
		if e.Err != nil {
			state := "FAILED"
			if e.Swap != nil && e.Swap.Unknown {
				state = "UNKNOWN (did it switch? `fleetdeploy status` tells)"
			}
			r.human(Quiet, fmt.Sprintf("%s %s %s: %s", e.Host, e.Step, state, remote.SanitizeLines(e.Err.Error())))
		}
	case plan.BarrierReached:
		r.emit(barrierEvent{header: r.headerAt("barrier", e.Time)})
		r.human(Normal, "every host is prepared: switching them all at once")
	}
}

func (r *Reporter) phaseStarted(e plan.Event, h *host) {
	r.emit(phaseEvent{header: r.headerAt("phase_start", e.Time), Phase: e.Phase, Host: e.Host})
	if h == nil {
		r.phase, r.phaseAt = e.Phase, e.Time
		if e.Policy == plan.Switch {
			r.switched = nil
			r.switches++
		}
		if e.Policy != plan.Barrier && e.Policy != plan.Switch {
			r.human(Verbose, fmt.Sprintf("%s %s", r.clock(e.Time), e.Phase))
		}
		return
	}
	h.phase, h.since, h.step = e.Phase, e.Time, ""
}

func (r *Reporter) phaseDone(e plan.Event, h *host) {
	ev := phaseEvent{header: r.headerAt("phase_end", e.Time), Phase: e.Phase, Host: e.Host, DurationMS: msp(e.Duration), OK: ptr(e.Err == nil), Error: errText(e.Err)}
	if h == nil {
		r.emit(ev)
		r.phases = append(r.phases, timed{e.Phase, e.Duration, e.Policy})
		r.phase = ""
		switch {
		case e.Policy == plan.Switch:
			r.cutover(e.Phase)
		case e.Phase == plan.UndoPhase:
			r.human(Normal, fmt.Sprintf("undone in %s", Seconds(e.Duration)))
		case e.Policy == plan.Barrier:
		default:
			r.human(Verbose, fmt.Sprintf("%s %s done in %s", r.clock(e.Time), e.Phase, Seconds(e.Duration)))
		}
		return
	}
	ev.Bytes = ptr(h.sent.Load())
	r.emit(ev)
	h.phases = append(h.phases, timed{name: e.Phase, d: e.Duration})
	if e.Phase == plan.UndoPhase {
		h.undone = true
	}
	h.phase, h.step = "", ""
	if e.Err != nil || e.Policy == plan.Switch {
		return
	}
	// A plain view tells each host's preparation; the summary the rest.
	if e.Phase == "preparing" && !r.o.Live {
		line := fmt.Sprintf("%s prepared in %s", e.Host, Seconds(e.Duration))
		if n := h.sent.Load(); n > 0 {
			line += ", sent " + Bytes(n)
		}
		r.human(Normal, line)
		return
	}
	r.human(Verbose, fmt.Sprintf("%s %s: %s done in %s", r.clock(e.Time), e.Host, e.Phase, Seconds(e.Duration)))
}

// stepDone notes a step's time, and shows a failure with the last lines of
// what it printed.
func (r *Reporter) stepDone(e plan.Event, h *host) {
	stopped := e.Kind == plan.StepFailed && errors.Is(e.Err, context.Canceled)
	ev := stepEvent{header: r.headerAt("step_end", e.Time), Phase: e.Phase, Host: e.Host, Step: e.Step, DurationMS: msp(e.Duration), OK: ptr(e.Kind == plan.StepDone), Error: errText(e.Err)}
	if stopped {
		ev.Stopped = ptr(true)
	}
	r.emit(ev)
	switch {
	case strings.HasPrefix(e.Step, "uploading"):
		h.upload += e.Duration
	case strings.HasPrefix(e.Step, "running "):
		h.hooks += e.Duration
	}
	tails := h.tails
	h.tails = nil
	if e.Kind == plan.StepDone {
		return
	}
	if stopped {
		r.human(Verbose, fmt.Sprintf("%s %s: stopped (another host failed, or Ctrl-C)", e.Host, e.Step))
		return
	}
	h.failed = e.Step
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s failed after %s: %s", e.Host, e.Step, Seconds(e.Duration), remote.SanitizeLines(e.Err.Error()))
	for _, stream := range []string{"stdout", "stderr"} {
		t := tails[stream]
		if t == nil || len(t.lines) == 0 {
			continue
		}
		last := "last line"
		if len(t.lines) > 1 {
			last = fmt.Sprintf("last %d lines", len(t.lines))
		}
		fmt.Fprintf(&b, "\n%s | %s of its %s:", e.Host, last, stream)
		if t.dropped > 0 {
			fmt.Fprintf(&b, " (%d earlier not shown)", t.dropped)
		}
		for _, l := range t.lines {
			fmt.Fprintf(&b, "\n%s |   %s", e.Host, l)
		}
	}
	r.human(Quiet, b.String())
}

// inUsePrefix starts the cleanup script's note that it could not see every
// process (steps/scripts/cleanup.sh): said once per run, not per host.
const inUsePrefix = "the in-use check saw "

// output shows a line a host printed, prefixed with the host.
func (r *Reporter) output(e plan.Event, h *host) {
	r.emit(outputEvent{header: r.headerAt("output", e.Time), Phase: e.Phase, Host: e.Host, Step: e.Step, Stream: e.Stream, Text: e.Text})
	text := remote.Sanitize(redrawn(e.Text)) // what a host prints never reaches the terminal raw
	if h.tails == nil {
		h.tails = map[string]*tail{}
	}
	t := h.tails[e.Stream]
	if t == nil {
		t = &tail{}
		h.tails[e.Stream] = t
	}
	t.add(text)
	if note, ok := strings.CutPrefix(text, "NOTE: "); ok {
		if strings.HasPrefix(note, inUsePrefix) {
			r.inUse = append(r.inUse, inUse{e.Host, strings.TrimPrefix(note, inUsePrefix)})
			return
		}
		r.human(Normal, fmt.Sprintf("%s: %s", e.Host, note))
		return
	}
	r.human(Normal, fmt.Sprintf("%s | %s", e.Host, text))
}

// redrawn is what a terminal shows of a line that a progress meter redrew
// with carriage returns (composer, npm), or that ends in one (a script with
// CRLF line ends): its last part that is not empty.
func redrawn(s string) string {
	if !strings.Contains(s, "\r") {
		return s
	}
	parts := strings.Split(s, "\r")
	for i := len(parts) - 1; i >= 0; i-- {
		if parts[i] != "" {
			return parts[i]
		}
	}
	return ""
}

// tailLines is how many of a failing step's last lines per stream are shown.
const tailLines = 10

// tail keeps the last lines of a stream.
type tail struct {
	lines   []string
	dropped int
}

func (t *tail) add(line string) {
	if len(line) > 300 {
		line = line[:300] + "..."
	}
	if len(t.lines) == tailLines {
		t.lines = t.lines[1:]
		t.dropped++
	}
	t.lines = append(t.lines, line)
}

// cutover tells a Switch phase's skew (the cutover's, or a switch back's),
// and each host that did not switch.
func (r *Reporter) cutover(phase string) {
	swaps := r.switched
	if len(swaps) == 0 {
		return
	}
	mid, bound := plan.SwapSkew(swaps)
	first := swaps[0].Sent
	for _, s := range swaps {
		if s.Sent.Before(first) {
			first = s.Sent
		}
	}
	e := cutoverEvent{header: r.header("cutover"), Phase: phase, SkewMS: ms(mid), SkewBoundMS: ms(bound)}
	switched := 0
	for _, s := range swaps {
		j := swapJSON{Host: s.Host, State: swapState(s), SentMS: ms(s.Sent.Sub(first)), AckMS: ms(s.Ack.Sub(first)),
			AtMS: ms(midpoint(s).Sub(first)), RoundTripMS: ms(s.Ack.Sub(s.Sent)), Error: errText(s.Err)}
		if s.Err == nil {
			switched++
		}
		e.Hosts = append(e.Hosts, j)
	}
	r.emit(e)
	what := "cutover"
	if r.switches > 1 {
		what = "switch back"
	}
	r.human(Normal, fmt.Sprintf("switched %d of %s at once", switched, count(len(swaps), "host", "hosts")))
	r.human(Normal, fmt.Sprintf("%s skew %.2f ms (at most %.2f ms: last answer minus first request)", what, ms(mid), ms(bound)))
}

func swapState(s plan.Swap) string {
	switch {
	case s.Unknown:
		return "unknown"
	case s.Err != nil:
		return "failed"
	}
	return "switched"
}

func midpoint(s plan.Swap) time.Time { return s.Sent.Add(s.Ack.Sub(s.Sent) / 2) }

// Result ends the run: the summary table (when the hosts were worked on),
// the note of the in-use check once, the result line, and the result
// event, always the stream's last. The live view is gone after it.
func (r *Reporter) Result(code int, err error) {
	r.stopTicking()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished {
		return
	}
	now := r.o.Now()
	if r.ran && r.deploys {
		r.emit(r.summaryEvent(now))
		if r.o.Level >= Normal && r.o.Human != nil {
			r.human(Normal, "\n"+r.summaryTable(now))
		}
	}
	if len(r.inUse) > 0 {
		r.human(Normal, r.inUseNote())
	}
	if line := r.resultLine(code, now); r.started && line != "" {
		r.human(Quiet, line)
	}
	r.emit(resultEvent{header: r.header("result"), Command: r.command, Environment: r.env, Release: r.release,
		OK: code == 0, ExitCode: code, Error: errText(err), DurationMS: ms(now.Sub(r.start))})
	r.finished = true
	if r.o.Live {
		r.redraw()
		io.WriteString(r.o.Human, showCursor)
	}
}

// Idle says the command now waits on nothing the view shows (the sandbox
// serves until Ctrl-C): the progress view and the heartbeat stop, the live
// frame is erased, and what follows is written as plain lines.
func (r *Reporter) Idle() {
	r.stopTicking()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.o.Live {
		return
	}
	var b strings.Builder
	if r.drawn > 0 {
		fmt.Fprintf(&b, "\r\x1b[%dA\x1b[J", r.drawn)
	}
	for _, l := range r.pending {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	b.WriteString(showCursor)
	io.WriteString(r.o.Human, b.String())
	r.pending, r.drawn, r.o.Live = r.pending[:0], 0, false
}

// stopTicking ends the redraw loop, outside the lock it takes.
func (r *Reporter) stopTicking() {
	r.mu.Lock()
	stop := r.stop
	r.stop = nil
	r.mu.Unlock()
	if stop != nil {
		close(stop)
		<-r.done
	}
}

// resultLine says how the run ended, in one line.
func (r *Reporter) resultLine(code int, now time.Time) string {
	took := Seconds(now.Sub(r.start))
	n := count(len(r.hosts), "host", "hosts")
	if code == 0 {
		switch {
		case r.command == "up":
			return fmt.Sprintf("deployed %s to %s in %s", r.release, n, took)
		case r.command == "rollback":
			return fmt.Sprintf("rolled back %s to %s in %s", n, r.release, took)
		}
		return ""
	}
	if !r.deploys {
		return "" // the error says it all
	}
	return fmt.Sprintf("%s %s failed after %s (exit %d): the error is below", r.command, r.env, took, code)
}

// inUseNote is the cleanup's note that it could not see every process,
// said once for the whole fleet.
func (r *Reporter) inUseNote() string {
	slices.SortFunc(r.inUse, func(a, b inUse) int { return strings.Compare(a.host, b.host) })
	first := r.inUse[0]
	seen, _, _ := strings.Cut(first.text, " (")
	on := first.host
	if len(r.inUse) > 1 {
		on = fmt.Sprintf("%s and %d more hosts", first.host, len(r.inUse)-1)
	}
	return fmt.Sprintf("note: cleanup's in-use check saw only some processes on %s (%s: %s): builds used only by "+
		"processes of other users may have been removed (README: \"The in-use check\")", on, first.host, seen)
}

// human shows a line (or lines) to people at level or more.
func (r *Reporter) human(level Level, text string) {
	if r.o.Human == nil || r.o.Level < level || r.finished && level > Quiet {
		return
	}
	if r.o.Live {
		r.pending = append(r.pending, text)
		return
	}
	r.write(text)
}

// write writes a plain line now.
func (r *Reporter) write(text string) {
	r.last = r.o.Now()
	io.WriteString(r.o.Human, text+"\n")
}

// clock is an event's time since the run started, for verbose lines.
func (r *Reporter) clock(t time.Time) string {
	return fmt.Sprintf("%7.3fs", t.Sub(r.start).Seconds())
}

func errText(err error) *string {
	if err == nil {
		return nil
	}
	s := err.Error()
	return &s
}

func ptr[T any](v T) *T { return &v }

func strp(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// count says "1 host", "3 hosts".
func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// names lists a few names, and how many more.
func names(list []string, most int) string {
	if len(list) <= most+1 {
		return strings.Join(list, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(list[:most], ", "), len(list)-most)
}

// short is a checksum cut for people: "sha256:0123456789ab".
func short(sum string) string {
	if len(sum) > 19 {
		return sum[:19]
	}
	return sum
}

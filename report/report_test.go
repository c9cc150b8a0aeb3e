package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/internal/eventcheck"
	"github.com/fleetdeploy/fleetdeploy/internal/golden"
	"github.com/fleetdeploy/fleetdeploy/plan"
	"github.com/fleetdeploy/fleetdeploy/remote"
)

// clock is a fixed clock that the test moves.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 25, 10, 15, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

// run drives a reporter through a scripted deploy of hosts, as the CLI and
// the scheduler would, on a fixed clock. fail, when set, makes that host's
// before_cutover hook fail (and every host undone).
type run struct {
	t     *testing.T
	clk   *clock
	r     *Reporter
	hosts []string
	sent  map[string]func() (io.ReadCloser, error)
}

func newRun(t *testing.T, o Options, hosts []string) *run {
	clk := newClock()
	o.Now = clk.Now
	o.Refresh, o.Heartbeat = -1, -1
	o.Version = "v1.0.0 0123456789ab"
	return &run{t: t, clk: clk, r: New(o), hosts: hosts, sent: map[string]func() (io.ReadCloser, error){}}
}

func (x *run) event(e plan.Event) {
	if e.Time.IsZero() {
		e.Time = x.clk.Now()
	}
	x.r.Event(e)
}

// send reads n bytes of host's payload through the reporter's counter.
func (x *run) send(host string, n int) {
	x.t.Helper()
	open := x.r.CountSent(host, func() (io.ReadCloser, error) {
		return io.NopCloser(io.LimitReader(blank{}, int64(n))), nil
	})
	rc, err := open()
	if err != nil {
		x.t.Fatal(err)
	}
	io.CopyBuffer(io.Discard, rc, make([]byte, 1<<20))
	rc.Close()
}

// blank reads as bytes it never writes: a payload of any size, for free.
type blank struct{}

func (blank) Read(p []byte) (int, error) { return len(p), nil }

func (x *run) prelude(payload int64) {
	x.r.Start("up", "production", x.hosts)
	x.r.Stage(StageConnecting, "")
	x.r.Stage(StageBuilding, "./app")
	x.clk.add(700 * time.Millisecond)
	x.r.StageDone(StageBuilding, nil, &Built{Files: 3017, Bytes: 44 << 20, Checksum: "sha256:0123456789abcdef0123"})
	for i, h := range x.hosts {
		x.clk.add(time.Duration(10+i) * time.Millisecond)
		x.r.Connected(h, nil)
	}
	x.r.StageDone(StageConnecting, nil, nil)
	x.r.Stage(StageMaking, "")
	x.clk.add(200 * time.Millisecond)
	x.r.StageDone(StageMaking, nil, nil)
	p := Planned{Action: "deploy", App: "shop", Release: "20261125-101501"}
	for _, h := range x.hosts {
		p.Hosts = append(p.Hosts, PlannedHost{Host: h, Live: "20261124-090000", Files: 5, Bytes: payload, Known: true, From: "20261124-090000", Gzip: true})
	}
	x.r.Planned(p)
}

func (x *run) phase(name string, policy plan.Policy, each func(i int, h string) error) error {
	start := x.clk.Now()
	x.event(plan.Event{Kind: plan.PhaseStarted, Phase: name, Policy: policy})
	var errs []error
	for i, h := range x.hosts {
		began := x.clk.Now()
		x.event(plan.Event{Kind: plan.PhaseStarted, Phase: name, Host: h})
		err := each(i, h)
		x.event(plan.Event{Kind: plan.PhaseDone, Phase: name, Host: h, Duration: x.clk.Now().Sub(began), Err: err})
		if err != nil {
			errs = append(errs, err)
		}
	}
	err := errors.Join(errs...)
	x.event(plan.Event{Kind: plan.PhaseDone, Phase: name, Policy: policy, Duration: x.clk.Now().Sub(start), Err: err})
	return err
}

func (x *run) step(phase, host, step string, d time.Duration, err error, out ...[2]string) error {
	x.event(plan.Event{Kind: plan.StepStarted, Phase: phase, Host: host, Step: step})
	x.event(plan.Event{Kind: plan.OpStarted, Phase: phase, Host: host, Step: step, Op: "run " + step})
	for _, o := range out {
		x.clk.add(d / time.Duration(len(out)+1))
		x.event(plan.Event{Kind: plan.Output, Phase: phase, Host: host, Step: step, Stream: o[0], Text: o[1]})
	}
	x.clk.add(d / time.Duration(len(out)+1))
	kind := plan.StepDone
	if err != nil {
		kind = plan.StepFailed
	}
	x.event(plan.Event{Kind: kind, Phase: phase, Host: host, Step: step, Duration: d, Err: err})
	return err
}

// deploy scripts a whole deploy; failHost's hook fails when set.
func (x *run) deploy(failHost string) int {
	x.prelude(94 << 10)
	x.phase("locking", plan.Undone, func(i int, h string) error {
		return x.step("locking", h, "locking", 5*time.Millisecond, nil)
	})
	err := x.phase("preparing", plan.Undone, func(i int, h string) error {
		x.event(plan.Event{Kind: plan.StepStarted, Phase: "preparing", Host: h, Step: "uploading build 20261125-101501"})
		x.send(h, 94<<10)
		x.clk.add(time.Duration(300+40*i) * time.Millisecond)
		x.event(plan.Event{Kind: plan.StepDone, Phase: "preparing", Host: h, Step: "uploading build 20261125-101501", Duration: time.Duration(300+40*i) * time.Millisecond})
		if h == failHost {
			return x.step("preparing", h, `running before_cutover hook "php artisan migrate"`, 2*time.Second,
				&remote.ExitError{Status: 7, Stderr: "SQLSTATE[42S01]: table exists"},
				[2]string{"stdout", "Migrating: 2026_11_01_add_orders"}, [2]string{"stderr", "SQLSTATE[42S01]: table exists"},
				[2]string{"stdout", "Rolling back: 2026_11_01_add_orders"})
		}
		x.step("preparing", h, `running before_cutover hook "php artisan migrate"`, 1200*time.Millisecond, nil,
			[2]string{"stdout", "Nothing to migrate."})
		return x.step("preparing", h, "staging cutover", 3*time.Millisecond, nil)
	})
	if err != nil {
		x.event(plan.Event{Kind: plan.PhaseStarted, Phase: plan.UndoPhase})
		for _, h := range x.hosts {
			x.event(plan.Event{Kind: plan.PhaseStarted, Phase: plan.UndoPhase, Host: h})
			x.event(plan.Event{Kind: plan.Undoing, Phase: plan.UndoPhase, Host: h, Step: "uploading build 20261125-101501"})
			x.clk.add(20 * time.Millisecond)
			x.event(plan.Event{Kind: plan.PhaseDone, Phase: plan.UndoPhase, Host: h, Duration: 20 * time.Millisecond})
		}
		x.event(plan.Event{Kind: plan.PhaseDone, Phase: plan.UndoPhase, Duration: 20 * time.Millisecond * time.Duration(len(x.hosts))})
		x.r.Result(1, &plan.HostError{Host: failHost, Step: "running before_cutover hook", Err: err})
		return 1
	}
	x.event(plan.Event{Kind: plan.PhaseStarted, Phase: "barrier", Policy: plan.Barrier})
	x.event(plan.Event{Kind: plan.BarrierReached, Phase: "barrier"})
	x.event(plan.Event{Kind: plan.PhaseDone, Phase: "barrier", Policy: plan.Barrier})
	x.event(plan.Event{Kind: plan.PhaseStarted, Phase: "cutting over", Policy: plan.Switch})
	first := x.clk.Now()
	for i, h := range x.hosts {
		s := plan.Swap{Host: h, Sent: first.Add(time.Duration(20*i) * time.Microsecond)}
		s.Ack = s.Sent.Add(time.Duration(300+50*i) * time.Microsecond)
		x.event(plan.Event{Kind: plan.PhaseStarted, Phase: "cutting over", Host: h, Time: s.Sent})
		x.event(plan.Event{Kind: plan.Swapped, Phase: "cutting over", Host: h, Step: "switching latest", Swap: &s, Time: s.Ack})
		x.event(plan.Event{Kind: plan.PhaseDone, Phase: "cutting over", Host: h, Time: s.Ack, Duration: s.Ack.Sub(s.Sent)})
	}
	x.clk.add(time.Millisecond)
	x.event(plan.Event{Kind: plan.PhaseDone, Phase: "cutting over", Policy: plan.Switch, Duration: time.Millisecond})
	x.phase("finishing", plan.Reported, func(i int, h string) error {
		x.step("finishing", h, "recording live history", 2*time.Millisecond, nil)
		return x.step("finishing", h, "removing old builds 20261101-000000", 30*time.Millisecond, nil,
			[2]string{"stdout", "NOTE: the in-use check saw 5 of 112 processes (others belong to other users or are hidden): builds used only by those may have been removed"})
	})
	x.r.Result(0, nil)
	return 0
}

var threeHosts = []string{"web1", "web2", "web10"}

// The plain view: one line per event worth telling, hook output prefixed
// by its host, the summary table and the result; no escape sequence.
func TestPlainGolden(t *testing.T) {
	for _, tc := range []struct {
		name  string
		level Level
		fail  string
	}{
		{"plain_ok", Normal, ""},
		{"plain_ok_quiet", Quiet, ""},
		{"plain_ok_verbose", Verbose, ""},
		{"plain_failed_hook", Normal, "web2"},
		{"plain_failed_hook_quiet", Quiet, "web2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			x := newRun(t, Options{Human: &out, Level: tc.level}, threeHosts)
			x.deploy(tc.fail)
			if strings.ContainsAny(out.String(), "\x1b\r") {
				t.Errorf("escape sequences in the plain view:\n%q", out.String())
			}
			golden.Check(t, tc.name, []byte(out.String()))
		})
	}
}

// The cleanup's in-use note is said once per run, however many hosts say it.
func TestInUseNoteOnce(t *testing.T) {
	var out bytes.Buffer
	x := newRun(t, Options{Human: &out}, threeHosts)
	x.deploy("")
	if n := strings.Count(out.String(), "in-use check saw"); n != 1 {
		t.Errorf("the in-use note is said %d times:\n%s", n, out.String())
	}
	if !strings.Contains(out.String(), "web1 and 2 more hosts (web1: 5 of 112 processes)") {
		t.Errorf("the note does not say where:\n%s", out.String())
	}
}

// A failing hook shows the last lines of both its streams, even with -q.
func TestFailedHookShowsBothStreams(t *testing.T) {
	var out bytes.Buffer
	x := newRun(t, Options{Human: &out, Level: Quiet}, threeHosts)
	x.deploy("web2")
	for _, want := range []string{
		"web2 | last 2 lines of its stdout:\nweb2 |   Migrating: 2026_11_01_add_orders\nweb2 |   Rolling back: 2026_11_01_add_orders",
		"web2 | last line of its stderr:\nweb2 |   SQLSTATE[42S01]: table exists",
		"up production failed after",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("missing %q in:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "Nothing to migrate") {
		t.Errorf("-q shows the output of hooks that succeeded:\n%s", out.String())
	}
}

// What a host prints never reaches the terminal raw.
func TestHostOutputIsSanitized(t *testing.T) {
	var out bytes.Buffer
	x := newRun(t, Options{Human: &out}, []string{"web1"})
	x.r.Start("up", "production", x.hosts)
	x.event(plan.Event{Kind: plan.PhaseStarted, Phase: "preparing", Host: "web1"})
	x.event(plan.Event{Kind: plan.StepStarted, Phase: "preparing", Host: "web1", Step: "running hook"})
	x.event(plan.Event{Kind: plan.Output, Phase: "preparing", Host: "web1", Step: "running hook", Stream: "stdout", Text: "\x1b[2Jgotcha\x07"})
	x.event(plan.Event{Kind: plan.StepFailed, Phase: "preparing", Host: "web1", Step: "running hook", Err: errors.New("exit 1: \x1b]0;title\x07")})
	x.r.Result(1, nil)
	if strings.ContainsAny(out.String(), "\x1b\x07") {
		t.Errorf("a control character reached the view:\n%q", out.String())
	}
	if !strings.Contains(out.String(), `web1 | \x1b[2Jgotcha\x07`) {
		t.Errorf("the line is not shown escaped:\n%s", out.String())
	}
}

// A progress meter's line redrawn with carriage returns shows as a terminal
// would show it, its last state; a CRLF line end goes. The JSON stream keeps
// the line as the host sent it.
func TestRedrawnLinesShowTheirLastState(t *testing.T) {
	var out, events bytes.Buffer
	x := newRun(t, Options{Human: &out, JSON: &events}, []string{"web1"})
	x.r.Start("up", "production", x.hosts)
	for _, line := range []string{"progress 33%\rprogress 66%\rprogress 99%\r", "done\r"} {
		x.event(plan.Event{Kind: plan.Output, Phase: "preparing", Host: "web1", Step: "running hook", Stream: "stdout", Text: line})
	}
	if !strings.Contains(out.String(), "web1 | progress 99%\nweb1 | done\n") {
		t.Errorf("people see:\n%q", out.String())
	}
	if !strings.Contains(events.String(), `"text":"progress 33%\rprogress 66%\rprogress 99%\r"`) {
		t.Errorf("the events changed the line:\n%s", events.String())
	}
}

// The summary table at the end: per host the phases, upload and hooks, the
// swap time, bytes and result; the fleet's times, bytes and skew.
func TestSummaryTable(t *testing.T) {
	var out bytes.Buffer
	x := newRun(t, Options{Human: &out}, threeHosts)
	x.deploy("")
	_, table, ok := strings.Cut(out.String(), "\nHOST ")
	if !ok {
		t.Fatalf("no table:\n%s", out.String())
	}
	table, _, _ = strings.Cut("HOST "+table, "\ndeployed ")
	golden.Check(t, "summary_table", []byte(table+"\n"))
	lines := strings.Split(table, "\n")
	// Natural order: web2 before web10.
	if !strings.HasPrefix(lines[1], "web1 ") || !strings.HasPrefix(lines[2], "web2 ") || !strings.HasPrefix(lines[3], "web10 ") {
		t.Errorf("hosts not in natural order:\n%s", table)
	}
	for _, l := range lines {
		if l != strings.TrimRight(l, " ") {
			t.Errorf("trailing blanks: %q", l)
		}
	}
}

// At 200 hosts the live view stays a dozen lines: the fleet, the slowest
// hosts still working, and how many more.
func TestLiveFrameAtTwoHundredHosts(t *testing.T) {
	var hosts []string
	for i := range 200 {
		hosts = append(hosts, fmt.Sprintf("web%03d", i+1))
	}
	x := newRun(t, Options{Human: io.Discard, Live: true, Slowest: 8}, hosts)
	x.prelude(40 << 20)
	x.event(plan.Event{Kind: plan.PhaseStarted, Phase: "preparing", Policy: plan.Undone})
	for i, h := range hosts {
		x.event(plan.Event{Kind: plan.PhaseStarted, Phase: "preparing", Host: h})
		x.event(plan.Event{Kind: plan.StepStarted, Phase: "preparing", Host: h, Step: "uploading build 20261125-101501"})
		if i%10 != 3 {
			x.send(h, 40<<20)
			x.event(plan.Event{Kind: plan.PhaseDone, Phase: "preparing", Host: h, Duration: 3 * time.Second})
			continue
		}
		x.send(h, (i%7+1)<<20) // the slow ones, different amounts sent
	}
	x.clk.add(500 * time.Millisecond)
	x.r.Frame(100) // a first sample for the rate
	x.clk.add(1500 * time.Millisecond)
	for i, h := range hosts {
		if i%10 == 3 {
			x.send(h, 3<<20) // 60 MiB in 1.5 s: 40 MiB/s
		}
	}
	frame := x.r.Frame(100)
	if len(frame) != 1+8+1 {
		t.Errorf("%d lines, want the fleet, 8 hosts and a count", len(frame))
	}
	for _, l := range frame {
		if n := len([]rune(l)); n > 99 {
			t.Errorf("line of %d columns on a 100-column terminal: %q", n, l)
		}
	}
	golden.Check(t, "live_200_hosts", []byte(strings.Join(frame, "\n")+"\n"))
	narrow := x.r.Frame(40)
	golden.Check(t, "live_200_hosts_narrow", []byte(strings.Join(narrow, "\n")+"\n"))
}

// Before the hosts' phases, the live view shows the build and the
// connections at work: nothing is silent.
func TestLiveFrameWhileConnecting(t *testing.T) {
	x := newRun(t, Options{Human: io.Discard, Live: true}, []string{"a", "b", "c"})
	x.r.Start("up", "production", x.hosts)
	x.r.Stage(StageConnecting, "")
	x.r.Stage(StageBuilding, "./app")
	x.clk.add(1200 * time.Millisecond)
	x.r.Connected("b", nil)
	x.clk.add(3 * time.Second)
	golden.Check(t, "live_connecting", []byte(strings.Join(x.r.Frame(80), "\n")+"\n"))
}

// Redrawing moves the cursor up over the last frame, erases it, prints the
// lines that came meanwhile, then the new frame.
func TestLiveRedraw(t *testing.T) {
	var out bytes.Buffer
	x := newRun(t, Options{Human: &out, Live: true, Width: func() int { return 60 }}, []string{"a", "b"})
	x.r.Start("up", "production", x.hosts)
	x.r.Stage(StageConnecting, "")
	x.r.mu.Lock()
	x.r.redraw()
	x.r.mu.Unlock()
	first := out.String()
	if !strings.HasPrefix(first, hideCursor+"connecting to 2 hosts\n") || strings.Count(first, "\n") != 1+3 {
		t.Errorf("first frame (the line printed, then the fleet and 2 hosts): %q", first)
	}
	out.Reset()
	x.r.Connected("a", nil)
	x.r.Message("a line for people")
	x.r.mu.Lock()
	x.r.redraw()
	x.r.mu.Unlock()
	second := out.String()
	if !strings.HasPrefix(second, "\r\x1b[3A\x1b[J"+"a line for people\n") || strings.Count(second, "\n") != 1+2 {
		t.Errorf("second frame does not replace the first: %q", second)
	}
	out.Reset()
	x.r.Result(0, nil)
	if got := out.String(); !strings.HasPrefix(got, "\r\x1b[2A\x1b[J") || !strings.HasSuffix(got, showCursor) {
		t.Errorf("the end does not erase the frame and show the cursor: %q", got)
	}
}

// Bytes read from a payload count for its host, across reopenings.
func TestCountSent(t *testing.T) {
	x := newRun(t, Options{}, []string{"a"})
	x.send("a", 1000)
	x.send("a", 24)
	if got := x.r.byName["a"].sent.Load(); got != 1024 {
		t.Errorf("sent %d, want 1024", got)
	}
	if x.r.CountSent("a", nil) != nil {
		t.Error("no payload became one")
	}
}

// The dry run's view groups alike hosts and lists each host's problems.
func TestPlanView(t *testing.T) {
	v := PlanView{Action: "deploy", App: "shop", Env: "production", Release: "20261125-101501",
		Build: "sha256:0123456789ab (3017 files, 44.0 MiB)", Next: "`fleetdeploy up production` does it"}
	for i := range 5 {
		v.Hosts = append(v.Hosts, PlanHost{PlannedHost: PlannedHost{Host: fmt.Sprintf("web%d", i+1), Live: "20261124-090000",
			Files: 4, Bytes: 9000, Known: true, From: "20261124-090000", Gzip: true},
			Hooks:  []string{"before_cutover: php artisan migrate", "after_cutover: systemctl reload php-fpm"},
			Remove: []string{"20261101-000000"}})
	}
	v.Hosts = append(v.Hosts, PlanHost{PlannedHost: PlannedHost{Host: "db1", Files: 3017, Bytes: 44 << 20, Known: true}})
	var b strings.Builder
	WritePlan(&b, v)
	golden.Check(t, "plan_view", []byte(b.String()))

	v.Hosts[2].Problems = []string{"checking lock: locked by bob@laptop pid 42 since 10:01 (up 20261125-100000)"}
	v.Hosts[3].Notes = []string{"leaving builds/old alone: it is not in this host's live history"}
	b.Reset()
	WritePlan(&b, v)
	golden.Check(t, "plan_view_problems", []byte(b.String()))
}

// Every event of a run is one line of JSON: the first is start, the last
// result, each carries the schema version.
func TestJSONStream(t *testing.T) {
	for _, fail := range []string{"", "web2"} {
		var out bytes.Buffer
		x := newRun(t, Options{JSON: &out}, threeHosts)
		code := x.deploy(fail)
		events := decode(t, out.Bytes())
		if events[0]["type"] != "start" || events[len(events)-1]["type"] != "result" {
			t.Errorf("first %v, last %v", events[0]["type"], events[len(events)-1]["type"])
		}
		if got := events[len(events)-1]["exit_code"]; got != float64(code) {
			t.Errorf("result exit_code %v, want %d", got, code)
		}
		types := map[string]int{}
		for _, e := range events {
			types[e["type"].(string)]++
			if e["schema"] != float64(SchemaVersion) {
				t.Errorf("schema %v: %v", e["schema"], e)
			}
		}
		if types["op"] != 0 {
			t.Errorf("op events without -v")
		}
		if fail == "" && (types["cutover"] != 1 || types["summary"] != 1) {
			t.Errorf("event counts %v", types)
		}
		for _, e := range events {
			if e["type"] == "output" && e["stream"] == "stderr" && e["text"] != "SQLSTATE[42S01]: table exists" {
				t.Errorf("stderr line %v", e)
			}
			if e["type"] == "phase_end" && e["host"] == "web1" && e["phase"] == "preparing" && e["bytes"] != float64(94<<10) {
				t.Errorf("bytes sent to web1: %v", e)
			}
		}
		validate(t, out.Bytes())
	}
}

func decode(t *testing.T, stream []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(stream))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("not JSON: %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		t.Fatal("no events")
	}
	return out
}

// validate checks a stream against docs/events.schema.json.
func validate(t *testing.T, stream []byte) {
	t.Helper()
	if _, err := eventcheck.Validate("../docs/events.schema.json", stream); err != nil {
		t.Errorf("the stream does not follow docs/events.schema.json:\n%v", err)
	}
}

// Off a terminal, a long silence gets a progress line: CI logs show the
// run is alive, and where it is.
func TestPlainHeartbeat(t *testing.T) {
	clk := newClock()
	var mu sync.Mutex
	var out bytes.Buffer
	w := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return out.Write(p)
	})
	r := New(Options{Human: w, Now: clk.Now, Heartbeat: 10 * time.Millisecond})
	r.Start("up", "production", []string{"web1", "web2"})
	r.Event(plan.Event{Time: clk.Now(), Kind: plan.PhaseStarted, Phase: "preparing"})
	clk.add(75 * time.Second)
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		mu.Lock()
		got := out.String()
		mu.Unlock()
		if strings.Contains(got, "... 01:15 preparing  0/2 hosts\n") {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("no heartbeat within 10s:\n%s", got)
		case <-tick.C:
		}
	}
	r.Result(0, nil)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// lockedBuffer is an output a ticking reporter can write to while the test
// reads it; wrote says that something came.
type lockedBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	wrote chan struct{}
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case l.wrote <- struct{}{}:
	default:
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A command that goes on serving (the sandbox) says so with Idle: the live
// frame is erased and stays away, the cursor comes back, and what follows
// is plain lines; off a terminal, the heartbeat stops.
func TestIdleStopsTheView(t *testing.T) {
	for _, live := range []bool{true, false} {
		out := &lockedBuffer{wrote: make(chan struct{}, 1)}
		r := New(Options{Human: out, Live: live, Refresh: 2 * time.Millisecond, Heartbeat: 10 * time.Millisecond})
		r.Message("serving")
		timeout := time.After(5 * time.Second)
		for !strings.Contains(out.String(), "starting") {
			select {
			case <-out.wrote:
			case <-timeout:
				t.Fatalf("live %v: no progress before Idle, the test shows nothing: %q", live, out.String())
			}
		}
		r.Idle() // returns once the ticker has stopped: nothing can come after it
		idle := out.String()
		r.Message("stopping")
		rest := strings.TrimPrefix(out.String(), idle)
		if rest != "stopping\n" {
			t.Errorf("live %v: after Idle, %q; want the plain line alone", live, rest)
		}
		if live && (!strings.HasSuffix(idle, showCursor) || !strings.Contains(idle, "serving\n")) {
			t.Errorf("live %v: Idle leaves %q", live, idle)
		}
		r.Result(0, nil)
	}
}

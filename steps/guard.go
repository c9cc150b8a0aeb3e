package steps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/remote"
)

// The steps of a guarded deploy: the cutover keeps its way back (the staged
// back link) until the health checks pass; a failed check switches the
// whole fleet back through it.

// RecordLive appends the switch to the host's live history and clears the
// never-live mark, as Record does, but keeps the staged back link: the
// health checks that follow may still need the way back (Unstage removes it
// once they pass).
func RecordLive(l Layout, e HistoryEntry) Step {
	return Step{Name: "recording live history", Ops: []Op{Together{
		Append(l.History(), e.line()+"\n"),
		RemoveIfExists(l.Pending(e.Release)),
		RemoveIfExists(l.Next()),
	}}}
}

// Unstage removes the way back once the health checks passed.
func Unstage(l Layout) Step {
	return Step{Name: "removing the way back", Ops: []Op{RemoveIfExists(l.Back())}}
}

// SwitchBack puts back the build live before the cutover, through the back
// link staged for it (previous ""; no build was live: latest is removed).
// It is the cutover's own undo, run as a cutover of its own.
func SwitchBack(l Layout, previous string) Step {
	if previous == "" {
		return Step{Name: "switching back (no build was live before: removing latest)", Ops: Swap(l, false).Undo}
	}
	return Step{Name: "switching back to " + previous, Ops: Swap(l, true).Undo}
}

// RecordRevert records, after the fleet switched back from bad to the build
// in e, the revert in the live history (when a build was live before), and
// marks bad as bad (why says what happened), all at once. bad went live:
// its never-live mark goes too, should recording it have failed, so that
// the next run keeps it (for inspection) rather than sweep it away.
func RecordRevert(l Layout, e HistoryEntry, bad, why string) Step {
	ops := Together{Write(l.BadMark(bad), sanitize(why)), RemoveIfExists(l.Pending(bad)), RemoveIfExists(l.Next()), RemoveIfExists(l.Back())}
	if e.Release != "" {
		ops = append(Together{Append(l.History(), e.line()+"\n")}, ops...)
	}
	return Step{Name: "recording the revert; marking " + bad + " bad", Ops: []Op{ops}}
}

// HealthCheck runs the user's check from the build's folder, retried until it
// passes or its timeout runs out (see Probe).
func HealthCheck(l Layout, id string, hc inventory.HealthCheck, env []string) Step {
	op := Probe{
		Cmd:      remote.Cmd{Dir: l.Build(id), Env: env, Args: []string{"sh", "-c", hc.Run}},
		Timeout:  hc.Timeout,
		Interval: hc.Interval,
	}
	return Step{Name: fmt.Sprintf("checking health %q", oneLine(hc.Run)), Ops: []Op{op}}
}

// Probe is a command run again every Interval until it exits 0 or Timeout
// runs out (an attempt still running then is killed on the host). A lost
// connection ends it at once: the host cannot be checked.
type Probe struct {
	Cmd      remote.Cmd
	Timeout  time.Duration
	Interval time.Duration
}

// Calls is the command, once.
func (p Probe) Calls() []remote.Call { return []remote.Call{remote.Run(p.Cmd)} }

// Note says that it is retried.
func (p Probe) Note() string {
	return fmt.Sprintf("(again every %s until it exits 0, for at most %s)", p.Interval, p.Timeout)
}

// probeOutput bounds what a ProbeError keeps of the last attempt's output.
const probeOutput = 4 << 10

// Run runs the command until it passes, its output (every attempt's) going
// to out. When the timeout cuts the last attempt short, the error is the one
// of the attempt before, if any: why the check failed, rather than that it
// was stopped.
func (p Probe) Run(ctx context.Context, h remote.Host, out io.Writer) error {
	start := time.Now()
	deadline := start.Add(p.Timeout)
	var failed *ProbeError // the last attempt that ended by itself
	for try := 1; ; try++ {
		last := &tailWriter{max: probeOutput}
		c := p.Cmd
		c.Stdout, c.Stderr = last, last
		if out != nil {
			w := io.MultiWriter(out, last)
			c.Stdout, c.Stderr = w, w
		}
		actx, cancel := context.WithDeadline(ctx, deadline)
		_, err := h.Run(actx, c)
		timedOut := actx.Err() == context.DeadlineExceeded
		cancel()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, remote.ErrConnLost):
			return &ProbeError{Tries: try, Took: time.Since(start), Output: last.String(), Err: err, Lost: true}
		case timedOut && failed != nil:
			failed.Took = time.Since(start)
			return failed
		case timedOut:
			return &ProbeError{Tries: try, Took: time.Since(start), Output: last.String(),
				Err: fmt.Errorf("still running when the %s ran out (killed on the host)", p.Timeout)}
		}
		failed = &ProbeError{Tries: try, Took: time.Since(start), Output: last.String(), Err: err}
		if time.Now().Add(p.Interval).After(deadline) {
			return failed
		}
		if try == 1 && out != nil {
			// Shown without -v: the run may wait here until the timeout.
			fmt.Fprintf(out, "NOTE: health check failed (%s); trying again every %s until %s have passed\n", failed.short(), p.Interval, p.Timeout)
		}
		t := time.NewTimer(p.Interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// ProbeError is a health check that never passed.
type ProbeError struct {
	Tries  int
	Took   time.Duration
	Output string // the end of the last attempt's output
	Err    error  // the last attempt's
	Lost   bool   // the connection to the host was lost
}

// short is the last attempt's error without the output it printed.
func (e *ProbeError) short() error {
	var x *remote.ExitError
	if errors.As(e.Err, &x) {
		bare := *x
		bare.Stderr = "" // in Output already
		return &bare
	}
	return e.Err
}

func (e *ProbeError) Error() string {
	var s string
	err := e.short()
	if e.Lost {
		s = fmt.Sprintf("host lost during its check: %v", err)
	} else {
		s = fmt.Sprintf("failed %s in %s, last: %v", times(e.Tries), e.Took.Round(10*time.Millisecond), err)
	}
	if o := e.LastLines(3); o != "" {
		s += ": " + o
	}
	return s
}

func (e *ProbeError) Unwrap() error { return e.Err }

// LastLines is the end of the last attempt's output: at most n lines, on one.
func (e *ProbeError) LastLines(n int) string {
	lines := strings.Split(strings.TrimSpace(e.Output), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Trim(strings.Join(lines, " / "), " /")
}

func times(n int) string {
	if n == 1 {
		return "once"
	}
	return fmt.Sprintf("%d times", n)
}

// tailWriter keeps the last max bytes written to it; stdout and stderr
// write from two goroutines.
type tailWriter struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

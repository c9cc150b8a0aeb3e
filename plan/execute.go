package plan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fleetdeploy/fleetdeploy/remote"
	"github.com/fleetdeploy/fleetdeploy/steps"
	"golang.org/x/sync/errgroup"
)

// EventKind says what happened.
type EventKind int

// Events, in the order a host meets them.
const (
	StepStarted EventKind = iota
	OpStarted
	StepDone
	StepFailed
	Output         // a line or chunk of a hook's output
	Swapped        // a host's latest was switched (or failed to be)
	Undoing        // a step is being undone after a failure
	BarrierReached // every host is prepared; the swaps are released next
	// PhaseStarted and PhaseDone frame a phase: with Host "", the whole
	// fleet's (Policy set); with a host, that host's part of it. The
	// cutover's are sent after every swap, with the swap's own times.
	// Undoing after a failure is a phase of its own, "undoing".
	PhaseStarted
	PhaseDone
)

// Event is what the scheduler tells its observer; the CLI renders it, and a
// --json stream can serialise it.
type Event struct {
	Time   time.Time
	Kind   EventKind
	Phase  string
	Policy Policy // of the phase, on a fleet's PhaseStarted and PhaseDone
	Host   string
	Step   string
	Op     string
	Text   string
	Err    error
	// Duration is how long a step (StepDone, StepFailed) or a phase
	// (PhaseDone) took.
	Duration time.Duration
	// Stream is the stream an Output line came from: "stdout" or "stderr".
	Stream string
	// Swap is the host's timed swap (Swapped).
	Swap *Swap
}

// UndoPhase names the phase of undoing every host after a failure or Ctrl-C
// before the barrier.
const UndoPhase = "undoing"

// Options bound a run.
type Options struct {
	Parallel       int           // hosts preparing at once; 0 means all
	Observe        func(Event)   // called from many goroutines, serialised by Execute
	UndoTimeout    time.Duration // for cleaning up after a failure or Ctrl-C
	CutoverTimeout time.Duration // for the swaps, which Ctrl-C does not interrupt
	Now            func() time.Time
}

// Swap is one host's cutover, timed from the client.
type Swap struct {
	Host      string
	Sent, Ack time.Time
	Err       error
	Unknown   bool // the connection was lost before the answer: did it switch?
}

// Result is what a finished run measured.
type Result struct {
	Swaps  []Swap // inventory order
	Revert []Swap // the switch back after a failed health check (inventory order)
}

// Skew is the spread of the swap midpoints across the fleet, and its upper
// bound (last answer minus first request).
func (r *Result) Skew() (mid, bound time.Duration) { return SwapSkew(r.Swaps) }

// SwapSkew is Skew of any set of swaps (a cutover, or the switch back).
func SwapSkew(swaps []Swap) (mid, bound time.Duration) {
	var lo, hi, first, last time.Time
	for i, s := range swaps {
		m := s.Sent.Add(s.Ack.Sub(s.Sent) / 2)
		if i == 0 || m.Before(lo) {
			lo = m
		}
		if i == 0 || m.After(hi) {
			hi = m
		}
		if i == 0 || s.Sent.Before(first) {
			first = s.Sent
		}
		if i == 0 || s.Ack.After(last) {
			last = s.Ack
		}
	}
	return hi.Sub(lo), last.Sub(first)
}

type run struct {
	p     *Plan
	hosts map[string]remote.Host
	o     Options
	mu    sync.Mutex
	done  map[string][]steps.Step // per host, steps started, for undo
}

func (r *run) emit(e Event) {
	if r.o.Observe == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = r.o.Now()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.o.Observe(e)
}

// Execute runs a plan, phase by phase: locks, prepares every host, waits at
// the barrier, cuts over all hosts together, then finishes. Any failure
// before the barrier undoes everything on every host; a failure during the
// cutover switches back the hosts that switched. A Guard phase that fails
// (or Ctrl-C from the cutover until it passes) runs its OnFailure phases
// instead of the rest, and Execute returns a *GuardError.
func Execute(ctx context.Context, p *Plan, hosts map[string]remote.Host, o Options) (*Result, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.UndoTimeout <= 0 {
		o.UndoTimeout = time.Minute
	}
	if o.CutoverTimeout <= 0 {
		o.CutoverTimeout = 30 * time.Second
	}
	r := &run{p: p, hosts: hosts, o: o, done: map[string][]steps.Step{}}
	res := &Result{}
	user := ctx // Ctrl-C: still heard by Guard phases after the barrier
	var finished []error
	for i := range p.Phases {
		ph := &p.Phases[i]
		start := o.Now()
		r.emit(Event{Kind: PhaseStarted, Phase: ph.Name, Policy: ph.Policy, Time: start})
		var err error
		switch ph.Policy {
		case Undone:
			for _, wave := range ph.Waves {
				if err = r.parallel(ctx, ph, wave, true, r.o.Parallel); err != nil {
					break
				}
			}
		case Barrier:
			if ctx.Err() != nil {
				err = ctx.Err()
				break
			}
			// Every host is prepared. From here on Ctrl-C no longer stops
			// the run; it finishes or switches back.
			r.emit(Event{Kind: BarrierReached, Phase: ph.Name})
			ctx = context.WithoutCancel(ctx)
		case Switch:
			var swaps []Swap
			swaps, err = r.cutover(ctx, ph)
			res.Swaps = append(res.Swaps, swaps...)
		case Reported:
			var errs []error
			for _, wave := range ph.Waves {
				if err := r.parallel(ctx, ph, wave, false, r.o.Parallel); err != nil {
					errs = append(errs, err)
				}
			}
			if len(errs) > 0 {
				err = &FinishError{Err: errors.Join(errs...)}
			}
		case Guard:
			err = r.guard(user, ph)
		}
		end := o.Now()
		r.emit(Event{Kind: PhaseDone, Phase: ph.Name, Policy: ph.Policy, Time: end, Duration: end.Sub(start), Err: err})
		if err == nil {
			continue
		}
		switch ph.Policy {
		case Undone:
			return nil, r.abort(ctx, err)
		case Barrier:
			return nil, r.abort(ctx, nil)
		case Reported:
			// Reported and goes on: the next phases run, and the run ends
			// with every phase's failures.
			finished = append(finished, err.(*FinishError).Err)
			continue
		case Guard:
			return res, r.revert(ctx, ph, err, finished, res)
		}
		return res, err
	}
	if len(finished) > 0 {
		return res, &FinishError{Err: errors.Join(finished...)}
	}
	return res, nil
}

// parallel runs the steps of a phase of some hosts (a wave), hosts
// concurrently, at most limit at once (0: all). With failFast, the first
// failure cancels the other hosts (their cancellation is not reported as an
// error of theirs); otherwise every step runs on every host and every
// failure is reported.
func (r *run) parallel(ctx context.Context, ph *Phase, hosts []string, failFast bool, limit int) error {
	gctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var g errgroup.Group
	if limit > 0 {
		g.SetLimit(limit)
	}
	var mu sync.Mutex
	var errs []error
	for _, host := range hosts {
		list, ok := ph.Steps[host]
		if !ok {
			continue
		}
		g.Go(func() error {
			err := r.hostSteps(gctx, ph.Name, host, list, failFast)
			if err == nil {
				return nil
			}
			if failFast && errors.Is(context.Cause(gctx), errFailed) && errors.Is(err, context.Canceled) {
				return nil // stopped because another host failed
			}
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
			if failFast && ctx.Err() == nil {
				cancel(errFailed)
			}
			return nil
		})
	}
	g.Wait()
	if ctx.Err() != nil && len(errs) == 0 {
		return ctx.Err()
	}
	return JoinHostErrors(errs)
}

// errFailed stops the other hosts of a phase when one failed.
var errFailed = errors.New("another host failed")

// hostSteps runs steps on one host in order. A step is recorded for undo
// before it runs: its undo is safe on a step that did not finish.
func (r *run) hostSteps(ctx context.Context, phase, host string, list []steps.Step, stopOnError bool) (err error) {
	h := r.hosts[host]
	start := r.o.Now()
	r.emit(Event{Kind: PhaseStarted, Phase: phase, Host: host, Time: start})
	defer func() {
		end := r.o.Now()
		r.emit(Event{Kind: PhaseDone, Phase: phase, Host: host, Time: end, Duration: end.Sub(start), Err: err})
	}()
	var errs []error
	for _, s := range list {
		if err := ctx.Err(); err != nil {
			return err
		}
		if len(s.Undo) > 0 {
			r.mu.Lock()
			r.done[host] = append(r.done[host], s)
			r.mu.Unlock()
		}
		began := r.o.Now()
		r.emit(Event{Kind: StepStarted, Phase: phase, Host: host, Step: s.Name, Time: began})
		out := newOutputs(func(stream, line string) {
			r.emit(Event{Kind: Output, Phase: phase, Host: host, Step: s.Name, Stream: stream, Text: line})
		})
		err := steps.RunOps(ctx, h, s.Ops, out, func(op steps.Op) {
			r.emit(Event{Kind: OpStarted, Phase: phase, Host: host, Step: s.Name, Op: steps.Describe(op)})
		})
		out.Flush()
		took := r.o.Now().Sub(began)
		if err != nil {
			// A command that exited on its own failed for its own reasons,
			// even if another host's failure cancelled ctx meanwhile: that
			// error is reported, never hidden as a cancellation.
			var exit *remote.ExitError
			if ctx.Err() != nil && !errors.Is(err, remote.ErrConnLost) && !errors.As(err, &exit) {
				err = ctx.Err()
			}
			r.emit(Event{Kind: StepFailed, Phase: phase, Host: host, Step: s.Name, Err: err, Duration: took})
			herr := &HostError{Host: host, Step: s.Name, Err: err}
			if stopOnError {
				return herr
			}
			errs = append(errs, herr)
			continue
		}
		r.emit(Event{Kind: StepDone, Phase: phase, Host: host, Step: s.Name, Duration: took})
	}
	return errors.Join(errs...)
}

// abort undoes every started step on every host, newest first, and returns
// the reason together with anything that could not be undone.
func (r *run) abort(ctx context.Context, cause error) error {
	undoErr := r.undoAll(r.p.Hosts)
	if ctx.Err() != nil && (cause == nil || errors.Is(cause, context.Canceled)) {
		return &InterruptedError{Err: undoErr}
	}
	if undoErr != nil {
		return fmt.Errorf("%w\ncleaning up after the failure also failed:\n%v", cause, undoErr)
	}
	return cause
}

func (r *run) undoAll(hosts []string) (err error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.o.UndoTimeout)
	defer cancel()
	start := r.o.Now()
	r.emit(Event{Kind: PhaseStarted, Phase: UndoPhase, Time: start})
	defer func() {
		end := r.o.Now()
		r.emit(Event{Kind: PhaseDone, Phase: UndoPhase, Time: end, Duration: end.Sub(start), Err: err})
	}()
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, host := range hosts {
		r.mu.Lock()
		list := slices.Clone(r.done[host])
		r.done[host] = nil
		r.mu.Unlock()
		if len(list) == 0 {
			continue
		}
		wg.Go(func() {
			began := r.o.Now()
			r.emit(Event{Kind: PhaseStarted, Phase: UndoPhase, Host: host, Time: began})
			var failed error
			defer func() {
				end := r.o.Now()
				r.emit(Event{Kind: PhaseDone, Phase: UndoPhase, Host: host, Time: end, Duration: end.Sub(began), Err: failed})
			}()
			for i := len(list) - 1; i >= 0; i-- {
				s := list[i]
				r.emit(Event{Kind: Undoing, Phase: UndoPhase, Host: host, Step: s.Name})
				if err := steps.RunOps(ctx, r.hosts[host], s.Undo, nil, nil); err != nil {
					e := &HostError{Host: host, Step: "undoing " + s.Name, Err: err}
					if s.Name == "locking" {
						e.Err = fmt.Errorf("%v: the host keeps this run's lock until it goes stale (the next up or rollback then takes it over), or until `fleetdeploy unlock --force %s`", err, r.p.Env)
					}
					mu.Lock()
					errs = append(errs, e)
					mu.Unlock()
					failed = errors.Join(failed, e)
				}
			}
		})
	}
	wg.Wait()
	return JoinHostErrors(errs)
}

// cutover releases every host's steps of a Switch phase at once and, if any
// fails, switches the others back.
func (r *run) cutover(ctx context.Context, ph *Phase) ([]Swap, error) {
	swaps := r.release(ctx, ph, ph.Hosts())
	var failed []error
	for _, s := range swaps {
		if s.Err != nil {
			failed = append(failed, &HostError{Host: s.Host, Step: stepNames(ph.Steps[s.Host]), Err: s.Err})
		}
	}
	if len(failed) == 0 {
		return swaps, nil
	}
	// Switch back every host that switched; leave unknown hosts as they are.
	cerr := &CutoverError{Env: r.p.Env}
	var undo []string
	rctx, rcancel := context.WithTimeout(context.Background(), r.o.UndoTimeout)
	defer rcancel()
	var mu sync.Mutex
	var wg2 sync.WaitGroup
	for _, s := range swaps {
		switch {
		case s.Unknown:
			mu.Lock()
			cerr.Unknown = append(cerr.Unknown, s.Host)
			mu.Unlock()
		case s.Err != nil:
			mu.Lock()
			undo = append(undo, s.Host) // definitely still on the old build
			mu.Unlock()
		default:
			wg2.Go(func() {
				list := ph.Steps[s.Host]
				var err error
				for _, st := range list {
					r.emit(Event{Kind: Undoing, Phase: ph.Name, Host: s.Host, Step: st.Name})
				}
				for i := len(list) - 1; i >= 0 && err == nil; i-- {
					err = steps.RunOps(rctx, r.hosts[s.Host], list[i].Undo, nil, nil)
				}
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed = append(failed, &HostError{Host: s.Host, Step: "switching back", Err: err})
					cerr.Unknown = append(cerr.Unknown, s.Host)
					return
				}
				cerr.Reverted = append(cerr.Reverted, s.Host)
				undo = append(undo, s.Host)
			})
		}
	}
	wg2.Wait()
	slices.Sort(cerr.Unknown)
	slices.Sort(cerr.Reverted)
	if err := r.undoAll(undo); err != nil {
		failed = append(failed, err)
	}
	cerr.Err = JoinHostErrors(failed)
	return swaps, cerr
}

// release runs the steps of a Switch phase on hosts, all released at once
// and timed, bounded by the cutover timeout, and reports each host's swap.
func (r *run) release(ctx context.Context, ph *Phase, hosts []string) []Swap {
	ctx, cancel := context.WithTimeout(ctx, r.o.CutoverTimeout)
	defer cancel()
	swaps := make([]Swap, len(hosts))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, host := range hosts {
		swaps[i].Host = host
		wg.Go(func() {
			var ops []steps.Op
			for _, s := range ph.Steps[host] {
				ops = append(ops, s.Ops...)
			}
			<-start
			s := &swaps[i]
			s.Sent = r.o.Now()
			s.Err = steps.RunOps(ctx, r.hosts[host], ops, nil, nil)
			s.Ack = r.o.Now()
			s.Unknown = s.Err != nil && (errors.Is(s.Err, remote.ErrConnLost) || ctx.Err() != nil)
		})
	}
	close(start)
	wg.Wait()
	for i, s := range swaps {
		// Told once every host has answered, so that no observer sits in
		// the timed part; with each swap's own times.
		r.emit(Event{Kind: PhaseStarted, Phase: ph.Name, Host: s.Host, Time: s.Sent})
		for _, st := range ph.Steps[s.Host] {
			for _, op := range st.Ops {
				r.emit(Event{Kind: OpStarted, Phase: ph.Name, Host: s.Host, Step: st.Name, Op: steps.Describe(op), Time: s.Sent})
			}
			r.emit(Event{Kind: Swapped, Phase: ph.Name, Host: s.Host, Step: st.Name, Err: s.Err, Swap: &swaps[i], Time: s.Ack})
		}
		r.emit(Event{Kind: PhaseDone, Phase: ph.Name, Host: s.Host, Time: s.Ack, Duration: s.Ack.Sub(s.Sent), Err: s.Err})
	}
	return swaps
}

// guard runs a Guard phase: every host's steps at once (not bounded by
// --parallel: these are checks of a live fleet) until all pass. The first
// failure stops the other hosts, and so does Ctrl-C: user is the run's own
// context, not the one the barrier made deaf to it. It returns the hosts'
// failures, or user's error when interrupted.
func (r *run) guard(user context.Context, ph *Phase) error {
	gctx, cancel := context.WithCancelCause(user)
	defer cancel(nil)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, host := range ph.Hosts() {
		list, ok := ph.Steps[host]
		if !ok {
			continue
		}
		wg.Go(func() {
			err := r.hostSteps(gctx, ph.Name, host, list, true)
			if err == nil || (gctx.Err() != nil && errors.Is(err, context.Canceled)) {
				return // passed, or stopped by another host's failure or by Ctrl-C
			}
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
			cancel(errFailed)
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return JoinHostErrors(errs)
	}
	return user.Err()
}

// revert runs a failed Guard phase's OnFailure phases: the switch back of
// every host, timed like the cutover and never undone, then, on the hosts
// that switched back, what follows it. finished are the failures of the
// Reported phases before the guard, reported with the revert's own.
func (r *run) revert(ctx context.Context, ph *Phase, cause error, finished []error, res *Result) error {
	gerr := &GuardError{Env: r.p.Env, Release: r.p.Release, Before: r.p.Before}
	if errors.Is(cause, context.Canceled) {
		gerr.Interrupted = true
	} else {
		gerr.Failed = cause
	}
	errs := slices.Clone(finished)
	stuck := map[string]bool{}
	for i := range ph.OnFailure {
		rp := &ph.OnFailure[i]
		start := r.o.Now()
		r.emit(Event{Kind: PhaseStarted, Phase: rp.Name, Policy: rp.Policy, Time: start})
		var perr []error
		if rp.Policy == Switch {
			swaps := r.release(ctx, rp, rp.Hosts())
			res.Revert = append(res.Revert, swaps...)
			for _, s := range swaps {
				if s.Err != nil {
					stuck[s.Host] = true
					perr = append(perr, &HostError{Host: s.Host, Step: stepNames(rp.Steps[s.Host]), Err: s.Err})
				}
			}
		} else {
			for _, wave := range rp.Waves {
				wave = slices.DeleteFunc(slices.Clone(wave), func(h string) bool { return stuck[h] })
				if err := r.parallel(ctx, rp, wave, false, r.o.Parallel); err != nil {
					perr = append(perr, err)
				}
			}
		}
		end := r.o.Now()
		r.emit(Event{Kind: PhaseDone, Phase: rp.Name, Policy: rp.Policy, Time: end, Duration: end.Sub(start), Err: errors.Join(perr...)})
		errs = append(errs, perr...)
	}
	for h := range stuck {
		gerr.Stuck = append(gerr.Stuck, h)
	}
	slices.Sort(gerr.Stuck)
	if len(errs) > 0 {
		gerr.Err = errors.Join(errs...)
	}
	return gerr
}

// stepNames names a host's steps of a phase, for an error.
func stepNames(list []steps.Step) string {
	names := make([]string, len(list))
	for i, s := range list {
		names[i] = s.Name
	}
	return strings.Join(names, ", ")
}

// outputs are a step's two output streams, told apart: steps sends a
// command's standard error to Stderr when its output has one.
type outputs struct{ stdout, stderr *lineWriter }

func newOutputs(emit func(stream, line string)) *outputs {
	return &outputs{
		stdout: &lineWriter{emit: func(l string) { emit("stdout", l) }},
		stderr: &lineWriter{emit: func(l string) { emit("stderr", l) }},
	}
}

func (o *outputs) Write(p []byte) (int, error) { return o.stdout.Write(p) }

// Stderr is where a command's standard error goes.
func (o *outputs) Stderr() io.Writer { return o.stderr }

// Flush emits the streams' last unterminated lines.
func (o *outputs) Flush() {
	o.stdout.Flush()
	o.stderr.Flush()
}

// lineWriter turns a stream into lines for Output events, bounding each line.
type lineWriter struct {
	mu   sync.Mutex // stdout and stderr arrive from two goroutines
	emit func(string)
	buf  []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := slices.Index(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 4096 {
		w.emit(string(w.buf))
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

// Flush emits a last unterminated line.
func (w *lineWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(string(w.buf))
		w.buf = nil
	}
}

var _ io.Writer = (*lineWriter)(nil)

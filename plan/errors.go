package plan

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/go-multierror"
)

// HostError is a failure on one host, in one step.
type HostError struct {
	Host string
	Step string
	Err  error
}

func (e *HostError) Error() string { return fmt.Sprintf("%s: %s: %v", e.Host, e.Step, e.Err) }

func (e *HostError) Unwrap() error { return e.Err }

// JoinHostErrors collects errors into one, sorted by host, one line each.
func JoinHostErrors(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	slices.SortStableFunc(errs, func(a, b error) int { return strings.Compare(hostOf(a), hostOf(b)) })
	m := &multierror.Error{Errors: errs, ErrorFormat: func(es []error) string {
		lines := make([]string, len(es))
		for i, e := range es {
			lines[i] = e.Error()
		}
		return strings.Join(lines, "\n")
	}}
	return m.ErrorOrNil()
}

func hostOf(err error) string {
	var he *HostError
	if errors.As(err, &he) {
		return he.Host
	}
	return ""
}

// CutoverError is a cutover that did not complete everywhere.
type CutoverError struct {
	Env      string   // for the unlock hint
	Err      error    // every host's error
	Unknown  []string // hosts whose state is unknown, or that could not be switched back
	Reverted []string // hosts switched back to the build live before
}

func (e *CutoverError) Error() string {
	msg := e.Err.Error()
	if len(e.Unknown) > 0 {
		msg += "\nstate unknown (run `fleetdeploy status` to see the truth; the next up or rollback converges): " + strings.Join(e.Unknown, ", ") +
			"\nthose hosts keep this run's lock until it goes stale (its lease after the last refresh; the next up or rollback then takes it over), or until `fleetdeploy unlock --force " + e.Env + "`"
	}
	return msg
}

func (e *CutoverError) Unwrap() error { return e.Err }

// Split reports whether the fleet may now run two builds.
func (e *CutoverError) Split() bool { return len(e.Unknown) > 0 }

// FinishError is a deploy that went live everywhere but whose finishing steps
// (after_cutover hooks, cleanup, unlock) failed somewhere.
type FinishError struct{ Err error }

func (e *FinishError) Error() string { return e.Err.Error() }

func (e *FinishError) Unwrap() error { return e.Err }

// InterruptedError is a run stopped by the user before the barrier; every host
// was put back as it was, except where Err says otherwise.
type InterruptedError struct {
	Err    error
	Before bool // stopped before anything was written on any host
}

func (e *InterruptedError) Error() string {
	if e.Before {
		return "interrupted before any host was changed"
	}
	if e.Err == nil {
		return "interrupted before the cutover: no host switched, staged builds removed, locks released"
	}
	return "interrupted before the cutover: no host switched; cleaning up failed:\n" + e.Err.Error()
}

func (e *InterruptedError) Unwrap() error { return e.Err }

// GuardError is a deploy that went live and then failed its guard (a host
// failed its health check or was lost during it, or the run was
// interrupted): the whole fleet was switched back to the build live before,
// except the Stuck hosts.
type GuardError struct {
	Env     string // for the unlock hint
	Release string // the build that went live and was switched back from
	Before  string // the build the fleet went back to ("" when none was live)
	// Failed holds every failing host's error (HostErrors); nil when the
	// run was interrupted.
	Failed      error
	Interrupted bool
	Stuck       []string // hosts that did not switch back: still on Release, or unknown
	Err         error    // what else failed: the switch back, hooks, records, the unlock
}

// Split reports whether the fleet may now run two builds.
func (e *GuardError) Split() bool { return len(e.Stuck) > 0 }

// FailedHosts names the hosts whose check failed, sorted.
func (e *GuardError) FailedHosts() []string {
	var out []string
	for _, he := range hostErrors(e.Failed) {
		out = append(out, he.Host)
	}
	return out
}

// Error reads "deployed X; health check failed on web2 (its last output);
// fleet back on Y", then one line per failing host when there are several,
// and what else failed.
func (e *GuardError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "deployed %s; ", e.Release)
	hes := hostErrors(e.Failed)
	switch {
	case e.Interrupted:
		b.WriteString("interrupted before its health checks passed")
	case len(hes) == 1:
		fmt.Fprintf(&b, "health check failed on %s (%v)", hes[0].Host, hes[0].Err)
	case len(hes) > 1:
		fmt.Fprintf(&b, "health check failed on %s", strings.Join(e.FailedHosts(), ", "))
	default:
		fmt.Fprintf(&b, "health check failed (%v)", e.Failed)
	}
	back := e.Before
	if back == "" {
		back = "no build (none was live before)"
	}
	fmt.Fprintf(&b, "; fleet back on %s", back)
	if len(e.Stuck) > 0 {
		fmt.Fprintf(&b, " except %s: still on %s, or unknown (run `fleetdeploy status`; the next up or rollback converges); "+
			"those hosts keep this run's lock until it goes stale, or until `fleetdeploy unlock --force %s`", strings.Join(e.Stuck, ", "), e.Release, e.Env)
	}
	if len(hes) > 1 {
		for _, he := range hes {
			fmt.Fprintf(&b, "\n%v", he)
		}
	}
	if e.Err != nil {
		fmt.Fprintf(&b, "\nalso failed:\n%v", e.Err)
	}
	return b.String()
}

// hostErrors lists the HostErrors in err (one, or those a JoinHostErrors
// holds), sorted by host.
func hostErrors(err error) []*HostError {
	var list []error
	var m *multierror.Error
	if errors.As(err, &m) {
		list = m.Errors
	} else if err != nil {
		list = []error{err}
	}
	var out []*HostError
	for _, e := range list {
		var he *HostError
		if errors.As(e, &he) {
			out = append(out, he)
		}
	}
	slices.SortStableFunc(out, func(a, b *HostError) int { return strings.Compare(a.Host, b.Host) })
	return out
}

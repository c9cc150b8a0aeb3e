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

package main

import (
	"context"
	"errors"

	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/plan"
	"github.com/fleetdeploy/fleetdeploy/steps"
)

// Exit codes; README.md documents them.
const (
	exitOK          = 0
	exitFailed      = 1   // deploy/rollback failed, fleet unchanged
	exitUsage       = 2   // usage or inventory error (an unknown role or host too)
	exitLocked      = 3   // locked by another deploy
	exitDrift       = 4   // status found drift or an unreachable host
	exitSplit       = 5   // cutover incomplete: the fleet may be split
	exitAfterHook   = 6   // deployed, but a finishing step (after_cutover hook, cleanup) failed
	exitReverted    = 7   // deployed, a health check failed (or Ctrl-C during the checks): fleet switched back
	exitInterrupted = 130 // interrupted before the barrier
)

// usageError is a command line the tool cannot act on.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// driftError is a status that found hosts out of line.
type driftError struct{ msg string }

func (e *driftError) Error() string { return e.msg }

// codeError carries the exit code of a nested run (the sandbox demo runs the
// CLI's own commands).
type codeError struct {
	code int
	msg  string
}

func (e *codeError) Error() string { return e.msg }

// results name the exit codes for the local hooks (FLEETDEPLOY_RESULT).
var results = map[int]string{
	exitOK: "ok", exitFailed: "failed", exitUsage: "usage", exitLocked: "locked", exitDrift: "drift",
	exitSplit: "split", exitAfterHook: "finish-failed", exitReverted: "reverted", exitInterrupted: "interrupted",
}

// exitCode is the one place errors become exit codes.
func exitCode(err error) int {
	var (
		inv    inventory.Errors
		sel    *inventory.SelectError
		usage  *usageError
		locked *steps.LockedError
		cut    *plan.CutoverError
		guard  *plan.GuardError
		fin    *plan.FinishError
		intr   *plan.InterruptedError
		drift  *driftError
		nested *codeError
	)
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &nested):
		return nested.code
	case errors.As(err, &inv), errors.As(err, &sel), errors.As(err, &usage):
		return exitUsage
	case errors.As(err, &guard):
		if guard.Split() {
			return exitSplit
		}
		return exitReverted
	case errors.As(err, &cut):
		if cut.Split() {
			return exitSplit
		}
		return exitFailed
	case errors.As(err, &fin):
		return exitAfterHook
	case errors.As(err, &intr), errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.As(err, &locked):
		return exitLocked
	case errors.As(err, &drift):
		return exitDrift
	}
	return exitFailed
}

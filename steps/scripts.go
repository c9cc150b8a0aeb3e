package steps

import (
	_ "embed"

	"github.com/fleetdeploy/fleetdeploy/remote"
)

// The host scripts are shell files of their own (steps/scripts/*.sh), so that
// shellcheck reads them, fed named parameters (remote.Param). Shell rather
// than a helper binary on the hosts: docs/ARCHITECTURE.md says why.
var (
	//go:embed scripts/lib.sh
	libSh string
	//go:embed scripts/prepare.sh
	prepareSh string
	//go:embed scripts/unprepare.sh
	unprepareSh string
	//go:embed scripts/lock.sh
	lockSh string
	//go:embed scripts/finish.sh
	finishSh string
	//go:embed scripts/inspect.sh
	inspectSh string
	//go:embed scripts/verify.sh
	verifySh string
	//go:embed scripts/sweep.sh
	sweepSh string
	//go:embed scripts/probe.sh
	probeSh string
)

var (
	prepareScript   = &remote.Script{Name: "prepare", Body: libSh + prepareSh}
	unprepareScript = &remote.Script{Name: "unprepare", Body: libSh + unprepareSh, Brief: true}
	lockScript      = &remote.Script{Name: "lock", Body: lockSh, Brief: true}
	finishScript    = &remote.Script{Name: "finish", Body: libSh + finishSh, Brief: true}
	sweepScript     = &remote.Script{Name: "sweep", Body: libSh + sweepSh, Brief: true}
	probeScript     = &remote.Script{Name: "probe", Body: probeSh, Brief: true}
	inspectScript   = &remote.Script{Name: "inspect", Body: libSh + inspectSh, Brief: true}
	verifyScript    = &remote.Script{Name: "verify", Body: verifySh}
)

// Exit statuses of the host scripts: the contract between them and the Go
// code that reads them. Each script lists the ones it uses at its top as
// EXIT_NAME=N, and TestExitCodesAgree fails when a number differs.
const (
	exitFailed        = 1  // EXIT_FAILED: anything else; stderr says what
	exitSharedMissing = 3  // EXIT_SHARED_MISSING: a shared file is missing on the host
	exitExists        = 17 // EXIT_EXISTS: builds/ID exists already
	exitLocked        = 75 // EXIT_LOCKED: the lock is held; its holder on stdout
	exitLockLost      = 76 // EXIT_LOCK_LOST: the lock is no longer this run's; "lock<TAB>TEXT" on stdout
	exitCorrupt       = 78 // EXIT_CORRUPT: the live build's manifest is corrupt
	exitDirty         = 79 // EXIT_DIRTY: reused files changed by hand; "dirty<TAB>path" lines on stdout
)

// params makes a script's named parameters from name, value pairs.
func params(kv ...string) []remote.Param {
	out := make([]remote.Param, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, remote.Param{Name: kv[i], Value: kv[i+1]})
	}
	return out
}

// list adds a list parameter: name once for each value.
func list(ps []remote.Param, name string, values []string) []remote.Param {
	for _, v := range values {
		ps = append(ps, remote.Param{Name: name, Value: v})
	}
	return ps
}

package steps

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/fleetdeploy/fleetdeploy/remote"
)

// Lock takes the host's deploy lock atomically (symlink(2) fails when the
// lock exists), then checks that nothing changed since the state the plan was
// made from was read. Both over SFTP: no process is started.
func Lock(l Layout, holder string, fingerprint string) Step {
	return Step{
		Name: "locking",
		Ops:  []Op{TakeLock{Layout: l, Holder: holder, Fingerprint: fingerprint}},
		Undo: Unlock(l, holder).Ops,
	}
}

// TakeLock creates the lock naming Holder, then reads the state again: a
// Snapshot other than Fingerprint means another run changed the host since
// it was read, and the op fails.
type TakeLock struct {
	Layout      Layout
	Holder      string
	Fingerprint string
}

// Calls is the symlink that takes the lock.
func (t TakeLock) Calls() []remote.Call {
	return []remote.Call{{Method: remote.MethodSymlink, Path: t.Layout.Lock(), Arg: t.Holder}}
}

// Note says what else happens.
func (t TakeLock) Note() string { return "(fails if it exists; then reads the state again)" }

// Run takes the lock and compares the state.
func (t TakeLock) Run(ctx context.Context, h remote.Host, _ io.Writer) error {
	if err := takeLock(ctx, h, t.Layout, t.Holder); err != nil {
		return err
	}
	snap, err := Snapshot(ctx, h, t.Layout)
	if err != nil {
		return err
	}
	if snap != t.Fingerprint {
		return errors.New("the host changed between planning and locking (another deploy just ran?): run again")
	}
	return nil
}

func takeLock(ctx context.Context, h remote.Host, l Layout, holder string) error {
	if h.Symlink(ctx, holder, l.Lock()) == nil {
		return nil
	}
	if who, err := h.Readlink(ctx, l.Lock()); err == nil {
		return &LockedError{Holder: who}
	}
	// No lock there, and SFTP cannot say why it failed (its status codes drop
	// errno): the folder may be missing (a new host), or the disk read-only.
	// ln in a shell makes the folder and names the cause.
	out, err := h.Run(ctx, remote.Cmd{Script: lockScript, Params: params("root", l.Root, "holder", holder)})
	var ee *remote.ExitError
	if errors.As(err, &ee) && ee.Status == exitLocked {
		return &LockedError{Holder: string(out)}
	}
	return err
}

// Unlock removes the lock if this run holds it.
func Unlock(l Layout, holder string) Step {
	return Step{Name: "unlocking", Ops: []Op{ReleaseLock{Layout: l, Holder: holder}}}
}

// ForceUnlock removes any lock, for `fleetdeploy unlock`.
func ForceUnlock(l Layout) Step {
	return Step{Name: "unlocking", Ops: []Op{RemoveIfExists(l.Lock())}}
}

// ReleaseLock removes the lock when it still names Holder, and leaves
// another run's lock alone (an error says whose it is).
type ReleaseLock struct {
	Layout Layout
	Holder string
}

// Calls is the remove.
func (r ReleaseLock) Calls() []remote.Call {
	return []remote.Call{{Method: remote.MethodRemove, Path: r.Layout.Lock()}}
}

// Note says it checks first.
func (r ReleaseLock) Note() string { return "(if it is ours)" }

// Run reads the lock, then removes it if it is ours.
func (r ReleaseLock) Run(ctx context.Context, h remote.Host, _ io.Writer) error {
	who, err := h.Readlink(ctx, r.Layout.Lock())
	if isNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if who != r.Holder {
		return fmt.Errorf("the lock is now held by %s: leaving it", who)
	}
	return h.Remove(ctx, r.Layout.Lock())
}

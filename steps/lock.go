package steps

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync"
	"time"

	"github.com/fleetdeploy/fleetdeploy/remote"
)

// DefaultLease is how long a lock stays good without being refreshed; its
// holder refreshes it every third of that while it runs.
const DefaultLease = 2 * time.Minute

// Holder names a run holding a host's deploy lock. It is written into the
// lock, a symlink's target (created atomically: symlink(2) fails when the
// lock exists; read in one request), and read back by other runs.
type Holder struct {
	By      string // user@machine pid N
	Action  string // up, rollback
	Release string
	Since   time.Time
	Run     string        // random: names this run among runs of the same person
	Lease   time.Duration // 0 in locks of versions without leases: never stale
}

// NewHolder is a holder for a new run of by, with a fresh run name.
func NewHolder(by string, lease time.Duration) Holder {
	var b [6]byte
	rand.Read(b[:])
	if lease <= 0 {
		lease = DefaultLease
	}
	return Holder{By: by, Run: hex.EncodeToString(b[:]), Lease: lease}
}

// For is h holding the lock for action on release, from now.
func (h Holder) For(action, release string, now time.Time) Holder {
	h.Action, h.Release, h.Since = action, release, now.UTC().Truncate(time.Second)
	return h
}

// String is the lock's text: "BY, ACTION RELEASE, since TIME; run RUN; lease LEASE".
func (h Holder) String() string {
	s := fmt.Sprintf("%s, %s %s, since %s", sanitize(h.By), h.Action, h.Release, h.Since.UTC().Format(time.RFC3339))
	if h.Run != "" {
		s += "; run " + h.Run + "; lease " + h.Lease.String()
	}
	return s
}

// Who is the holder as people read it: who, doing what, since when.
func (h Holder) Who() string {
	if h.Action == "" {
		return h.By
	}
	return fmt.Sprintf("%s, %s %s, since %s", h.By, h.Action, h.Release, h.Since.UTC().Format(time.RFC3339))
}

// ParseHolder reads a lock's text. A text it cannot read (an older
// version's, or not fleetdeploy's) is kept whole in By, with no lease.
func ParseHolder(s string) Holder {
	h := Holder{By: s}
	main, rest, ok := strings.Cut(s, "; run ")
	if !ok {
		return h
	}
	run, lease, ok := strings.Cut(rest, "; lease ")
	d, err := time.ParseDuration(lease)
	if !ok || err != nil || d <= 0 || run == "" {
		return h
	}
	parts := strings.SplitN(main, ", ", 3)
	if len(parts) != 3 {
		return h
	}
	action, release, _ := strings.Cut(parts[1], " ")
	since, err := time.Parse(time.RFC3339, strings.TrimPrefix(parts[2], "since "))
	if err != nil {
		return h
	}
	return Holder{By: parts[0], Action: action, Release: release, Since: since, Run: run, Lease: d}
}

// LockInfo is a host's lock as read.
type LockInfo struct {
	Text      string    // the lock's target, as written (sanitized for display by Holder)
	Holder    Holder    // parsed from Text
	NotOurs   string    // the kind of file at the lock's path when it is not a symlink ("regular file", ...)
	Refreshed time.Time // when its holder last wrote it (mtime), by the host's clock
	Now       time.Time // the host's clock when it was read; zero when unknown
}

// Age is how long ago the lock was last refreshed, by the host's clock (0
// when the host's time is unknown).
func (li *LockInfo) Age() time.Duration {
	if li == nil || li.Now.IsZero() || li.Refreshed.IsZero() {
		return 0
	}
	return max(0, li.Now.Sub(li.Refreshed))
}

// Stale reports whether the lock's holder stopped refreshing it for longer
// than its lease: that run is dead, and another may take the lock over. A
// lock without a lease, or read without the host's time, is never stale.
func (li *LockInfo) Stale() bool {
	return li != nil && li.NotOurs == "" && li.Holder.Lease > 0 && !li.Now.IsZero() && li.Age() > li.Holder.Lease
}

// Describe says whose lock it is and how fresh, for messages.
func (li *LockInfo) Describe() string {
	if li.NotOurs != "" {
		return fmt.Sprintf("the lock is %s, not fleetdeploy's lock", li.NotOurs)
	}
	s := remote.Sanitize(li.Holder.Who())
	if age := li.Age(); !li.Now.IsZero() {
		s += fmt.Sprintf("; last refreshed %s ago", age.Round(time.Second))
		if li.Holder.Lease > 0 {
			s += fmt.Sprintf(" (lease %s)", li.Holder.Lease)
		}
	}
	return s
}

// Lease is one host's lock held by this run: taken by TakeLock, kept fresh
// in the background, checked by the staging before the cutover and given back
// by ReleaseLock. It is shared by those ops of one host's plan.
type Lease struct {
	Layout Layout
	Holder Holder

	mu      sync.Mutex
	stop    chan struct{} // closes the refresher; nil when none runs
	stopped chan struct{}
	lost    error // why the lock is no longer this run's
}

// NewLease is the lock of holder on the host with layout l, not taken yet.
func NewLease(l Layout, holder Holder) *Lease { return &Lease{Layout: l, Holder: holder} }

// start refreshes the lock every third of its lease until stopped: a fresh
// symlink renamed over the lock, as long as the lock is still this run's.
func (ls *Lease) start(h remote.Host) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.stop != nil || ls.Holder.Lease <= 0 {
		return
	}
	ls.stop, ls.stopped = make(chan struct{}), make(chan struct{})
	go func(stop, stopped chan struct{}) {
		defer close(stopped)
		t := time.NewTicker(ls.Holder.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), ls.Holder.Lease/3)
			err := ls.refresh(ctx, h)
			cancel()
			if err != nil && !errors.Is(err, remote.ErrConnLost) {
				ls.mu.Lock()
				if ls.lost == nil {
					ls.lost = err
				}
				ls.mu.Unlock()
				return
			}
		}
	}(ls.stop, ls.stopped)
}

// refresh rewrites the lock, if it is still this run's.
func (ls *Lease) refresh(ctx context.Context, h remote.Host) error {
	text := ls.Holder.String()
	who, err := h.Readlink(ctx, ls.Layout.Lock())
	if err != nil && !isNotExist(err) {
		return fmt.Errorf("%w (refreshing the lock)", err)
	}
	if who != text {
		return lostLock(who)
	}
	tmp := ls.Layout.Lock() + "." + ls.Holder.Run
	h.Remove(ctx, tmp) // a refresh cut short earlier
	if err := h.Symlink(ctx, text, tmp); err != nil {
		return err
	}
	return h.Rename(ctx, tmp, ls.Layout.Lock())
}

func lostLock(now string) error {
	if now == "" {
		return errors.New("this run's lock was removed from the host while it ran (fleetdeploy unlock --force?)")
	}
	return fmt.Errorf("this run's lock was taken over while it ran, now held by %s", remote.Sanitize(ParseHolder(now).Who()))
}

// halt stops the refresher and waits for it.
func (ls *Lease) halt() {
	ls.mu.Lock()
	stop, stopped := ls.stop, ls.stopped
	ls.stop = nil
	ls.mu.Unlock()
	if stop != nil {
		close(stop)
		<-stopped
	}
}

// Lock takes the host's deploy lock, then checks that nothing changed since
// st, the state the plan was made from, was read. A stale lock in st (a
// dead run's) is taken over.
func Lock(ls *Lease, st *State) Step {
	t := TakeLock{Lease: ls, Fingerprint: st.Fingerprint(), Fresh: st.fresh}
	if st.Lock.Stale() {
		t.Stale = st.Lock
	}
	return Step{
		Name: "locking",
		Ops:  []Op{t},
		Undo: []Op{ReleaseLock{Lease: ls, Quiet: true}},
	}
}

// TakeLock creates the lock naming the lease's holder (taking over Stale
// first, when set), then reads the state again: a Snapshot other than
// Fingerprint means another run changed the host since it was read, and the
// op fails. Once taken, the lock is refreshed until ReleaseLock.
type TakeLock struct {
	Lease       *Lease
	Fingerprint string
	Stale       *LockInfo
	// Fresh says the host had no .fleetdeploy folder: the lock script makes
	// it and takes the lock, without the SFTP symlink that would fail first.
	Fresh bool
}

// Calls is the symlink that takes the lock (the lock script on a new host).
func (t TakeLock) Calls() []remote.Call {
	if t.Fresh {
		return []remote.Call{remote.Run(t.script())}
	}
	return []remote.Call{{Method: remote.MethodSymlink, Path: t.Lease.Layout.Lock(), Arg: t.Lease.Holder.String()}}
}

func (t TakeLock) script() remote.Cmd { return lockCmd(t.Lease.Layout, t.Lease.Holder.String()) }

func lockCmd(l Layout, text string) remote.Cmd {
	return remote.Cmd{Script: lockScript, Params: params("root", l.Root, "holder", text)}
}

// Note says what else happens.
func (t TakeLock) Note() string {
	n := "(fails if it exists; then reads the state again)"
	if t.Fresh {
		n = "(then reads the state again)"
	}
	if t.Stale != nil {
		n = "(after taking over the stale lock of " + t.Stale.Describe() + "; then reads the state again)"
	}
	return n
}

// Run takes the lock and reads the state in one round trip (the symlink
// first: an SFTP server carries requests out in order, so the state is read
// under the lock), compares the state and starts refreshing the lock.
func (t TakeLock) Run(ctx context.Context, h remote.Host, _ io.Writer) error {
	err := t.take(ctx, h)
	var le *LockedError
	if errors.As(err, &le) && strings.TrimSpace(le.Lock.Text) == t.Lease.Holder.String() {
		return fmt.Errorf("%s is locked by this very run, through another host of the inventory: two hosts reach the same root (one server under two names?); list it once", t.Lease.Layout.Root)
	}
	return err
}

// take is Run, without telling a lock of this run's own apart.
func (t TakeLock) take(ctx context.Context, h remote.Host) error {
	l := t.Lease.Layout
	if t.Stale != nil {
		if err := takeOver(ctx, h, t.Lease, t.Stale); err != nil {
			return err
		}
	}
	text := t.Lease.Holder.String()
	if t.Fresh {
		if err := lockedOrMake(ctx, h, l, text); err != nil {
			return err
		}
		t.Lease.start(h)
		return t.compare(Snapshot(ctx, h, l))
	}
	p := remote.NewPipeline(h)
	took := p.Symlink(text, l.Lock())
	read := readSnapshot(p, l)
	if err := p.Wait(ctx); err != nil {
		return err
	}
	snap, err := read()
	if took.Err() != nil {
		if who, err := h.Readlink(ctx, l.Lock()); err == nil {
			return &LockedError{Lock: &LockInfo{Text: who, Holder: ParseHolder(who)}}
		}
		if err := lockedOrMake(ctx, h, l, text); err != nil {
			return err
		}
		// Taken after that state was read: read it again.
		snap.fingerprint, err = Snapshot(ctx, h, l)
	}
	if err != nil {
		return err
	}
	t.Lease.start(h)
	return t.compare(snap.fingerprint, nil)
}

// compare fails when the state read under the lock is not the one planned from.
func (t TakeLock) compare(fingerprint string, err error) error {
	if err != nil {
		return err
	}
	if fingerprint != t.Fingerprint {
		return errors.New("the host changed between planning and locking (another deploy just ran?): run again")
	}
	return nil
}

// takeOver moves a stale lock aside, atomically, and makes sure it moved the
// lock it judged stale: a lock refreshed or replaced meanwhile is put back
// and the host counts as locked.
func takeOver(ctx context.Context, h remote.Host, ls *Lease, stale *LockInfo) error {
	l := ls.Layout
	aside := l.Lock() + ".stale-" + ls.Holder.Run
	if err := h.Rename(ctx, l.Lock(), aside); err != nil {
		if isNotExist(err) {
			return nil // gone meanwhile: take it as usual
		}
		return fmt.Errorf("moving the stale lock aside: %w", err)
	}
	moved, err := h.Readlink(ctx, aside)
	if err == nil && moved == stale.Text {
		if fi, err := h.Lstat(ctx, aside); err == nil && fi.ModTime().Equal(stale.Refreshed) {
			return h.Remove(ctx, aside)
		}
	}
	// Not the lock judged stale (its holder refreshed it, or another run took
	// it over meanwhile): put it back; if another lock is there by now, that
	// one wins and this one is gone.
	if err == nil {
		h.Symlink(ctx, moved, l.Lock())
	}
	h.Remove(ctx, aside)
	return &LockedError{Lock: &LockInfo{Text: moved, Holder: ParseHolder(moved)}}
}

// lockedOrMake takes the lock with ln in a shell, making its folder first:
// on a new host, or after an SFTP symlink failed with no lock there (SFTP's
// status codes drop errno: ln names the cause, a read-only disk, a full
// one). A lock held is a LockedError naming its holder.
func lockedOrMake(ctx context.Context, h remote.Host, l Layout, text string) error {
	out, err := h.Run(ctx, lockCmd(l, text))
	var ee *remote.ExitError
	if errors.As(err, &ee) && ee.Status == exitLocked {
		return &LockedError{Lock: &LockInfo{Text: string(out), Holder: ParseHolder(string(out))}}
	}
	return err
}

// holds says whether the lock, read as who (err: how reading it failed), is
// still this run's: an error when it is not, or when the refresher found it
// lost.
func (ls *Lease) holds(who string, err error) error {
	ls.mu.Lock()
	lost := ls.lost
	ls.mu.Unlock()
	if lost != nil {
		return lost
	}
	if err != nil && !isNotExist(err) {
		return err
	}
	if who != ls.Holder.String() {
		return lostLock(who)
	}
	return nil
}

// Unlock gives the lock back at the end of a run. A lock that is no longer
// this run's is left alone, and said so.
func Unlock(ls *Lease) Step {
	return Step{Name: "unlocking", Ops: []Op{ReleaseLock{Lease: ls}}}
}

// ReleaseLock stops refreshing the lock and removes it when it still names
// this run; another run's lock is left alone. Quiet (an undo, which may run
// before the lock was ever taken) makes that a success rather than an error.
type ReleaseLock struct {
	Lease *Lease
	Quiet bool
}

// Calls is the remove.
func (r ReleaseLock) Calls() []remote.Call {
	return []remote.Call{{Method: remote.MethodRemove, Path: r.Lease.Layout.Lock()}}
}

// Note says it checks first.
func (r ReleaseLock) Note() string { return "(if it is ours)" }

// Run reads the lock, then removes it if it is ours.
func (r ReleaseLock) Run(ctx context.Context, h remote.Host, _ io.Writer) error {
	r.Lease.halt()
	l := r.Lease.Layout
	who, err := h.Readlink(ctx, l.Lock())
	if isNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if who != r.Lease.Holder.String() {
		if r.Quiet {
			return nil
		}
		return fmt.Errorf("the lock is now held by %s: leaving it", remote.Sanitize(ParseHolder(who).Who()))
	}
	if err := h.Remove(ctx, l.Lock()); err != nil && !isNotExist(err) {
		return err
	}
	return nil
}

// ForceUnlock removes whatever is at the lock's path, for `fleetdeploy
// unlock`, and checks that it is gone.
func ForceUnlock(l Layout) Step {
	return Step{Name: "unlocking", Ops: []Op{RemoveChecked{Path: l.Lock()}}}
}

// RemoveChecked removes a file or symlink and checks that it is gone: a
// remove that reports success and leaves it (a read-only disk, a server
// whose error is lost) is an error.
type RemoveChecked struct{ Path string }

// Calls is the remove.
func (r RemoveChecked) Calls() []remote.Call {
	return []remote.Call{{Method: remote.MethodRemove, Path: r.Path}}
}

// Run removes, then looks.
func (r RemoveChecked) Run(ctx context.Context, h remote.Host, _ io.Writer) error {
	err := h.Remove(ctx, r.Path)
	if err != nil && !isNotExist(err) {
		return err
	}
	if _, lerr := h.Lstat(ctx, r.Path); !errors.Is(lerr, fs.ErrNotExist) {
		if lerr != nil {
			return fmt.Errorf("removing %s: %v; then: %w", r.Path, err, lerr)
		}
		if err == nil {
			err = errors.New("the server reported success")
		}
		return fmt.Errorf("%s is still there after removing it (%v)", r.Path, err)
	}
	return nil
}

// hostNow reads the host's clock without starting a process: the time a
// fresh symlink in fleetdeploy's folder gets. Zero when it cannot (a
// read-only disk): then no lock counts as stale.
func hostNow(ctx context.Context, h remote.Host, l Layout, run string) time.Time {
	p := l.join(".fleetdeploy", "clock-"+run)
	if err := h.Symlink(ctx, "clock", p); err != nil {
		return time.Time{}
	}
	defer h.Remove(context.WithoutCancel(ctx), p)
	fi, err := h.Lstat(ctx, p)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

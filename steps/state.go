package steps

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/fleetdeploy/fleetdeploy/remote"
)

// State is what a host's root holds, read in one round trip without writing anything.
type State struct {
	RootExists bool
	LatestKind string // "none", "link", "dir" or "other"
	Latest     string // build ID latest points to ("" when none or not a build)
	LatestLink string // raw symlink target
	Builds     []string
	Foreign    []string // names in builds/ that are not fleetdeploy builds
	Staging    []string
	Pending    []string  // builds complete but never live
	Lock       *LockInfo // nil when unlocked
	History    []HistoryEntry
	Marker     Marker // the current build's marker
	// Bad lists builds marked bad: they went live, failed their health
	// check and were switched back (kept for inspection, never picked by
	// rollback unless named).
	Bad      []string
	NoShared []string // shared paths absent from shared/
	// Manifest is the digest of the live build's manifest ("" when it has none).
	Manifest string
	// Dirty lists files of the live build changed on the host since it was made.
	Dirty []string
	// Problems are what is wrong with the root's layout: nothing may be done
	// on the host until they are mended.
	Problems []string

	snapshot string // see Snapshot
	fresh    bool   // no .fleetdeploy folder: a host never deployed to
}

// HistoryEntry is one line of the live history: a build that went live.
//
// A line is TIME, ACTION, RELEASE, BY, PREVIOUS, SOURCE and, on up lines,
// CHECKSUM, separated by tabs.
// Versions before health checks wrote the first four only (and "deploy" for
// "up"); such lines read with Previous and Source empty.
type HistoryEntry struct {
	Time     time.Time
	Action   string // "up", "rollback", "revert" or "observed" ("deploy" in older lines: an up)
	Release  string
	By       string // user@machine pid N
	Previous string // the build live before ("" when none, or unknown in older lines)
	Source   string // where the build came from (a git commit, an artifact's checksum); "" when unknown
	// Checksum is the digest of the build's manifest, on up lines (versions
	// before it wrote none): the next run reads it here rather than from the
	// build's marker, a round trip earlier.
	Checksum string
}

// History actions.
const (
	ActionUp       = "up"
	ActionRollback = "rollback"
	ActionRevert   = "revert"   // the automatic switch back after a failed health check
	ActionObserved = "observed" // a live build found without a record of it
)

// Kind is the entry's action as today's versions write it: "deploy", of
// older lines, is an up.
func (e HistoryEntry) Kind() string {
	if e.Action == "deploy" {
		return ActionUp
	}
	return e.Action
}

func (e HistoryEntry) line() string {
	f := []string{e.Time.UTC().Format(time.RFC3339), e.Action, e.Release, sanitize(e.By), e.Previous, sanitize(e.Source)}
	if e.Checksum != "" {
		f = append(f, sanitize(e.Checksum))
	}
	return strings.Join(f, "\t")
}

// Marker is what a host knows of one build.
type Marker struct {
	Release  string
	Checksum string
	Previous string // the build live when this one was prepared
	Created  string
	By       string
	// Source is what the build was made from (build.Source.String(): a git
	// commit, dirty or not, or an artifact's sha256); "" in markers written
	// before it was recorded, and then left out of the text.
	Source string
}

func (m Marker) text() string {
	s := fmt.Sprintf("release=%s\nchecksum=%s\nprevious=%s\ncreated=%s\nby=%s\n",
		m.Release, m.Checksum, m.Previous, m.Created, sanitize(m.By))
	if m.Source != "" {
		s += "source=" + sanitize(m.Source) + "\n"
	}
	return s
}

// token names the run that made the build, on one line.
func (m Marker) token() string { return sanitize(m.Created + " " + m.By + " " + m.Release) }

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// IsBad reports whether build id is marked bad.
func (s *State) IsBad(id string) bool { return slices.Contains(s.Bad, id) }

// HasBuild reports whether builds/<id> exists.
func (s *State) HasBuild(id string) bool { return slices.Contains(s.Builds, id) }

// WentLive reports whether id appears in the live history.
func (s *State) WentLive(id string) bool {
	for _, e := range s.History {
		if e.Release == id {
			return true
		}
	}
	return false
}

// Fingerprint summarises what a concurrent deploy or rollback would change,
// as read just before the rest of the state (see Snapshot).
func (s *State) Fingerprint() string { return s.snapshot }

// Snapshot reads over SFTP, in one round trip and starting no process, what
// a concurrent deploy or rollback changes on a host: where latest points,
// the times of builds/, staging and pending (a name added or removed sets
// its folder's time) and the size and time of the live history. Look takes
// it in the same round trip as the rest of the state, its requests first,
// so that a change made after the state was read shows in a later Snapshot;
// TakeLock takes it with the lock.
//
// SFTP gives times to the second: a change to those folders in the second
// the state was read goes unseen. What matters cannot: a run that changes
// the host holds the lock meanwhile (the state read would have shown it, or
// it came after), and a run that went through its switch moved latest or
// grew the history, both exact; one that failed left nothing, or leftovers
// the next run sweeps.
func Snapshot(ctx context.Context, h remote.Host, l Layout) (string, error) {
	p := remote.NewPipeline(h)
	sn := readSnapshot(p, l)
	if err := p.Wait(ctx); err != nil {
		return "", err
	}
	s, err := sn()
	return s.fingerprint, err
}

// snap is a Snapshot, with where latest pointed for Look to use.
type snap struct {
	fingerprint string
	latest      string // "link:<target>", "none", "dir" or "other"
}

// readSnapshot adds a Snapshot's requests to p; once p is waited for, the
// function returned reads their answers.
func readSnapshot(p *remote.Pipeline, l Layout) func() (snap, error) {
	link, latest := p.Readlink(l.Latest()), p.Lstat(l.Latest())
	paths := []string{l.Builds(), l.join(".fleetdeploy", "staging"), l.join(".fleetdeploy", "pending"), l.History()}
	stats := make([]*remote.Result[fs.FileInfo], len(paths))
	for i, d := range paths {
		stats[i] = p.Lstat(d)
	}
	return func() (snap, error) {
		var s snap
		var errs []error
		fi, err := latest.Get()
		t, lerr := link.Get()
		switch {
		case lerr == nil:
			s.latest = "link:" + t
		case isNotExist(err):
			s.latest = "none"
		case err != nil:
			errs = append(errs, err)
		case fi.IsDir():
			s.latest = "dir"
		default:
			s.latest = "other"
		}
		seen := make([]string, len(paths))
		for i, r := range stats {
			fi, err := r.Get()
			switch {
			case isNotExist(err):
				seen[i] = "none"
			case err != nil:
				errs = append(errs, err)
			case i == len(paths)-1:
				seen[i] = fmt.Sprintf("%d bytes at %d", fi.Size(), fi.ModTime().Unix())
			default:
				seen[i] = fmt.Sprintf("at %d", fi.ModTime().Unix())
			}
		}
		s.fingerprint = fmt.Sprintf("latest %s; builds %s; staging %s; pending %s; history %s", s.latest, seen[0], seen[1], seen[2], seen[3])
		return s, errors.Join(errs...)
	}
}

// checkOutput bounds what the check script may print (manifest digest, files
// changed by hand): a live build of 100,000 files all changed fits.
const checkOutput = 16 << 20

// Inspect reads a host's state as Look does, then checks the live build's
// files against the identities recorded when it was made (and hashes its
// manifest), which takes a command on the host. It writes nothing but the
// clock probe Look makes when a lock is held.
func Inspect(ctx context.Context, h remote.Host, root string, shared []string) (*State, error) {
	s, err := Look(ctx, h, root, shared)
	if err != nil || s.Latest == "" || len(s.Problems) > 0 {
		return s, err
	}
	out, err := h.Run(ctx, remote.Cmd{Script: inspectScript, Params: params("root", root, "id", s.Latest)})
	if err != nil {
		return nil, err
	}
	if len(out) >= checkOutput {
		return nil, fmt.Errorf("checking the live build's files: more than %d bytes of output", checkOutput)
	}
	s.Manifest = ""
	for _, line := range strings.Split(string(out), "\n") {
		k, v, _ := strings.Cut(line, "\t")
		switch k {
		case "manifest":
			s.Manifest = v
		case "dirty":
			s.Dirty = append(s.Dirty, v)
		}
	}
	slices.Sort(s.Dirty)
	s.Dirty = slices.Compact(s.Dirty)
	return s, nil
}

// addHistory adds one line of the live history, split at tabs, when it is
// one: 4 fields (older versions) or more (fields a later version may add are
// ignored).
func (s *State) addHistory(f []string) {
	if len(f) < 4 {
		return
	}
	t, err := time.Parse(time.RFC3339, f[0])
	if err != nil || !IsRelease(f[2]) {
		return
	}
	e := HistoryEntry{Time: t, Action: f[1], Release: f[2], By: f[3]}
	if len(f) > 4 && IsRelease(f[4]) {
		e.Previous = f[4]
	}
	if len(f) > 5 {
		e.Source = f[5]
	}
	if len(f) > 6 && strings.HasPrefix(f[6], "sha256:") {
		e.Checksum = f[6]
	}
	s.History = append(s.History, e)
}

// set reads one key=value line of a marker.
func (m *Marker) set(line string) {
	k, v, _ := strings.Cut(line, "=")
	switch k {
	case "release":
		m.Release = v
	case "checksum":
		m.Checksum = v
	case "previous":
		m.Previous = v
	case "created":
		m.Created = v
	case "by":
		m.By = v
	case "source":
		m.Source = v
	}
}

// LiveOrder lists builds that went live, oldest first by their last time live:
// the order of the host's own history, never of names (laptop clocks differ).
func (s *State) LiveOrder() []string {
	var order []string
	for _, e := range s.History {
		order = slices.DeleteFunc(order, func(x string) bool { return x == e.Release })
		order = append(order, e.Release)
	}
	return order
}

// Verify re-hashes every file of a host's live build against its manifest
// (files below shared paths excepted) and returns the problems found. It
// writes nothing.
func Verify(ctx context.Context, h remote.Host, root, id string, shared []string) ([]string, error) {
	out, err := h.Run(ctx, remote.Cmd{Script: verifyScript, Params: list(params("root", root, "id", id), "shared", shared)})
	if err != nil {
		return nil, err
	}
	var problems []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" && !strings.HasPrefix(line, "sha256sum: WARNING") {
			problems = append(problems, line)
		}
	}
	return problems, nil
}

package steps

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
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
}

// HistoryEntry is one line of the live history: a build that went live.
//
// A line is TIME, ACTION, RELEASE, BY, PREVIOUS and SOURCE, separated by tabs.
// Versions before health checks wrote the first four only (and "deploy" for
// "up"); such lines read with Previous and Source empty.
type HistoryEntry struct {
	Time     time.Time
	Action   string // "up", "rollback", "revert" or "observed" ("deploy" in older lines: an up)
	Release  string
	By       string // user@machine pid N
	Previous string // the build live before ("" when none, or unknown in older lines)
	Source   string // where the build came from (a git commit, an artifact's checksum); "" when unknown
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
	return strings.Join([]string{e.Time.UTC().Format(time.RFC3339), e.Action, e.Release, sanitize(e.By), e.Previous, sanitize(e.Source)}, "\t")
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

// Snapshot reads over SFTP, starting no process, what a concurrent deploy or
// rollback changes on a host: where latest points, the names in builds/, in
// staging and in pending, and the size and time of the live history.
// Inspect takes it before it reads the rest of the state, so that a change
// made after the state was read always shows in a later Snapshot.
func Snapshot(ctx context.Context, h remote.Host, l Layout) (string, error) {
	s, err := snapshot(ctx, h, l)
	return s.fingerprint, err
}

// snap is a Snapshot, with where latest pointed for inspect to use.
type snap struct {
	fingerprint string
	latest      string // "link:<target>", "none", "dir" or "other"
	dirs        [3][]string
}

func snapshot(ctx context.Context, h remote.Host, l Layout) (snap, error) {
	var latest, history string
	var dirs [3][]string
	errs := make([]error, 5)
	var wg sync.WaitGroup
	wg.Go(func() {
		t, err := h.Readlink(ctx, l.Latest())
		if err == nil {
			latest = "link:" + t
			return
		}
		fi, err := h.Lstat(ctx, l.Latest())
		switch {
		case isNotExist(err):
			latest = "none"
		case err != nil:
			errs[0] = err
		case fi.IsDir():
			latest = "dir"
		default:
			latest = "other"
		}
	})
	for i, d := range []string{l.Builds(), l.join(".fleetdeploy", "staging"), l.join(".fleetdeploy", "pending")} {
		wg.Go(func() {
			names, err := h.ReadDir(ctx, d)
			if err != nil && !isNotExist(err) {
				errs[1+i] = err
			}
			dirs[i] = names
		})
	}
	wg.Go(func() {
		fi, err := h.Lstat(ctx, l.History())
		switch {
		case isNotExist(err):
			history = "none"
		case err != nil:
			errs[4] = err
		default:
			history = fmt.Sprintf("%d bytes at %d", fi.Size(), fi.ModTime().Unix())
		}
	})
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return snap{}, err
	}
	return snap{fmt.Sprintf("latest %s; builds %q; staging %q; pending %q; history %s", latest, dirs[0], dirs[1], dirs[2], history), latest, dirs}, nil
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

package steps

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/fleetdeploy/fleetdeploy/remote"
)

// historyTail bounds what Look reads of the live history: its last 2,000
// lines are some 160 KiB.
const historyTail = 256 << 10

// maxMarker bounds a build's marker (a few hundred bytes as written).
const maxMarker = 64 << 10

// ownFolders are the folders of a root that fleetdeploy makes and works in:
// each must be a real folder (or absent), never a symlink, which would make
// it write, move and remove elsewhere.
var ownFolders = []string{"builds", "shared", ".fleetdeploy", ".fleetdeploy/staging", ".fleetdeploy/pending", ".fleetdeploy/builds"}

// Look reads a host's state for a deploy or a rollback over SFTP alone,
// starting no process, in two round trips (one pipeline): the Snapshot
// (its requests first), the names in builds/, staging, pending and the
// marks of bad builds, the lock, the live history (its last 2,000 lines),
// the shared paths and the type of each of fleetdeploy's own folders. The
// live build's marker comes from the history's last line when that line
// is the up that made the live build (it carries the manifest's digest);
// else it is read, a round trip more. A host's state is untrusted: names
// that are not fleetdeploy's are set aside, and a folder of fleetdeploy's
// that is not a folder is a Problem. It takes the manifest's digest from
// the marker (or that line), the digest the manifest was made with, rather
// than hashing the file: a corrupt or missing manifest shows when the
// manifest merged from it does not match (see Prepare). When a lock is
// held, it reads the host's clock too (a symlink made and removed in
// .fleetdeploy), to tell a live lock from a stale one.
func Look(ctx context.Context, h remote.Host, root string, shared []string) (*State, error) {
	l := Layout{Root: root}
	p := remote.NewPipeline(h)
	sn := readSnapshot(p, l)
	var dirs [4]*remote.Result[[]string]
	for i, d := range []string{l.Builds(), l.join(".fleetdeploy", "staging"), l.join(".fleetdeploy", "pending"), l.join(".fleetdeploy", "builds")} {
		dirs[i] = p.ReadDir(d)
	}
	rootInfo := p.Lstat(root)
	own := make([]*remote.Result[fs.FileInfo], len(ownFolders))
	for i, d := range ownFolders {
		own[i] = p.Lstat(l.join(d))
	}
	lockText, lockInfo := p.Readlink(l.Lock()), p.Lstat(l.Lock())
	history := p.ReadTail(l.History(), historyTail)
	sharedInfo := make([]*remote.Result[fs.FileInfo], len(shared))
	for i, sp := range shared {
		sharedInfo[i] = p.Lstat(l.join("shared", sp))
	}
	if err := p.Wait(ctx); err != nil {
		return nil, err
	}

	var errs []error
	fail := func(err error) {
		if err != nil && !isNotExist(err) {
			errs = append(errs, err)
		}
	}
	snapshot, err := sn()
	fail(err)
	s := &State{LatestKind: "none", snapshot: snapshot.fingerprint}
	if t, ok := strings.CutPrefix(snapshot.latest, "link:"); ok {
		s.LatestKind, s.LatestLink = "link", t
		if id, ok := strings.CutPrefix(t, "builds/"); ok && IsRelease(id) {
			s.Latest = id
		}
	} else {
		s.LatestKind = snapshot.latest
	}
	var names [4][]string
	for i, r := range dirs {
		n, err := r.Get()
		fail(err)
		names[i] = n
	}
	s.sortEntries([3][]string{names[0], names[1], names[2]})
	for _, n := range names[3] {
		if id, ok := strings.CutSuffix(n, ".bad"); ok && IsRelease(id) {
			s.Bad = append(s.Bad, id)
		}
	}
	fi, err := rootInfo.Get()
	s.RootExists = err == nil
	if err == nil && !fi.IsDir() && fi.Mode()&fs.ModeSymlink == 0 {
		s.Problems = append(s.Problems, fmt.Sprintf("%s is not a folder", root))
	}
	fail(err)
	for i, d := range ownFolders {
		fi, err := own[i].Get()
		if d == ".fleetdeploy" {
			s.fresh = isNotExist(err)
		}
		if err == nil && !fi.IsDir() {
			s.Problems = append(s.Problems, fmt.Sprintf("%s is %s, not a folder: fleetdeploy never works through one; move it away", l.join(d), remote.FileKind(fi.Mode())))
		}
		fail(err)
	}
	b, err := history.Get()
	fail(err)
	s.readHistory(b, int64(len(b)) == historyTail)
	for i, sp := range shared {
		if _, err := sharedInfo[i].Get(); isNotExist(err) { // a root yet to be made has none
			s.NoShared = append(s.NoShared, sp)
		} else {
			fail(err)
		}
	}
	li, err := lockInfo.Get()
	fail(err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	slices.Sort(s.Bad)

	if s.Latest != "" {
		if m, ok := s.markerFromHistory(); ok {
			s.Marker, s.Manifest = m, m.Checksum
		} else if err := s.readMarker(ctx, h, l); err != nil {
			return nil, err
		}
	}
	if li != nil {
		s.Lock = &LockInfo{Refreshed: li.ModTime()}
		if text, err := lockText.Get(); err == nil && li.Mode()&fs.ModeSymlink != 0 {
			s.Lock.Text, s.Lock.Holder = text, ParseHolder(text)
		} else {
			s.Lock.NotOurs = remote.FileKind(li.Mode())
		}
		s.Lock.Now = hostNow(ctx, h, l, randomName())
	}
	return s, nil
}

// markerFromHistory is the live build's marker as the history's last line
// tells it, when that line is the up that made the live build and carries
// its manifest's digest (versions before it did not write one).
func (s *State) markerFromHistory() (Marker, bool) {
	if len(s.History) == 0 {
		return Marker{}, false
	}
	e := s.History[len(s.History)-1]
	if e.Kind() != ActionUp || e.Release != s.Latest || e.Checksum == "" {
		return Marker{}, false
	}
	return Marker{Release: e.Release, Checksum: e.Checksum, Previous: e.Previous, Created: e.Time.UTC().Format(time.RFC3339), By: e.By, Source: e.Source}, true
}

// readMarker reads the live build's marker, and whether its manifest is
// there, in one round trip more.
func (s *State) readMarker(ctx context.Context, h remote.Host, l Layout) error {
	p := remote.NewPipeline(h)
	marker := p.ReadFile(l.Marker(s.Latest), maxMarker)
	manifest := p.Lstat(l.Marker(s.Latest) + ".manifest")
	if err := p.Wait(ctx); err != nil {
		return err
	}
	b, err := marker.Get()
	if err != nil && !isNotExist(err) {
		return err
	}
	for _, line := range strings.Split(string(b), "\n") {
		s.Marker.set(line)
	}
	fi, err := manifest.Get()
	if err != nil && !isNotExist(err) {
		return err
	}
	if err == nil && fi.Mode().IsRegular() {
		s.Manifest = s.Marker.Checksum
	}
	return nil
}

// Writable checks that the login user can write in root, or, for a root not
// made yet, in the nearest folder on the way to it that exists (where it
// will be made): a symlink made and removed there. An error says where and
// why not.
func Writable(ctx context.Context, h remote.Host, root string) error {
	dir := root
	for {
		p := path.Join(dir, ".fleetdeploy-probe-"+randomName())
		err := h.Symlink(ctx, "probe", p)
		if err == nil {
			return h.Remove(ctx, p)
		}
		if !isNotExist(err) || dir == "/" || dir == "." {
			return fmt.Errorf("%s is not writable by the login user (%v): fix its owner or permissions", dir, whyNot(ctx, h, p, err))
		}
		dir = path.Dir(dir)
	}
}

// readHistory adds the lines of the live history's tail; cut says the tail
// starts in the middle of a line, which is dropped.
func (s *State) readHistory(b []byte, cut bool) {
	if cut {
		_, b, _ = bytes.Cut(b, []byte("\n"))
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 2000 {
		lines = lines[len(lines)-2000:]
	}
	for _, line := range lines {
		s.addHistory(strings.Split(line, "\t"))
	}
}

// sortEntries sorts the names found in builds/, staging and pending: only
// names fleetdeploy makes are acted upon; builds of other names are Foreign,
// other names elsewhere ignored.
func (s *State) sortEntries(dirs [3][]string) {
	for _, n := range dirs[0] {
		if IsRelease(n) {
			s.Builds = append(s.Builds, n)
		} else if n != "." && n != ".." {
			s.Foreign = append(s.Foreign, n)
		}
	}
	for _, n := range dirs[1] {
		if isStagingName(n) {
			s.Staging = append(s.Staging, n)
		}
	}
	for _, n := range dirs[2] {
		if IsRelease(n) {
			s.Pending = append(s.Pending, n)
		}
	}
}

// stagingSuffixes are the files prepare keeps beside a staging folder.
var stagingSuffixes = []string{"", ".skip", ".shared", ".reuse", ".found", ".dirty", ".suspect"}

// isStagingName reports whether a name in the staging folder is one prepare makes.
func isStagingName(n string) bool {
	id, suffix, _ := strings.Cut(n, ".")
	if suffix != "" {
		suffix = "." + suffix
	}
	for _, s := range stagingSuffixes {
		if s == suffix {
			return IsRelease(id)
		}
	}
	return false
}

func randomName() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// whyNot asks ln(1) why a symlink could not be made at p: SFTP's status
// codes drop errno ("Failure"), ln names the cause (a read-only file
// system, a full disk). It costs a command, on failure only.
func whyNot(ctx context.Context, h remote.Host, p string, sftpErr error) error {
	_, err := h.Run(ctx, remote.Cmd{Args: []string{"ln", "-s", "--", "probe", p}})
	var ee *remote.ExitError
	if errors.As(err, &ee) && ee.Stderr != "" {
		return errors.New(ee.Stderr)
	}
	if err == nil {
		h.Remove(context.WithoutCancel(ctx), p)
	}
	return sftpErr
}

// LookToChange is Look for a run that will change the host (up, rollback,
// and their dry runs), which also checks, in the same round trip, that the
// root can be written (Writable): a Problem when it cannot, so that every
// host's is named before anything is written anywhere.
func LookToChange(ctx context.Context, h remote.Host, root string, shared []string) (*State, error) {
	var werr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		werr = Writable(ctx, h, root)
	}()
	s, err := Look(ctx, h, root, shared)
	<-done
	if err == nil && werr != nil && ctx.Err() == nil {
		s.Problems = append(s.Problems, werr.Error())
	}
	return s, err
}

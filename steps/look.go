package steps

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/fleetdeploy/fleetdeploy/remote"
)

// historyTail bounds what Look reads of the live history: its last 2,000
// lines, as Inspect prints them, are some 160 KiB.
const historyTail = 256 << 10

// Look reads a host's state for a deploy or a rollback over SFTP alone,
// starting no process: after the Snapshot (read first, as Inspect does), the
// lock, the live build's marker, the live history (its last 2,000 lines, as
// Inspect) and the shared paths, all at once. Unlike Inspect it does not check
// the live build's files against their record (prepare does, under the lock),
// and it takes the manifest's digest from the marker, the digest the manifest
// was made with, rather than hashing the file: a corrupt manifest shows when
// the manifest merged from it does not match (see Prepare).
func Look(ctx context.Context, h remote.Host, root string, shared []string) (*State, error) {
	l := Layout{Root: root}
	sn, err := snapshot(ctx, h, l)
	if err != nil {
		return nil, err
	}
	s := &State{LatestKind: "none", snapshot: sn.fingerprint}
	if t, ok := strings.CutPrefix(sn.latest, "link:"); ok {
		s.LatestKind, s.LatestLink = "link", t
		if id, ok := strings.CutPrefix(t, "builds/"); ok && IsRelease(id) {
			s.Latest = id
		}
	} else {
		s.LatestKind = sn.latest
	}
	for _, n := range sn.dirs[0] {
		if IsRelease(n) {
			s.Builds = append(s.Builds, n)
		} else {
			s.Foreign = append(s.Foreign, n)
		}
	}
	s.Staging, s.Pending = sn.dirs[1], sn.dirs[2]
	var mu sync.Mutex
	var wg sync.WaitGroup
	var errs []error
	fail := func(err error) {
		if err != nil && !isNotExist(err) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	}
	wg.Go(func() {
		_, err := h.Lstat(ctx, root)
		s.RootExists = err == nil
		fail(err)
	})
	wg.Go(func() {
		t, err := h.Readlink(ctx, l.Lock())
		s.Lock = t
		fail(err)
	})
	var hasManifest bool
	if s.Latest != "" {
		wg.Go(func() {
			b, err := h.ReadFile(ctx, l.Marker(s.Latest))
			fail(err)
			for _, line := range strings.Split(string(b), "\n") {
				s.Marker.set(line)
			}
		})
		wg.Go(func() {
			_, err := h.Lstat(ctx, l.Marker(s.Latest)+".manifest")
			hasManifest = err == nil
			fail(err)
		})
	}
	wg.Go(func() {
		b, err := h.ReadTail(ctx, l.History(), historyTail)
		fail(err)
		if int64(len(b)) == historyTail {
			_, b, _ = bytes.Cut(b, []byte("\n")) // a line cut short
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 2000 {
			lines = lines[len(lines)-2000:]
		}
		for _, line := range lines {
			s.addHistory(strings.Split(line, "\t"))
		}
	})
	noShared := make([]bool, len(shared))
	for i, p := range shared {
		wg.Go(func() {
			_, err := h.Lstat(ctx, l.join("shared", p))
			noShared[i] = isNotExist(err)
			fail(err)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if hasManifest {
		s.Manifest = s.Marker.Checksum
	}
	for i, p := range shared {
		if noShared[i] && s.RootExists { // no root: nothing to tell, as Inspect
			s.NoShared = append(s.NoShared, p)
		}
	}
	return s, nil
}

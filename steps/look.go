package steps

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/fleetdeploy/fleetdeploy/remote"
)

// Look reads a host's state for a deploy over SFTP alone (PROTOTYPE): no
// process starts; files changed by hand are found by prepare instead.
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
				k, v, _ := strings.Cut(line, "=")
				switch k {
				case "release":
					s.Marker.Release = v
				case "checksum":
					s.Marker.Checksum = v
				case "previous":
					s.Marker.Previous = v
				case "created":
					s.Marker.Created = v
				case "by":
					s.Marker.By = v
				}
			}
		})
		wg.Go(func() {
			_, err := h.Lstat(ctx, l.Marker(s.Latest)+".manifest")
			hasManifest = err == nil
			fail(err)
		})
	}
	wg.Go(func() {
		b, err := h.ReadFile(ctx, l.History())
		fail(err)
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 2000 {
			lines = lines[len(lines)-2000:]
		}
		for _, line := range lines {
			f := strings.Split(line, "\t")
			if len(f) != 4 {
				continue
			}
			t, err := time.Parse(time.RFC3339, f[0])
			if err == nil && IsRelease(f[2]) {
				s.History = append(s.History, HistoryEntry{Time: t, Action: f[1], Release: f[2], By: f[3]})
			}
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
	if len(errs) > 0 {
		return nil, errs[0]
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

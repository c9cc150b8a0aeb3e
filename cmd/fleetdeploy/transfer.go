package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fleetdeploy/fleetdeploy/build"
	"github.com/fleetdeploy/fleetdeploy/fleet"
	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/link"
	"github.com/fleetdeploy/fleetdeploy/plan"
	"github.com/fleetdeploy/fleetdeploy/steps"
)

// shipping makes each host's payload: what plan.Ship decides, written by the
// build, paced for the fleet's links.
type shipping struct {
	c      *common
	f      *fleet.Fleet
	env    *inventory.Environment
	cache  fleet.Cache
	window int64       // steps.Payload.Window of uncompressed payloads (paceWindow)
	meter  *link.Meter // times each host's upload, for the next run's choice of compression; nil: not timed
	// olds, when set, waits for the live builds' manifests read ahead
	// (readManifests); else decide reads them.
	olds func() map[string]*build.Manifest
}

// payloads decides and makes what each host receives: only the files its
// live build lacks, when the host holds that build's manifest; everything
// otherwise. Manifests are read once per distinct build (cached on this
// machine by digest) and verified against their digest; a host whose own
// copy turns out corrupt asks for the whole build (see steps.Payload.Redo): a
// full upload, never a wrong build.
func (s shipping) payloads(ctx context.Context, targets []plan.Target, art *build.Artifact) (map[string]steps.Payload, error) {
	ships, olds := s.decide(ctx, targets, art)
	out := map[string]steps.Payload{}
	for _, t := range targets {
		name, st := t.Host.Name, t.State
		p, err := s.payload(art, ships[name], name)
		if err != nil {
			return nil, err
		}
		if p.From != "" {
			// The host checks the files reused against their record, under
			// the lock: those changed or removed by hand since are sent in a
			// second attempt, as is everything when the host's manifest is
			// found corrupt.
			old := olds[st.Manifest]
			p.Redo = func(dirty []string, whole bool) (steps.Payload, error) {
				o := old
				if whole {
					o = nil
					s.c.out.Printf("%s: the live build's manifest is corrupt: sending the whole build\n", name)
				} else {
					what := fmt.Sprintf("%d files", len(dirty))
					if len(dirty) == 1 {
						what = "1 file"
					}
					s.c.out.Printf("%s: %s of the live build changed or removed on the host since it was made (%s): sending again\n", name, what, brief(dirty))
				}
				return s.payload(art, plan.Ship(art.Manifest, s.env, st, o, dirty, s.c.compress), name)
			}
		}
		out[name] = p
	}
	return out, nil
}

// decide decides what each host is sent (plan.ShipAll), from the manifests
// of the hosts' live builds; olds are those manifests, by digest.
func (s shipping) decide(ctx context.Context, targets []plan.Target, art *build.Artifact) (map[string]plan.Shipment, map[string]*build.Manifest) {
	olds := s.olds
	if olds == nil {
		olds = readManifests(ctx, s.c, s.f, s.cache, targets)
	}
	o := olds()
	return plan.ShipAll(art.Manifest, s.env, targets, o, s.c.compress), o
}

// readManifests starts reading the manifests of the hosts' live builds, once
// per distinct build: from this machine's cache, else from a host, verified
// against its digest. It returns at once; the function it returns waits for
// them. up calls it as soon as the hosts are reached, so that the reads
// (two round trips when the cache lacks one) overlap the build. A manifest
// that cannot be read is nil: that host gets the whole build, and is told so.
func readManifests(ctx context.Context, c *common, f *fleet.Fleet, cache fleet.Cache, targets []plan.Target) func() map[string]*build.Manifest {
	olds := map[string]*build.Manifest{}
	var problems []string // told when waited for: a run that stops first tells none
	done := make(chan struct{})
	go func() {
		defer close(done)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, t := range targets {
			st := t.State
			if st.Latest == "" || st.Manifest == "" {
				continue
			}
			mu.Lock()
			_, seen := olds[st.Manifest]
			olds[st.Manifest] = nil
			mu.Unlock()
			if seen {
				continue
			}
			wg.Go(func() {
				m, err := cache.Manifest(ctx, f.Conns[t.Host.Name], t.Host.Root, st.Latest, st.Manifest)
				mu.Lock()
				if err != nil {
					problems = append(problems, fmt.Sprintf("%s: %v: sending the whole build", t.Host.Name, err))
				}
				olds[st.Manifest] = m
				mu.Unlock()
			})
		}
		wg.Wait()
	}()
	return sync.OnceValue(func() map[string]*build.Manifest {
		<-done
		slices.Sort(problems)
		for _, p := range problems {
			c.out.Printf("%s\n", p)
		}
		return olds
	})
}

// payload writes (once per distinct transfer) the payload of a shipment.
func (s shipping) payload(art *build.Artifact, sh plan.Shipment, host string) (steps.Payload, error) {
	p, err := art.Payload(sh.Transfer, sh.Gzip)
	if err != nil {
		return steps.Payload{}, fmt.Errorf("making the payload: %w", err)
	}
	return steps.Payload{
		Open: s.meter.Wrap(host, s.c.rep.CountSent(host, p.Open)), From: sh.From, Copy: sh.Copy, Skip: p.Skip, Gzip: p.Gzip,
		ManifestSum: art.ManifestSum, Sent: p.Sent, Size: p.Size, Window: s.f.Window(host, s.window),
	}, nil
}

// brief lists a few paths, and how many more.
func brief(paths []string) string {
	if len(paths) <= 3 {
		return strings.Join(paths, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(paths[:3], ", "), len(paths)-3)
}

// paceWindow is how far an uncompressed upload may run ahead of the host's
// tar (steps.Payload.Window): 256 KiB, plus what a gigabit link holds in
// flight over the farthest host's round trip, so that pacing never slows a
// link down (at 20 ms that is 2.5 MB, more than OpenSSH's own 2 MiB window).
// Measured with 16 hosts on loopback (docs/REDEPLOY.md): unpaced, sshd spent
// 2.2 times the CPU on a first deploy, and the machine 10-13% more in all;
// 256 KiB did better than 128 or 512.
func paceWindow(rtt time.Duration) int64 {
	return 256<<10 + int64(rtt.Seconds()*125e6)
}

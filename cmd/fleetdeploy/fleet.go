package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/plan"
	"github.com/fleetdeploy/fleetdeploy/remote"
	"github.com/fleetdeploy/fleetdeploy/steps"
)

// fleet is an environment's hosts, connected.
type fleet struct {
	env   *inventory.Environment
	conns map[string]remote.Host
	rtts  []time.Duration // each connected host's TCP connect time
	// openssh: the hosts whose SSH server says it is OpenSSH (see window).
	openssh map[string]bool
}

// window is steps.Payload.Window for a host: uncompressed uploads are paced
// (w) to OpenSSH hosts only. Pacing works around OpenSSH's sshd, which
// grows its buffer by copying it for every packet it holds; the sandbox's
// server (x/crypto) keeps one buffer, and there the wait for tar's reports
// only costs time (200 sandbox hosts: a first deploy 7-9% slower paced).
func (f *fleet) window(host string, w int64) int64 {
	if !f.openssh[host] {
		return 0
	}
	return w
}

// slowLinkRTT is the round trip from which a link counts as slow (a WAN, not
// a LAN or loopback): whole builds are then gzipped unless --compress=false.
const slowLinkRTT = 10 * time.Millisecond

// farthestRTT is the largest of the hosts' round trips.
func (f *fleet) farthestRTT() time.Duration {
	if len(f.rtts) == 0 {
		return 0
	}
	return slices.Max(f.rtts)
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

// nearestRTT is the smallest of the hosts' round trips: a fleet counts as
// behind a slow link only if every host is, and a busy moment cannot make a
// near host look far.
func (f *fleet) nearestRTT() time.Duration {
	if len(f.rtts) == 0 {
		return 0
	}
	return slices.Min(f.rtts)
}

func (f *fleet) Close() {
	for _, c := range f.conns {
		c.Close()
	}
}

// connect dials every host, at most maxConnects handshakes at once. With
// partial, hosts that fail are reported and left out; otherwise any failure
// closes everything and returns every host's error. then, when not nil, runs
// for each host as soon as it is connected, outside the handshake bound, so
// that the first hosts' work overlaps the last hosts' handshakes.
func (g *globals) connect(ctx context.Context, env *inventory.Environment, partial bool, then func(i int, c remote.Host)) (*fleet, map[string]error, error) {
	f := &fleet{env: env, conns: map[string]remote.Host{}, openssh: map[string]bool{}}
	var mu sync.Mutex
	failed := map[string]error{}
	var errs []error
	handshakes := make(chan struct{}, max(1, g.maxConnects))
	var wg sync.WaitGroup
	for i, h := range env.Hosts {
		wg.Go(func() {
			var c *remote.Client
			var err error
			select {
			case handshakes <- struct{}{}:
				c, err = remote.Dial(ctx, remote.Config{
					Name: h.Name, Addr: h.Addr(), User: h.User, Identity: h.Identity, KnownHosts: h.KnownHosts,
					Agent: os.Getenv("SSH_AUTH_SOCK"), ConnectTimeout: g.connectTimeout,
					KeepaliveInterval: g.keepalive, KeepaliveMax: g.keepaliveMax,
				})
				<-handshakes
			case <-ctx.Done():
				err = ctx.Err()
			}
			mu.Lock()
			if err != nil {
				failed[h.Name] = err
				errs = append(errs, &plan.HostError{Host: h.Name, Step: "connecting", Err: err})
				mu.Unlock()
				return
			}
			f.conns[h.Name] = c
			f.rtts = append(f.rtts, c.ConnectRTT())
			f.openssh[h.Name] = strings.HasPrefix(c.ServerVersion(), "SSH-2.0-OpenSSH")
			mu.Unlock()
			if then != nil {
				then(i, c)
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		f.Close()
		return nil, nil, ctx.Err()
	}
	if len(errs) > 0 && !partial {
		f.Close()
		return nil, nil, plan.JoinHostErrors(errs)
	}
	return f, failed, nil
}

// connectAndRead connects to env's hosts (see connect) and reads each host's
// state with read (steps.Inspect, or steps.Look for a deploy or a rollback)
// as soon as it is connected.
func (g *globals) connectAndRead(ctx context.Context, env *inventory.Environment, partial bool, read readState) (*fleet, *stateReader, map[string]error, error) {
	r := newStateReader(env, read)
	f, failed, err := g.connect(ctx, env, partial, func(i int, c remote.Host) { r.read(ctx, i, c) })
	return f, r, failed, err
}

// readState reads one host's state: steps.Inspect or steps.Look.
type readState func(ctx context.Context, h remote.Host, root string, shared []string) (*steps.State, error)

// stateReader collects hosts' states, read in parallel, writing nothing.
type stateReader struct {
	inspect readState
	shared  []string
	mu      sync.Mutex
	targets []plan.Target
	errs    map[string]error
}

func newStateReader(env *inventory.Environment, inspect readState) *stateReader {
	r := &stateReader{inspect: inspect, shared: plan.SharedArgs(env), targets: make([]plan.Target, len(env.Hosts)), errs: map[string]error{}}
	for i, h := range env.Hosts {
		r.targets[i].Host = h
	}
	return r
}

// read reads host i's state over c.
func (r *stateReader) read(ctx context.Context, i int, c remote.Host) {
	h := r.targets[i].Host
	st, err := r.inspect(ctx, c, h.Root, r.shared)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errs[h.Name] = err
		return
	}
	r.targets[i].State = st
}

// all returns every host's state, or every host's error.
func (r *stateReader) all(ctx context.Context) ([]plan.Target, error) {
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var list []error
	for h, err := range r.errs {
		list = append(list, &plan.HostError{Host: h, Step: "reading state", Err: err})
	}
	return r.targets, plan.JoinHostErrors(list)
}

func since(t time.Time, now func() time.Time) string {
	return fmt.Sprintf("%.1fs", now().Sub(t).Seconds())
}

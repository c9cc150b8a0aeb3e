package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/plan"
	"github.com/fleetdeploy/fleetdeploy/remote"
	"github.com/fleetdeploy/fleetdeploy/steps"
	"golang.org/x/sync/errgroup"
)

// fleet is an environment's hosts, connected.
type fleet struct {
	env   *inventory.Environment
	conns map[string]remote.Host
}

func (f *fleet) Close() {
	for _, c := range f.conns {
		c.Close()
	}
}

// connect dials every host, at most maxConnects handshakes at once. With
// partial, hosts that fail are reported and left out; otherwise any failure
// closes everything and returns every host's error.
func (g *globals) connect(ctx context.Context, env *inventory.Environment, partial bool) (*fleet, map[string]error, error) {
	f := &fleet{env: env, conns: map[string]remote.Host{}}
	var mu sync.Mutex
	failed := map[string]error{}
	var errs []error
	var eg errgroup.Group
	eg.SetLimit(max(1, g.maxConnects))
	for _, h := range env.Hosts {
		eg.Go(func() error {
			c, err := remote.Dial(ctx, remote.Config{
				Name: h.Name, Addr: h.Addr(), User: h.User, Identity: h.Identity, KnownHosts: h.KnownHosts,
				Agent: os.Getenv("SSH_AUTH_SOCK"), ConnectTimeout: g.connectTimeout,
				KeepaliveInterval: g.keepalive, KeepaliveMax: g.keepaliveMax,
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed[h.Name] = err
				errs = append(errs, &plan.HostError{Host: h.Name, Step: "connecting", Err: err})
				return nil
			}
			f.conns[h.Name] = c
			return nil
		})
	}
	eg.Wait()
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

// inspect reads every connected host's state in parallel, writing nothing.
func (f *fleet) inspect(ctx context.Context) ([]plan.Target, map[string]error) {
	targets := make([]plan.Target, len(f.env.Hosts))
	errs := map[string]error{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	shared := plan.SharedArgs(f.env)
	for i, h := range f.env.Hosts {
		targets[i].Host = h
		c, ok := f.conns[h.Name]
		if !ok {
			continue
		}
		wg.Go(func() {
			st, err := steps.Inspect(ctx, c, h.Root, shared)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs[h.Name] = err
				return
			}
			targets[i].State = st
		})
	}
	wg.Wait()
	return targets, errs
}

// inspectAll is inspect for commands that need every host.
func (f *fleet) inspectAll(ctx context.Context) ([]plan.Target, error) {
	targets, errs := f.inspect(ctx)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var list []error
	for h, err := range errs {
		list = append(list, &plan.HostError{Host: h, Step: "reading state", Err: err})
	}
	return targets, plan.JoinHostErrors(list)
}

func since(t time.Time, now func() time.Time) string {
	return fmt.Sprintf("%.1fs", now().Sub(t).Seconds())
}

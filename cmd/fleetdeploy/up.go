package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/fleetdeploy/fleetdeploy/build"
	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/plan"
	"github.com/fleetdeploy/fleetdeploy/steps"
)

// up deploys a new build to every host of env, or prints the plan. The build
// is made while the hosts are being reached.
func (g *globals) up(ctx context.Context, envName string, dryRun bool) error {
	start := g.now()
	env, err := g.loadEnv(envName)
	if err != nil {
		return err
	}
	var built <-chan buildResult
	if !dryRun {
		bctx, cancel := context.WithCancel(ctx)
		defer cancel()
		built = g.startBuild(bctx, env)
		defer func() {
			// On an early return, stop the build and remove what it made.
			cancel()
			if r, ok := <-built; ok && r.art != nil {
				r.art.Remove()
			}
		}()
	}
	f, targets, err := g.reach(ctx, env)
	if err != nil {
		return err
	}
	defer f.Close()
	release := plan.ChooseRelease(g.now(), targets)
	by := who()
	if dryRun {
		b := plan.Build{Checksum: "(computed by the build)"}
		p, err := plan.Deploy(env, targets, release, b, by, g.now())
		if err != nil {
			return err
		}
		if len(env.Build) > 0 {
			fmt.Fprintf(g.stdout, "build (not run in a dry run): in a scratch copy of %s: %q\n", env.Source, env.Build)
		}
		plan.Print(g.stdout, p)
		return nil
	}
	if err := checkLocks(targets); err != nil {
		return err
	}
	r := <-built
	if r.err != nil {
		return fmt.Errorf("building: %w", r.err)
	}
	art := r.art
	defer func() { art.Remove() }()
	g.window = paceWindow(f.farthestRTT())
	if rtt := f.nearestRTT(); !g.compress && g.compressWhole(rtt) {
		g.compress = true
		fmt.Fprintf(g.stdout, "the nearest host is %s away: a whole build is sent gzipped (--compress=false: never)\n", rtt.Round(time.Millisecond))
	}
	var payloads map[string]steps.Payload
	// When the source folder changed while the hosts were being reached (a
	// file being written there), the build is made again, now that nothing
	// else is pending, a couple of times before giving up.
	for try := 0; ; try++ {
		fmt.Fprintf(g.stdout, "built %d files, %s\n", art.Manifest.Files(), art.Checksum[:19])
		if g.beforePayloads != nil {
			g.beforePayloads()
		}
		payloads, err = g.payloads(ctx, f, env, targets, art)
		if try == 2 || !errors.As(err, new(*build.ChangedError)) {
			break
		}
		fmt.Fprintf(g.stdout, "%v; building again\n", err)
		art.Remove()
		if art, err = g.makeBuild(ctx, env); err != nil {
			return fmt.Errorf("building: %w", err)
		}
	}
	if err != nil {
		return err
	}
	g.storeManifest(art.Manifest.Marshal())
	for _, t := range targets {
		p := payloads[t.Host.Name]
		if g.verbose || p.From != "" {
			fmt.Fprintf(g.stdout, "  %s: sending %d files, %s\n", t.Host.Name, p.Sent, human(p.Size))
		}
	}

	p, err := plan.Deploy(env, targets, release, plan.Build{Checksum: art.Checksum, Payloads: payloads}, by, g.now())
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "%s\n", p.Describe())
	res, err := plan.Execute(ctx, p, f.conns, g.execOptions())
	g.summary(res, start)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "deployed %s to %d hosts in %s\n", release, len(env.Hosts), since(start, g.now))
	return nil
}

// rollback switches every host to one earlier build.
func (g *globals) rollback(ctx context.Context, envName, to string, dryRun bool) error {
	start := g.now()
	env, f, targets, err := g.openFleet(ctx, envName)
	if err != nil {
		return err
	}
	defer f.Close()
	p, err := plan.Rollback(env, targets, to, who(), g.now())
	if err != nil {
		return err
	}
	if dryRun {
		plan.Print(g.stdout, p)
		return nil
	}
	fmt.Fprintf(g.stdout, "%s\n", p.Describe())
	res, err := plan.Execute(ctx, p, f.conns, g.execOptions())
	g.summary(res, start)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "rolled back %d hosts to %s in %s\n", len(env.Hosts), p.Release, since(start, g.now))
	return nil
}

// checkLocks fails at once, before taking any lock, when a host is locked.
func checkLocks(targets []plan.Target) error {
	var errs []error
	for _, t := range targets {
		if t.State.Lock != "" {
			errs = append(errs, &plan.HostError{Host: t.Host.Name, Step: "checking lock", Err: lockedErr(t.State.Lock)})
		}
	}
	return plan.JoinHostErrors(errs)
}

func (g *globals) execOptions() plan.Options {
	return plan.Options{
		Parallel:    g.parallel,
		Observe:     g.observe,
		UndoTimeout: g.undoTimeout,
		Now:         g.now,
	}
}

func human(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// openFleet loads an environment, connects to every host and reads their
// state: what rollback starts with. The caller closes the fleet.
func (g *globals) openFleet(ctx context.Context, envName string) (*inventory.Environment, *fleet, []plan.Target, error) {
	env, err := g.loadEnv(envName)
	if err != nil {
		return nil, nil, nil, err
	}
	f, targets, err := g.reach(ctx, env)
	return env, f, targets, err
}

// reach connects to every host of env and reads their state, each host's as
// soon as it is connected.
func (g *globals) reach(ctx context.Context, env *inventory.Environment) (*fleet, []plan.Target, error) {
	f, r, _, err := g.connectAndRead(ctx, env, false, steps.Look)
	if err != nil {
		return nil, nil, err
	}
	targets, err := r.all(ctx)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, targets, nil
}

type buildResult struct {
	art *build.Artifact
	err error
}

// startBuild makes the build in the background; the channel yields its
// result once, then is closed.
func (g *globals) startBuild(ctx context.Context, env *inventory.Environment) <-chan buildResult {
	out := make(chan buildResult, 1)
	fmt.Fprintf(g.stdout, "building %s\n", env.Source)
	go func() {
		defer close(out)
		art, err := g.makeBuild(ctx, env)
		out <- buildResult{art, err}
	}()
	return out
}

// makeBuild makes env's build (its commands' output shown with -v).
func (g *globals) makeBuild(ctx context.Context, env *inventory.Environment) (*build.Artifact, error) {
	var buildOut io.Writer
	if g.verbose {
		buildOut = g.stdout
	}
	return build.Make(ctx, build.Options{Source: env.Source, Commands: env.Build, Exclude: env.Exclude, Output: buildOut, CacheDir: g.cacheBase()})
}

// cacheBase is the folder of this machine's caches ("" for none), the one
// manifestCache uses: build keeps its file hashes there.
func (g *globals) cacheBase() string {
	m := g.manifestCache(build.Digest(nil))
	if m == "" {
		return ""
	}
	return filepath.Dir(filepath.Dir(m))
}

// compressWhole says whether whole builds are gzipped, for a fleet whose
// nearest host is a round trip rtt away: as --compress says when given, else on slow links only.
// Measured (BENCHMARKS.md): on loopback gunzip costs each host more CPU than
// the bytes save; over 20 ms and 200 Mbit/s it makes a first deploy faster.
func (g *globals) compressWhole(rtt time.Duration) bool {
	if g.compressSet {
		return g.compress
	}
	return rtt >= slowLinkRTT
}

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/fleetdeploy/fleetdeploy/build"
	"github.com/fleetdeploy/fleetdeploy/fleet"
	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/plan"
	"github.com/fleetdeploy/fleetdeploy/steps"
	"github.com/urfave/cli/v2"
)

// upOptions are what `up` and `plan` take.
type upOptions struct {
	env    string
	dryRun bool
}

func upCommand(c *common, run func(context.Context, *common, upOptions) error) *cli.Command {
	return &cli.Command{
		Name: "up", Usage: "build, upload to every host, then switch all hosts at once", ArgsUsage: "ENV",
		Flags: []cli.Flag{dryRunFlag()},
		Action: func(cc *cli.Context) error {
			env, err := envArg(cc)
			if err != nil {
				return err
			}
			return run(cc.Context, c, upOptions{env: env, dryRun: cc.Bool("dry-run")})
		},
	}
}

func planCommand(c *common, run func(context.Context, *common, upOptions) error) *cli.Command {
	return &cli.Command{
		Name: "plan", Usage: "show what `up` would do on every host (same as up --dry-run)", ArgsUsage: "ENV",
		Action: func(cc *cli.Context) error {
			env, err := envArg(cc)
			if err != nil {
				return err
			}
			return run(cc.Context, c, upOptions{env: env, dryRun: true})
		},
	}
}

// runUp deploys a new build to every host of the environment, or prints the
// plan. The build is made while the hosts are being reached. Once the
// environment is known, a real run ends with its local hooks.
func runUp(ctx context.Context, c *common, o upOptions) (err error) {
	start := c.now()
	env, err := c.loadEnv(o.env)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(env.Source); err != nil || !fi.IsDir() {
		return fmt.Errorf("source %s (%s) is not a folder this machine can read: fix source: in %s", env.Source, errText(err, "not a folder"), env.File)
	}
	var release string
	if !o.dryRun {
		defer func() { c.localHooks(ctx, env, "up", release, err) }()
	}
	cache := fleet.Cache{Dir: c.cacheDir}
	var built <-chan buildResult
	if !o.dryRun {
		bctx, cancel := context.WithCancel(ctx)
		defer cancel()
		built = startBuild(bctx, c, env, cache)
		defer func() {
			// On an early return, stop the build and remove what it made.
			cancel()
			if r, ok := <-built; ok && r.art != nil {
				r.art.Remove()
			}
		}()
	}
	f, targets, err := fleet.Reach(ctx, env, c.reach())
	if err != nil {
		return err
	}
	defer f.Close()
	release = plan.ChooseRelease(c.now(), targets)
	by := c.holder(env)
	if o.dryRun {
		p, err := plan.Deploy(env, targets, release, plan.Build{Checksum: "(computed by the build)"}, by, c.now())
		if err != nil {
			return err
		}
		if len(env.Build) > 0 {
			c.out.Printf("build (not run in a dry run): in a scratch copy of %s: %q\n", env.Source, env.Build)
		}
		plan.Print(c.out, p)
		return nil
	}
	// What rules the deploy out is told before the build is waited for and
	// anything is sent, for every host.
	if err := plan.Refuse(env, targets, true); err != nil {
		return err
	}
	r := <-built
	if r.err != nil {
		return fmt.Errorf("building: %w", r.err)
	}
	art := r.art
	defer func() { art.Remove() }()
	s := shipping{c: c, f: f, env: env, cache: cache, window: paceWindow(f.FarthestRTT())}
	if rtt := f.NearestRTT(); !c.compress && c.compressWhole(rtt) {
		c.compress = true
		c.out.Printf("the nearest host is %s away: a whole build is sent gzipped (--compress=false: never)\n", rtt.Round(time.Millisecond))
	}
	var payloads map[string]steps.Payload
	// When the source folder changed while the hosts were being reached (a
	// file being written there), the build is made again, now that nothing
	// else is pending, a couple of times before giving up.
	for try := 0; ; try++ {
		c.out.Printf("built %d files, %s\n", art.Manifest.Files(), art.Checksum[:19])
		if c.beforePayloads != nil {
			c.beforePayloads()
		}
		payloads, err = s.payloads(ctx, targets, art)
		if try == 2 || !errors.As(err, new(*build.ChangedError)) {
			break
		}
		c.out.Printf("%v; building again\n", err)
		art.Remove()
		if art, err = makeBuild(ctx, c, env, cache); err != nil {
			return fmt.Errorf("building: %w", err)
		}
	}
	if err != nil {
		return err
	}
	cache.Store(art.Manifest.Marshal())
	for _, t := range targets {
		p := payloads[t.Host.Name]
		if c.verbose || p.From != "" {
			c.out.Printf("  %s: sending %d files, %s\n", t.Host.Name, p.Sent, human(p.Size))
		}
	}

	p, err := plan.Deploy(env, targets, release, plan.Build{Checksum: art.Checksum, Payloads: payloads}, by, c.now())
	if err != nil {
		return err
	}
	c.out.Printf("%s\n", p.Describe())
	c.notes(p)
	res, err := plan.Execute(ctx, p, f.Conns, c.execOptions())
	c.summary(res)
	if err != nil {
		return err
	}
	c.out.Printf("deployed %s to %d hosts in %s\n", release, len(env.Hosts), since(start, c.now))
	return nil
}

// rollbackOptions are what `rollback` takes.
type rollbackOptions struct {
	env    string
	to     string
	dryRun bool
}

func rollbackCommand(c *common, run func(context.Context, *common, rollbackOptions) error) *cli.Command {
	return &cli.Command{
		Name: "rollback", Usage: "switch every host back to the build live before (or --to ID)", ArgsUsage: "ENV",
		Flags: []cli.Flag{dryRunFlag(), &cli.StringFlag{Name: "to", Usage: "build `ID` to switch to"}},
		Action: func(cc *cli.Context) error {
			env, err := envArg(cc)
			if err != nil {
				return err
			}
			return run(cc.Context, c, rollbackOptions{env: env, to: cc.String("to"), dryRun: cc.Bool("dry-run")})
		},
	}
}

// runRollback switches every host to one earlier build; a real run ends
// with the local hooks.
func runRollback(ctx context.Context, c *common, o rollbackOptions) (err error) {
	start := c.now()
	env, err := c.loadEnv(o.env)
	if err != nil {
		return err
	}
	var release string
	if !o.dryRun {
		defer func() { c.localHooks(ctx, env, "rollback", release, err) }()
	}
	f, targets, err := fleet.Reach(ctx, env, c.reach())
	if err != nil {
		return err
	}
	defer f.Close()
	p, err := plan.Rollback(env, targets, o.to, c.holder(env), c.now())
	if err != nil {
		return err
	}
	release = p.Release
	if o.dryRun {
		plan.Print(c.out, p)
		return nil
	}
	c.out.Printf("%s\n", p.Describe())
	c.notes(p)
	res, err := plan.Execute(ctx, p, f.Conns, c.execOptions())
	c.summary(res)
	if err != nil {
		return err
	}
	c.out.Printf("rolled back %d hosts to %s in %s\n", len(env.Hosts), p.Release, since(start, c.now))
	return nil
}

func errText(err error, otherwise string) string {
	if err != nil {
		return err.Error()
	}
	return otherwise
}

// notes tells what the plan noticed (stale locks taken over, builds left alone).
func (c *common) notes(p *plan.Plan) {
	for _, n := range p.Notes {
		c.out.Printf("%s\n", n)
	}
}

type buildResult struct {
	art *build.Artifact
	err error
}

// startBuild makes the build in the background; the channel yields its
// result once, then is closed.
func startBuild(ctx context.Context, c *common, env *inventory.Environment, cache fleet.Cache) <-chan buildResult {
	out := make(chan buildResult, 1)
	c.out.Printf("building %s\n", env.Source)
	go func() {
		defer close(out)
		art, err := makeBuild(ctx, c, env, cache)
		out <- buildResult{art, err}
	}()
	return out
}

// makeBuild makes env's build (its commands' output shown with -v).
func makeBuild(ctx context.Context, c *common, env *inventory.Environment, cache fleet.Cache) (*build.Artifact, error) {
	o := build.Options{Source: env.Source, Commands: env.Build, Exclude: env.Exclude, CacheDir: cache.Base()}
	if c.verbose {
		o.Output = c.out
	}
	return build.Make(ctx, o)
}

// compressWhole says whether whole builds are gzipped, for a fleet whose
// nearest host is a round trip rtt away: as --compress says when given, else
// on slow links only. Measured (BENCHMARKS.md): on loopback gunzip costs each
// host more CPU than the bytes save; over 20 ms and 200 Mbit/s it makes a
// first deploy faster.
func (c *common) compressWhole(rtt time.Duration) bool {
	if c.compressSet {
		return c.compress
	}
	return rtt >= slowLinkRTT
}

// slowLinkRTT is the round trip from which a link counts as slow (a WAN, not
// a LAN or loopback): whole builds are then gzipped unless --compress=false.
const slowLinkRTT = 10 * time.Millisecond

package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fleetdeploy/fleetdeploy/build"
	"github.com/fleetdeploy/fleetdeploy/fleet"
	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/plan"
	"github.com/fleetdeploy/fleetdeploy/report"
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
			env, err := envArg(c, cc)
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
			env, err := envArg(c, cc)
			if err != nil {
				return err
			}
			return run(cc.Context, c, upOptions{env: env, dryRun: true})
		},
	}
}

// runUp deploys a new build to every host of the environment, or prints the
// plan. The build is made while the hosts are being reached.
func runUp(ctx context.Context, c *common, o upOptions) error {
	env, err := c.loadEnv(o.env)
	if err != nil {
		return err
	}
	command := "up"
	if o.dryRun {
		command = "plan"
	}
	c.rep.Start(command, env.Name, hostNames(env))
	cache := fleet.Cache{Dir: c.cacheDir}
	var built <-chan buildResult
	// A dry run makes the build only when it has no commands to run: then
	// it is a scan of the source (the hash cache makes it cheap), and what
	// each host would be sent is known exactly.
	if !o.dryRun || len(env.Build) == 0 {
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
	f, targets, err := c.reachFleet(ctx, env)
	if err != nil {
		return err
	}
	defer f.Close()
	release := plan.ChooseRelease(c.now(), targets)
	by := c.holder(env)
	if o.dryRun {
		return c.planDeploy(ctx, env, f, targets, release, by, built, cache)
	}
	if err := checkLocks(env, targets); err != nil {
		return err
	}
	r := <-built
	if r.err != nil {
		return fmt.Errorf("building: %w", r.err)
	}
	art := r.art
	defer func() { art.Remove() }()
	s := shipping{c: c, f: f, env: env, cache: cache, window: paceWindow(f.FarthestRTT())}
	c.rep.Stage(report.StageMaking, "")
	if rtt := f.NearestRTT(); !c.compress && c.compressWhole(rtt) {
		c.compress = true
		c.out.Printf("the nearest host is %s away: a whole build is sent gzipped (--compress=false: never)\n", rtt.Round(time.Millisecond))
	}
	var payloads map[string]steps.Payload
	// When the source folder changed while the hosts were being reached (a
	// file being written there), the build is made again, now that nothing
	// else is pending, a couple of times before giving up.
	for try := 0; ; try++ {
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
	c.rep.StageDone(report.StageMaking, err, nil)
	if err != nil {
		return err
	}
	cache.Store(art.Manifest.Marshal())

	p, err := plan.Deploy(env, targets, release, plan.Build{Checksum: art.Checksum, Payloads: payloads}, by, c.now())
	if err != nil {
		return err
	}
	planned := report.Planned{Action: p.Action, App: env.App, Release: release}
	for _, t := range targets {
		pl := payloads[t.Host.Name]
		planned.Hosts = append(planned.Hosts, report.PlannedHost{Host: t.Host.Name, Live: t.State.Latest,
			Files: pl.Sent, Bytes: pl.Size, Known: true, From: pl.From, Gzip: pl.Gzip})
	}
	c.rep.Planned(planned)
	c.notes(p)
	_, err = plan.Execute(ctx, p, f.Conns, c.execOptions())
	return err
}

// hostNames are the environment's hosts, in inventory order.
func hostNames(env *inventory.Environment) []string {
	out := make([]string, len(env.Hosts))
	for i, h := range env.Hosts {
		out[i] = h.Name
	}
	return out
}

// reachFleet connects to every host and reads its state, as a stage of the
// run people see progress of.
func (c *common) reachFleet(ctx context.Context, env *inventory.Environment) (*fleet.Fleet, []plan.Target, error) {
	c.rep.Stage(report.StageConnecting, "")
	f, targets, err := fleet.Reach(ctx, env, c.reach())
	c.rep.StageDone(report.StageConnecting, err, nil)
	return f, targets, err
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
			env, err := envArg(c, cc)
			if err != nil {
				return err
			}
			return run(cc.Context, c, rollbackOptions{env: env, to: cc.String("to"), dryRun: cc.Bool("dry-run")})
		},
	}
}

// runRollback switches every host to one earlier build.
func runRollback(ctx context.Context, c *common, o rollbackOptions) error {
	env, err := c.loadEnv(o.env)
	if err != nil {
		return err
	}
	command := "rollback"
	if o.dryRun {
		command = "plan"
	}
	c.rep.Start(command, env.Name, hostNames(env))
	f, targets, err := c.reachFleet(ctx, env)
	if err != nil {
		return err
	}
	defer f.Close()
	p, err := plan.Rollback(env, targets, o.to, c.holder(env), c.now())
	if o.dryRun {
		return c.planRollback(env, targets, p, err)
	}
	if err != nil {
		return err
	}
	planned := report.Planned{Action: p.Action, App: env.App, Release: p.Release}
	for _, t := range targets {
		planned.Hosts = append(planned.Hosts, report.PlannedHost{Host: t.Host.Name, Live: t.State.Latest, Known: true})
	}
	c.rep.Planned(planned)
	c.notes(p)
	_, err = plan.Execute(ctx, p, f.Conns, c.execOptions())
	return err
}

// checkLocks fails at once, before the build is awaited, when a host is
// locked by a live run.
func checkLocks(env *inventory.Environment, targets []plan.Target) error {
	var errs []error
	for _, t := range targets {
		if err := plan.LockedBy(env, t.State); err != nil {
			errs = append(errs, &plan.HostError{Host: t.Host.Name, Step: "checking lock", Err: err})
		}
	}
	return plan.JoinHostErrors(errs)
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
	c.rep.Stage(report.StageBuilding, env.Source)
	art, err := build.Make(ctx, o)
	var made *report.Built
	if err == nil {
		made = &report.Built{Files: art.Manifest.Files(), Bytes: contentBytes(art.Manifest), Checksum: art.Checksum}
	}
	c.rep.StageDone(report.StageBuilding, err, made)
	return art, err
}

// contentBytes is the size of a build's files.
func contentBytes(m *build.Manifest) int64 {
	var n int64
	for _, e := range m.Entries {
		if e.Type == 'f' {
			n += e.Size
		}
	}
	return n
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

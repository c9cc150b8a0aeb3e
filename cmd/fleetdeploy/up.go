package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/fleetdeploy/fleetdeploy/build"
	"github.com/fleetdeploy/fleetdeploy/fleet"
	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/link"
	"github.com/fleetdeploy/fleetdeploy/plan"
	"github.com/fleetdeploy/fleetdeploy/remote"
	"github.com/fleetdeploy/fleetdeploy/report"
	"github.com/fleetdeploy/fleetdeploy/steps"
	"github.com/urfave/cli/v2"
)

// upOptions are what `up` and `plan` take.
type upOptions struct {
	env    string
	dryRun bool
	sel    selection
	from   buildFrom
}

// buildFrom says what the build is made from instead of the source folder
// as it is: an archive made elsewhere, or a git ref of the source.
type buildFrom struct {
	artifact       string // a tar, tar.gz or zip file
	artifactSHA256 string // its expected sha256, hex
	ref            string // a git ref of the checkout holding the source
}

// buildFlags are up's and plan's --artifact, --artifact-sha256 and --ref.
func buildFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "artifact", Usage: "deploy this tar, tar.gz or zip `FILE` (made by CI, say) instead of the source folder; the inventory's build commands, if any, run on it"},
		&cli.StringFlag{Name: "artifact-sha256", Usage: "refuse the artifact unless its sha256 is `HEX`"},
		&cli.StringFlag{Name: "ref", Usage: "build from git `REF` of the source's checkout (a tag, branch or commit: committed files only) instead of the working tree"},
	}
}

// buildFromFlags reads and checks the build flags.
func buildFromFlags(cc *cli.Context) (buildFrom, error) {
	b := buildFrom{artifact: cc.String("artifact"), artifactSHA256: strings.ToLower(cc.String("artifact-sha256")), ref: cc.String("ref")}
	switch {
	case b.artifact != "" && b.ref != "":
		return b, &usageError{"--artifact and --ref cannot be combined: the artifact is the build"}
	case b.artifactSHA256 != "" && b.artifact == "":
		return b, &usageError{"--artifact-sha256 checks an --artifact: give one"}
	case cc.IsSet("artifact") && b.artifact == "", cc.IsSet("ref") && b.ref == "":
		return b, &usageError{"--artifact and --ref take a value"}
	}
	if b.artifactSHA256 != "" {
		if d, err := hex.DecodeString(b.artifactSHA256); err != nil || len(d) != 32 {
			return b, &usageError{fmt.Sprintf("--artifact-sha256 %q: want 64 hex digits (sha256sum's output)", b.artifactSHA256)}
		}
	}
	return b, nil
}

func upCommand(c *common, run func(context.Context, *common, upOptions) error) *cli.Command {
	return &cli.Command{
		Name: "up", Usage: "build, upload to every host, then switch all hosts at once", ArgsUsage: "ENV",
		Flags: append(append([]cli.Flag{dryRunFlag()}, buildFlags()...), selectionFlags()...),
		Action: func(cc *cli.Context) error {
			return upAction(cc, c, run, cc.Bool("dry-run"))
		},
	}
}

func planCommand(c *common, run func(context.Context, *common, upOptions) error) *cli.Command {
	return &cli.Command{
		Name: "plan", Usage: "show what `up` would do on every host (same as up --dry-run)", ArgsUsage: "ENV",
		Flags: append(buildFlags(), selectionFlags()...),
		Action: func(cc *cli.Context) error {
			return upAction(cc, c, run, true)
		},
	}
}

func upAction(cc *cli.Context, c *common, run func(context.Context, *common, upOptions) error, dryRun bool) error {
	env, err := envArg(c, cc)
	if err != nil {
		return err
	}
	from, err := buildFromFlags(cc)
	if err != nil {
		return err
	}
	return run(cc.Context, c, upOptions{env: env, dryRun: dryRun, sel: selectionOf(cc), from: from})
}

// runUp deploys a new build to every selected host of the environment, or
// prints the plan. The build is made while the hosts are being reached. A dry
// run makes it too when that runs no command (the source folder as it is, an
// artifact, a git ref): the plan then shows the build's checksum, source and
// outside symlinks, and refuses what the build rules out. Once the
// environment is known, a real run ends with its local hooks.
func runUp(ctx context.Context, c *common, o upOptions) (err error) {
	env, err := c.loadSelected(o.env, o.sel)
	if err != nil {
		return err
	}
	command := "up"
	if o.dryRun {
		command = "plan"
	}
	c.rep.Start(command, env.Name, hostNames(env))
	if fi, err := os.Stat(env.Source); o.from.artifact == "" && (err != nil || !fi.IsDir()) {
		return fmt.Errorf("source %s (%s) is not a folder this machine can read: fix source: in %s", env.Source, errText(err, "not a folder"), env.File)
	}
	var release string
	if !o.dryRun {
		defer func() { c.localHooks(ctx, env, "up", release, err) }()
	}
	cache := fleet.Cache{Dir: c.cacheDir}
	var built <-chan buildResult
	if !o.dryRun || len(env.Build) == 0 {
		bctx, cancel := context.WithCancel(ctx)
		defer cancel()
		built = startBuild(bctx, c, env, o.from, cache)
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
		return withBuildError(err, built, len(env.Build) == 0)
	}
	defer f.Close()
	release = plan.ChooseRelease(c.now(), targets)
	by := c.holder(env)
	if o.dryRun {
		return c.planDeploy(ctx, env, f, targets, release, by, built, cache, o.from)
	}
	// What rules the deploy out is told before the build is waited for and
	// anything is sent, for every host.
	if err := plan.Refuse(env, targets, true); err != nil {
		return err
	}
	olds := readManifests(ctx, c, f, cache, targets)
	r := <-built
	if r.err != nil {
		return fmt.Errorf("building: %w", r.err)
	}
	art := r.art
	defer func() { art.Remove() }()
	links := link.NewStore(cache.Base())
	c.chooseCompression(env, f, links, false)
	s := shipping{c: c, f: f, env: env, cache: cache, window: paceWindow(f.FarthestRTT()), meter: link.NewMeter(time.Now), olds: olds}
	var payloads map[string]steps.Payload
	c.rep.Stage(report.StageMaking, "")
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
		c.rep.Stage(report.StageBuilding, describeFrom(env, o.from))
		if art, err = makeBuild(ctx, c, env, o.from, cache); err != nil {
			return fmt.Errorf("building: %w", err)
		}
	}
	c.rep.StageDone(report.StageMaking, err, nil)
	if err != nil {
		return err
	}
	c.reportBuild(env, o.from, art)
	cache.Store(art.Manifest.Marshal())

	p, err := plan.Deploy(env, targets, release, plan.Build{Checksum: art.Checksum, Source: art.Source.String(), Manifest: art.Manifest, Payloads: payloads}, by, c.now())
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
	s.meter.Record(env, f.Conns, links) // after the run: no wait added to it
	if err != nil {
		return err
	}
	c.narrowedNote(env, o.sel)
	return nil
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

// withBuildError adds to err, a failure to reach the hosts, the build's own
// failure: both are to be fixed before a run can go on, and the user learns
// of both in one run. wait says the build runs no command (it only reads
// and hashes the tree, or unpacks an archive): it is then waited for;
// otherwise only a build already done is looked at, and one under way is
// left to the caller's cleanup.
func withBuildError(err error, built <-chan buildResult, wait bool) error {
	if built == nil {
		return err
	}
	var r buildResult
	var ok bool
	if wait {
		r, ok = <-built
	} else {
		select {
		case r, ok = <-built:
		default:
		}
	}
	if r.art != nil {
		r.art.Remove()
	}
	if ok && r.err != nil && !errors.Is(r.err, context.Canceled) {
		return errors.Join(fmt.Errorf("building: %w", r.err), err)
	}
	return err
}

// describeFrom names what the build is made from, for messages.
func describeFrom(env *inventory.Environment, from buildFrom) string {
	switch {
	case from.artifact != "":
		return "artifact " + from.artifact
	case from.ref != "":
		return fmt.Sprintf("%s at git ref %s", env.Source, from.ref)
	}
	return env.Source
}

// builtFrom names what a build was made from: its source record, or the
// source folder when that is not in a git checkout.
func builtFrom(env *inventory.Environment, art *build.Artifact) string {
	if art.Source.Kind == build.SourceDir {
		return env.Source
	}
	return remote.Sanitize(art.Source.String())
}

// reportBuild tells what the build shows that the user should know: a git
// working tree with changes not committed, and the symlinks leading outside
// the build that were kept or copied.
func (c *common) reportBuild(env *inventory.Environment, from buildFrom, art *build.Artifact) {
	if src := art.Source; src.Kind == build.SourceGit && src.Dirty && from.ref == "" {
		on := "before the checkout's first commit"
		if src.Commit != "" {
			on = "on top of commit " + src.Commit
		}
		c.out.Printf("%s has changes not committed (untracked files count): the build is recorded as dirty, %s; `up --ref REF` deploys a commit as it is\n", env.Source, on)
	}
	if n := len(art.KeptOutside); n > 0 {
		c.out.Printf("%s leading outside the build kept as %s (outside_symlinks: keep): every host must provide %s:\n%s",
			count(n, "symlink", "symlinks"), pick(n, "it is", "they are"), pick(n, "its target", "their targets"), linkLines(art.KeptOutside))
	}
	if n := len(art.CopiedOutside); n > 0 {
		c.out.Printf("%s leading outside the build replaced by what %s to on this machine (outside_symlinks: copy):\n%s",
			count(n, "symlink", "symlinks"), pick(n, "it leads", "they lead"), linkLines(art.CopiedOutside))
	}
}

// linkLines lists symlinks, one "  path -> target" line each, at most 50.
func linkLines(links []build.Entry) string {
	const most = 50
	var b strings.Builder
	for i, l := range links {
		if i == most {
			fmt.Fprintf(&b, "  and %d more\n", len(links)-most)
			break
		}
		fmt.Fprintf(&b, "  %s -> %s\n", l.Path, l.Target)
	}
	return remote.SanitizeLines(b.String())
}

func pick(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// narrowedNote reminds, after a run on some hosts only, that the others
// did not follow.
func (c *common) narrowedNote(env *inventory.Environment, sel selection) {
	if sel.narrowed() {
		c.out.Printf("only the selected hosts changed: `fleetdeploy status %s` shows the others out of line until they follow\n", env.Name)
	}
}

// rollbackOptions are what `rollback` takes.
type rollbackOptions struct {
	env    string
	to     string
	dryRun bool
	sel    selection
}

func rollbackCommand(c *common, run func(context.Context, *common, rollbackOptions) error) *cli.Command {
	return &cli.Command{
		Name: "rollback", Usage: "switch every host back to the build live before (or --to ID)", ArgsUsage: "ENV",
		Flags: append([]cli.Flag{dryRunFlag(), &cli.StringFlag{Name: "to", Usage: "build `ID` to switch to"}}, selectionFlags()...),
		Action: func(cc *cli.Context) error {
			env, err := envArg(c, cc)
			if err != nil {
				return err
			}
			return run(cc.Context, c, rollbackOptions{env: env, to: cc.String("to"), dryRun: cc.Bool("dry-run"), sel: selectionOf(cc)})
		},
	}
}

// runRollback switches every selected host to one earlier build; a real
// run ends with the local hooks.
func runRollback(ctx context.Context, c *common, o rollbackOptions) (err error) {
	env, err := c.loadSelected(o.env, o.sel)
	if err != nil {
		return err
	}
	command := "rollback"
	if o.dryRun {
		command = "plan"
	}
	c.rep.Start(command, env.Name, hostNames(env))
	var release string
	if !o.dryRun {
		defer func() { c.localHooks(ctx, env, "rollback", release, err) }()
	}
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
	release = p.Release
	planned := report.Planned{Action: p.Action, App: env.App, Release: p.Release}
	for _, t := range targets {
		planned.Hosts = append(planned.Hosts, report.PlannedHost{Host: t.Host.Name, Live: t.State.Latest, Known: true})
	}
	c.rep.Planned(planned)
	c.notes(p)
	if _, err = plan.Execute(ctx, p, f.Conns, c.execOptions()); err != nil {
		return err
	}
	c.narrowedNote(env, o.sel)
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
func startBuild(ctx context.Context, c *common, env *inventory.Environment, from buildFrom, cache fleet.Cache) <-chan buildResult {
	out := make(chan buildResult, 1)
	// Said here, not in the goroutine: "building" then "connecting", always
	// in that order (a golden test saw them swap).
	c.rep.Stage(report.StageBuilding, describeFrom(env, from))
	go func() {
		defer close(out)
		art, err := makeBuild(ctx, c, env, from, cache)
		out <- buildResult{art, err}
	}()
	return out
}

// makeBuild makes env's build (its commands' output shown with -v) from
// the source folder, an artifact or a git ref, its outside symlinks treated
// as the inventory says; the caller has told the building stage.
func makeBuild(ctx context.Context, c *common, env *inventory.Environment, from buildFrom, cache fleet.Cache) (*build.Artifact, error) {
	o := build.Options{
		Source: env.Source, Commands: env.Build, Exclude: env.Exclude, CacheDir: cache.Base(),
		OutsideSymlinks: build.OutsideMode(env.OutsideSymlinks),
		Artifact:        from.artifact, ArtifactSHA256: from.artifactSHA256, Ref: from.ref,
	}
	if c.verbose {
		o.Output = c.out
	}
	art, err := build.Make(ctx, o)
	var made *report.Built
	if err == nil {
		made = &report.Built{Files: art.Manifest.Files(), Bytes: contentBytes(art.Manifest), Checksum: art.Checksum, From: builtFrom(env, art)}
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

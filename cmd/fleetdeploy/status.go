package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/fleetdeploy/fleetdeploy/fleet"
	"github.com/fleetdeploy/fleetdeploy/plan"
	"github.com/fleetdeploy/fleetdeploy/remote"
	"github.com/fleetdeploy/fleetdeploy/report"
	"github.com/fleetdeploy/fleetdeploy/steps"
	"github.com/urfave/cli/v2"
)

// statusOptions are what `status` takes.
type statusOptions struct {
	env    string
	verify bool
	sel    selection
}

func statusCommand(c *common, run func(context.Context, *common, statusOptions) error) *cli.Command {
	return &cli.Command{
		Name: "status", Usage: "show each host's live build, builds and lock; exit 4 on drift", ArgsUsage: "ENV",
		Flags: append([]cli.Flag{&cli.BoolFlag{Name: "verify", Usage: "re-hash every file of each live build against its manifest"}}, selectionFlags()...),
		Action: func(cc *cli.Context) error {
			env, err := envArg(c, cc)
			if err != nil {
				return err
			}
			return run(cc.Context, c, statusOptions{env: env, verify: cc.Bool("verify"), sel: selectionOf(cc)})
		},
	}
}

// runStatus shows what every selected host runs, and flags hosts out of
// line with the others (a narrowed status compares the selected hosts only).
func runStatus(ctx context.Context, c *common, o statusOptions) error {
	env, err := c.loadSelected(o.env, o.sel)
	if err != nil {
		return err
	}
	c.rep.Start("status", env.Name, hostNames(env))
	c.rep.Stage(report.StageConnecting, "")
	f, targets, failed, err := fleet.Survey(ctx, env, c.reach(), true, steps.Inspect)
	c.rep.StageDone(report.StageConnecting, err, nil)
	if err != nil {
		return err
	}
	defer f.Close()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	verified := map[string][]string{}
	if o.verify {
		shared := plan.SharedArgs(env)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, t := range targets {
			if t.State == nil || t.State.Latest == "" || t.State.Manifest == "" {
				continue
			}
			wg.Go(func() {
				problems, err := steps.Verify(ctx, f.Conns[t.Host.Name], t.Host.Root, t.State.Latest, shared)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed[t.Host.Name] = err
					return
				}
				verified[t.Host.Name] = problems
			})
		}
		wg.Wait()
	}
	st := plan.Assess(targets, failed, o.verify, verified)
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tLIVE\tSOURCE\tPREVIOUS\tBUILDS\tLOCK\tSTATE")
	for _, h := range st.Hosts {
		c.rep.HostStatus(h)
		if h.Unreachable != nil {
			err := h.Unreachable
			var he *plan.HostError
			if errors.As(err, &he) {
				err = fmt.Errorf("%s: %w", he.Step, he.Err)
			}
			fmt.Fprintf(tw, "%s\t?\t?\t?\t?\t?\tUNREACHABLE: %s\n", h.Host, remote.Sanitize(strings.ReplaceAll(err.Error(), "\n", " ")))
			continue
		}
		state := strings.Join(append(slices.Clone(h.Problems), h.Notes...), "; ")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", h.Host, remote.Sanitize(orDash(h.Live)), remote.Sanitize(orDash(h.Source)), remote.Sanitize(orDash(h.Previous)), len(h.Builds),
			remote.Sanitize(lockText(h.Lock)), remote.Sanitize(orWord(state, "ok")))
	}
	tw.Flush()
	if c.verbose {
		for _, t := range targets {
			if t.State == nil {
				continue
			}
			fmt.Fprintf(&b, "%s builds: %s\n", t.Host.Name, strings.Join(t.State.Builds, " "))
			for _, e := range t.State.History {
				fmt.Fprintf(&b, "  %s %-8s %s by %s\n", e.Time.Format("2006-01-02 15:04:05"), remote.Sanitize(e.Kind()), e.Release, remote.Sanitize(e.By))
			}
		}
	}
	c.out.Printf("%s", b.String())
	if p := st.Problems(); len(p) > 0 {
		return &driftError{msg: "the fleet is not on one build:\n" + strings.Join(p, "\n")}
	}
	return nil
}

func orDash(s string) string { return orWord(s, "-") }

func orWord(s, word string) string {
	if s == "" {
		return word
	}
	return s
}

func lockText(li *steps.LockInfo) string {
	if li == nil {
		return "-"
	}
	return "locked: " + li.Describe()
}

// unlockOptions are what `unlock` takes.
type unlockOptions struct {
	env   string
	force bool
	sel   selection
}

func unlockCommand(c *common, run func(context.Context, *common, unlockOptions) error) *cli.Command {
	return &cli.Command{
		Name: "unlock", Usage: "remove a deploy lock left by a run that died (--force: even a live one)", ArgsUsage: "ENV",
		Flags: append([]cli.Flag{&cli.BoolFlag{Name: "force", Usage: "remove a lock whose run is alive, or that is not fleetdeploy's"}}, selectionFlags()...),
		Action: func(cc *cli.Context) error {
			env, err := envArg(c, cc)
			if err != nil {
				return err
			}
			return run(cc.Context, c, unlockOptions{env: env, force: cc.Bool("force"), sel: selectionOf(cc)})
		},
	}
}

// runUnlock removes deploy locks left behind by runs that died. A lock
// whose run is alive (refreshed within its lease, by the host's clock), or
// that is not fleetdeploy's, stays unless forced; each removal is checked.
func runUnlock(ctx context.Context, c *common, o unlockOptions) error {
	env, err := c.loadSelected(o.env, o.sel)
	if err != nil {
		return err
	}
	c.rep.Start("unlock", env.Name, hostNames(env))
	c.rep.Stage(report.StageConnecting, "")
	f, targets, failed, err := fleet.Survey(ctx, env, c.reach(), true, steps.Look)
	c.rep.StageDone(report.StageConnecting, err, nil)
	if err != nil {
		return err
	}
	defer f.Close()
	var errs []error
	for _, e := range failed {
		errs = append(errs, e)
	}
	locked := 0
	for _, t := range targets {
		if t.State == nil || t.State.Lock == nil {
			continue
		}
		locked++
		li := t.State.Lock
		alive := li.Holder.Lease > 0 && !li.Stale() && !li.Now.IsZero()
		if !o.force && (alive || li.NotOurs != "") {
			why := "its run is alive"
			if li.NotOurs != "" {
				why = "it is not fleetdeploy's"
			}
			errs = append(errs, &plan.HostError{Host: t.Host.Name, Step: "unlocking", Err: fmt.Errorf(
				"not removed: %s (%s); --force removes it anyway", why, li.Describe())})
			continue
		}
		s := steps.ForceUnlock(steps.Layout{Root: t.Host.Root})
		if err := steps.RunOps(ctx, f.Conns[t.Host.Name], s.Ops, nil, nil); err != nil {
			errs = append(errs, &plan.HostError{Host: t.Host.Name, Step: "unlocking", Err: err})
			continue
		}
		c.out.Printf("%s: removed the lock (%s)\n", t.Host.Name, li.Describe())
	}
	if locked == 0 && len(failed) == 0 {
		c.out.Printf("no lock to remove: none of the %s is locked\n", count(len(targets), "host", "hosts"))
	}
	return plan.JoinHostErrors(errs)
}

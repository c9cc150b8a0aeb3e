package main

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fleetdeploy/fleetdeploy/fleet"
	"github.com/fleetdeploy/fleetdeploy/plan"
	"github.com/fleetdeploy/fleetdeploy/remote"
	"github.com/fleetdeploy/fleetdeploy/report"
	"github.com/fleetdeploy/fleetdeploy/steps"
	"github.com/urfave/cli/v2"
)

// checkOptions are what `check` takes.
type checkOptions struct {
	env string
	sel selection
}

func checkCommand(c *common, run func(context.Context, *common, checkOptions) error) *cli.Command {
	return &cli.Command{
		Name: "check", Usage: "preflight every host: reach, keys, root, disk, tools, shared files, lock, clock (changes nothing); exit 4 on a problem", ArgsUsage: "ENV",
		Flags: selectionFlags(),
		Action: func(cc *cli.Context) error {
			env, err := envArg(c, cc)
			if err != nil {
				return err
			}
			return run(cc.Context, c, checkOptions{env: env, sel: selectionOf(cc)})
		},
	}
}

// clockSkewLimit is how far a host's clock may be from this machine's before
// check calls it a problem: release names come from this machine's clock,
// lock leases are judged by the host's.
const clockSkewLimit = 30 * time.Second

// runCheck reaches every host and checks, on each, what a deploy needs,
// changing nothing lasting (a symlink made and removed to test the root).
func runCheck(ctx context.Context, c *common, o checkOptions) error {
	env, err := c.loadSelected(o.env, o.sel)
	if err != nil {
		return err
	}
	var problems []string
	need := sourceSize(env.Source, env.Exclude)
	if need < 0 {
		problems = append(problems, fmt.Sprintf("this machine: source %s cannot be read: fix `source:` in %s", env.Source, env.File))
	}
	f, targets, failed, err := fleet.Survey(ctx, env, c.reach(), true, steps.Look)
	if err != nil {
		return err
	}
	defer f.Close()
	probes := map[string]*steps.HostOffer{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, t := range targets {
		if t.State == nil {
			continue
		}
		wg.Go(func() {
			p, err := steps.Preflight(ctx, f.Conns[t.Host.Name], t.Host.Root)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed[t.Host.Name] = &plan.HostError{Host: t.Host.Name, Step: "probing", Err: err}
				return
			}
			probes[t.Host.Name] = p
		})
	}
	wg.Wait()
	var b strings.Builder
	for _, t := range targets {
		name := t.Host.Name
		say := func(what, format string, a ...any) {
			fmt.Fprintf(&b, "  %-9s %s\n", what, remote.Sanitize(fmt.Sprintf(format, a...)))
		}
		problem := func(format string, a ...any) { problems = append(problems, name+": "+fmt.Sprintf(format, a...)) }
		if err, ok := failed[name]; ok {
			fmt.Fprintf(&b, "%s  UNREACHABLE\n", name)
			say("error", "%s", strings.ReplaceAll(err.Error(), "\n", " "))
			problem("%s", strings.ReplaceAll(err.Error(), "\n", " "))
			continue
		}
		fmt.Fprintf(&b, "%s\n", name)
		if cl, ok := f.Conns[name].(*remote.Client); ok {
			in := cl.Info()
			via := ""
			if len(in.Via) > 0 {
				via = " via " + strings.Join(in.Via, ", ")
			}
			say("connect", "%s%s in %d ms (round trip %.1f ms), %s", in.Addr, via, in.ConnectTime.Milliseconds(), float64(in.RTT.Microseconds())/1000, in.ServerVersion)
			say("user", "%s, %s", in.User, in.Auth)
			key := in.HostKeyType + " " + in.HostKeyFingerprint
			if in.HostKeyCA != "" {
				key += ", certified by CA " + in.HostKeyCA
			}
			if in.HostKeyRecorded != "" {
				key += ", just recorded in " + in.HostKeyRecorded
			}
			say("host key", "%s", key)
		}
		st, p := t.State, probes[name]
		root := t.Host.Root
		if p != nil {
			free := "free space unknown"
			if p.FreeKiB >= 0 {
				free = report.Bytes(p.FreeKiB<<10) + " free"
			}
			where := "writable"
			if !p.Writable {
				where = "NOT writable: " + p.WriteErr
				problem("%s is not writable by the login user (%s): fix its owner or permissions", p.Dir, p.WriteErr)
			}
			if p.Dir != root {
				where = "will be made in " + p.Dir + ", " + where
			}
			say("root", "%s: %s, %s (the build: about %s)", root, where, free, report.Bytes(max(need, 0)))
			if p.FreeKiB >= 0 && need > 0 && p.FreeKiB<<10 < need+need/10 {
				problem("%s free where %s is, the build needs about %s: free space there", report.Bytes(p.FreeKiB<<10), root, report.Bytes(need))
			}
			var bad, good []string
			for _, tl := range p.Tools {
				if tl.Status == "ok" {
					good = append(good, tl.Name)
					continue
				}
				bad = append(bad, tl.Name+" "+tl.Status)
				problem("%s %s (%s): install it (GNU tar, coreutils, findutils and util-linux are needed)", tl.Name, tl.Status, tl.Detail)
			}
			if len(bad) > 0 {
				say("tools", "PROBLEM: %s; ok: %s", strings.Join(bad, ", "), strings.Join(good, " "))
			} else {
				say("tools", "all %d present: %s", len(good), strings.Join(good, " "))
			}
			off := p.ClockOffset()
			say("clock", "%+d s from this machine's", int(off.Seconds()))
			if off > clockSkewLimit || off < -clockSkewLimit {
				problem("the clock is %s off this machine's: fix NTP (release names come from this clock, lock leases are judged by the host's)", off.Abs())
			}
		}
		for _, pr := range st.Problems {
			problem("%s", pr)
		}
		var shared []string
		for _, sp := range env.Shared {
			switch {
			case !slices.Contains(st.NoShared, sp.Path) && st.RootExists:
				shared = append(shared, sp.Path+" ok")
			case sp.Dir:
				shared = append(shared, sp.Path+"/ (made on the first deploy)")
			default:
				shared = append(shared, sp.Path+" MISSING")
				problem("shared file %s is missing: create %s on this host (a shared file is never taken from the build)", sp.Path, filepath.Join(root, "shared", sp.Path))
			}
		}
		if len(shared) > 0 {
			say("shared", "%s", strings.Join(shared, "; "))
		}
		switch li := st.Lock; {
		case li == nil:
			say("lock", "none")
		case li.NotOurs != "" || li.Stale():
			say("lock", "PROBLEM: %s", li.Describe())
			problem("%s: fleetdeploy unlock %s", li.Describe(), env.Name)
		default:
			say("lock", "held: %s", li.Describe())
		}
	}
	c.out.Printf("%s", b.String())
	if len(problems) > 0 {
		return &driftError{msg: "check found problems:\n" + strings.Join(problems, "\n")}
	}
	c.out.Printf("every host is ready for a deploy\n")
	return nil
}

// sourceSize is about how many bytes a build of source takes (its regular
// files, exclusions aside); -1 when source cannot be read.
func sourceSize(source string, exclude []string) int64 {
	var n int64
	err := filepath.WalkDir(source, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(source, p)
		for _, e := range exclude {
			if m, _ := filepath.Match(e, filepath.ToSlash(rel)); m || rel == e {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	if err != nil {
		return -1
	}
	return n
}

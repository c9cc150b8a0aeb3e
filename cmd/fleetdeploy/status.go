package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/fleetdeploy/fleetdeploy/plan"
	"github.com/fleetdeploy/fleetdeploy/steps"
)

// status shows what every host runs, and flags hosts out of line with the fleet.
func (g *globals) status(ctx context.Context, envName string, verify bool) error {
	env, err := g.loadEnv(envName)
	if err != nil {
		return err
	}
	f, r, failed, err := g.connectAndRead(ctx, env, true, steps.Inspect)
	if err != nil {
		return err
	}
	defer f.Close()
	targets, inspectErrs := r.targets, r.errs
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for h, e := range inspectErrs {
		failed[h] = e
	}
	verified := map[string][]string{}
	if verify {
		shared := plan.SharedArgs(env)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, t := range targets {
			if t.State == nil || t.State.Latest == "" || t.State.Manifest == "" {
				continue
			}
			wg.Go(func() {
				problems, err := steps.Verify(ctx, f.conns[t.Host.Name], t.Host.Root, t.State.Latest, shared)
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

	// The fleet's build is the one most hosts run.
	count := map[string]int{}
	sums := map[string]map[string]int{}
	for _, t := range targets {
		if t.State != nil && t.State.Latest != "" {
			count[t.State.Latest]++
			if sums[t.State.Latest] == nil {
				sums[t.State.Latest] = map[string]int{}
			}
			sums[t.State.Latest][t.State.Marker.Checksum]++
		}
	}
	fleetBuild := ""
	for id, n := range count {
		if n > count[fleetBuild] || (n == count[fleetBuild] && id > fleetBuild) {
			fleetBuild = id
		}
	}

	tw := tabwriter.NewWriter(g.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tLIVE\tPREVIOUS\tBUILDS\tLOCK\tSTATE")
	var problems []string
	for _, t := range targets {
		name := t.Host.Name
		if err, ok := failed[name]; ok {
			fmt.Fprintf(tw, "%s\t?\t?\t?\t?\tUNREACHABLE: %s\n", name, oneLineErr(err))
			problems = append(problems, name+": unreachable")
			continue
		}
		st := t.State
		var flags []string
		live := st.Latest
		switch {
		case st.LatestKind == "dir":
			live = "(directory)"
			flags = append(flags, "latest is a real directory")
		case st.LatestKind == "link" && st.Latest == "":
			live = st.LatestLink
			flags = append(flags, "latest points outside builds/")
		case live == "":
			live = "-"
		}
		if st.Latest != "" && st.Latest != fleetBuild {
			flags = append(flags, "DRIFT: the fleet runs "+fleetBuild)
		}
		if st.Latest != "" && st.Marker.Release != st.Latest {
			flags = append(flags, "DRIFT: no marker for the live build")
		} else if st.Latest != "" && len(sums[st.Latest]) > 1 {
			flags = append(flags, "DRIFT: checksum "+short(st.Marker.Checksum)+" differs from other hosts on "+st.Latest)
		}
		if st.Manifest != "" && st.Manifest != st.Marker.Checksum {
			flags = append(flags, "DRIFT: the live build's manifest does not match its marker")
		}
		if len(st.Dirty) > 0 {
			flags = append(flags, fmt.Sprintf("DRIFT: %d files changed on the host since the deploy (%s)", len(st.Dirty), firstFew(st.Dirty)))
		}
		if p := verified[name]; len(p) > 0 {
			flags = append(flags, fmt.Sprintf("DRIFT: %d files differ from the build's manifest (%s)", len(p), firstFew(p)))
		} else if verify && st.Manifest == "" && st.Latest != "" {
			flags = append(flags, "cannot verify: the live build has no manifest")
		}
		if len(st.Staging) > 0 || len(st.Pending) > 0 {
			flags = append(flags, "leftovers of an unfinished run (the next up removes them)")
		}
		lock := "-"
		if st.Lock != "" {
			lock = "locked by " + st.Lock
		}
		state := "ok"
		if len(flags) > 0 {
			state = strings.Join(flags, "; ")
			for _, fl := range flags {
				if strings.HasPrefix(fl, "DRIFT") || strings.HasPrefix(fl, "latest") {
					problems = append(problems, name+": "+fl)
				}
			}
		}
		prev := st.Marker.Previous
		if prev == "" {
			prev = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", name, live, prev, len(st.Builds), lock, state)
	}
	tw.Flush()
	if g.verbose {
		for _, t := range targets {
			if t.State == nil {
				continue
			}
			ids := append([]string(nil), t.State.Builds...)
			sort.Strings(ids)
			fmt.Fprintf(g.stdout, "%s builds: %s\n", t.Host.Name, strings.Join(ids, " "))
			for _, e := range t.State.History {
				fmt.Fprintf(g.stdout, "  %s %-8s %s by %s\n", e.Time.Format("2006-01-02 15:04:05"), e.Action, e.Release, e.By)
			}
		}
	}
	if len(problems) > 0 {
		return &driftError{msg: "the fleet is not on one build:\n" + strings.Join(problems, "\n")}
	}
	return nil
}

// unlock removes deploy locks left behind by a run that died.
func (g *globals) unlock(ctx context.Context, envName string) error {
	env, err := g.loadEnv(envName)
	if err != nil {
		return err
	}
	f, r, failed, err := g.connectAndRead(ctx, env, true, steps.Inspect)
	if err != nil {
		return err
	}
	defer f.Close()
	var errs []error
	for h, e := range failed {
		errs = append(errs, &plan.HostError{Host: h, Step: "connecting", Err: e})
	}
	targets, inspectErrs := r.targets, r.errs
	for h, e := range inspectErrs {
		errs = append(errs, &plan.HostError{Host: h, Step: "reading state", Err: e})
	}
	for _, t := range targets {
		if t.State == nil || t.State.Lock == "" {
			continue
		}
		s := steps.ForceUnlock(steps.Layout{Root: t.Host.Root})
		if err := steps.RunOps(ctx, f.conns[t.Host.Name], s.Ops, nil, nil); err != nil {
			errs = append(errs, &plan.HostError{Host: t.Host.Name, Step: "unlocking", Err: err})
			continue
		}
		fmt.Fprintf(g.stdout, "%s: removed lock held by %s\n", t.Host.Name, t.State.Lock)
	}
	return plan.JoinHostErrors(errs)
}

func firstFew(list []string) string {
	if len(list) > 3 {
		return strings.Join(list[:3], ", ") + ", ..."
	}
	return strings.Join(list, ", ")
}

func oneLineErr(err error) string { return strings.ReplaceAll(err.Error(), "\n", " ") }

func short(sum string) string {
	if len(sum) > 19 {
		return sum[:19]
	}
	return sum
}

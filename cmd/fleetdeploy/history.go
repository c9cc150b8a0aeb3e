package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/fleetdeploy/fleetdeploy/fleet"
	"github.com/fleetdeploy/fleetdeploy/plan"
	"github.com/fleetdeploy/fleetdeploy/remote"
	"github.com/fleetdeploy/fleetdeploy/steps"
	"github.com/urfave/cli/v2"
)

// historyOptions are what `history` takes.
type historyOptions struct {
	env  string
	last int // events shown, newest last
	sel  selection
}

func historyCommand(c *common, run func(context.Context, *common, historyOptions) error) *cli.Command {
	return &cli.Command{
		Name: "history", Usage: "the fleet's deploys, rollbacks and reverts, merged from the hosts' records; the builds still on the hosts", ArgsUsage: "ENV",
		Flags: append([]cli.Flag{&cli.IntFlag{Name: "n", Value: 20, Usage: "show the last `N` events"}}, selectionFlags()...),
		Action: func(cc *cli.Context) error {
			env, err := envArg(c, cc)
			if err != nil {
				return err
			}
			if cc.Int("n") < 1 {
				return &usageError{fmt.Sprintf("-n must be at least 1, got %d", cc.Int("n"))}
			}
			return run(cc.Context, c, historyOptions{env: env, last: cc.Int("n"), sel: selectionOf(cc)})
		},
	}
}

// runHistory reads every host's live history (over SFTP, starting no
// process) and shows it as one line per fleet event, flagging hosts whose
// records disagree, then the builds on the hosts. An unreachable host
// makes it exit 4, as status does.
func runHistory(ctx context.Context, c *common, o historyOptions) error {
	env, err := c.loadSelected(o.env, o.sel)
	if err != nil {
		return err
	}
	f, targets, failed, err := fleet.Survey(ctx, env, c.reach(), true, steps.Look)
	if err != nil {
		return err
	}
	defer f.Close()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	h := plan.History(targets)
	var b strings.Builder
	events := h.Events
	if len(events) > o.last {
		fmt.Fprintf(&b, "(%d earlier events not shown: -n N shows more)\n", len(events)-o.last)
		events = events[len(events)-o.last:]
	}
	if len(events) == 0 {
		fmt.Fprintf(&b, "no host has a live history yet\n")
	}
	for _, ev := range events {
		fmt.Fprintf(&b, "%s\n", remote.Sanitize(ev.String()))
		if ev.Disagree() {
			fmt.Fprintf(&b, "    ! hosts disagree: %s\n", remote.Sanitize(ev.Problems()))
		}
	}
	if len(h.Builds) > 0 {
		fmt.Fprintf(&b, "\nbuilds on the hosts (newest live first):\n")
		for _, bu := range h.Builds {
			fmt.Fprintf(&b, "  %s  %s\n", bu.ID, describeBuild(bu, h.Hosts))
		}
	}
	switch {
	case len(h.Targets) > 0:
		fmt.Fprintf(&b, "rollback targets (rollback --to ID): %s\n", strings.Join(h.Targets, ", "))
	case len(h.Hosts) > 0:
		fmt.Fprintf(&b, "no rollback target: no other build that went live is on every host\n")
	}
	if len(h.BadTargets) > 0 {
		fmt.Fprintf(&b, "marked bad, taken only when named: %s\n", strings.Join(h.BadTargets, ", "))
	}
	var problems []string
	for _, t := range targets {
		if err, ok := failed[t.Host.Name]; ok {
			var he *plan.HostError
			if errors.As(err, &he) {
				err = fmt.Errorf("%s: %w", he.Step, he.Err)
			}
			line := fmt.Sprintf("%s: UNREACHABLE: %s", t.Host.Name, remote.Sanitize(strings.ReplaceAll(err.Error(), "\n", " ")))
			fmt.Fprintf(&b, "%s\n", line)
			problems = append(problems, line)
		}
	}
	c.out.Printf("%s", b.String())
	if len(problems) > 0 {
		return &driftError{msg: "the history leaves out unreachable hosts:\n" + strings.Join(problems, "\n")}
	}
	return nil
}

// describeBuild says where a build is, whether it is live, and whether bad.
func describeBuild(b plan.BuildOnHosts, hosts []string) string {
	var parts []string
	switch {
	case len(b.Live) == len(hosts):
		parts = append(parts, "live")
	case len(b.Live) > 0:
		parts = append(parts, "live on "+strings.Join(b.Live, ", "))
	case b.LastLive.IsZero():
		parts = append(parts, "never live")
	}
	if b.Bad {
		parts = append(parts, "BAD (failed its health check)")
	}
	if len(b.Hosts) == len(hosts) {
		parts = append(parts, fmt.Sprintf("on all %d hosts", len(hosts)))
	} else {
		parts = append(parts, "only on "+strings.Join(b.Hosts, ", "))
	}
	return strings.Join(parts, "; ")
}

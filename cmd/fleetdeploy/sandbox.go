package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/fleetdeploy/fleetdeploy/sandbox"
	"github.com/urfave/cli/v2"
)

const (
	defaultSandboxDir   = "fleetdeploy-sandbox"
	defaultSandboxHosts = 3
	maxSandboxHosts     = 500 // enough for a fleet-scale benchmark; more is a typo
)

// sandboxOptions are the sandbox command's flags.
type sandboxOptions struct {
	dir   string
	count int
	demo  bool
	// passOn are the global flags the user set, handed on to the commands
	// the demo runs so that e.g. `-v sandbox --demo` shows every step.
	passOn []string
}

// passedOnFlags are the global flags a demo hands on to the commands it runs.
var passedOnFlags = []string{"parallel", "max-connects", "connect-timeout", "keepalive", "keepalive-count", "undo-timeout"}

func sandboxCommand(c *common, run func(context.Context, *common, sandboxOptions) error) *cli.Command {
	return &cli.Command{
		Name:      "sandbox",
		Usage:     "run a fleet of SSH hosts on this machine to try fleetdeploy on (--demo: a one-shot tour)",
		ArgsUsage: " ",
		Description: `Starts --count SSH hosts inside this process, on 127.0.0.1 at random ports
(key-only logins, one host key each; commands run as you), and serves them until
Ctrl-C. Everything lives in --dir, created if missing and kept after exit:

  app/              the example PHP app, the deploy source (written only if absent:
                    edit it and deploy again)
  sandbox.yml       the inventory, environment "sandbox"; written once every host
                    listens, removed on exit (ports change on every start)
  hostK/www/        host K's deploy root; shared/.env is provisioned for you
  id_ed25519, known_hosts, hostK/ssh_host_ed25519_key
                    client and host keys, reused on the next start

Then, in another terminal:

  fleetdeploy up sandbox -i DIR/sandbox.yml

Starting again with the same --dir continues where the last run left off. Ctrl-C
exits 0 once every host has stopped.

With --demo it instead starts a sandbox in a temporary folder, deploys v1, then
v2, shows the status, rolls back, prints one host's files and the cutover skew
of each switch, and removes the folder: a tour of fleetdeploy in a few seconds.`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "count", Value: defaultSandboxHosts, Usage: "number of hosts (1 to 500)"},
			&cli.StringFlag{Name: "dir", Value: defaultSandboxDir, Usage: "`DIR` holding the hosts, keys, app and inventory, relative to the current folder unless absolute"},
			&cli.BoolFlag{Name: "demo", Usage: "run the tour in a temporary folder and exit"},
		},
		Action: func(cc *cli.Context) error {
			if cc.NArg() > 0 {
				return &usageError{"usage: fleetdeploy sandbox [--count N] [--dir DIR] [--demo] (no arguments)"}
			}
			o := sandboxOptions{dir: cc.String("dir"), count: cc.Int("count"), demo: cc.Bool("demo")}
			if o.count < 1 || o.count > maxSandboxHosts {
				return &usageError{fmt.Sprintf("sandbox: --count must be between 1 and %d, got %d", maxSandboxHosts, o.count)}
			}
			if o.dir == "" {
				return &usageError{"sandbox: --dir must not be empty"}
			}
			if o.demo && cc.IsSet("dir") {
				return &usageError{"sandbox: --demo runs in a temporary folder it removes; leave out --dir (or leave out --demo for a sandbox that stays)"}
			}
			for _, name := range passedOnFlags {
				if cc.IsSet(name) {
					o.passOn = append(o.passOn, fmt.Sprintf("--%s=%v", name, cc.Value(name)))
				}
			}
			if c.verbose {
				o.passOn = append(o.passOn, "-v")
			}
			if c.quiet {
				o.passOn = append(o.passOn, "-q")
			}
			return run(cc.Context, c, o)
		},
	}
}

// runSandbox runs the tour, or a sandbox until ctx is cancelled. A sandbox
// that then stops cleanly is a success (exit 0): stopping is how it is meant
// to end.
func runSandbox(ctx context.Context, c *common, o sandboxOptions) error {
	if o.demo {
		return demo(ctx, c, o)
	}
	sb, err := sandbox.Open(o.dir, o.count)
	if err != nil {
		return err
	}
	printUsage(c.out, sb)
	c.rep.Idle() // a server now: no progress line "starting" for hours
	<-ctx.Done()
	c.out.Printf("\nstopping the sandbox\n")
	if err := sb.Close(); err != nil {
		return err
	}
	c.out.Printf("stopped; the hosts' files stay in %s (start again with --dir %s)\n", sb.Dir, shellQuote(sb.Dir))
	return nil
}

// printUsage tells the user where the hosts are and what to type next.
func printUsage(w io.Writer, sb *sandbox.Site) {
	inv := shellQuote(sb.Inventory)
	fmt.Fprintf(w, "fleetdeploy sandbox: %d SSH hosts on 127.0.0.1, serving until Ctrl-C\n\n", len(sb.Fleet.Hosts))
	for i, h := range sb.Fleet.Hosts {
		fmt.Fprintf(w, "  host%-3d %-22s root %s\n", i+1, h.Addr(), sb.Fleet.Roots[i])
	}
	fmt.Fprintf(w, "\nin %s:\n", sb.Dir)
	fmt.Fprintf(w, "  %-14s the inventory (environment %q); removed when the sandbox stops\n", sandbox.InventoryFile, sandbox.Env)
	fmt.Fprintf(w, "  %-14s the example app, the deploy source: edit it and deploy again\n", sandbox.SourceDir+"/")
	fmt.Fprintf(w, "\nin another terminal:\n")
	fmt.Fprintf(w, "  fleetdeploy up sandbox -i %s          # deploy app/ to every host\n", inv)
	fmt.Fprintf(w, "  fleetdeploy status sandbox -i %s      # what each host runs\n", inv)
	fmt.Fprintf(w, "  fleetdeploy rollback sandbox -i %s    # back to the build live before\n", inv)
	fmt.Fprintf(w, "  ls -l %s                                  # latest -> builds/ID\n", shellQuote(sb.Fleet.Roots[0]))
	fmt.Fprintf(w, "\nCtrl-C stops the hosts; their files stay for the next start with --dir %s\n", shellQuote(sb.Dir))
}

// shellQuote renders s for a person to paste into a POSIX shell; plain words
// stay as they are.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:+=,@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

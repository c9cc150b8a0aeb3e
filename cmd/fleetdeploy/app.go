package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/plan"
	"github.com/fleetdeploy/fleetdeploy/remote"
	"github.com/urfave/cli/v2"
)

// globals are the settings every command shares.
type globals struct {
	inventory      string
	parallel       int
	maxConnects    int
	connectTimeout time.Duration
	keepalive      time.Duration
	keepaliveMax   int
	undoTimeout    time.Duration
	verbose        bool
	cacheDir       string
	compress       bool
	compressSet    bool  // --compress given (true or false): no automatic choice
	window         int64 // steps.Payload.Window of uncompressed payloads (paceWindow)

	stdout, stderr io.Writer
	now            func() time.Time
	started        time.Time
	extraObserver  func(plan.Event)
	// beforePayloads, for tests, runs before each attempt at making the
	// hosts' payloads from the build.
	beforePayloads func()
}

// valueFlags are the flags that take a value, for moving flags written after ENV.
var valueFlags = map[string]bool{
	"-i": true, "--inventory": true, "--parallel": true, "--max-connects": true,
	"--connect-timeout": true, "--keepalive": true, "--keepalive-count": true,
	"--undo-timeout": true, "--cache-dir": true, "--to": true, "--count": true, "--dir": true,
}

// run is the whole program behind main: it parses args, runs the command and
// maps its error onto an exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runWith(ctx, args, stdout, stderr, time.Now)
}

func runWith(ctx context.Context, args []string, stdout, stderr io.Writer, now func() time.Time) int {
	return runObserved(ctx, args, stdout, stderr, now, nil)
}

// runObserved is runWith with a second observer of the scheduler's events,
// called synchronously: tests use it to inject faults at an exact moment.
// Options set test seams on the globals.
func runObserved(ctx context.Context, args []string, stdout, stderr io.Writer, now func() time.Time, observe func(plan.Event), opts ...func(*globals)) int {
	g := &globals{stdout: stdout, stderr: stderr, now: now, started: now(), extraObserver: observe}
	for _, o := range opts {
		o(g)
	}
	app := newApp(g)
	err := app.RunContext(ctx, interspersed(args))
	var intr *plan.InterruptedError
	if errors.Is(err, context.Canceled) && !errors.As(err, &intr) {
		err = &plan.InterruptedError{Before: true}
	}
	if err != nil {
		fmt.Fprintf(stderr, "fleetdeploy: %s\n", indentLines(err.Error()))
	}
	return exitCode(err)
}

func indentLines(s string) string { return strings.ReplaceAll(s, "\n", "\n  ") }

func newApp(g *globals) *cli.App {
	envArg := func(c *cli.Context) (string, error) {
		if c.NArg() != 1 {
			return "", &usageError{fmt.Sprintf("usage: fleetdeploy %s ENV (the environment, from the inventory's environments)", c.Command.Name)}
		}
		return c.Args().First(), nil
	}
	dryRun := func() cli.Flag {
		return &cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "print the plan (read from the hosts) and change nothing"}
	}
	app := &cli.App{
		Name:            "fleetdeploy",
		Usage:           "deploy one build to a fleet of servers over SSH, switching them all at once",
		Writer:          g.stdout,
		ErrWriter:       g.stderr,
		ExitErrHandler:  func(*cli.Context, error) {},
		HideHelp:        true, // urfave/cli's shared HelpFlag is package state: each app gets its own
		HideHelpCommand: true,
		Suggest:         true,
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return &usageError{err.Error()}
		},
		Flags: []cli.Flag{
			helpFlag(),
			&cli.StringFlag{Name: "inventory", Aliases: []string{"i"}, Value: "hosts.yml", Usage: "inventory `FILE`", Destination: &g.inventory},
			&cli.IntFlag{Name: "parallel", Value: 0, Usage: "hosts prepared at once (0: all)", Destination: &g.parallel},
			&cli.IntFlag{Name: "max-connects", Value: 10, Usage: "SSH handshakes in flight at once (sshd's MaxStartups drops unauthenticated connections past 10)", Destination: &g.maxConnects},
			&cli.DurationFlag{Name: "connect-timeout", Value: remote.DefaultConnectTimeout, Usage: "bound on TCP connect + SSH handshake + authentication", Destination: &g.connectTimeout},
			&cli.DurationFlag{Name: "keepalive", Value: remote.DefaultKeepaliveInterval, Usage: "interval of SSH keepalives on open connections", Destination: &g.keepalive},
			&cli.IntFlag{Name: "keepalive-count", Value: remote.DefaultKeepaliveMax, Usage: "keepalive intervals without an answer before a host is declared gone", Destination: &g.keepaliveMax},
			&cli.DurationFlag{Name: "undo-timeout", Value: time.Minute, Usage: "bound on cleaning up the hosts after a failure or Ctrl-C", Destination: &g.undoTimeout},
			&cli.StringFlag{Name: "cache-dir", Usage: "where manifests of builds seen on hosts, and hashes of local files, are cached (default: the user cache folder)", Destination: &g.cacheDir},
			&cli.BoolFlag{Name: "compress", Usage: "gzip whole builds too (redeploys' deltas always are); default: only when the hosts are 10 ms or more away; --compress=false never", Destination: &g.compress, DisableDefaultText: true},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "show every step, remote operation and hook output", Destination: &g.verbose},
		},
		Commands: []*cli.Command{
			{
				Name: "up", Usage: "build, upload to every host, then switch all hosts at once", ArgsUsage: "ENV",
				Flags: []cli.Flag{dryRun()},
				Action: func(c *cli.Context) error {
					env, err := envArg(c)
					if err != nil {
						return err
					}
					g.compressSet = c.IsSet("compress")
					return g.up(c.Context, env, c.Bool("dry-run"))
				},
			},
			{
				Name: "plan", Usage: "show what `up` would do on every host (same as up --dry-run)", ArgsUsage: "ENV",
				Action: func(c *cli.Context) error {
					env, err := envArg(c)
					if err != nil {
						return err
					}
					return g.up(c.Context, env, true)
				},
			},
			{
				Name: "rollback", Usage: "switch every host back to the build live before (or --to ID)", ArgsUsage: "ENV",
				Flags: []cli.Flag{dryRun(), &cli.StringFlag{Name: "to", Usage: "build `ID` to switch to"}},
				Action: func(c *cli.Context) error {
					env, err := envArg(c)
					if err != nil {
						return err
					}
					return g.rollback(c.Context, env, c.String("to"), c.Bool("dry-run"))
				},
			},
			{
				Name: "status", Usage: "show each host's live build, builds and lock; exit 4 on drift", ArgsUsage: "ENV",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "verify", Usage: "re-hash every file of each live build against its manifest"}},
				Action: func(c *cli.Context) error {
					env, err := envArg(c)
					if err != nil {
						return err
					}
					return g.status(c.Context, env, c.Bool("verify"))
				},
			},
			{
				Name: "unlock", Usage: "remove a deploy lock left by a run that died", ArgsUsage: "ENV",
				Action: func(c *cli.Context) error {
					env, err := envArg(c)
					if err != nil {
						return err
					}
					return g.unlock(c.Context, env)
				},
			},
			g.sandboxCommand(),
		},
	}
	for _, c := range app.Commands {
		c.HideHelp = true
		c.Flags = append(c.Flags, helpFlag())
	}
	return app
}

// helpFlag is a fresh -h/--help for one app or command.
func helpFlag() cli.Flag {
	return &cli.BoolFlag{Name: "help", Aliases: []string{"h"}, Usage: "show help"}
}

// globalFlags are the flags of the program rather than of one command.
var globalFlags = map[string]bool{
	"-i": true, "--inventory": true, "--parallel": true, "--max-connects": true,
	"--connect-timeout": true, "--keepalive": true, "--keepalive-count": true,
	"--undo-timeout": true, "--cache-dir": true, "--compress": true, "-v": true, "--verbose": true,
}

// interspersed reorders a command line so that flags may come before or after
// ENV: `up production -i hosts.yml` works as well as `-i hosts.yml up
// production` (urfave/cli stops parsing at the first argument, and knows a
// global flag only before the command).
func interspersed(args []string) []string {
	if len(args) < 2 {
		return args
	}
	var global, command, local, positional []string
	name := func(a string) string { n, _, _ := strings.Cut(a, "="); return n }
	takesValue := func(a string) bool { return valueFlags[a] } // "--x=v" carries its own
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			positional = append(positional, args[i+1:]...)
			i = len(args)
		case strings.HasPrefix(a, "-") && a != "-":
			dst := &local
			if command == nil || globalFlags[name(a)] {
				dst = &global
			}
			*dst = append(*dst, a)
			if takesValue(a) && i+1 < len(args) {
				*dst = append(*dst, args[i+1])
				i++
			}
		case command == nil:
			command = []string{a}
		default:
			positional = append(positional, a)
		}
	}
	out := append([]string{args[0]}, global...)
	out = append(out, command...)
	out = append(out, local...)
	return append(out, positional...)
}

// loadEnv reads the inventory and resolves one environment.
func (g *globals) loadEnv(name string) (*inventory.Environment, error) {
	return inventory.LoadEnvironment(g.inventory, name)
}

// who names the person deploying, for locks and history.
func who() string {
	u := os.Getenv("USER")
	if cu, err := user.Current(); err == nil {
		u = cu.Username
	}
	h, _ := os.Hostname()
	return fmt.Sprintf("%s@%s pid %d", u, h, os.Getpid())
}

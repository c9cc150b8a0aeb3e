package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"slices"
	"strings"
	"time"

	"github.com/fleetdeploy/fleetdeploy/fleet"
	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/plan"
	"github.com/fleetdeploy/fleetdeploy/remote"
	"github.com/fleetdeploy/fleetdeploy/report"
	"github.com/fleetdeploy/fleetdeploy/steps"
	"github.com/urfave/cli/v2"
)

// common is what every command shares: the global flags, where output goes,
// the clock, and seams for tests.
type common struct {
	inventory      string
	parallel       int
	maxConnects    int
	connectTimeout time.Duration
	keepalive      time.Duration
	keepaliveMax   int
	undoTimeout    time.Duration
	verbose        bool
	quiet          bool
	json           bool
	cacheDir       string
	compress       bool
	compressSet    bool // --compress given (true or false): no automatic choice
	showVersion    bool
	lockLease      time.Duration
	sshConfig      string
	acceptNewKeys  bool

	out     *printer // what commands print; to the reporter once flags are read
	stdout  io.Writer
	stderr  io.Writer
	rep     *report.Reporter // the run's progress and result; set before any command runs
	now     func() time.Time
	started time.Time
	// terminal and width say whether a writer is a terminal, and how wide.
	terminal func(io.Writer) bool
	width    func(io.Writer) int
	// observe, for tests, sees every scheduler event, synchronously: faults
	// can be injected at an exact moment.
	observe func(plan.Event)
	// beforePayloads, for tests, runs before each attempt at making the
	// hosts' payloads from the build.
	beforePayloads func()
	// wrapConn, for tests, wraps every connection (to count round trips).
	wrapConn func(net.Conn) net.Conn
}

// runners are the commands' run functions: tests replace them to check
// what a command line parses into, without any I/O.
type runners struct {
	up       func(context.Context, *common, upOptions) error
	rollback func(context.Context, *common, rollbackOptions) error
	status   func(context.Context, *common, statusOptions) error
	unlock   func(context.Context, *common, unlockOptions) error
	check    func(context.Context, *common, checkOptions) error
	sandbox  func(context.Context, *common, sandboxOptions) error
	history  func(context.Context, *common, historyOptions) error
	init     func(context.Context, *common, initOptions) error
}

func realRunners() runners {
	return runners{up: runUp, rollback: runRollback, status: runStatus, unlock: runUnlock, check: runCheck, sandbox: runSandbox, history: runHistory, init: runInit}
}

// run is the whole program behind main: it parses args, runs the command and
// maps its error onto an exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runWith(ctx, args, stdout, stderr, time.Now)
}

func runWith(ctx context.Context, args []string, stdout, stderr io.Writer, now func() time.Time, seams ...func(*common)) int {
	c := &common{out: newPrinter(stdout), stdout: stdout, stderr: stderr, now: now, started: now(),
		terminal: isTerminal, width: terminalWidth}
	for _, s := range seams {
		s(c)
	}
	app := newApp(c, realRunners())
	line := interspersed(args, app)
	err := finalError(app.RunContext(ctx, line))
	if c.rep == nil {
		// The command line was refused before the flags were all read:
		// --json still ends with its result event.
		c.json = c.json || slices.Contains(args, "--json")
		c.verbose, c.quiet = false, true
		c.rep = c.newReporter()
	}
	c.out.flush()
	c.rep.Named(commandOf(line, app))
	c.rep.Result(exitCode(err), err)
	if err != nil {
		// Errors quote hosts (a lock's holder, a command's stderr): their
		// control characters are shown escaped, never sent to the terminal.
		fmt.Fprintf(stderr, "fleetdeploy: %s\n", indentLines(remote.SanitizeLines(err.Error())))
	}
	return exitCode(err)
}

// finalError is a command's error as the exit code and the message tell it:
// a bare cancellation is an interruption before any host changed.
func finalError(err error) error {
	var intr *plan.InterruptedError
	if errors.Is(err, context.Canceled) && !errors.As(err, &intr) {
		return &plan.InterruptedError{Before: true}
	}
	return err
}

func indentLines(s string) string { return strings.ReplaceAll(s, "\n", "\n  ") }

func newApp(c *common, r runners) *cli.App {
	app := &cli.App{
		Name:            "fleetdeploy",
		Usage:           "deploy one build to a fleet of servers over SSH, switching them all at once",
		UsageText:       "fleetdeploy [global options] command [command options] [ENV]",
		Writer:          c.stdout, // help, versions and completion scripts are answers, not progress
		ErrWriter:       c.stderr,
		ExitErrHandler:  func(*cli.Context, error) {},
		HideHelp:        true, // urfave/cli's shared HelpFlag is package state: each app gets its own
		HideHelpCommand: true,
		HideVersion:     true, // its -v would be --verbose's: ours is --version alone
		OnUsageError: func(cc *cli.Context, err error, _ bool) error {
			return usageErr(cc, err)
		},
		Action: func(cc *cli.Context) error {
			switch {
			case c.showVersion:
				fmt.Fprint(c.stdout, buildVersion())
				return nil
			case cc.NArg() > 0:
				return unknownCommand(cc.App, cc.Args().First())
			}
			return cli.ShowAppHelp(cc)
		},
		Flags: []cli.Flag{
			helpFlag(),
			&cli.StringFlag{Name: "inventory", Aliases: []string{"i"}, Value: "hosts.yml", Usage: "inventory `FILE`", Destination: &c.inventory},
			&cli.IntFlag{Name: "parallel", Value: 0, Usage: "hosts prepared at once (0: all)", Destination: &c.parallel},
			&cli.IntFlag{Name: "max-connects", Value: 64, Usage: "SSH handshakes in flight at once, in all (to any one sshd, or through ProxyCommands, at most 10: sshd's MaxStartups)", Destination: &c.maxConnects},
			&cli.DurationFlag{Name: "connect-timeout", Value: remote.DefaultConnectTimeout, Usage: "bound on TCP connect + SSH handshake + authentication", Destination: &c.connectTimeout},
			&cli.DurationFlag{Name: "keepalive", Value: remote.DefaultKeepaliveInterval, Usage: "interval of SSH keepalives on open connections", Destination: &c.keepalive},
			&cli.IntFlag{Name: "keepalive-count", Value: remote.DefaultKeepaliveMax, Usage: "keepalive intervals without an answer before a host is declared gone", Destination: &c.keepaliveMax},
			&cli.DurationFlag{Name: "undo-timeout", Value: time.Minute, Usage: "bound on cleaning up the hosts after a failure or Ctrl-C", Destination: &c.undoTimeout},
			&cli.StringFlag{Name: "cache-dir", Usage: "where manifests of builds seen on hosts, and hashes of local files, are cached (default: the user cache folder)", Destination: &c.cacheDir},
			&cli.BoolFlag{Name: "compress", Usage: "gzip whole builds too (redeploys' deltas always are); default: when the last upload to the hosts ran below about 40 MB/s per host (nothing measured yet: when they are 10 ms or more away); --compress=false never", Destination: &c.compress, DisableDefaultText: true},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "show every step and remote operation as it runs", Destination: &c.verbose, DisableDefaultText: true},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "show only errors and the result line", Destination: &c.quiet, DisableDefaultText: true},
			&cli.BoolFlag{Name: "json", Usage: "write one JSON event per line on standard output (docs/EVENTS.md); progress for people goes to standard error when it is a terminal", Destination: &c.json, DisableDefaultText: true},
			&cli.BoolFlag{Name: "version", Usage: "print the version and exit", Destination: &c.showVersion, DisableDefaultText: true},
			&cli.StringFlag{Name: "ssh-config", Aliases: []string{"F"}, Usage: "ssh_config `FILE` to read instead of ~/.ssh/config and /etc/ssh/ssh_config (none: read none); default: the inventory's ssh.config", Destination: &c.sshConfig},
			&cli.BoolFlag{Name: "accept-new-host-keys", Usage: "record the key of a host not in known_hosts yet (StrictHostKeyChecking accept-new); a changed key is always refused", Destination: &c.acceptNewKeys, DisableDefaultText: true},
			&cli.DurationFlag{Name: "lock-lease", Usage: "how long a run's host locks stay good without a refresh (refreshed every third of it); then another run may take them over (default: lock_lease in the inventory, else 2m)", Destination: &c.lockLease},
		},
		Before: func(cc *cli.Context) error {
			c.compressSet = cc.IsSet("compress")
			// Not given: ssh_config decides, then the defaults.
			if !cc.IsSet("connect-timeout") {
				c.connectTimeout = 0
			}
			if !cc.IsSet("keepalive") {
				c.keepalive = 0
			}
			if !cc.IsSet("keepalive-count") {
				c.keepaliveMax = 0
			}
			if cc.IsSet("lock-lease") && c.lockLease < inventory.MinLockLease {
				return &usageError{fmt.Sprintf("--lock-lease must be at least %s, got %s", inventory.MinLockLease, c.lockLease)}
			}
			if c.quiet && c.verbose {
				return &usageError{"-q and -v cannot be combined: -q shows only errors and the result, -v every operation"}
			}
			c.rep = c.newReporter()
			c.out.to(c.rep)
			return nil
		},
		Commands: []*cli.Command{
			upCommand(c, r.up),
			planCommand(c, r.up),
			rollbackCommand(c, r.rollback),
			statusCommand(c, r.status),
			historyCommand(c, r.history),
			unlockCommand(c, r.unlock),
			checkCommand(c, r.check),
			sandboxCommand(c, r.sandbox),
			initCommand(c, r.init),
			versionCommand(c),
			completionCommand(c),
		},
	}
	quietBools(app.Flags)
	for _, cmd := range app.Commands {
		cmd.HideHelp = true
		cmd.Flags = append(cmd.Flags, helpFlag())
		quietBools(cmd.Flags)
		cmd.OnUsageError = app.OnUsageError
		cmd.CustomHelpTemplate = commandHelp(app, cmd)
	}
	return app
}

// quietBools drops "(default: false)" from the help of boolean flags: a
// switch is off unless given.
func quietBools(flags []cli.Flag) {
	for _, f := range flags {
		if b, ok := f.(*cli.BoolFlag); ok && !b.Value {
			b.DisableDefaultText = true
		}
	}
}

// helpFlag is a fresh -h/--help for one app or command.
func helpFlag() cli.Flag {
	return &cli.BoolFlag{Name: "help", Aliases: []string{"h"}, Usage: "show help", DisableDefaultText: true}
}

// dryRunFlag is up's and rollback's --dry-run.
func dryRunFlag() cli.Flag {
	return &cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "print the plan (read from the hosts) and change nothing", DisableDefaultText: true}
}

// envArg is the one ENV argument of a command. Without it, the usage error
// lists the inventory's environments.
func envArg(c *common, cc *cli.Context) (string, error) {
	if cc.NArg() == 1 {
		return cc.Args().First(), nil
	}
	msg := fmt.Sprintf("usage: fleetdeploy %s ENV", cc.Command.Name)
	if cc.NArg() > 1 {
		return "", &usageError{fmt.Sprintf("%s: one environment, got %d arguments (%s)", msg, cc.NArg(), strings.Join(cc.Args().Slice(), " "))}
	}
	return "", &usageError{msg + ": " + environments(c.inventory)}
}

// environments lists the inventory's environments for a usage error.
func environments(file string) string {
	names, err := inventory.LoadNames(file)
	switch {
	case err != nil:
		return fmt.Sprintf("name an environment of the inventory (%v)", err)
	case len(names) == 0:
		return fmt.Sprintf("name an environment; %s has none", file)
	}
	return fmt.Sprintf("name an environment of %s: %s", file, strings.Join(names, ", "))
}

// flagSpellings lists how each flag is written on a command line ("-v",
// "--verbose"), and whether it takes a value as the next word.
func flagSpellings(flags []cli.Flag) map[string]bool {
	out := map[string]bool{}
	for _, f := range flags {
		takes := false
		if d, ok := f.(cli.DocGenerationFlag); ok {
			takes = d.TakesValue()
		}
		for _, n := range f.Names() {
			if len(n) == 1 {
				out["-"+n] = takes
			} else {
				out["--"+n] = takes
			}
		}
	}
	return out
}

// interspersed reorders a command line so that flags may come before or after
// ENV: `up production -i hosts.yml` works as well as `-i hosts.yml up
// production` (urfave/cli stops parsing at the first argument, and knows a
// global flag only before the command). Which flags are global, and which
// take a value, is read from the app's own flag definitions.
func interspersed(args []string, app *cli.App) []string {
	if len(args) < 2 {
		return args
	}
	global := flagSpellings(app.Flags)
	values := map[string]bool{}
	for n, takes := range global {
		values[n] = takes
	}
	// Once the command is known, its own flags say: history's -n takes a
	// value, up's -n (--dry-run) does not.
	local := map[string]map[string]bool{}
	for _, cmd := range app.Commands {
		local[cmd.Name] = flagSpellings(cmd.Flags)
		for n, takes := range local[cmd.Name] {
			values[n] = values[n] || takes
		}
	}
	takesValue := func(command []string, a string) bool {
		if command != nil {
			if takes, ok := local[command[0]][a]; ok {
				return takes
			}
		}
		return values[a]
	}
	var globals, command, own, positional, rest []string
	name := func(a string) string { n, _, _ := strings.Cut(a, "="); return n }
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			rest = append([]string{"--"}, args[i+1:]...)
			i = len(args)
		case strings.HasPrefix(a, "-") && a != "-":
			dst := &own
			if _, ok := global[name(a)]; command == nil || ok {
				dst = &globals
			}
			*dst = append(*dst, a)
			if takesValue(command, a) && i+1 < len(args) { // "--x=v" carries its own
				*dst = append(*dst, args[i+1])
				i++
			}
		case command == nil:
			command = []string{a}
		default:
			positional = append(positional, a)
		}
	}
	out := append([]string{args[0]}, globals...)
	out = append(out, command...)
	out = append(out, own...)
	out = append(out, positional...)
	return append(out, rest...)
}

// commandOf is the command an interspersed command line runs ("" for none).
func commandOf(line []string, app *cli.App) string {
	global := flagSpellings(app.Flags)
	for i := 1; i < len(line); i++ {
		a := line[i]
		if strings.HasPrefix(a, "-") {
			if global[a] {
				i++ // its value
			}
			continue
		}
		if app.Command(a) != nil {
			return app.Command(a).Name
		}
		return ""
	}
	return ""
}

// loadEnv reads the inventory and resolves one environment.
func (c *common) loadEnv(name string) (*inventory.Environment, error) {
	return inventory.LoadEnvironment(c.inventory, name)
}

// reach is how this run reaches hosts.
func (c *common) reach() fleet.Options {
	return fleet.Options{
		MaxConnects: c.maxConnects, ConnectTimeout: c.connectTimeout,
		Keepalive: c.keepalive, KeepaliveMax: c.keepaliveMax,
		SSHConfig: c.sshConfig, AcceptNewHostKeys: c.acceptNewKeys,
		Notify: func(msg string) {
			if !c.rep.Notice("fleetdeploy: " + msg) {
				fmt.Fprintf(c.stderr, "fleetdeploy: %s\n", msg)
			}
		},
		Reached: c.rep.Connected,
		Wrap:    c.wrapConn,
	}
}

// execOptions bound a run of the scheduler.
func (c *common) execOptions() plan.Options {
	return plan.Options{Parallel: c.parallel, Observe: c.render, UndoTimeout: c.undoTimeout, Now: c.now}
}

// holder is this run, as its locks and history name it; the lease comes from
// --lock-lease, the inventory's lock_lease, or the default.
func (c *common) holder(env *inventory.Environment) steps.Holder {
	lease := c.lockLease
	if lease <= 0 {
		lease = env.LockLease
	}
	if lease <= 0 {
		lease = inventory.DefaultLockLease
	}
	return steps.NewHolder(who(), lease)
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

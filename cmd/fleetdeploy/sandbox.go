package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/fleetdeploy/fleetdeploy/examples"
	"github.com/fleetdeploy/fleetdeploy/sandbox"
	"github.com/urfave/cli/v2"
)

// Sandbox files, relative to the sandbox folder.
const (
	sandboxInventoryFile = "sandbox.yml"   // exists exactly while the sandbox serves
	sandboxSourceDir     = "app"           // the deploy source, written once
	sandboxLockFile      = ".sandbox.lock" // flock(2)ed by the running sandbox
	sandboxEnv           = "sandbox"       // the inventory's one environment
	defaultSandboxDir    = "fleetdeploy-sandbox"
	defaultSandboxHosts  = 3
	maxSandboxHosts      = 500 // enough for a fleet-scale benchmark; more is a typo
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

func (g *globals) sandboxCommand() *cli.Command {
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
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return &usageError{"usage: fleetdeploy sandbox [--count N] [--dir DIR] [--demo] (no arguments)"}
			}
			o := sandboxOptions{dir: c.String("dir"), count: c.Int("count"), demo: c.Bool("demo")}
			if o.count < 1 || o.count > maxSandboxHosts {
				return &usageError{fmt.Sprintf("sandbox: --count must be between 1 and %d, got %d", maxSandboxHosts, o.count)}
			}
			if o.dir == "" {
				return &usageError{"sandbox: --dir must not be empty"}
			}
			if o.demo && c.IsSet("dir") {
				return &usageError{"sandbox: --demo runs in a temporary folder it removes; leave out --dir (or leave out --demo for a sandbox that stays)"}
			}
			for _, name := range passedOnFlags {
				if c.IsSet(name) {
					o.passOn = append(o.passOn, fmt.Sprintf("--%s=%v", name, c.Value(name)))
				}
			}
			if g.verbose {
				o.passOn = append(o.passOn, "-v")
			}
			if o.demo {
				return g.demo(c.Context, o)
			}
			return g.serveSandbox(c.Context, o)
		},
	}
}

// serveSandbox runs a sandbox until ctx is cancelled. A sandbox that then
// stops cleanly is a success (exit 0): stopping is how it is meant to end.
func (g *globals) serveSandbox(ctx context.Context, o sandboxOptions) error {
	sb, err := openSandbox(o.dir, o.count)
	if err != nil {
		return err
	}
	sb.printUsage(g.stdout)
	<-ctx.Done()
	fmt.Fprintf(g.stdout, "\nstopping the sandbox\n")
	if err := sb.Close(); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "stopped; the hosts' files stay in %s (start again with --dir %s)\n", sb.dir, shellQuote(sb.dir))
	return nil
}

// sandboxSite is a running sandbox and the files it wrote for clients.
type sandboxSite struct {
	fleet     *sandbox.Fleet
	dir       string // absolute
	source    string // dir/app
	inventory string // dir/sandbox.yml
	lock      *os.File
}

// openSandbox starts n hosts in dir and writes what a client needs; the
// inventory comes last, so its presence means every host listens.
func openSandbox(dir string, n int) (_ *sandboxSite, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	sb := &sandboxSite{
		dir:       abs,
		source:    filepath.Join(abs, sandboxSourceDir),
		inventory: filepath.Join(abs, sandboxInventoryFile),
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, sb.Close())
		}
	}()
	if sb.lock, err = lockDir(filepath.Join(abs, sandboxLockFile)); err != nil {
		return nil, err
	}
	// A file left by a run that was killed names ports nobody listens on.
	if err := os.Remove(sb.inventory); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	if sb.fleet, err = sandbox.StartFleet(abs, n); err != nil {
		return nil, err
	}
	if err := writeAppOnce(sb.source); err != nil {
		return nil, err
	}
	spec := sandboxSpec{path: sb.inventory, source: sb.source, identity: sb.fleet.Identity, knownHosts: sb.fleet.KnownHosts}
	for i, h := range sb.fleet.Hosts {
		if err := provisionHost(sb.fleet.Roots[i], i+1); err != nil {
			return nil, err
		}
		spec.hosts = append(spec.hosts, sandboxHost{address: h.Addr().IP.String(), port: h.Addr().Port, root: sb.fleet.Roots[i]})
	}
	if err := writeFileAtomic(sb.inventory, sandboxInventory(spec)); err != nil {
		return nil, err
	}
	return sb, nil
}

// Close stops every host, removes the inventory (its ports are dead) and
// releases the folder. It is safe on a half-opened sandbox.
func (sb *sandboxSite) Close() error {
	var errs []error
	if sb.fleet != nil {
		if err := os.Remove(sb.inventory); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("sandbox: %w", err))
		}
		errs = append(errs, sb.fleet.Close())
		sb.fleet = nil
	}
	if sb.lock != nil {
		errs = append(errs, sb.lock.Close()) // closing the file releases the flock
		sb.lock = nil
	}
	return errors.Join(errs...)
}

// printUsage tells the user where the hosts are and what to type next.
func (sb *sandboxSite) printUsage(w io.Writer) {
	inv := shellQuote(sb.inventory)
	fmt.Fprintf(w, "fleetdeploy sandbox: %d SSH hosts on 127.0.0.1, serving until Ctrl-C\n\n", len(sb.fleet.Hosts))
	for i, h := range sb.fleet.Hosts {
		fmt.Fprintf(w, "  host%-3d %-22s root %s\n", i+1, h.Addr(), sb.fleet.Roots[i])
	}
	fmt.Fprintf(w, "\nin %s:\n", sb.dir)
	fmt.Fprintf(w, "  %-14s the inventory (environment %q); removed when the sandbox stops\n", sandboxInventoryFile, sandboxEnv)
	fmt.Fprintf(w, "  %-14s the example app, the deploy source: edit it and deploy again\n", sandboxSourceDir+"/")
	fmt.Fprintf(w, "\nin another terminal:\n")
	fmt.Fprintf(w, "  fleetdeploy up sandbox -i %s          # deploy app/ to every host\n", inv)
	fmt.Fprintf(w, "  fleetdeploy status sandbox -i %s      # what each host runs\n", inv)
	fmt.Fprintf(w, "  fleetdeploy rollback sandbox -i %s    # back to the build live before\n", inv)
	fmt.Fprintf(w, "  ls -l %s                                  # latest -> builds/ID\n", shellQuote(sb.fleet.Roots[0]))
	fmt.Fprintf(w, "\nCtrl-C stops the hosts; their files stay for the next start with --dir %s\n", shellQuote(sb.dir))
}

// lockDir takes an exclusive flock(2) on path, so two sandboxes never share a
// folder (the second would rewrite the first's known_hosts). The kernel drops
// the lock when the process dies, so a killed sandbox never blocks the next.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("sandbox: %s is in use by another running sandbox", filepath.Dir(path))
		}
		return nil, fmt.Errorf("sandbox: locking %s: %w", path, err)
	}
	return f, nil
}

// writeAppOnce writes the example app (v1) to dir unless dir exists, so the
// user's edits survive restarts. It writes to a temporary name first, so an
// interrupted write never passes for a finished app.
func writeAppOnce(dir string) error {
	if _, err := os.Lstat(dir); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("sandbox: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".tmp*")
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	if err := examples.WriteApp(tmp, "v1"); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("sandbox: writing the example app: %w", err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("sandbox: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("sandbox: %w", err)
	}
	return nil
}

// provisionHost does what an operator does once per server before the first
// deploy: create shared/.env, which a build never carries. The shared
// storage/sessions/ needs nothing: the first deploy seeds it from the build.
// An existing .env is left alone, so edits survive restarts.
func provisionHost(root string, k int) error {
	shared := filepath.Join(root, "shared")
	if err := os.MkdirAll(shared, 0o755); err != nil {
		return fmt.Errorf("sandbox: host%d: %w", k, err)
	}
	env := fmt.Sprintf(`# Settings of sandbox host%[1]d, written by fleetdeploy sandbox before the first
# deploy: every build links .env to this file (a build never carries a .env).
APP_NAME=shop
APP_ENV=sandbox
APP_SECRET=sandbox-host%[1]d-not-a-secret
APP_HOST=host%[1]d
`, k)
	f, err := os.OpenFile(filepath.Join(shared, ".env"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sandbox: host%d: %w", k, err)
	}
	if _, err := io.WriteString(f, env); err != nil {
		f.Close()
		return fmt.Errorf("sandbox: host%d: writing .env: %w", k, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("sandbox: host%d: writing .env: %w", k, err)
	}
	return nil
}

// sandboxHost is one host as the inventory names it.
type sandboxHost struct {
	address string
	port    int
	root    string
}

// sandboxSpec is what a sandbox's inventory says: absolute local paths and
// the hosts.
type sandboxSpec struct {
	path                         string // of the inventory itself, for its comment
	source, identity, knownHosts string
	hosts                        []sandboxHost
}

// sandboxInventory is the inventory of a sandbox: examples/hosts.yml with
// absolute local paths, one host per sandbox server, and hooks in POSIX sh
// (the sandbox's hosts are this machine, which need not have PHP).
func sandboxInventory(s sandboxSpec) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `# Inventory of a fleetdeploy sandbox, written by "fleetdeploy sandbox" once
# every host listened and removed when it stopped: the ports change on every
# start, so edit the app rather than this file.
#
#   fleetdeploy up sandbox -i %s

app: shop

# The folder that becomes the build: edit it and deploy again.
source: %s
build: []
exclude:
  - .gitignore
  - .env.example
keep: 5

# Outlive builds: stored once in <root>/shared/ and linked into each build.
shared:
  - storage/sessions/   # seeded from the first build
  - .env                # provisioned on each host by the sandbox

# As in examples/hosts.yml, in plain sh: real servers would run
# "php -l public/index.php" before the cutover and reload PHP-FPM after it.
hooks:
  before_cutover:
    - {run: "test -r .env && test -w storage/sessions", timeout: 30s}
  after_cutover:
    - {run: "echo \"now live: $(cat VERSION) ($FLEETDEPLOY_RELEASE)\"", once: true, timeout: 30s}

ssh:
  user: sandbox         # any name logs in: the key decides, and commands run as you
  identity: %s
  known_hosts: %s

environments:
  %s:
    hosts:
`, oneLine(shellQuote(s.path)), yamlString(s.source), yamlString(s.identity), yamlString(s.knownHosts), sandboxEnv)
	for _, h := range s.hosts {
		fmt.Fprintf(&b, "      - {address: %s, port: %d, root: %s}\n", h.address, h.port, yamlString(h.root))
	}
	return []byte(b.String())
}

// oneLine keeps a path on one line of a YAML comment.
func oneLine(s string) string {
	return strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(s)
}

// yamlString writes s as a YAML double-quoted scalar: JSON's string syntax is
// a subset of it, so any path, whatever it holds, reads back unchanged.
func yamlString(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}

// shellQuote renders s for a person to paste into a POSIX shell; plain words
// stay as they are.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:+=,@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// writeFileAtomic replaces path with data, so a reader waiting for path sees
// nothing or all of it.
func writeFileAtomic(path string, data []byte) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			err = fmt.Errorf("sandbox: writing %s: %w", path, err)
		}
	}()
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

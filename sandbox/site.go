package sandbox

import (
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
)

// Files of a sandbox folder, relative to it.
const (
	InventoryFile = "sandbox.yml"   // exists exactly while the sandbox serves
	SourceDir     = "app"           // the deploy source, written once
	lockFile      = ".sandbox.lock" // flock(2)ed by the running sandbox
	Env           = "sandbox"       // the inventory's one environment
)

// Site is a running sandbox and the files it wrote for clients.
type Site struct {
	Fleet     *Fleet
	Dir       string // absolute
	Source    string // Dir/app: the deploy source
	Inventory string // Dir/sandbox.yml, while the sandbox serves
	lock      *os.File
}

// Open starts n hosts in dir and writes what a client needs; the
// inventory comes last, so its presence means every host listens.
func Open(dir string, n int) (_ *Site, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	if err := ownFolder(abs); err != nil {
		return nil, err
	}
	sb := &Site{
		Dir:       abs,
		Source:    filepath.Join(abs, SourceDir),
		Inventory: filepath.Join(abs, InventoryFile),
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, sb.Close())
		}
	}()
	if sb.lock, err = lockDir(filepath.Join(abs, lockFile)); err != nil {
		return nil, err
	}
	// A file left by a run that was killed names ports nobody listens on.
	if err := os.Remove(sb.Inventory); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	if sb.Fleet, err = StartFleet(abs, n); err != nil {
		return nil, err
	}
	if err := writeAppOnce(sb.Source); err != nil {
		return nil, err
	}
	spec := spec{path: sb.Inventory, source: sb.Source, identity: sb.Fleet.Identity, knownHosts: sb.Fleet.KnownHosts}
	for i, h := range sb.Fleet.Hosts {
		if err := provisionHost(sb.Fleet.Roots[i], i+1); err != nil {
			return nil, err
		}
		spec.hosts = append(spec.hosts, specHost{address: h.Addr().IP.String(), port: h.Addr().Port, root: sb.Fleet.Roots[i]})
	}
	if err := writeFileAtomic(sb.Inventory, inventoryYAML(spec), 0o644); err != nil {
		return nil, err
	}
	return sb, nil
}

// Close stops every host, removes the inventory (its ports are dead) and
// releases the folder. It is safe on a half-opened sandbox.
func (sb *Site) Close() error {
	var errs []error
	if sb.Fleet != nil {
		if err := os.Remove(sb.Inventory); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("sandbox: %w", err))
		}
		errs = append(errs, sb.Fleet.Close())
		sb.Fleet = nil
	}
	if sb.lock != nil {
		errs = append(errs, sb.lock.Close()) // closing the file releases the flock
		sb.lock = nil
	}
	return errors.Join(errs...)
}

// ownFolder makes dir (0700) when it is missing, and otherwise checks that
// it, and what the sandbox will take from it (keys, known_hosts, the app and
// its hooks), belong to this user and cannot be written by others: in a
// folder others can write to, another local user could plant a client key
// and log in to the sandbox hosts as this user.
func ownFolder(dir string) error {
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
		return nil
	}
	if err := trusted(dir, true); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if err := trusted(p, false); err != nil {
			return err
		}
		if !e.IsDir() {
			continue
		}
		// The hosts' keys (hostK/) and the app (with its hooks) are read too.
		err := filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if strings.HasSuffix(q, string(filepath.Separator)+"www") && e.Name() != SourceDir {
				return filepath.SkipDir // a host's deploy root: deploys write there
			}
			return trusted(q, false)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// trusted checks that p belongs to this user and that no one else may
// write to it; follow says to judge what a symlink at p points to.
func trusted(p string, follow bool) error {
	stat := os.Lstat
	if follow {
		stat = os.Stat
	}
	fi, err := stat(p)
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("sandbox: %s belongs to another user (uid %d): the sandbox takes keys, its app and hooks from its folder; use a folder of your own (another --dir)", p, st.Uid)
	}
	if fi.Mode()&fs.ModeSymlink == 0 && fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("sandbox: %s can be written by other users (mode %04o): another user could plant a key there and log in to the sandbox hosts as you; chmod go-w it, or use another --dir", p, fi.Mode().Perm())
	}
	return nil
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

// specHost is one host as the inventory names it.
type specHost struct {
	address string
	port    int
	root    string
}

// spec is what a sandbox's inventory says: absolute local paths and
// the hosts.
type spec struct {
	path                         string // of the inventory itself, for its comment
	source, identity, knownHosts string
	hosts                        []specHost
}

// sandboxInventory is the inventory of a sandbox: examples/hosts.yml with
// absolute local paths, one host per sandbox server, and hooks in POSIX sh
// (the sandbox's hosts are this machine, which need not have PHP).
func inventoryYAML(s spec) []byte {
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
  config: none          # your ~/.ssh/config has nothing to say about these hosts

environments:
  %s:
    hosts:
`, commentLine(s.path), yamlString(s.source), yamlString(s.identity), yamlString(s.knownHosts), Env)
	for _, h := range s.hosts {
		fmt.Fprintf(&b, "      - {address: %s, port: %d, root: %s}\n", h.address, h.port, yamlString(h.root))
	}
	return []byte(b.String())
}

// commentLine keeps a path on one line of a YAML comment, quoted as a shell
// word when it needs to be.
func commentLine(s string) string {
	if s == "" || strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:+=,@%") != "" {
		s = "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	return strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(s)
}

// yamlString writes s as a YAML double-quoted scalar: JSON's string syntax is
// a subset of it, so any path, whatever it holds, reads back unchanged.
func yamlString(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}

// Package sshtest runs a fleet of real OpenSSH sshd processes on 127.0.0.1 so
// end-to-end tests meet the server fleetdeploy meets in production, including
// hosts that die (Kill), go silent (Freeze) and come back (Restart).
//
// Every host is its own sshd with its own port, ed25519 host key, config, pid
// file and deploy root; all hosts share one client key and one known_hosts
// file. Everything is stopped and removed when the test ends.
//
// The login user is the user running the test, except for root: root's shell
// start-up files are slow on these machines and sshd runs every command
// through the login shell, so root's fleets log in as a dedicated user,
// fdtest, created on first use with /bin/sh as its shell.
//
// Options add what some tests need: sshd_config lines, host certificates
// signed by a CA, a CA for user certificates, and hosts reachable only
// through a chain of bastions (StartWith).
//
// Each sshd runs in a PID namespace of its own (with a user namespace mapping
// only the current uid when not root, falling back to no namespace where the
// kernel refuses), so a command left running by a closed session cannot
// outlive its host. Inside such a user namespace files of other users show as
// owned by nobody.
package sshtest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

const (
	// sshdPath must be absolute: sshd re-executes itself for every connection.
	sshdPath = "/usr/sbin/sshd"
	// privsepDir is the privilege separation directory sshd refuses to start without.
	privsepDir = "/run/sshd"
	// readyTimeout bounds how long a host may take to answer with its banner.
	readyTimeout = 10 * time.Second
	// stopTimeout bounds how long signalled processes may take to stop or die.
	stopTimeout = 5 * time.Second
)

// Fleet is a set of running sshd hosts sharing one client key and one known_hosts file.
type Fleet struct {
	Hosts      []*Host
	Dir        string // everything lives below it
	User       string // login user on every host
	Identity   string // path of the client's private key (ed25519, OpenSSH PEM format, no passphrase)
	KnownHosts string // known_hosts listing every host's (and bastion's) key as "[127.0.0.1]:PORT ssh-ed25519 ..."

	// Bastions are the jump hosts, outermost first, of a fleet started with
	// Options.Bastions: the first is reachable from the test, each next one
	// only from the one before, and the Hosts only from the last one.
	Bastions []*Host
	// HostCA signed every host's key, with Options.HostCertificates.
	HostCA ssh.PublicKey
	// UserCA is trusted by every host to sign user certificates, with Options.UserCA.
	UserCA ssh.Signer

	t       testing.TB // owner, for errors from methods that take no t
	sshd    string     // sshd binary
	account *account   // the login user, to run local commands as it
	extra   []string   // version-dependent sshd_config lines
	opts    Options
	hostCA  ssh.Signer
	net     *network // the namespaces of a fleet behind bastions
}

// Options shape a fleet for StartWith.
type Options struct {
	// SSHDConfig lines are added to every host's sshd_config (not the
	// bastions'), e.g. "MaxAuthTries 3".
	SSHDConfig []string
	// HostCertificates makes every sshd (bastions too) present a host
	// certificate signed by Fleet.HostCA, naming its IP address as principal.
	HostCertificates bool
	// UserCA makes every host trust user certificates signed by Fleet.UserCA.
	UserCA bool
	// Bastions, when above 0, puts the hosts in a network namespace of their
	// own, reachable only through a chain of that many bastions, each an
	// sshd in a namespace of its own with a leg in the one before and in the
	// one after: the first is reached from the test over a veth pair. Every
	// sshd there listens on port 22 of its own address. It needs root and
	// `ip netns`: without them the test is skipped (or fails when $CI is set).
	Bastions int
}

// options are the environment-dependent inputs of Start, separate so tests can vary them.
type options struct {
	sshd string // absolute path of the sshd binary
	ci   bool   // a missing sshd fails the test instead of skipping it
	Options
}

// Start runs n sshd hosts on 127.0.0.1 and stops and removes them in t.Cleanup.
// Without a usable sshd it skips the test, or fails it when $CI is set, so CI
// cannot pass by skipping every end-to-end test.
func Start(t testing.TB, n int) *Fleet {
	t.Helper()
	return start(t, n, options{sshd: sshdPath, ci: os.Getenv("CI") != ""})
}

// StartWith is Start with Options.
func StartWith(t testing.TB, n int, o Options) *Fleet {
	t.Helper()
	return start(t, n, options{sshd: sshdPath, ci: os.Getenv("CI") != "", Options: o})
}

func start(t testing.TB, n int, o options) *Fleet {
	t.Helper()
	if n < 1 {
		t.Fatalf("sshtest: a fleet needs at least one host, got %d", n)
	}
	if err := checkSSHD(o.sshd); err != nil {
		msg := fmt.Sprintf("sshtest: OpenSSH server unusable: %v (install openssh-server, or run .ci/run as root)", err)
		if o.ci {
			t.Fatal(msg)
		}
		t.Skip(msg + "; skipping, set CI=1 to fail instead")
	}
	if o.Bastions > 0 {
		if err := checkNetns(); err != nil {
			msg := fmt.Sprintf("sshtest: cannot put hosts behind bastions: %v", err)
			if o.ci {
				t.Fatal(msg)
			}
			t.Skip(msg + "; skipping, set CI=1 to fail instead")
		}
	}
	acct, err := loginAccount()
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	extra, err := versionOptions(o.sshd)
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	// Not t.TempDir: its 0700 parents would lock out another login user.
	dir, err := os.MkdirTemp(tempBase(acct), "sshtest-")
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	f := &Fleet{Dir: dir, User: acct.name, t: t, sshd: o.sshd, account: acct, extra: extra, opts: o.Options}
	t.Cleanup(func() { f.stop(t) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	if err := f.writeClientKey(); err != nil {
		t.Fatalf("sshtest: client key: %v", err)
	}
	if err := f.makeCAs(); err != nil {
		t.Fatalf("sshtest: certificate authorities: %v", err)
	}

	for i := range n {
		h, err := f.newHost(fmt.Sprintf("host%02d", i+1))
		if err != nil {
			t.Fatalf("sshtest: host %d: %v", i, err)
		}
		f.Hosts = append(f.Hosts, h)
	}
	for i := range o.Bastions {
		h, err := f.newHost(fmt.Sprintf("bastion%d", i+1))
		if err != nil {
			t.Fatalf("sshtest: bastion %d: %v", i, err)
		}
		h.bastion = true
		f.Bastions = append(f.Bastions, h)
	}
	if o.Bastions > 0 {
		if f.net, err = newNetwork(f.Bastions, f.Hosts); err != nil {
			t.Fatalf("sshtest: network namespaces: %v", err)
		}
	}
	all := append(slices.Clone(f.Bastions), f.Hosts...)
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	for i, h := range all {
		wg.Go(func() { errs[i] = h.startFresh() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("sshtest: starting %d hosts: %v", len(all), err)
	}

	var kh strings.Builder
	for _, h := range all {
		kh.WriteString(knownhosts.Line([]string{knownhosts.Normalize(h.Name)}, h.HostKey))
		kh.WriteByte('\n')
	}
	f.KnownHosts = filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(f.KnownHosts, []byte(kh.String()), 0o644); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	return f
}

// ClientConfig returns a client config for User that authenticates with
// Identity and checks host keys against KnownHosts, as a real client would.
func (f *Fleet) ClientConfig(t testing.TB) *ssh.ClientConfig {
	t.Helper()
	pemBytes, err := os.ReadFile(f.Identity)
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	signer, err := ssh.ParsePrivateKey(pemBytes)
	if err != nil {
		t.Fatalf("sshtest: parsing %s: %v", f.Identity, err)
	}
	hostKeys, err := knownhosts.New(f.KnownHosts)
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	return &ssh.ClientConfig{
		User:            f.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: hostKeys,
		// The plain key known_hosts holds, not a host certificate.
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
		Timeout:           readyTimeout,
	}
}

// Authorize lets key log in to every host, beside Identity.
func (f *Fleet) Authorize(t testing.TB, key ssh.PublicKey) {
	t.Helper()
	file, err := os.OpenFile(filepath.Join(f.Dir, "authorized_keys"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	defer file.Close()
	if _, err := file.Write(ssh.MarshalAuthorizedKey(key)); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
}

// writeClientKey writes the shared client identity and the authorized_keys
// file every host reads (as the login user, hence world-readable).
func (f *Fleet) writeClientKey() error {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	block, err := ssh.MarshalPrivateKey(priv, "sshtest client")
	if err != nil {
		return err
	}
	f.Identity = filepath.Join(f.Dir, "id_ed25519")
	// 0600 and owned by the test process: the OpenSSH client refuses laxer keys.
	if err := os.WriteFile(f.Identity, pem.EncodeToMemory(block), 0o600); err != nil {
		return err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(f.Dir, "authorized_keys"), ssh.MarshalAuthorizedKey(sshPub), 0o644)
}

// stop kills every host, shows the sshd logs of a failed test and removes Dir.
func (f *Fleet) stop(t testing.TB) {
	t.Helper()
	var wg sync.WaitGroup
	all := append(slices.Clone(f.Bastions), f.Hosts...)
	errs := make([]error, len(all))
	for i, h := range all {
		wg.Go(func() { errs[i] = h.kill() })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("sshtest: stopping %s: %v", all[i].Name, err)
		}
	}
	if f.net != nil {
		if err := f.net.remove(); err != nil {
			t.Errorf("sshtest: %v", err)
		}
	}
	if t.Failed() {
		for _, h := range all {
			if tail := h.log.String(); tail != "" {
				t.Logf("sshtest: %s sshd log (tail):\n%s", h.Name, tail)
			}
		}
	}
	if err := removeAll(f.Dir); err != nil {
		t.Errorf("sshtest: %v", err)
	}
}

// checkSSHD reports why sshd cannot run here, if it cannot.
func checkSSHD(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not executable", path)
	}
	if _, err := os.Stat(privsepDir); errors.Is(err, fs.ErrNotExist) && os.Geteuid() == 0 {
		if err := os.MkdirAll(privsepDir, 0o755); err != nil {
			return err
		}
	}
	if fi, err := os.Stat(privsepDir); err != nil || !fi.IsDir() {
		return fmt.Errorf("sshd needs the directory %s (create it as root)", privsepDir)
	}
	return nil
}

// versionPattern finds the OpenSSH version in `sshd -V` output, which older
// releases print inside their usage message.
var versionPattern = regexp.MustCompile(`OpenSSH_(\d+)\.(\d+)`)

// versionOptions returns config lines needed by this sshd version only.
// OpenSSH 9.8 added PerSourcePenalties, which would refuse 127.0.0.1 after the
// killed sessions, readiness probes and timeouts that tests cause on purpose.
func versionOptions(sshd string) ([]string, error) {
	out, _ := exec.Command(sshd, "-V").CombinedOutput() // exits non-zero by design
	m := versionPattern.FindSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("cannot tell the version of %s from %q", sshd, out)
	}
	major, _ := strconv.Atoi(string(m[1]))
	minor, _ := strconv.Atoi(string(m[2]))
	if major > 9 || major == 9 && minor >= 8 {
		return []string{"PerSourcePenalties no"}, nil
	}
	return nil, nil
}

// tempBase returns where to create the fleet folder: the usual temporary
// folder, unless the login user could not reach into it.
func tempBase(a *account) string {
	base := os.TempDir()
	if !a.other {
		return base
	}
	for dir := base; ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return "/tmp"
		}
		if dir == filepath.Dir(dir) {
			return base
		}
	}
}

// removeAll removes dir even when a test left read-only folders in it.
func removeAll(dir string) error {
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(path, 0o755)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

package remote

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	xknownhosts "golang.org/x/crypto/ssh/knownhosts"
)

// HostKeyPolicy says what Dial does with a host that known_hosts does not know.
type HostKeyPolicy int

const (
	// StrictHostKeys refuses a host whose key is not recorded
	// (StrictHostKeyChecking yes, and ask: there is nobody to ask).
	StrictHostKeys HostKeyPolicy = iota
	// AcceptNewHostKeys records the key of a host known_hosts does not know
	// yet, in the first user known_hosts file, and still refuses a host whose
	// key differs from the one recorded. It is also what
	// StrictHostKeyChecking no means here: verification is never turned off.
	AcceptNewHostKeys
)

// HostKeyError is a host key that could not be verified: unknown to
// known_hosts, different from the one recorded there, revoked, or a host
// certificate that does not verify.
type HostKeyError struct {
	Host        string // the host (or jump host) as named in the inventory or ssh_config
	Addr        string // host:port dialled
	KeyType     string
	Fingerprint string   // SHA256:..., of the key the host offered
	KnownHosts  string   // the known_hosts files consulted, comma-separated
	Files       []string // the same, as a list; files that do not exist count as empty
	Changed     bool
	Recorded    []RecordedKey // what known_hosts holds for the host, when Changed
	Revoked     *RecordedKey  // the @revoked line that matched
	CertErr     error         // why a host certificate was refused
	lookup      string        // the name looked up in known_hosts
	jump        string        // the jump hosts, as ssh -J takes them
}

// RecordedKey is a key known_hosts holds, where it holds it.
type RecordedKey struct {
	File        string
	Line        int
	KeyType     string
	Fingerprint string
}

func (r RecordedKey) String() string {
	return fmt.Sprintf("%s key %s (%s:%d)", r.KeyType, r.Fingerprint, r.File, r.Line)
}

func (e *HostKeyError) Error() string {
	who := e.Host
	if who == "" || who == e.Addr {
		who = e.Addr
	} else {
		who += " (" + e.Addr + ")"
	}
	switch {
	case e.Revoked != nil:
		return fmt.Sprintf("host key verification failed for %s: its %s key %s is marked @revoked in %s:%d; refusing to connect",
			who, e.KeyType, e.Fingerprint, e.Revoked.File, e.Revoked.Line)
	case e.Changed:
		var rec []string
		for _, r := range e.Recorded {
			rec = append(rec, r.String())
		}
		return fmt.Sprintf("host key verification failed for %s: it offered %s key %s, but known_hosts records %s for it; refusing to connect (the host was reinstalled, or someone is intercepting the connection: check before you remove the old line with ssh-keygen -R %s -f %s)",
			who, e.KeyType, e.Fingerprint, strings.Join(rec, " and "), e.lookupName(), e.Recorded[0].File)
	case e.CertErr != nil:
		return fmt.Sprintf("host key verification failed for %s: its host certificate (%s %s) does not verify against the @cert-authority lines of %s: %v, and its plain key is not recorded",
			who, e.KeyType, e.Fingerprint, e.KnownHosts, e.CertErr)
	}
	return fmt.Sprintf("host key verification failed for %s: its %s key %s is not in %s; if that fingerprint is the server's (ask its admin, or compare with ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub on it), add it with `ssh %s` once, or rerun with --accept-new-host-keys (or set StrictHostKeyChecking accept-new in ssh_config)",
		who, e.KeyType, e.Fingerprint, e.filesForMessage(), e.sshTarget())
}

// lookupName is the host as known_hosts writes it.
func (e *HostKeyError) lookupName() string {
	n := knownhosts.Normalize(e.lookup)
	if strings.HasPrefix(n, "[") {
		return "'" + n + "'"
	}
	return n
}

func (e *HostKeyError) sshTarget() string {
	target := e.Addr
	if host, port, err := net.SplitHostPort(e.Addr); err == nil {
		target = host
		if port != "22" {
			target = "-p " + port + " " + host
		}
	}
	if e.jump != "" {
		target = "-J " + e.jump + " " + target
	}
	return target
}

func (e *HostKeyError) filesForMessage() string {
	var parts []string
	for _, f := range e.Files {
		if _, err := os.Stat(f); errors.Is(err, fs.ErrNotExist) {
			f += " (absent)"
		}
		parts = append(parts, f)
	}
	if len(parts) == 0 {
		return "any known_hosts file"
	}
	return strings.Join(parts, " or ")
}

// hostKeys verifies one host's key against its known_hosts files, and
// records it under AcceptNewHostKeys.
type hostKeys struct {
	name   string // for messages
	addr   string // dialled
	lookup string // known_hosts name, host:port
	user   []string
	global []string
	policy HostKeyPolicy
	hash   bool
	writer *knownHostsWriter
	jump   string // for messages: ssh -J's argument

	db *knownhosts.HostKeyDB
	ca map[string]bool // "file:line" of @cert-authority lines

	// What happened, for Client.Info.
	key      ssh.PublicKey
	recorded string // the file the key was added to
}

func newHostKeys(cfg *Config, w *knownHostsWriter) (*hostKeys, error) {
	h := &hostKeys{
		name: cfg.Name, addr: cfg.Addr, lookup: cfg.knownHostsName(),
		user: cfg.userKnownHosts(), global: cfg.globalKnownHosts(),
		policy: cfg.HostKeys, hash: cfg.HashKnownHosts, writer: w,
	}
	var jumps []string
	for _, j := range cfg.Jumps {
		jumps = append(jumps, j.User+"@"+j.Addr)
	}
	h.jump = strings.Join(jumps, ",")
	var err error
	h.db, h.ca, err = loadKnownHosts(h.files())
	return h, err
}

func (h *hostKeys) files() []string { return append(slices.Clip(h.user), h.global...) }

// loadKnownHosts reads the files that exist (a missing one counts as empty,
// as in OpenSSH) and notes which lines are @cert-authority ones.
func loadKnownHosts(files []string) (*knownhosts.HostKeyDB, map[string]bool, error) {
	var present []string
	ca := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("known_hosts: %w", err)
		}
		present = append(present, f)
		line := 0
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line++
			if t := bytes.TrimSpace(sc.Bytes()); bytes.HasPrefix(t, []byte("@cert-authority")) {
				ca[fmt.Sprintf("%s:%d", f, line)] = true
			}
		}
	}
	db, err := knownhosts.NewDB(present...)
	if err != nil {
		return nil, nil, fmt.Errorf("known_hosts: %w", err)
	}
	return db, ca, nil
}

// algorithms lists the host key algorithms to ask for: those of the keys
// known_hosts holds for the host first (certificate ones only when an
// @cert-authority line covers the host), so that a host with several keys
// offers the one we know, as OpenSSH does; then the other plain ones, so
// that a host whose key changed type is reported as changed rather than as
// having no algorithm in common.
func (h *hostKeys) algorithms() []string {
	known := h.db.HostKeyAlgorithms(h.lookup)
	if len(known) == 0 {
		known = nil
	}
	for _, a := range ssh.SupportedAlgorithms().HostKeys {
		if !strings.Contains(a, "-cert-") && !slices.Contains(known, a) {
			known = append(known, a)
		}
	}
	return known
}

func (h *hostKeys) error(key ssh.PublicKey) *HostKeyError {
	plain := key
	if c, ok := key.(*ssh.Certificate); ok {
		plain = c.Key
	}
	return &HostKeyError{
		Host: h.name, Addr: h.addr, KeyType: key.Type(), Fingerprint: ssh.FingerprintSHA256(plain),
		KnownHosts: strings.Join(h.files(), ", "), Files: h.files(), lookup: h.lookup, jump: h.jump,
	}
}

// callback is the ssh.HostKeyCallback.
func (h *hostKeys) callback(_ string, remote net.Addr, key ssh.PublicKey) error {
	if _, ok := remote.(*net.TCPAddr); !ok {
		remote = &net.TCPAddr{} // x/crypto's knownhosts wants one; it judges by name
	}
	err := h.check(h.db, remote, key)
	if err == nil {
		h.key = key
		return nil
	}
	var hk *HostKeyError
	if !errors.As(err, &hk) || hk.Changed || hk.Revoked != nil || hk.CertErr != nil || h.policy != AcceptNewHostKeys {
		return err
	}
	file, err := h.writer.record(h, remote, key)
	if err != nil {
		return err
	}
	h.key, h.recorded = key, file
	return nil
}

// check verifies key against db; an unknown host is a HostKeyError with
// nothing set but the key.
func (h *hostKeys) check(db *knownhosts.HostKeyDB, remote net.Addr, key ssh.PublicKey) error {
	err := db.HostKeyCallback()(h.lookup, remote, key)
	if err == nil {
		return nil
	}
	if cert, ok := key.(*ssh.Certificate); ok {
		// As OpenSSH: a certificate no CA here vouches for may still carry
		// a key recorded as such (but it is never recorded by accept-new).
		if plainErr := h.check(db, remote, cert.Key); plainErr == nil {
			return nil
		} else if hk, ok := plainErr.(*HostKeyError); ok && (hk.Revoked != nil || hk.Changed) {
			return plainErr
		}
		e := h.error(key)
		e.CertErr = err
		return e
	}
	var revoked *xknownhosts.RevokedError
	if errors.As(err, &revoked) {
		e := h.error(key)
		e.Revoked = recorded(revoked.Revoked)
		return e
	}
	var ke *xknownhosts.KeyError
	if !errors.As(err, &ke) {
		return fmt.Errorf("checking the host key of %s: %w", h.name, err)
	}
	e := h.error(key)
	for _, w := range ke.Want {
		if !h.ca[fmt.Sprintf("%s:%d", w.Filename, w.Line)] {
			e.Changed = true
			e.Recorded = append(e.Recorded, *recorded(w))
		}
	}
	return e
}

func recorded(k xknownhosts.KnownKey) *RecordedKey {
	return &RecordedKey{File: k.Filename, Line: k.Line, KeyType: k.Key.Type(), Fingerprint: ssh.FingerprintSHA256(k.Key)}
}

// knownHostsWriter serializes accept-new's writes: one writer in this
// process, and an flock against other processes; the file is read again
// under the lock, so that two hosts (or two runs) recording the same key
// write one line, and a key recorded meanwhile is compared like any other.
type knownHostsWriter struct {
	mu     sync.Mutex
	notify func(string)
}

func (w *knownHostsWriter) record(h *hostKeys, remote net.Addr, key ssh.PublicKey) (string, error) {
	if len(h.user) == 0 {
		return "", h.error(key)
	}
	file := h.user[0]
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return "", fmt.Errorf("recording the host key of %s: %w", h.name, err)
	}
	f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return "", fmt.Errorf("recording the host key of %s: %w", h.name, err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("recording the host key of %s: locking %s: %w", h.name, file, err)
	}
	db, ca, err := loadKnownHosts(h.files())
	if err != nil {
		return "", err
	}
	h.ca = ca
	if err := h.check(db, remote, key); err == nil {
		return "", nil // recorded meanwhile
	} else if hk, ok := err.(*HostKeyError); !ok || hk.Changed || hk.Revoked != nil || hk.CertErr != nil {
		return "", err
	}
	name := knownhosts.Normalize(h.lookup)
	if h.hash {
		name = xknownhosts.HashHostname(name)
	}
	line := name + " " + key.Type() + " " + base64.StdEncoding.EncodeToString(key.Marshal()) + "\n"
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, fi.Size()-1); err == nil && last[0] != '\n' {
			line = "\n" + line
		}
	}
	if _, err := f.WriteString(line); err != nil {
		return "", fmt.Errorf("recording the host key of %s in %s: %w", h.name, file, err)
	}
	if w.notify != nil {
		w.notify(fmt.Sprintf("recorded the host key of %s (%s key %s) in %s", h.name, key.Type(), ssh.FingerprintSHA256(key), file))
	}
	return file, nil
}

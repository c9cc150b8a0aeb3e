package remote

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/term"
)

// Prompter asks the user for a secret: a key file's passphrase. It returns
// ErrNoTerminal when there is nobody to ask.
type Prompter func(ctx context.Context, prompt string) ([]byte, error)

// ErrNoTerminal says a passphrase was needed and there is no terminal to ask it on.
var ErrNoTerminal = errors.New("no terminal to ask for a passphrase")

// TerminalPrompter asks on the controlling terminal (/dev/tty) without echo,
// so that it works with standard input and output redirected.
func TerminalPrompter(ctx context.Context, prompt string) ([]byte, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, ErrNoTerminal
	}
	fd := int(tty.Fd())
	if !term.IsTerminal(fd) {
		tty.Close()
		return nil, ErrNoTerminal
	}
	state, err := term.GetState(fd)
	if err != nil {
		tty.Close()
		return nil, ErrNoTerminal
	}
	io.WriteString(tty, prompt)
	type answer struct {
		b   []byte
		err error
	}
	got := make(chan answer, 1)
	go func() {
		b, err := term.ReadPassword(fd)
		got <- answer{b, err}
	}()
	select {
	case a := <-got:
		io.WriteString(tty, "\n")
		tty.Close()
		return a.b, a.err
	case <-ctx.Done():
		// The read stays blocked until a line comes or the process ends;
		// the terminal must not stay without echo meanwhile. The file
		// stays open: its descriptor is still being read.
		term.Restore(fd, state)
		io.WriteString(tty, "\n")
		return nil, ctx.Err()
	}
}

// defaultIdentities are tried when neither the inventory nor ssh_config
// names a key, as ssh(1) does (newest kind first here: an ed25519 key, when
// there is one, is the likely one, and every key refused costs a round trip).
var defaultIdentities = []string{"id_ed25519", "id_ecdsa", "id_rsa"}

// keySource holds what a run knows of keys: each key file read (and
// decrypted) once, and each agent's keys listed once, whatever the number
// of hosts. Safe for concurrent use.
type keySource struct {
	prompt   Prompter
	promptMu sync.Mutex // one question on the terminal at a time

	mu     sync.Mutex
	files  map[string]*keyFile
	agents map[string]*agentKeys
}

func newKeySource(p Prompter) *keySource {
	if p == nil {
		p = TerminalPrompter
	}
	return &keySource{prompt: p, files: map[string]*keyFile{}, agents: map[string]*agentKeys{}}
}

// keyFile is one identity file, read on first use.
type keyFile struct {
	path string
	once sync.Once

	pub       ssh.PublicKey // nil for an encrypted key of an old format without a .pub beside it
	signer    ssh.Signer    // set when the key needs no passphrase
	pem       []byte        // the encrypted key, until decrypted
	protected bool
	missing   bool // neither the key nor its .pub exists
	err       error
	certs     []*ssh.Certificate // PATH-cert.pub

	decrypting sync.Mutex
	ready      atomic.Bool // decrypted, or failed for good
	decrypted  ssh.Signer
	decryptErr error
}

func (ks *keySource) file(path string) *keyFile {
	ks.mu.Lock()
	kf := ks.files[path]
	if kf == nil {
		kf = &keyFile{path: path}
		ks.files[path] = kf
	}
	ks.mu.Unlock()
	kf.once.Do(kf.load)
	return kf
}

func (kf *keyFile) load() {
	pemBytes, err := os.ReadFile(kf.path)
	if errors.Is(err, fs.ErrNotExist) {
		// ssh(1) also accepts an identity of which only the public half is
		// here, for a key the agent holds.
		if kf.pub = readPublicKey(kf.path + ".pub"); kf.pub == nil {
			kf.missing = true
		}
		kf.loadCerts()
		return
	}
	if err != nil {
		kf.err = err
		return
	}
	s, err := ssh.ParsePrivateKey(pemBytes)
	var pp *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &pp):
		kf.protected, kf.pem, kf.pub = true, pemBytes, pp.PublicKey
		if kf.pub == nil {
			kf.pub = readPublicKey(kf.path + ".pub")
		}
	case err != nil:
		kf.err = fmt.Errorf("identity %s: %w", kf.path, err)
		return
	default:
		kf.signer, kf.pub = s, s.PublicKey()
	}
	kf.loadCerts()
}

func (kf *keyFile) loadCerts() {
	if c := readCertificate(kf.path + "-cert.pub"); c != nil && (kf.pub == nil || sameKey(c.Key, kf.pub)) {
		kf.certs = append(kf.certs, c)
	}
}

func readPublicKey(path string) ssh.PublicKey {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		return nil
	}
	return k
}

func readCertificate(path string) *ssh.Certificate {
	c, _ := readPublicKey(path).(*ssh.Certificate)
	return c
}

// asCert returns k as a certificate if it is one: an agent's keys come as
// opaque blobs.
func asCert(k ssh.PublicKey) (*ssh.Certificate, bool) {
	if c, ok := k.(*ssh.Certificate); ok {
		return c, true
	}
	if !strings.Contains(k.Type(), "-cert-") {
		return nil, false
	}
	parsed, err := ssh.ParsePublicKey(k.Marshal())
	if err != nil {
		return nil, false
	}
	c, ok := parsed.(*ssh.Certificate)
	return c, ok
}

func sameKey(a, b ssh.PublicKey) bool { return bytes.Equal(a.Marshal(), b.Marshal()) }

// decrypt asks for the passphrase, once for the whole run: dials waiting
// for the same key wait for the first one's answer. Three wrong answers are
// final, as in ssh(1). pause and resume stop a dial's clock meanwhile.
func (ks *keySource) decrypt(ctx context.Context, kf *keyFile, pause, resume func()) (ssh.Signer, error) {
	if !kf.ready.Load() {
		pause()
		defer resume()
	}
	kf.decrypting.Lock()
	defer kf.decrypting.Unlock()
	if kf.ready.Load() {
		return kf.decrypted, kf.decryptErr
	}
	for range 3 {
		ks.promptMu.Lock()
		pass, err := ks.prompt(ctx, fmt.Sprintf("Enter passphrase for key '%s': ", kf.path))
		ks.promptMu.Unlock()
		if errors.Is(err, ErrNoTerminal) {
			kf.decryptErr = noTerminalError(kf.path)
			break
		}
		if err != nil {
			return nil, err // cancelled: not final
		}
		if len(pass) == 0 {
			kf.decryptErr = fmt.Errorf("identity %s: no passphrase given", kf.path)
			break
		}
		s, err := ssh.ParsePrivateKeyWithPassphrase(kf.pem, pass)
		clear(pass)
		if errors.Is(err, x509.IncorrectPasswordError) {
			kf.decryptErr = fmt.Errorf("identity %s: wrong passphrase", kf.path)
			continue
		}
		if err != nil {
			kf.decryptErr = fmt.Errorf("identity %s: %w", kf.path, err)
			break
		}
		kf.decrypted, kf.decryptErr = s, nil
		if kf.pub == nil {
			kf.pub = s.PublicKey()
		}
		break
	}
	clear(kf.pem)
	kf.pem = nil
	kf.ready.Store(true)
	return kf.decrypted, kf.decryptErr
}

func noTerminalError(path string) error {
	return fmt.Errorf("identity %s is passphrase-protected and there is no terminal to ask for its passphrase: load it into ssh-agent first (ssh-add %s)", path, path)
}

// agentKeys are the keys one ssh-agent holds, listed once per run.
type agentKeys struct {
	once    sync.Once
	conn    net.Conn
	keys    []*agent.Key
	signers []ssh.Signer
	err     error
}

func (ks *keySource) agent(path string) *agentKeys {
	ks.mu.Lock()
	a := ks.agents[path]
	if a == nil {
		a = &agentKeys{}
		ks.agents[path] = a
	}
	ks.mu.Unlock()
	a.once.Do(func() {
		conn, err := net.Dial("unix", path)
		if err != nil {
			a.err = fmt.Errorf("ssh-agent at %s: %w", path, err)
			return
		}
		a.conn = conn
		c := agent.NewClient(conn) // serializes requests: one connection serves every host
		if a.keys, a.err = c.List(); a.err == nil {
			a.signers, a.err = c.Signers()
		}
		if a.err == nil && len(a.keys) != len(a.signers) {
			a.err = errors.New("the agent's keys changed while being listed")
		}
		if a.err != nil {
			a.err = fmt.Errorf("ssh-agent at %s: %w", path, a.err)
		}
	})
	return a
}

func (ks *keySource) close() {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	for _, a := range ks.agents {
		if a.conn != nil {
			a.conn.Close()
		}
	}
	ks.agents = map[string]*agentKeys{}
	ks.files = map[string]*keyFile{}
}

// offer is one key to offer, and how to name it in messages.
type offer struct {
	signer ssh.Signer
	label  string
}

// dialAuth is what one dial needs from the key source.
type dialAuth struct {
	ctx           context.Context
	pause, resume func()
	used          atomic.Pointer[string] // label of the key the host accepted
	offered       []string
	problems      []string
}

// signers lists the keys to offer, in this order: for each configured
// identity (the inventory's, then ssh_config's IdentityFiles, else the
// default files), its certificates then the key itself, taken from the
// agent when it holds it (no passphrase then); then, unless IdentitiesOnly,
// the agent's other keys and certificates. ssh(1) offers the agent's keys
// first, so an agent holding many keys can use up the server's MaxAuthTries
// before the key meant for the host is offered; configured ones go first
// here. A passphrase-protected key nobody can be asked for goes last.
func (ks *keySource) signers(cfg *Config, da *dialAuth) ([]ssh.Signer, error) {
	var agentKeys *agentKeys
	if cfg.Agent != "" {
		if agentKeys = ks.agent(cfg.Agent); agentKeys.err != nil {
			da.problems = append(da.problems, agentKeys.err.Error())
			agentKeys = nil
		}
	}
	inAgent := func(pub ssh.PublicKey) int {
		if agentKeys == nil || pub == nil {
			return -1
		}
		for i, s := range agentKeys.signers {
			if sameKey(s.PublicKey(), pub) {
				return i
			}
		}
		return -1
	}
	agentCertsFor := func(pub ssh.PublicKey) []int {
		var idx []int
		if agentKeys == nil || pub == nil {
			return nil
		}
		for i, s := range agentKeys.signers {
			if c, ok := asCert(s.PublicKey()); ok && sameKey(c.Key, pub) {
				idx = append(idx, i)
			}
		}
		return idx
	}
	var certFiles []*ssh.Certificate
	for _, f := range cfg.CertificateFiles {
		if c := readCertificate(f); c != nil {
			certFiles = append(certFiles, c)
		} else {
			da.problems = append(da.problems, fmt.Sprintf("certificate %s: missing or not a certificate", f))
		}
	}

	files := cfg.IdentityFiles
	if cfg.Identity != "" {
		files = append([]string{cfg.Identity}, files...)
	}
	defaults := len(files) == 0
	if defaults {
		if home, err := os.UserHomeDir(); err == nil {
			for _, n := range defaultIdentities {
				files = append(files, filepath.Join(home, ".ssh", n))
			}
		}
	}
	canPrompt := !cfg.BatchMode
	usedAgent := map[int]bool{}
	var offers, last []offer
	seen := map[string]bool{}
	add := func(list *[]offer, s ssh.Signer, label string) {
		if k := string(s.PublicKey().Marshal()); !seen[k] {
			seen[k] = true
			*list = append(*list, offer{s, label})
		}
	}
	for _, path := range files {
		kf := ks.file(path)
		explicit := path == cfg.Identity
		switch {
		case kf.err != nil && explicit:
			return nil, fmt.Errorf("identity %s: %w", path, kf.err)
		case kf.err != nil:
			da.problems = append(da.problems, kf.err.Error())
			continue
		case kf.missing && explicit:
			return nil, fmt.Errorf("identity %s: no such file", path)
		case kf.missing:
			if !defaults {
				da.problems = append(da.problems, fmt.Sprintf("identity %s: no such file", path))
			}
			continue
		}
		where := path
		var base ssh.Signer
		list := &offers
		if i := inAgent(kf.pub); i >= 0 {
			base, where = agentKeys.signers[i], path+", via ssh-agent"
			usedAgent[i] = true
		} else if kf.signer != nil {
			base = kf.signer
		} else if kf.protected {
			if kf.pub == nil {
				// An old-format key hides its public half: it cannot be
				// offered without its passphrase.
				s, err := ks.decrypt(da.ctx, kf, da.pause, da.resume)
				if err != nil {
					da.problems = append(da.problems, err.Error())
					continue
				}
				base = s
			} else {
				base = &lazySigner{ks: ks, kf: kf, da: da, canPrompt: canPrompt}
				if !canPrompt {
					list = &last
				}
			}
		} else {
			da.problems = append(da.problems, fmt.Sprintf("identity %s: only its public key is here, and no agent holds the key", path))
			continue
		}
		for _, i := range agentCertsFor(kf.pub) {
			add(list, agentKeys.signers[i], certLabel(agentKeys.signers[i].PublicKey(), "ssh-agent"))
			usedAgent[i] = true
		}
		for _, c := range append(append([]*ssh.Certificate(nil), kf.certs...), certFiles...) {
			if !sameKey(c.Key, base.PublicKey()) {
				continue
			}
			if cs, err := ssh.NewCertSigner(c, base); err == nil {
				add(list, cs, certLabel(c, where))
			}
		}
		add(list, base, keyLabel(base.PublicKey(), where))
	}
	if agentKeys != nil && !cfg.IdentitiesOnly {
		for i, s := range agentKeys.signers {
			if usedAgent[i] {
				continue
			}
			where := "ssh-agent"
			if c := agentKeys.keys[i].Comment; c != "" {
				where += ": " + c
			}
			if _, ok := asCert(s.PublicKey()); ok {
				add(&offers, s, certLabel(s.PublicKey(), where))
				continue
			}
			for _, c := range certFiles {
				if sameKey(c.Key, s.PublicKey()) {
					if cs, err := ssh.NewCertSigner(c, s); err == nil {
						add(&offers, cs, certLabel(c, where))
					}
				}
			}
			add(&offers, s, keyLabel(s.PublicKey(), where))
		}
	}
	offers = append(offers, last...)
	if len(offers) == 0 {
		msg := "no SSH key to offer: set ssh.identity in the inventory or IdentityFile in ssh_config, or load a key into ssh-agent"
		if len(da.problems) > 0 {
			msg += " (" + strings.Join(da.problems, "; ") + ")"
		}
		return nil, errors.New(msg)
	}
	out := make([]ssh.Signer, len(offers))
	for i, o := range offers {
		out[i] = &recordingSigner{Signer: o.signer, label: o.label, da: da}
		da.offered = append(da.offered, o.label)
	}
	return out, nil
}

func keyLabel(k ssh.PublicKey, where string) string {
	return fmt.Sprintf("publickey %s %s (%s)", k.Type(), ssh.FingerprintSHA256(k), where)
}

func certLabel(k ssh.PublicKey, where string) string {
	c, ok := asCert(k)
	if !ok {
		return keyLabel(k, where)
	}
	return fmt.Sprintf("certificate %s %s, id %q serial %d, signed by %s (%s)",
		c.Type(), ssh.FingerprintSHA256(c.Key), c.KeyId, c.Serial, ssh.FingerprintSHA256(c.SignatureKey), where)
}

// lazySigner is a passphrase-protected key: offered by its public half, and
// decrypted (asking for the passphrase) only once a host accepts it, as
// ssh(1) does.
type lazySigner struct {
	ks        *keySource
	kf        *keyFile
	da        *dialAuth
	canPrompt bool
}

func (l *lazySigner) PublicKey() ssh.PublicKey { return l.kf.pub }

func (l *lazySigner) signer() (ssh.AlgorithmSigner, error) {
	if !l.canPrompt && !l.kf.ready.Load() {
		return nil, fmt.Errorf("identity %s is passphrase-protected and BatchMode forbids asking for its passphrase: load it into ssh-agent first (ssh-add %s)", l.kf.path, l.kf.path)
	}
	s, err := l.ks.decrypt(l.da.ctx, l.kf, l.da.pause, l.da.resume)
	if err != nil {
		return nil, err
	}
	as, ok := s.(ssh.AlgorithmSigner)
	if !ok {
		return nil, fmt.Errorf("identity %s: key type %s cannot sign here", l.kf.path, s.PublicKey().Type())
	}
	return as, nil
}

func (l *lazySigner) Sign(rand io.Reader, data []byte) (*ssh.Signature, error) {
	s, err := l.signer()
	if err != nil {
		return nil, err
	}
	return s.Sign(rand, data)
}

func (l *lazySigner) SignWithAlgorithm(rand io.Reader, data []byte, algorithm string) (*ssh.Signature, error) {
	s, err := l.signer()
	if err != nil {
		return nil, err
	}
	return s.SignWithAlgorithm(rand, data, algorithm)
}

// recordingSigner notes which key the host accepted: x/crypto asks for a
// signature only once the host has said it would accept the key.
type recordingSigner struct {
	ssh.Signer
	label string
	da    *dialAuth
}

func (r *recordingSigner) Sign(rand io.Reader, data []byte) (*ssh.Signature, error) {
	sig, err := r.Signer.Sign(rand, data)
	if err == nil {
		r.da.used.Store(&r.label)
	}
	return sig, err
}

func (r *recordingSigner) SignWithAlgorithm(rand io.Reader, data []byte, algorithm string) (*ssh.Signature, error) {
	as, ok := r.Signer.(ssh.AlgorithmSigner)
	if !ok {
		if algorithm != "" && algorithm != underlyingAlgo(r.Signer.PublicKey().Type()) {
			return nil, fmt.Errorf("ssh: key %s cannot sign with %s", r.label, algorithm)
		}
		return r.Sign(rand, data)
	}
	sig, err := as.SignWithAlgorithm(rand, data, algorithm)
	if err == nil {
		r.da.used.Store(&r.label)
	}
	return sig, err
}

// underlyingAlgo is the plain key algorithm of a certificate algorithm.
func underlyingAlgo(t string) string {
	if i := strings.Index(t, "-cert-v01@openssh.com"); i >= 0 {
		return t[:i]
	}
	return t
}

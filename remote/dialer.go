package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// Default bounds on a host that stops answering; see README "Timeouts".
const (
	DefaultConnectTimeout    = 10 * time.Second // TCP connect + SSH handshake + auth, per hop
	DefaultKeepaliveInterval = 5 * time.Second
	DefaultKeepaliveMax      = 3 // unanswered keepalives before the connection is dropped
	// DefaultStopGrace bounds how long a cancelled command may take to end on
	// the host (the kill-on-hangup wrapper sends SIGKILL after 3 s).
	DefaultStopGrace = 10 * time.Second
)

// Config says how to reach one host. Resolve fills it from ssh_config and
// the inventory; the zero value of a field means its default.
type Config struct {
	Name string // as the inventory (or ssh_config, for a jump host) writes it, for messages
	Addr string // host:port to connect to (or to ask the last jump host for)
	User string

	// Identity is a private key file to offer first; a missing or
	// unreadable one is an error.
	Identity string
	// IdentityFiles are more key files, offered after Identity in order (a
	// missing one is skipped, as ssh(1) does). With neither, ~/.ssh/id_*.
	IdentityFiles []string
	// CertificateFiles are user certificates, each offered with the key it
	// certifies (a file's PATH-cert.pub is found without being listed).
	CertificateFiles []string
	// IdentitiesOnly offers the configured identities only, not every key
	// the agent holds.
	IdentitiesOnly bool
	// Agent is the path of an ssh-agent socket; "" for none.
	Agent string
	// BatchMode never asks for a passphrase.
	BatchMode bool

	// KnownHosts is the user known_hosts file; when "", KnownHostsFiles
	// are, and with neither ~/.ssh/known_hosts and ~/.ssh/known_hosts2.
	// The first one receives the keys that AcceptNewHostKeys records.
	KnownHosts      string
	KnownHostsFiles []string
	// GlobalKnownHostsFiles are read too; nil means /etc/ssh/ssh_known_hosts
	// and /etc/ssh/ssh_known_hosts2. A file that does not exist is empty.
	GlobalKnownHostsFiles []string
	// HostKeyAlias is the name to look the host key up by, instead of Addr.
	HostKeyAlias string
	// HostKeys says what to do with a host known_hosts does not know.
	HostKeys HostKeyPolicy
	// HashKnownHosts writes recorded host names hashed.
	HashKnownHosts bool

	// Jumps are the jump hosts (bastions), outermost first: the host is
	// reached through a direct-tcpip channel of the last one, each through
	// the one before. A Dialer shares each one's connection among all the
	// hosts behind it.
	Jumps []Config
	// ProxyCommand is a shell command whose standard input and output carry
	// the connection, used when there are no Jumps (or by the first jump
	// host). Its tokens are already expanded.
	ProxyCommand string

	ConnectTimeout    time.Duration
	KeepaliveInterval time.Duration
	KeepaliveMax      int

	// StopGrace bounds how long Run, once its context ends, waits for the
	// command to end on the host before it gives up and closes the session;
	// and how long SFTP requests already sent are waited for.
	StopGrace time.Duration

	// How Resolve got here, for the message when the name resolves nowhere.
	alias          string
	host           string
	hostNameFrom   string
	sshConfigFiles []string
}

func (c *Config) defaults() {
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.KeepaliveInterval <= 0 {
		c.KeepaliveInterval = DefaultKeepaliveInterval
	}
	if c.KeepaliveMax <= 0 {
		c.KeepaliveMax = DefaultKeepaliveMax
	}
	if c.StopGrace <= 0 {
		c.StopGrace = DefaultStopGrace
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil && c.Addr != "" {
		c.Addr = net.JoinHostPort(strings.Trim(c.Addr, "[]"), "22")
	}
	if c.Name == "" {
		c.Name = c.Addr
	}
}

// knownHostsName is the name known_hosts records the host under, host:port.
func (c *Config) knownHostsName() string {
	if c.HostKeyAlias != "" {
		return net.JoinHostPort(c.HostKeyAlias, "22")
	}
	return c.Addr
}

func (c *Config) userKnownHosts() []string {
	if c.KnownHosts != "" {
		return []string{c.KnownHosts}
	}
	if len(c.KnownHostsFiles) > 0 {
		return c.KnownHostsFiles
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return nil
	}
	return []string{filepath.Join(home, ".ssh", "known_hosts"), filepath.Join(home, ".ssh", "known_hosts2")}
}

func (c *Config) globalKnownHosts() []string {
	if c.GlobalKnownHostsFiles != nil {
		return c.GlobalKnownHostsFiles
	}
	return []string{"/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"}
}

// chainKey identifies a jump chain: hosts behind the same one share its connection.
func chainKey(hops []Config) string {
	parts := make([]string, len(hops))
	for i, h := range hops {
		parts[i] = h.User + "@" + h.Addr + "|" + h.ProxyCommand
	}
	return strings.Join(parts, " > ")
}

// DialerOptions are a Dialer's settings for the whole run.
type DialerOptions struct {
	// Prompt asks for the passphrase of a key file; nil asks on the terminal.
	Prompt Prompter
	// Notify, when set, is told what Dial did that the user should know
	// about: a host key recorded in known_hosts.
	Notify func(msg string)
	// Wrap, when set, wraps each connection's transport (to a host, a jump
	// host or a ProxyCommand), e.g. to measure it (internal/rtt).
	Wrap func(net.Conn) net.Conn
}

// Dialer connects to hosts for one run. It sets up once what ssh(1) would
// set up per invocation: one connection per jump host (per jump chain),
// shared by every host behind it; one connection per ssh-agent; each key
// file read and decrypted once, so that a passphrase is asked once per key,
// not once per host; and one writer for known_hosts. Create one per run,
// Close it at the end; it is safe for concurrent use.
type Dialer struct {
	keys   *keySource
	writer *knownHostsWriter
	ctx    context.Context // ended by Close: bastion dials outlive the Dial that started them
	cancel context.CancelFunc

	mu       sync.Mutex
	bastions map[string]*bastion
	closed   bool

	// dialTCP opens direct TCP connections: net.Dialer's, or a test's.
	dialTCP func(ctx context.Context, addr string) (net.Conn, error)
	wrap    func(net.Conn) net.Conn
}

// bastion is a jump host's connection, shared; ready is closed once it is
// up or failed (a failure is kept for the Dialer's life: every host behind
// it fails the same way, without a new attempt each).
type bastion struct {
	ready chan struct{}
	link  *link
	err   error
}

// NewDialer returns a Dialer for one run.
func NewDialer(o DialerOptions) *Dialer {
	ctx, cancel := context.WithCancel(context.Background())
	return &Dialer{
		keys:     newKeySource(o.Prompt),
		writer:   &knownHostsWriter{notify: o.Notify},
		ctx:      ctx,
		cancel:   cancel,
		bastions: map[string]*bastion{},
		wrap:     o.Wrap,
	}
}

// Close closes the jump hosts' connections (so every host behind them too)
// and the agent connections, and forgets decrypted keys.
func (d *Dialer) Close() error {
	d.mu.Lock()
	d.closed = true
	bs := d.bastions
	d.bastions = map[string]*bastion{}
	d.mu.Unlock()
	d.cancel()
	for _, b := range bs {
		<-b.ready
		if b.link != nil {
			b.link.close()
		}
	}
	d.keys.close()
	return nil
}

// Dial connects to a host without a shared Dialer: jump hosts are connected
// for it alone and closed with it, and a passphrase is asked for this host
// alone. A fleet uses one Dialer instead.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	d := NewDialer(DialerOptions{})
	c, err := d.Dial(ctx, cfg)
	if err != nil {
		d.Close()
		return nil, err
	}
	c.onClose = func() { d.Close() }
	return c, nil
}

// Dial connects to a host (through its jump hosts, or its ProxyCommand),
// verifies its key against known_hosts, authenticates, and opens SFTP. Each
// hop's connection and handshake is bounded by its ConnectTimeout (time
// spent typing a passphrase aside); afterwards keepalives detect a host or
// a jump host gone silent.
func (d *Dialer) Dial(ctx context.Context, cfg Config) (*Client, error) {
	start := time.Now()
	cfg.defaults()
	var via *link
	if len(cfg.Jumps) > 0 {
		var err error
		if via, err = d.bastion(ctx, cfg.Jumps); err != nil {
			return nil, err
		}
	}
	var sc *sftpSession
	var cmds *sessions
	l, facts, err := d.connect(ctx, &cfg, via, "host", func(c *ssh.Client) error {
		// The first command's session channel opens alongside SFTP's: no
		// round trip more, and none for that command later.
		cmds = newSessions(c)
		var err error
		if sc, err = openSFTP(c, cmds); err != nil {
			cmds.close()
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	c := &Client{name: cfg.Name, link: l, sftp: sc, cmds: cmds, stopGrace: cfg.StopGrace}
	c.info = facts
	c.info.ConnectTime = time.Since(start)
	for _, j := range cfg.Jumps {
		c.info.Via = append(c.info.Via, j.Name)
	}
	return c, nil
}

// bastion returns the shared connection to the last of hops, dialling it
// (and those before it) if need be.
func (d *Dialer) bastion(ctx context.Context, hops []Config) (*link, error) {
	key := chainKey(hops)
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, errors.New("dialer closed")
	}
	b := d.bastions[key]
	if b == nil {
		b = &bastion{ready: make(chan struct{})}
		d.bastions[key] = b
		go d.dialBastion(key, b, hops)
	}
	d.mu.Unlock()
	select {
	case <-b.ready:
		if b.err != nil {
			return nil, b.err
		}
		return b.link, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (d *Dialer) dialBastion(key string, b *bastion, hops []Config) {
	defer close(b.ready)
	hop := hops[len(hops)-1]
	hop.defaults()
	hop.Jumps = hops[:len(hops)-1] // for messages: connect goes through via
	var via *link
	if len(hops) > 1 {
		if via, b.err = d.bastion(d.ctx, hops[:len(hops)-1]); b.err != nil {
			return
		}
	}
	l, _, err := d.connect(d.ctx, &hop, via, "jump host", nil)
	if err != nil {
		b.err = fmt.Errorf("jump host %s: %w", hop.Name, err)
		return
	}
	b.link = l
	go func() {
		l.ssh.Wait()
		// Gone: the next Dial through it dials it again.
		d.mu.Lock()
		if d.bastions[key] == b {
			delete(d.bastions, key)
		}
		d.mu.Unlock()
	}()
}

// connect reaches cfg's host (through via when not nil), verifies its key,
// authenticates, and runs then (opening SFTP) within the same time bound.
func (d *Dialer) connect(ctx context.Context, cfg *Config, via *link, role string, then func(*ssh.Client) error) (*link, ConnInfo, error) {
	info := ConnInfo{User: cfg.User, Addr: cfg.Addr, ProxyCommand: cfg.ProxyCommand}
	hk, err := newHostKeys(cfg, d.writer)
	if err != nil {
		return nil, info, err
	}
	su := newSetup(ctx, cfg.ConnectTimeout)
	defer su.stop()

	// The transport.
	var transport net.Conn
	var tcp *net.TCPConn
	var proxy *proxyConn
	connected := func() {}
	dialStart := time.Now()
	tctx, cancel := context.WithDeadline(ctx, su.deadline)
	switch {
	case via != nil:
		transport, err = via.ssh.DialContext(tctx, "tcp", cfg.Addr)
		info.RTT = time.Since(dialStart) // the bastion's round trip and its TCP connect to the host
		if err != nil {
			err = via.channelError(cfg, err)
		}
	case cfg.ProxyCommand != "":
		proxy, err = startProxy(cfg.ProxyCommand)
		transport = proxy
	default:
		dial := d.dialTCP
		if dial == nil {
			var nd net.Dialer
			dial = func(ctx context.Context, addr string) (net.Conn, error) { return nd.DialContext(ctx, "tcp", addr) }
		}
		transport, err = dial(tctx, cfg.Addr)
		info.RTT = time.Since(dialStart)
		if err == nil {
			tcp, _ = transport.(*net.TCPConn)
			transport, connected = ackAtOnce(transport)
		} else if e := unresolvable(cfg, err); e != nil {
			err = e
		}
	}
	cancel()
	if err != nil {
		if su.expired() {
			return nil, info, su.error(cfg)
		}
		return nil, info, err
	}
	if d.wrap != nil {
		transport = d.wrap(transport)
	}
	wc := &watchedConn{Conn: transport}
	su.setConn(wc)

	da := &dialAuth{ctx: ctx, pause: su.pause, resume: su.resume}
	signers, err := d.keys.signers(cfg, da)
	if err != nil {
		wc.Close()
		return nil, info, err
	}
	sshConf := &ssh.ClientConfig{
		User:              cfg.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeysCallback(func() ([]ssh.Signer, error) { return signers, nil })},
		HostKeyCallback:   hk.callback,
		HostKeyAlgorithms: hk.algorithms(),
	}
	c, chans, reqs, err := ssh.NewClientConn(wc, cfg.Addr, sshConf)
	if err != nil {
		err = handshakeError(cfg, err, su, via, proxy, da)
		wc.Close()
		return nil, info, err
	}
	client := ssh.NewClient(c, chans, reqs)
	if then != nil {
		err = then(client)
	}
	if err == nil && !su.stop() {
		err = su.error(cfg) // too late: the transport is closed
	}
	if err != nil {
		client.Close()
		wc.Close()
		if su.expired() {
			return nil, info, su.error(cfg)
		}
		return nil, info, err
	}
	connected()
	if tcp != nil {
		if k, ok := kernelRTT(tcp); ok {
			info.RTT = k
		}
	}
	if proxy != nil {
		info.RTT = 0
	}
	info.ServerVersion = string(client.ServerVersion())
	if hk.key != nil {
		info.HostKeyType = hk.key.Type()
		plain := hk.key
		if cert, ok := hk.key.(*ssh.Certificate); ok {
			plain = cert.Key
			info.HostKeyCA = ssh.FingerprintSHA256(cert.SignatureKey)
		}
		info.HostKeyFingerprint = ssh.FingerprintSHA256(plain)
	}
	info.HostKeyRecorded = hk.recorded
	if u := da.used.Load(); u != nil {
		info.Auth = *u
	}
	l := &link{name: cfg.Name, role: role, conn: wc, tcp: tcp, ssh: client, via: via, done: make(chan struct{}), every: cfg.KeepaliveInterval}
	l.heard.Store(time.Now().UnixNano())
	go l.keepalive(cfg.KeepaliveInterval, cfg.KeepaliveMax)
	return l, info, nil
}

// handshakeError explains a failed SSH handshake, before the transport is closed.
func handshakeError(cfg *Config, err error, su *setup, via *link, proxy *proxyConn, da *dialAuth) error {
	var hkErr *HostKeyError
	switch {
	case errors.As(err, &hkErr):
		return hkErr
	case su.expired():
		return su.error(cfg)
	case via != nil && via.why() != nil:
		return fmt.Errorf("%w: %v", ErrConnLost, via.why())
	case strings.Contains(err.Error(), "unable to authenticate"):
		return authError(cfg, da, err)
	case proxy != nil:
		return fmt.Errorf("ssh handshake: %w%s", err, proxy.report())
	}
	return fmt.Errorf("ssh handshake: %w", err)
}

// openSFTP starts the SFTP subsystem: two round trips (the session
// channel, the subsystem request), INIT sent without waiting for the
// version (see startSFTP). Not asking for the subsystem's reply would save
// none with OpenSSH, which opens a session channel with no window and
// grants one only once the subsystem runs. A host that refuses the channel
// (MaxSessions 1) gets it once the command channel opened ahead is closed.
func openSFTP(c *ssh.Client, cmds *sessions) (*sftpSession, error) {
	sc, err := startSFTP(c)
	var oc *ssh.OpenChannelError
	if errors.As(err, &oc) { // OpenSSH says "open failed" when out of sessions
		cmds.drop()
		sc, err = startSFTP(c)
	}
	if err != nil {
		return nil, fmt.Errorf("opening sftp (is the sftp subsystem enabled in sshd_config?): %w", err)
	}
	return sc, nil
}

// unresolvable explains a name that DNS does not know.
func unresolvable(cfg *Config, err error) error {
	var dns *net.DNSError
	if !errors.As(err, &dns) || !dns.IsNotFound {
		return nil
	}
	host := cfg.host
	if host == "" {
		host, _, _ = net.SplitHostPort(cfg.Addr)
	}
	if cfg.hostNameFrom != "" {
		return fmt.Errorf("cannot resolve %s (the HostName of %s in %s): %v", host, cfg.alias, cfg.hostNameFrom, dns.Err)
	}
	read := "no ssh_config was read"
	if len(cfg.sshConfigFiles) > 0 {
		read = "not a Host with a HostName in " + strings.Join(cfg.sshConfigFiles, " or ")
	}
	return fmt.Errorf("%s is neither resolvable (%v) nor known to ssh_config (%s)", host, dns.Err, read)
}

// authError says which keys were offered, and what kept others out.
func authError(cfg *Config, da *dialAuth, err error) error {
	msg := fmt.Sprintf("authenticating as %s: the host accepted none of the keys offered", cfg.User)
	if len(da.offered) > 0 {
		msg += ": " + strings.Join(da.offered, "; ")
	}
	if len(da.problems) > 0 {
		msg += " (also: " + strings.Join(da.problems, "; ") + ")"
	}
	return fmt.Errorf("%s: %w", msg, err)
}

// setup bounds one hop's connection and handshake: when the time is up or
// ctx ends, the transport is closed, which ends whatever waits on it (a
// channel through a bastion has no deadlines to set). Time spent waiting
// for a passphrase does not count.
type setup struct {
	mu       sync.Mutex
	timer    *time.Timer
	deadline time.Time
	left     time.Duration
	paused   int
	conn     io.Closer
	why      error
	stopCtx  func() bool
	stopped  bool
	limit    time.Duration
}

func newSetup(ctx context.Context, limit time.Duration) *setup {
	s := &setup{deadline: time.Now().Add(limit), limit: limit}
	s.timer = time.AfterFunc(limit, func() { s.fire(context.DeadlineExceeded) })
	s.stopCtx = context.AfterFunc(ctx, func() { s.fire(ctx.Err()) })
	return s
}

func (s *setup) fire(why error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.why != nil || s.stopped {
		return
	}
	s.why = why
	if s.conn != nil {
		s.conn.Close()
	}
}

func (s *setup) setConn(c io.Closer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conn = c
	if s.why != nil {
		c.Close()
	}
}

func (s *setup) pause() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.paused++; s.paused == 1 && s.timer.Stop() {
		s.left = time.Until(s.deadline)
	}
}

func (s *setup) resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.paused--; s.paused == 0 && s.why == nil && !s.stopped {
		s.deadline = time.Now().Add(s.left)
		s.timer.Reset(s.left)
	}
}

// stop ends the bound: the connection is set up. It reports whether that
// was in time, the transport still open.
func (s *setup) stop() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopped {
		s.stopped = true
		s.timer.Stop()
		s.stopCtx()
	}
	return s.why == nil
}

func (s *setup) expired() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.why != nil
}

func (s *setup) error(cfg *Config) error {
	s.mu.Lock()
	why := s.why
	s.mu.Unlock()
	if errors.Is(why, context.Canceled) {
		return context.Canceled
	}
	return fmt.Errorf("no SSH connection within %s (host down or not answering)", s.limit)
}

// ConnInfo is how a host was reached, for `fleetdeploy check`.
type ConnInfo struct {
	User         string
	Addr         string   // host:port connected to
	Via          []string // the jump hosts, outermost first
	ProxyCommand string
	// ServerVersion is the host's SSH identification, such as
	// "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3".
	ServerVersion      string
	HostKeyType        string // as negotiated: ssh-ed25519, or ssh-ed25519-cert-v01@openssh.com
	HostKeyFingerprint string // SHA256:... of the host's key (of the certified key for a certificate)
	HostKeyCA          string // SHA256:... of the CA that signed the host certificate, if any
	HostKeyRecorded    string // the known_hosts file the key was just added to, if it was
	// Auth is the key the host accepted, e.g. "publickey ssh-ed25519
	// SHA256:... (/home/me/.ssh/id_ed25519, via ssh-agent)".
	Auth string
	// ConnectTime is how long Dial took, a shared jump host's connection included.
	ConnectTime time.Duration
	// RTT is the network round trip (see Client.ConnectRTT).
	RTT time.Duration
}

// link is one SSH connection: to a host, or to a jump host carrying others.
type link struct {
	name  string
	role  string // "host" or "jump host", for messages
	conn  *watchedConn
	tcp   *net.TCPConn // the connection's own TCP socket; nil through a jump host or a ProxyCommand
	ssh   *ssh.Client
	via   *link
	done  chan struct{}
	once  sync.Once
	every time.Duration
	heard atomic.Int64 // when the last keepalive was answered, or this process resumed from a stall (UnixNano)

	mu   sync.Mutex
	lost error // why we dropped the connection, if we did
}

// keepalive drops the connection when the host stops answering, so that
// every operation in flight fails instead of hanging. Behind a jump host
// that is silent too, the jump host is dropped: it is the one to blame, and
// every host behind it goes with it. A tick that comes late by more than an
// interval means this process did not run meanwhile (a laptop's lid closed,
// a starved machine: seen, 10 s in CI): that silence is ours, not the
// host's, and the count starts again.
func (l *link) keepalive(every time.Duration, maxMissed int) {
	t := time.NewTicker(every)
	defer t.Stop()
	replies := make(chan error, 1)
	inFlight := false
	last := time.Now()
	for {
		select {
		case <-l.done:
			return
		case err := <-replies:
			inFlight = false
			if err != nil {
				return // connection already gone
			}
			l.heard.Store(time.Now().UnixNano())
		case <-t.C:
			now := time.Now()
			if now.Sub(last) > 2*every {
				l.heard.Store(now.UnixNano())
			}
			last = now
			if silent := now.Sub(time.Unix(0, l.heard.Load())); silent >= every*time.Duration(maxMissed) {
				for v := l.via; v != nil; v = v.via {
					if vs := now.Sub(time.Unix(0, v.heard.Load())); vs >= 2*v.every {
						v.drop(fmt.Errorf("silent for %s (no answer to keepalives)", vs.Round(100*time.Millisecond)))
					}
				}
				what := "silent"
				if l.role == "host" {
					what = "host silent"
				}
				l.drop(fmt.Errorf("%s for %s (no answer to keepalives)", what, silent.Round(100*time.Millisecond)))
				return
			}
			if !inFlight {
				inFlight = true
				go func() {
					_, _, err := l.ssh.SendRequest("keepalive@openssh.com", true, nil)
					replies <- err
				}()
			}
		}
	}
}

func (l *link) drop(why error) {
	l.mu.Lock()
	if l.lost == nil {
		l.lost = why
	}
	l.mu.Unlock()
	l.conn.Close()
}

func (l *link) close() error {
	l.once.Do(func() { close(l.done) })
	err := l.conn.Close()
	l.ssh.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// why says why the connection is gone, blaming the outermost hop that
// failed: a jump host's failure is the cause of its hosts'.
func (l *link) why() error {
	var chain []*link
	for x := l; x != nil; x = x.via {
		chain = append(chain, x)
	}
	for i := len(chain) - 1; i >= 0; i-- {
		x := chain[i]
		x.mu.Lock()
		err := x.lost
		x.mu.Unlock()
		if err == nil {
			err = x.conn.failed()
		}
		if err == nil {
			continue
		}
		if x != l {
			return fmt.Errorf("%s %s: %w", x.role, x.name, err)
		}
		return err
	}
	return nil
}

// channelError explains a failed direct-tcpip channel open to cfg's host.
func (l *link) channelError(cfg *Config, err error) error {
	if why := l.why(); why != nil {
		return fmt.Errorf("%w: %v", ErrConnLost, why)
	}
	var oc *ssh.OpenChannelError
	if errors.As(err, &oc) {
		return fmt.Errorf("jump host %s cannot reach %s: %s", l.name, cfg.Addr, oc.Message)
	}
	return fmt.Errorf("through jump host %s to %s: %w", l.name, cfg.Addr, err)
}

// watchedConn is a connection's transport; it keeps the first error a read
// met, which tells a connection lost from an operation that failed.
type watchedConn struct {
	net.Conn
	mu  sync.Mutex
	err error
}

func (w *watchedConn) Read(p []byte) (int, error) {
	n, err := w.Conn.Read(p)
	if err != nil {
		w.mu.Lock()
		if w.err == nil {
			w.err = err
		}
		w.mu.Unlock()
	}
	return n, err
}

func (w *watchedConn) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

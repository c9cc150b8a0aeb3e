// Package fleet reaches an environment's hosts for one run: it dials them
// over SSH (a bounded number of handshakes at once), reads each host's state
// as soon as it is connected, and holds the connections until the run ends.
package fleet

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/plan"
	"github.com/fleetdeploy/fleetdeploy/remote"
	"github.com/fleetdeploy/fleetdeploy/steps"
)

// Options say how hosts are reached. Zero durations and counts mean "not
// given": ssh_config decides, then remote's defaults.
type Options struct {
	MaxConnects    int // SSH handshakes in flight at once, in all (this machine's CPU)
	ConnectTimeout time.Duration
	Keepalive      time.Duration
	KeepaliveMax   int
	// SSHConfig is the ssh_config file to read instead of ~/.ssh/config and
	// /etc/ssh/ssh_config; remote.NoSSHConfig for none; "" for the
	// inventory's choice (Environment.SSHConfig), else the usual files.
	SSHConfig string
	// AcceptNewHostKeys records the keys of hosts not in known_hosts yet
	// (an unknown key is refused otherwise; a changed one always is).
	AcceptNewHostKeys bool
	// Notify is told what the user should know (a host key recorded).
	Notify func(string)
	// Reached, when set, is told of each host as its connection is made or
	// fails, for progress; from many goroutines at once.
	Reached func(host string, err error)
	// Prompt asks for a key's passphrase (nil: on the terminal).
	Prompt remote.Prompter
	// Wrap, when set, wraps every connection (see remote.DialerOptions).
	Wrap func(net.Conn) net.Conn
}

// resolve says how to reach host h: what the inventory says explicitly,
// then ssh_config, then the defaults.
func (o Options) resolve(sc *remote.SSHConfig, h inventory.Host) (remote.Config, error) {
	cfg, err := sc.Resolve(h.Address, remote.Overrides{
		Name: h.Name, Port: h.Port, User: h.User, Identity: h.Identity, KnownHosts: h.KnownHosts, Jump: h.Jump,
		AcceptNewHostKeys: o.AcceptNewHostKeys || h.StrictHostKeyChecking == inventory.StrictAcceptNew,
		ConnectTimeout:    o.ConnectTimeout, KeepaliveInterval: o.Keepalive, KeepaliveMax: o.KeepaliveMax,
	})
	if err != nil {
		return cfg, err
	}
	if h.StrictHostKeyChecking == inventory.StrictYes && !o.AcceptNewHostKeys {
		cfg.HostKeys = remote.StrictHostKeys
	}
	if h.IdentitiesOnly != nil {
		cfg.IdentitiesOnly = *h.IdentitiesOnly
	}
	return cfg, nil
}

// Fleet is an environment's hosts, connected.
type Fleet struct {
	Env    *inventory.Environment
	Conns  map[string]remote.Host // by host name
	dialer *remote.Dialer
	rtts   []time.Duration // each connected host's round trip
	// openssh: the hosts whose SSH server says it is OpenSSH (see Window).
	openssh map[string]bool
}

// Window is steps.Payload.Window for a host: uncompressed uploads are paced
// (w) to OpenSSH hosts only. Pacing works around OpenSSH's sshd, which grows
// its buffer by copying it for every packet it holds; the sandbox's server
// (x/crypto) keeps one buffer, and there the wait for tar's reports only
// costs time (200 sandbox hosts: a first deploy 7-9% slower paced).
func (f *Fleet) Window(host string, w int64) int64 {
	if !f.openssh[host] {
		return 0
	}
	return w
}

// FarthestRTT is the largest of the hosts' round trips.
func (f *Fleet) FarthestRTT() time.Duration {
	if len(f.rtts) == 0 {
		return 0
	}
	return slices.Max(f.rtts)
}

// NearestRTT is the smallest of the hosts' round trips: a fleet counts as
// behind a slow link only if every host is, and a busy moment cannot make a
// near host look far.
func (f *Fleet) NearestRTT() time.Duration {
	if len(f.rtts) == 0 {
		return 0
	}
	return slices.Min(f.rtts)
}

// Close ends every connection, then the jump hosts'.
func (f *Fleet) Close() {
	for _, c := range f.Conns {
		c.Close()
	}
	if f.dialer != nil {
		f.dialer.Close()
	}
}

// maxStartups is how many unauthenticated connections one sshd takes at
// once: OpenSSH's MaxStartups (10:30:100 by default) drops some of those
// past 10.
const maxStartups = 10

// startupBounds bounds the handshakes in flight to each sshd that sees them
// unauthenticated (maxStartups each): each host's own, and, through
// ProxyCommands, which each open a connection of their own and usually all
// to one bastion, that bastion's (one bound for all of them). Hosts reached
// through jump hosts share the one connection to each jump host, made once
// (remote.Dialer); their handshakes run over its channels.
type startupBounds map[string]chan struct{}

func (b startupBounds) of(cfg remote.Config) chan struct{} {
	key := "host " + cfg.Addr
	if cfg.ProxyCommand != "" && len(cfg.Jumps) == 0 {
		key = "proxy"
	}
	if b[key] == nil {
		b[key] = make(chan struct{}, maxStartups)
	}
	return b[key]
}

// Connect dials every host, at most o.MaxConnects handshakes at once, and
// at most maxStartups to any one sshd (see startupBounds). With
// partial, hosts that fail are reported in the map and left out; otherwise
// any failure closes everything and returns every host's error. then, when
// not nil, runs for each host as soon as it is connected, outside the
// handshake bound, so that the first hosts' work overlaps the last hosts'
// handshakes.
func Connect(ctx context.Context, env *inventory.Environment, o Options, partial bool, then func(i int, c remote.Host)) (*Fleet, map[string]error, error) {
	file := o.SSHConfig
	if file == "" {
		file = env.SSHConfig
	}
	sc, err := remote.LoadSSHConfig(file)
	if err != nil {
		return nil, nil, err
	}
	f := &Fleet{Env: env, Conns: map[string]remote.Host{}, openssh: map[string]bool{},
		dialer: remote.NewDialer(remote.DialerOptions{Prompt: o.Prompt, Notify: o.Notify, Wrap: o.Wrap})}
	var mu sync.Mutex
	failed := map[string]error{}
	var errs []error
	handshakes := make(chan struct{}, max(1, o.MaxConnects))
	routes := startupBounds{}
	var wg sync.WaitGroup
	for i, h := range env.Hosts {
		cfg, rerr := o.resolve(sc, h)
		var route chan struct{}
		if rerr == nil {
			route = routes.of(cfg)
		}
		wg.Go(func() {
			var c *remote.Client
			err := rerr
			if err == nil {
				select {
				case route <- struct{}{}:
					select {
					case handshakes <- struct{}{}:
						c, err = f.dialer.Dial(ctx, cfg)
						<-handshakes
					case <-ctx.Done():
						err = ctx.Err()
					}
					<-route
				case <-ctx.Done():
					err = ctx.Err()
				}
			}
			if o.Reached != nil {
				o.Reached(h.Name, err)
			}
			mu.Lock()
			if err != nil {
				failed[h.Name] = err
				errs = append(errs, &plan.HostError{Host: h.Name, Step: "connecting", Err: err})
				mu.Unlock()
				return
			}
			f.Conns[h.Name] = c
			f.rtts = append(f.rtts, c.ConnectRTT())
			f.openssh[h.Name] = strings.HasPrefix(c.ServerVersion(), "SSH-2.0-OpenSSH")
			mu.Unlock()
			if then != nil {
				then(i, c)
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		f.Close()
		return nil, nil, ctx.Err()
	}
	if len(errs) > 0 && !partial {
		f.Close()
		return nil, nil, plan.JoinHostErrors(errs)
	}
	return f, failed, nil
}

// ReadState reads one host's state: steps.Inspect or steps.Look.
type ReadState func(ctx context.Context, h remote.Host, root string, shared []string) (*steps.State, error)

// Survey connects to env's hosts (see Connect) and reads each host's state
// with read as soon as it is connected. Targets lists every host in
// inventory order, State nil where it could not be read; errs says why, by
// host (connecting or reading).
func Survey(ctx context.Context, env *inventory.Environment, o Options, partial bool, read ReadState) (f *Fleet, targets []plan.Target, errs map[string]error, err error) {
	shared := plan.SharedArgs(env)
	targets = make([]plan.Target, len(env.Hosts))
	for i, h := range env.Hosts {
		targets[i].Host = h
	}
	var mu sync.Mutex
	readErrs := map[string]error{}
	f, failed, err := Connect(ctx, env, o, partial, func(i int, c remote.Host) {
		h := env.Hosts[i]
		st, err := read(ctx, c, h.Root, shared)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			readErrs[h.Name] = &plan.HostError{Host: h.Name, Step: "reading state", Err: err}
			return
		}
		targets[i].State = st
	})
	if err != nil {
		return nil, nil, nil, err
	}
	for h, e := range failed {
		readErrs[h] = &plan.HostError{Host: h, Step: "connecting", Err: e}
	}
	return f, targets, readErrs, nil
}

// Reach connects to every host of env and reads its state for a deploy or a
// rollback (steps.Look): any host that cannot be reached or read fails it.
func Reach(ctx context.Context, env *inventory.Environment, o Options) (*Fleet, []plan.Target, error) {
	f, targets, errs, err := Survey(ctx, env, o, false, steps.LookToChange)
	if err != nil {
		return nil, nil, err
	}
	if ctx.Err() != nil {
		f.Close()
		return nil, nil, ctx.Err()
	}
	if len(errs) > 0 {
		f.Close()
		var list []error
		for _, e := range errs {
			list = append(list, e)
		}
		return nil, nil, plan.JoinHostErrors(list)
	}
	return f, targets, nil
}

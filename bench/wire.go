//go:build bench

package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Traffic is what crossed one host's TCP port during a phase, both ways.
type Traffic struct {
	Up   int64 // client -> host
	Down int64 // host -> client
}

// Meter counts the bytes exchanged with each host. Addr is the address a
// client must dial for host i (the host itself, or a proxy in front of it).
type Meter interface {
	Method() string
	Addr(i int) string
	Port(i int) int
	Read() ([]Traffic, error) // cumulative since the meter started
	Close() error
}

// Diff returns b - a host by host.
func Diff(a, b []Traffic) []Traffic {
	d := make([]Traffic, len(b))
	for i := range b {
		d[i] = Traffic{b[i].Up - a[i].Up, b[i].Down - a[i].Down}
	}
	return d
}

// nftMeter counts with nftables named counters, `ip daddr A tcp dport P` for
// client -> host and `ip saddr A tcp sport P` for host -> client. On loopback
// both sit on the output hook, where every loopback packet passes exactly
// once. Over a -link each direction is counted where it arrives, after the
// delay and the rate cap, on the input hook of the receiving side's namespace:
// packets tbf dropped are not counted, their retransmissions are. Nothing sits
// in the data path, so timing is untouched. Bytes are IP packet lengths,
// headers included (one header per TCP super-packet of up to 64 KiB: GSO makes
// headers a small share; a 1500-byte Ethernet wire carries a few percent more).
type nftMeter struct {
	table    string
	addrs    []string
	ports    []int
	up, down nftPlace
	tables   []*nftTable // one per namespace counted in
}

// nftPlace is where one direction is counted: a network namespace (nil: the
// bench's own) and a netfilter hook.
type nftPlace struct {
	ns   *netns
	hook string
}

// nftTable is the meter's table in one namespace.
type nftTable struct {
	ns       *netns
	counters []string
	hooks    []string            // chains, in order
	rules    map[string][]string // by hook
}

func nftAvailable() bool {
	_, err := exec.LookPath("nft")
	if err != nil {
		return false
	}
	return exec.Command("nft", "list", "tables").Run() == nil
}

// nft runs nft in namespace ns.
func nft(ns *netns, args ...string) (string, error) {
	out, err := ns.CombinedOutput(exec.Command("nft", args...))
	if err != nil {
		return "", fmt.Errorf("nft %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func newNftMeter(table string, addrs []string, up, down nftPlace) (*nftMeter, error) {
	m := &nftMeter{table: table, addrs: addrs, up: up, down: down}
	add := func(at nftPlace, counter, rule string) {
		var tb *nftTable
		for _, x := range m.tables {
			if x.ns == at.ns {
				tb = x
			}
		}
		if tb == nil {
			tb = &nftTable{ns: at.ns, rules: map[string][]string{}}
			m.tables = append(m.tables, tb)
		}
		if _, ok := tb.rules[at.hook]; !ok {
			tb.hooks = append(tb.hooks, at.hook)
		}
		tb.counters = append(tb.counters, counter)
		tb.rules[at.hook] = append(tb.rules[at.hook], rule+" counter name "+counter)
	}
	for i, a := range addrs {
		host, ps, err := net.SplitHostPort(a)
		if err != nil {
			return nil, err
		}
		ip := net.ParseIP(host)
		if ip == nil {
			return nil, fmt.Errorf("%s: not an IP address", a)
		}
		family := "ip"
		if ip.To4() == nil {
			family = "ip6"
		}
		p, _ := strconv.Atoi(ps)
		m.ports = append(m.ports, p)
		add(up, fmt.Sprintf("up%d", i), fmt.Sprintf("%s daddr %s tcp dport %d", family, host, p))
		add(down, fmt.Sprintf("down%d", i), fmt.Sprintf("%s saddr %s tcp sport %d", family, host, p))
	}
	for _, tb := range m.tables {
		var b strings.Builder
		fmt.Fprintf(&b, "table inet %s {\n", table)
		for _, c := range tb.counters {
			fmt.Fprintf(&b, "  counter %s {}\n", c)
		}
		for _, h := range tb.hooks {
			fmt.Fprintf(&b, "  chain %s {\n    type filter hook %s priority 0; policy accept;\n    %s\n  }\n", h, h, strings.Join(tb.rules[h], "\n    "))
		}
		b.WriteString("}\n")
		_, _ = nft(tb.ns, "delete", "table", "inet", table) // a leftover of a killed run
		if err := tb.ns.script(b.String(), "nft", "-f", "-"); err != nil {
			m.Close()
			return nil, err
		}
	}
	return m, nil
}

func (m *nftMeter) Method() string {
	if m.up.ns != nil || m.down.ns != nil {
		return "nftables counters where each direction arrives, after the link's delay and cap (to each host: input hook of the hosts' namespace; from it: input hook of the tools'): IP bytes of what crossed the link, headers included, retransmissions included, packets dropped by the rate cap not; nothing in the data path"
	}
	return "nftables counters on the loopback output hook (IP bytes, headers included; nothing in the data path)"
}
func (m *nftMeter) Addr(i int) string { return m.addrs[i] }
func (m *nftMeter) Port(i int) int    { return m.ports[i] }

func (m *nftMeter) Read() ([]Traffic, error) {
	t := make([]Traffic, len(m.addrs))
	seen := 0
	for _, tb := range m.tables {
		out, err := nft(tb.ns, "-j", "list", "counters", "table", "inet", m.table)
		if err != nil {
			return nil, err
		}
		var doc struct {
			Nftables []struct {
				Counter *struct {
					Name  string `json:"name"`
					Bytes int64  `json:"bytes"`
				} `json:"counter"`
			} `json:"nftables"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			return nil, fmt.Errorf("parsing nft counters: %v", err)
		}
		for _, e := range doc.Nftables {
			if e.Counter == nil {
				continue
			}
			var i int
			switch {
			case strings.HasPrefix(e.Counter.Name, "up"):
				i, _ = strconv.Atoi(e.Counter.Name[2:])
				t[i].Up = e.Counter.Bytes
			case strings.HasPrefix(e.Counter.Name, "down"):
				i, _ = strconv.Atoi(e.Counter.Name[4:])
				t[i].Down = e.Counter.Bytes
			default:
				continue
			}
			seen++
		}
	}
	if seen != 2*len(m.addrs) {
		return nil, fmt.Errorf("nft listed %d counters, want %d", seen, 2*len(m.addrs))
	}
	return t, nil
}

func (m *nftMeter) Close() error {
	var errs []error
	for _, tb := range m.tables {
		_, err := nft(tb.ns, "delete", "table", "inet", m.table)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// proxyMeter is a counting TCP proxy in front of each host. On loopback it is
// the fallback without nftables (not root, or nft missing): it counts TCP
// payload (the SSH stream) exactly, but it terminates TCP, adds a hop and ACKs
// locally, so it distorts timing a little and hides Nagle/delayed-ACK stalls.
// Over a -link it is the relay at the hosts' end of the link (see link.go),
// listening in the hosts' namespace: there the hop it adds is loopback behind
// the delay and the cap.
type proxyMeter struct {
	desc    string // Method's answer
	targets []string
	ls      []net.Listener
	up      []atomic.Int64
	down    []atomic.Int64
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]bool
}

// newProxyMeter starts a proxy to each target; listen opens the listener in
// front of target i (nil: 127.0.0.1, any free port).
func newProxyMeter(targets []string, listen func(i int) (net.Listener, error), desc string) (*proxyMeter, error) {
	m := &proxyMeter{desc: desc, targets: targets, up: make([]atomic.Int64, len(targets)), down: make([]atomic.Int64, len(targets)), conns: map[net.Conn]bool{}}
	if listen == nil {
		listen = func(int) (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }
	}
	for i := range targets {
		l, err := listen(i)
		if err != nil {
			m.Close()
			return nil, err
		}
		m.ls = append(m.ls, l)
		m.wg.Go(func() { m.serve(i, l) })
	}
	return m, nil
}

func (m *proxyMeter) track(c net.Conn, on bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if on {
		m.conns[c] = true
	} else {
		delete(m.conns, c)
	}
}

func (m *proxyMeter) serve(i int, l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		m.wg.Go(func() {
			defer c.Close()
			s, err := net.Dial("tcp", m.targets[i])
			if err != nil {
				return
			}
			defer s.Close()
			m.track(c, true)
			m.track(s, true)
			defer m.track(c, false)
			defer m.track(s, false)
			done := make(chan struct{}, 2)
			pipe := func(dst, src net.Conn, n *atomic.Int64) {
				_, _ = io.Copy(countingWriter{dst, n}, src)
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
				done <- struct{}{}
			}
			go pipe(s, c, &m.up[i])
			go pipe(c, s, &m.down[i])
			<-done
			<-done
		})
	}
}

// countingWriter counts as it goes, so a phase that just ended is counted in full.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func (m *proxyMeter) Method() string {
	if m.desc != "" {
		return m.desc
	}
	return "counting TCP proxy in front of each sshd (SSH stream bytes; the proxy adds a hop and may distort timing)"
}
func (m *proxyMeter) Addr(i int) string { return m.ls[i].Addr().String() }
func (m *proxyMeter) Port(i int) int    { return m.ls[i].Addr().(*net.TCPAddr).Port }

func (m *proxyMeter) Read() ([]Traffic, error) {
	t := make([]Traffic, len(m.targets))
	for i := range t {
		t[i] = Traffic{m.up[i].Load(), m.down[i].Load()}
	}
	return t, nil
}

func (m *proxyMeter) Close() error {
	var errs []error
	for _, l := range m.ls {
		errs = append(errs, l.Close())
	}
	m.mu.Lock()
	for c := range m.conns {
		c.Close()
	}
	m.mu.Unlock()
	m.wg.Wait()
	return errors.Join(errs...)
}

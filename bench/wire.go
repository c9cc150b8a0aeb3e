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

// nftMeter counts with nftables named counters on the output hook, where every
// loopback packet passes exactly once: `tcp dport P` is client -> host and
// `tcp sport P` is host -> client. Nothing sits in the data path, so timing is
// untouched. Bytes are IP packet lengths (headers included; loopback's 64 KiB
// MTU and GSO make headers a small share, unlike a 1500-byte Ethernet wire).
type nftMeter struct {
	table string
	addrs []string
	ports []int
}

func nftAvailable() bool {
	_, err := exec.LookPath("nft")
	if err != nil {
		return false
	}
	return exec.Command("nft", "list", "tables").Run() == nil
}

func nft(args ...string) (string, error) {
	out, err := exec.Command("nft", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("nft %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// nftScript runs an nft script given on stdin.
func nftScript(script string) error {
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("nft -f: %v: %s\n%s", err, out, script)
	}
	return nil
}

func newNftMeter(table string, addrs []string) (*nftMeter, error) {
	m := &nftMeter{table: table, addrs: addrs}
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", table)
	for i, a := range addrs {
		_, ps, err := net.SplitHostPort(a)
		if err != nil {
			return nil, err
		}
		p, _ := strconv.Atoi(ps)
		m.ports = append(m.ports, p)
		fmt.Fprintf(&b, "  counter up%d {}\n  counter down%d {}\n", i, i)
	}
	b.WriteString("  chain out {\n    type filter hook output priority 0; policy accept;\n")
	for i, p := range m.ports {
		fmt.Fprintf(&b, "    tcp dport %d counter name up%d\n    tcp sport %d counter name down%d\n", p, i, p, i)
	}
	b.WriteString("  }\n}\n")
	_, _ = nft("delete", "table", "inet", table) // a leftover of a killed run
	if err := nftScript(b.String()); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *nftMeter) Method() string {
	return "nftables counters on the loopback output hook (IP bytes, headers included; nothing in the data path)"
}
func (m *nftMeter) Addr(i int) string { return m.addrs[i] }
func (m *nftMeter) Port(i int) int    { return m.ports[i] }

func (m *nftMeter) Read() ([]Traffic, error) {
	out, err := nft("-j", "list", "counters", "table", "inet", m.table)
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
	t := make([]Traffic, len(m.addrs))
	seen := 0
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
	if seen != 2*len(m.addrs) {
		return nil, fmt.Errorf("nft listed %d counters, want %d", seen, 2*len(m.addrs))
	}
	return t, nil
}

func (m *nftMeter) Close() error {
	_, err := nft("delete", "table", "inet", m.table)
	return err
}

// proxyMeter is the fallback without nftables (not root, or nft missing): a
// counting TCP proxy on loopback in front of each host. It counts TCP payload
// (the SSH stream) exactly, but it terminates TCP, adds a hop and ACKs locally,
// so it distorts timing a little and hides Nagle/delayed-ACK stalls.
type proxyMeter struct {
	targets []string
	ls      []net.Listener
	up      []atomic.Int64
	down    []atomic.Int64
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]bool
}

func newProxyMeter(targets []string) (*proxyMeter, error) {
	m := &proxyMeter{targets: targets, up: make([]atomic.Int64, len(targets)), down: make([]atomic.Int64, len(targets)), conns: map[net.Conn]bool{}}
	for i := range targets {
		l, err := net.Listen("tcp", "127.0.0.1:0")
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

package sshtest

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A fleet behind bastions lives in network namespaces chained by veth pairs:
//
//	test ── bastion1 ── bastion2 ── ... ── hosts
//
// Each namespace holds one sshd (the hosts' holds all the hosts, each on an
// address of its own), and reaches only its neighbours: nothing forwards
// packets, so the hosts are reachable only through the last bastion's sshd,
// and it only through the one before. Only the first link touches the
// test's own namespace, with a random /30 of 100.64.0.0/10 (shared address
// space, unused on such machines) so that concurrent tests do not collide.

const (
	ipPath      = "/usr/sbin/ip"
	nsenterPath = "/usr/bin/nsenter"
	hostsNet    = "10.99.0" // the hosts' namespace: the last bastion is .1, hosts .11 on
)

func netnsPath(ns string) string { return "/run/netns/" + ns }

// network is the namespaces and links of one fleet.
type network struct {
	id         string
	namespaces []string
	rootLink   string // the veth end in the test's namespace
}

// checkNetns reports why namespaces cannot be made here, if they cannot.
func checkNetns() error {
	if os.Geteuid() != 0 {
		return errors.New("network namespaces need root")
	}
	for _, p := range []string{ipPath, nsenterPath} {
		if _, err := os.Stat(p); err != nil {
			return err
		}
	}
	ns := "fdt-probe-" + randomID()
	if out, err := exec.Command(ipPath, "netns", "add", ns).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add: %v: %s", err, strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command(ipPath, "netns", "del", ns).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns del: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func randomID() string {
	b := make([]byte, 3)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newNetwork creates the namespaces and links, and gives every bastion and
// host its namespace and address.
func newNetwork(bastions, hosts []*Host) (*network, error) {
	n := &network{id: randomID()}
	ok := false
	defer func() {
		if !ok {
			n.remove()
		}
	}()
	var nss []string
	for i, b := range bastions {
		b.ns = fmt.Sprintf("fdt-%s-b%d", n.id, i+1)
		nss = append(nss, b.ns)
	}
	hostNS := fmt.Sprintf("fdt-%s-h", n.id)
	nss = append(nss, hostNS)
	for _, ns := range nss {
		if err := ip("", "netns", "add", ns); err != nil {
			return nil, err
		}
		n.namespaces = append(n.namespaces, ns)
		if err := ip(ns, "link", "set", "lo", "up"); err != nil {
			return nil, err
		}
	}
	first, err := freeSubnet()
	if err != nil {
		return nil, err
	}
	// link i joins namespace i-1 (the test's for i = 0) to namespace i.
	for i, ns := range nss {
		prev := ""
		if i > 0 {
			prev = nss[i-1]
		}
		near, far := fmt.Sprintf("fd%s%dn", n.id, i), fmt.Sprintf("fd%s%df", n.id, i)
		if err := ip(prev, "link", "add", near, "type", "veth", "peer", "name", far, "netns", ns); err != nil {
			return nil, err
		}
		if i == 0 {
			n.rootLink = near
		}
		var nearAddr string
		var farAddrs []string
		switch {
		case i == 0:
			nearAddr = first.Next().String() + "/30"
			farAddrs = []string{first.Next().Next().String() + "/30"}
		case ns == hostNS:
			nearAddr = hostsNet + ".1/24"
			for j := range hosts {
				farAddrs = append(farAddrs, fmt.Sprintf("%s.%d/24", hostsNet, 11+j))
			}
		default:
			nearAddr = fmt.Sprintf("10.%d.0.1/24", i)
			farAddrs = []string{fmt.Sprintf("10.%d.0.2/24", i)}
		}
		if err := ip(prev, "addr", "add", nearAddr, "dev", near); err != nil {
			return nil, err
		}
		for _, a := range farAddrs {
			if err := ip(ns, "addr", "add", a, "dev", far); err != nil {
				return nil, err
			}
		}
		if err := ip(prev, "link", "set", near, "up"); err != nil {
			return nil, err
		}
		if err := ip(ns, "link", "set", far, "up"); err != nil {
			return nil, err
		}
		if ns == hostNS {
			for j, h := range hosts {
				h.ns, h.ip = hostNS, strings.TrimSuffix(farAddrs[j], "/24")
			}
		} else {
			bastions[i].ip = strings.Split(farAddrs[0], "/")[0]
		}
	}
	ok = true
	return n, nil
}

// freeSubnet picks a /30 of 100.64.0.0/10 that no interface here uses.
func freeSubnet() (netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return netip.Addr{}, err
	}
	for range 20 {
		var b [4]byte
		rand.Read(b[:])
		n := binary.BigEndian.Uint32(b[:])&(1<<22-1)&^3 | 100<<24 | 64<<16
		binary.BigEndian.PutUint32(b[:], n)
		base := netip.AddrFrom4(b)
		prefix := netip.PrefixFrom(base, 30)
		used := false
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				if p, ok := netip.AddrFromSlice(ipn.IP.To4()); ok && prefix.Contains(p) {
					used = true
				}
			}
		}
		if !used {
			return base, nil
		}
	}
	return netip.Addr{}, errors.New("no free /30 in 100.64.0.0/10")
}

// ip runs ip(8), in namespace ns when not "".
func ip(ns string, args ...string) error {
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	out, err := exec.Command(ipPath, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// remove deletes the namespaces (their links go with them) once their
// processes are gone.
func (n *network) remove() error {
	var errs []error
	if n.rootLink != "" {
		_ = ip("", "link", "del", n.rootLink) // gone already when its peer's namespace went
	}
	for _, ns := range n.namespaces {
		if err := ip("", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// dialIn connects to addr from network namespace ns ("" for the test's own).
// The socket is made by a thread that entered ns, and keeps that namespace
// for its life; the thread is never given back to the Go scheduler (a
// locked thread whose goroutine ends is discarded), so nothing else runs in
// the wrong namespace.
func dialIn(ns, addr string, deadline time.Time) (net.Conn, error) {
	if ns == "" {
		return (&net.Dialer{Deadline: deadline}).Dial("tcp", addr)
	}
	type result struct {
		c   net.Conn
		err error
	}
	got := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open(netnsPath(ns))
		if err != nil {
			got <- result{nil, err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			got <- result{nil, fmt.Errorf("entering network namespace %s: %w", ns, err)}
			return
		}
		c, err := (&net.Dialer{Deadline: deadline}).Dial("tcp", addr)
		got <- result{c, err}
	}()
	r := <-got
	return r.c, r.err
}

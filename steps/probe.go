package steps

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/fleetdeploy/fleetdeploy/remote"
)

// Tool is one host command fleetdeploy's scripts need, as the probe found it.
type Tool struct {
	Name   string
	Status string // "ok", "missing" or "wrong" (present, but not the kind needed)
	Detail string
}

// HostOffer is what a host offers a deploy, found by one command that changes
// nothing lasting (see scripts/probe.sh).
type HostOffer struct {
	Tools     []Tool
	FreeKiB   int64  // free space where the root is or will be made; -1 unknown
	Dir       string // that folder: the root, or its nearest parent that exists
	Writable  bool   // a symlink could be made (and removed) in Dir
	WriteErr  string // why not
	HostTime  time.Time
	LocalTime time.Time // this machine's clock halfway through the command
}

// ClockOffset is how far the host's clock is ahead of this machine's (to
// the second: the host says seconds).
func (p *HostOffer) ClockOffset() time.Duration {
	if p.HostTime.IsZero() {
		return 0
	}
	return p.HostTime.Sub(p.LocalTime.Truncate(time.Second))
}

// Preflight runs the probe on a host for a root.
func Preflight(ctx context.Context, h remote.Host, root string) (*HostOffer, error) {
	start := time.Now()
	out, err := h.Run(ctx, remote.Cmd{Script: probeScript, Params: params("root", root)})
	if err != nil {
		return nil, err
	}
	p := &HostOffer{FreeKiB: -1, LocalTime: start.Add(time.Since(start) / 2)}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, "\t")
		switch {
		case f[0] == "tool" && len(f) == 4:
			p.Tools = append(p.Tools, Tool{Name: f[1], Status: f[2], Detail: f[3]})
		case f[0] == "free" && len(f) == 3:
			if n, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				p.FreeKiB = n
			}
			p.Dir = f[2]
		case f[0] == "write" && len(f) == 4:
			p.Writable, p.WriteErr = f[1] == "ok", f[3]
		case f[0] == "now" && len(f) == 2:
			if n, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				p.HostTime = time.Unix(n, 0)
			}
		}
	}
	return p, nil
}

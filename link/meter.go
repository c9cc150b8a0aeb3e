package link

import (
	"io"
	"sync"
	"time"

	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/remote"
)

// Meter times each host's payload as it is read to be sent, so that the
// run's uploads can be recorded for the next run's choice. It is safe for
// concurrent use; a nil Meter times nothing.
type Meter struct {
	mu    sync.Mutex
	hosts map[string]*upload
	now   func() time.Time
}

// upload is one host's payload as sent so far.
type upload struct {
	bytes       int64
	first, last time.Time
	done        bool // read to its end
}

// NewMeter is a meter reading the time from now.
func NewMeter(now func() time.Time) *Meter {
	return &Meter{hosts: map[string]*upload{}, now: now}
}

// Wrap times what is read from host's payload, opened by open. It returns
// nil when m or open is nil.
func (m *Meter) Wrap(host string, open func() (io.ReadCloser, error)) func() (io.ReadCloser, error) {
	if m == nil || open == nil {
		return open // nothing to time
	}
	return func() (io.ReadCloser, error) {
		rc, err := open()
		if err != nil {
			return nil, err
		}
		m.mu.Lock()
		u := m.hosts[host]
		if u == nil {
			u = &upload{}
			m.hosts[host] = u
		}
		u.done = false
		m.mu.Unlock()
		return &timedReader{ReadCloser: rc, m: m, u: u}, nil
	}
}

type timedReader struct {
	io.ReadCloser
	m *Meter
	u *upload
}

func (r *timedReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	t := r.m.now()
	r.m.mu.Lock()
	if r.u.first.IsZero() {
		r.u.first = t
	}
	r.u.bytes += int64(n)
	r.u.last = t
	if err == io.EOF {
		r.u.done = true
	}
	r.m.mu.Unlock()
	return n, err
}

// Record saves in s, for each of env's hosts whose payload was sent whole
// and was large enough to say something, the rate the path to it carried:
// the kernel's delivery rate when its connection in conns knows it, else
// the payload's bytes over its duration. Called after the run, it adds no
// wait to it.
func (m *Meter) Record(env *inventory.Environment, conns map[string]remote.Host, s Store) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, h := range env.Hosts {
		u := m.hosts[h.Name]
		if u == nil || !u.done || u.bytes < measuredMin {
			continue
		}
		r := Rate{At: u.last}
		if c, ok := conns[h.Name].(interface{ DeliveryRate() (float64, bool) }); ok {
			if rate, ok := c.DeliveryRate(); ok {
				r.Rate, r.From = rate, "tcp"
			}
		}
		if r.From == "" {
			d := u.last.Sub(u.first)
			if d <= 0 {
				continue
			}
			r.Rate, r.From = float64(u.bytes)/d.Seconds(), "stream"
		}
		if rtt, ok := connectRTT(conns[h.Name]); ok {
			r.RTT = rtt
		}
		s.Save(Key(h), r)
	}
}

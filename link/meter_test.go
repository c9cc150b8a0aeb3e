package link

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/remote"
)

// stepClock advances by step on every reading.
type stepClock struct {
	t    time.Time
	step time.Duration
}

func (c *stepClock) now() time.Time { c.t = c.t.Add(c.step); return c.t }

// The meter records a large upload read to its end, at the kernel's rate
// where the host has one and at bytes over time otherwise; a small or
// unfinished upload leaves the earlier record alone.
func TestUploadMeterRecords(t *testing.T) {
	env := &inventory.Environment{Hosts: []inventory.Host{
		{Name: "big", Address: "a"}, {Name: "small", Address: "b"}, {Name: "cut", Address: "c"}, {Name: "tcp", Address: "d"},
	}}
	links := NewStore(t.TempDir())
	old := Rate{Rate: 1, From: "tcp", At: time.Unix(1, 0).UTC()}
	for _, h := range env.Hosts {
		links.Save(Key(h), old)
	}
	clock := &stepClock{t: time.Unix(1000, 0), step: 10 * time.Millisecond}
	m := NewMeter(clock.now)
	send := func(host string, size int64, whole bool) {
		open := m.Wrap(host, func() (io.ReadCloser, error) {
			return io.NopCloser(io.LimitReader(zeros{}, size)), nil
		})
		rc, err := open()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		buf := make([]byte, 1<<20)
		for {
			if _, err := rc.Read(buf); err != nil || !whole {
				break
			}
		}
	}
	send("big", 10<<20, true)  // 11 reads of 1 MiB (the last one EOF), 10 ms apart
	send("small", 1<<20, true) // a redeploy's delta
	send("cut", 10<<20, false) // a failed upload
	send("tcp", 10<<20, true)
	m.Record(env, map[string]remote.Host{"tcp": rateHost{rate: 5e6}}, links)
	got, _ := links.Load(Key(env.Hosts[0]))
	if want := float64(10<<20) / 0.1; got.From != "stream" || got.Rate < want*0.99 || got.Rate > want*1.01 {
		t.Errorf("big: %+v, want %.0f B/s from the stream", got, want)
	}
	for _, h := range []int{1, 2} {
		if got, _ := links.Load(Key(env.Hosts[h])); got != old {
			t.Errorf("%s: %+v, want the old record kept", env.Hosts[h].Name, got)
		}
	}
	if got, _ := links.Load(Key(env.Hosts[3])); got.From != "tcp" || got.Rate != 5e6 || got.RTT != 40*time.Millisecond {
		t.Errorf("tcp: %+v, want the kernel's 5 MB/s and the round trip", got)
	}
}

// Hosts' uploads are metered at once, as the scheduler sends them (run
// with -race).
func TestUploadMeterConcurrent(t *testing.T) {
	var env inventory.Environment
	for _, n := range []string{"a", "b", "c", "d"} {
		env.Hosts = append(env.Hosts, inventory.Host{Name: n, Address: n})
	}
	links := NewStore(t.TempDir())
	clock := make(chan time.Time, 1)
	clock <- time.Unix(1000, 0)
	m := NewMeter(func() time.Time { t := <-clock; clock <- t.Add(time.Millisecond); return t })
	done := make(chan error)
	for _, h := range env.Hosts {
		go func() {
			rc, err := m.Wrap(h.Name, func() (io.ReadCloser, error) {
				return io.NopCloser(io.LimitReader(zeros{}, measuredMin)), nil
			})()
			if err == nil {
				_, err = io.Copy(io.Discard, rc)
			}
			done <- err
		}()
	}
	for range env.Hosts {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	m.Record(&env, nil, links)
	for _, h := range env.Hosts {
		if got, ok := links.Load(Key(h)); !ok || got.From != "stream" || got.Rate <= 0 {
			t.Errorf("%s: %+v, %v; want a rate from the stream", h.Name, got, ok)
		}
	}
}

// A nil meter times nothing, and records nothing.
func TestNilMeter(t *testing.T) {
	var m *Meter
	open := m.Wrap("web1", func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("tar")), nil })
	if open == nil {
		t.Fatal("a nil meter lost the payload")
	}
	if rc, err := open(); err != nil || rc == nil {
		t.Errorf("the payload through a nil meter: %v, %v", rc, err)
	}
	m.Record(&inventory.Environment{Hosts: []inventory.Host{{Name: "web1"}}}, nil, NewStore(t.TempDir()))
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// rateHost is a host whose connection knows its delivery rate and round
// trip.
type rateHost struct {
	remote.Host
	rate float64
}

func (h rateHost) DeliveryRate() (float64, bool) { return h.rate, true }
func (h rateHost) ConnectRTT() time.Duration     { return 40 * time.Millisecond }

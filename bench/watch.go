//go:build bench

package bench

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SwapWatch timestamps every switch of root/latest on a set of hosts: an
// inotify watch (IN_MOVED_TO | IN_CREATE) on each root folder, one inotify
// instance and one goroutine per host, each goroutine locked to its own OS
// thread, blocked in read(2) and raised to SCHED_FIFO when allowed, so it
// wakes within microseconds of the rename. All hosts share this machine's
// clock, so differences between hosts are exact up to that wake-up latency.
//
// The kernel allows 128 inotify instances per user by default
// (fs.inotify.max_user_instances), so beyond maxInstances hosts several roots
// share an instance and its thread: events for those hosts that arrive while
// the thread is busy with one are timestamped a few µs late.
type SwapWatch struct {
	roots    []string
	fds      []int
	wds      [][]int       // per instance, its watches
	hosts    []map[int]int // per instance, watch descriptor -> host index
	mu       sync.Mutex    // guards realtime, rtErr
	events   [][]time.Time // per host, every IN_MOVED_TO/IN_CREATE of "latest" (written by its instance's goroutine only)
	wg       sync.WaitGroup
	realtime bool // every watcher thread got SCHED_FIFO
	rtErr    error
}

const watchMask = unix.IN_MOVED_TO | unix.IN_CREATE

// rtPriority is below the kernel's threaded IRQ handlers (50) and above everything normal.
const rtPriority = 40

// maxInstances leaves most of the default 128 inotify instances to others.
const maxInstances = 64

// WatchSwaps starts watching each root folder, which must exist.
func WatchSwaps(roots []string) (*SwapWatch, error) {
	w := &SwapWatch{roots: roots, events: make([][]time.Time, len(roots)), realtime: true}
	per := (len(roots) + maxInstances - 1) / maxInstances
	for i, r := range roots {
		if i%per == 0 {
			fd, err := unix.InotifyInit1(unix.IN_CLOEXEC) // blocking: read(2) sleeps in the kernel
			if err != nil {
				w.Stop()
				return nil, fmt.Errorf("inotify_init1: %w", err)
			}
			w.fds = append(w.fds, fd)
			w.wds = append(w.wds, nil)
			w.hosts = append(w.hosts, map[int]int{})
		}
		k := len(w.fds) - 1
		wd, err := unix.InotifyAddWatch(w.fds[k], r, watchMask)
		if err != nil {
			w.Stop()
			return nil, fmt.Errorf("inotify on %s: %w", r, err)
		}
		w.wds[k] = append(w.wds[k], wd)
		w.hosts[k][wd] = i
	}
	ready := make(chan error, len(w.fds))
	for k := range w.fds {
		w.wg.Go(func() { w.watch(k, ready) })
	}
	for range w.fds {
		if err := <-ready; err != nil {
			w.mu.Lock()
			w.realtime = false
			w.rtErr = err
			w.mu.Unlock()
		}
	}
	return w, nil
}

func (w *SwapWatch) watch(k int, ready chan<- error) {
	// Never unlocked: the thread (with its real-time policy) dies with the goroutine.
	runtime.LockOSThread()
	ready <- unix.SchedSetAttr(0, &unix.SchedAttr{Policy: unix.SCHED_FIFO, Priority: rtPriority}, 0)
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	live := len(w.wds[k])
	for live > 0 {
		n, err := unix.Read(w.fds[k], buf)
		now := time.Now()
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n <= 0 {
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameBytes := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			off += unix.SizeofInotifyEvent + int(ev.Len)
			if ev.Mask&unix.IN_IGNORED != 0 {
				live-- // a watch was removed: Stop
				continue
			}
			name := string(bytes.TrimRight(nameBytes, "\x00"))
			if name == "latest" && ev.Mask&watchMask != 0 {
				// No lock: a host belongs to one instance, so only this
				// goroutine writes its slice; Stop reads after wg.Wait.
				i := w.hosts[k][int(ev.Wd)]
				w.events[i] = append(w.events[i], now)
			}
		}
	}
}

// Stop ends every watcher and returns each host's swap times.
func (w *SwapWatch) Stop() [][]time.Time {
	for k, fd := range w.fds {
		for _, wd := range w.wds[k] {
			_, _ = unix.InotifyRmWatch(fd, uint32(wd))
		}
	}
	w.wg.Wait()
	for _, fd := range w.fds {
		unix.Close(fd)
	}
	w.fds = nil
	return w.events
}

// Realtime reports whether every watcher runs at real-time priority, and why not.
func (w *SwapWatch) Realtime() (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.realtime, w.rtErr
}

// Skew is the latest first swap minus the earliest first swap, over the hosts
// that swapped, and how many hosts never swapped.
func Skew(events [][]time.Time) (skew time.Duration, missing int, first []time.Time) {
	var lo, hi time.Time
	for _, ev := range events {
		if len(ev) == 0 {
			missing++
			first = append(first, time.Time{})
			continue
		}
		t := ev[0]
		first = append(first, t)
		if lo.IsZero() || t.Before(lo) {
			lo = t
		}
		if hi.IsZero() || t.After(hi) {
			hi = t
		}
	}
	return hi.Sub(lo), missing, first
}

package report

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// The live view is a frame of a few lines under everything printed so far,
// redrawn in place ten times a second: a line for the fleet, one for each of
// the slowest hosts still working, and a count of the others. It is drawn
// here rather than with a progress-bar library (mpb was considered): the
// frame is recomputed from the fleet's state at each redraw (which hosts are
// the slowest changes all the time), whereas such libraries keep one bar per
// task with a life of its own; and a frame that is a pure function of the
// state, the clock and the width is golden-tested with a fixed clock. The
// terminal work is three escape sequences: cursor up, erase below, and the
// cursor hidden meanwhile.
const (
	hideCursor = "\x1b[?25l"
	showCursor = "\x1b[?25h"
)

var spinner = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

// redraw replaces the frame on screen: the lines printed since go above it.
// Called with r.mu held.
func (r *Reporter) redraw() {
	var b strings.Builder
	if r.drawn > 0 {
		fmt.Fprintf(&b, "\r\x1b[%dA\x1b[J", r.drawn)
	} else if !r.finished {
		b.WriteString(hideCursor)
	}
	for _, l := range r.pending {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	r.pending = r.pending[:0]
	r.drawn = 0
	if !r.finished {
		lines := r.frame(r.o.Now(), r.o.Width())
		for _, l := range lines {
			b.WriteString(l)
			b.WriteByte('\n')
		}
		r.drawn = len(lines)
		r.spin++
	}
	io.WriteString(r.o.Human, b.String())
}

// Frame is the live view as it would be drawn now, for tests.
func (r *Reporter) Frame(width int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.frame(r.o.Now(), width)
}

// frame is the live view at now, each line cut to fit width columns.
func (r *Reporter) frame(now time.Time, width int) []string {
	lines := []string{fmt.Sprintf("%s %s  %s", spinner[r.spin%len(spinner)], clockTime(now.Sub(r.start)), r.progressLine(now))}
	working := r.working(now)
	shown := working
	if len(shown) > r.o.Slowest {
		shown = shown[:r.o.Slowest]
	}
	nameWidth := 0
	for _, w := range shown {
		nameWidth = max(nameWidth, min(utf8.RuneCountInString(w.h.name), 24))
	}
	for _, w := range shown {
		line := fmt.Sprintf("  %-*s  %s", nameWidth, w.h.name, w.doing)
		if w.bytes != "" {
			line += "  " + w.bytes
		}
		lines = append(lines, line+"  "+Seconds(now.Sub(w.since)))
	}
	if rest := len(working) - len(shown); rest > 0 {
		doing := "working"
		switch {
		case r.phase != "":
			doing = r.phase
		case r.running(StageConnecting) != nil:
			doing = "connecting"
		}
		lines = append(lines, fmt.Sprintf("  + %s %s", count(rest, "more host", "more hosts"), doing))
	}
	for i, l := range lines {
		lines[i] = fit(l, width-1)
	}
	return lines
}

// busy is a host at work, as the live view shows it.
type busy struct {
	h     *host
	doing string
	bytes string
	since time.Time
	done  float64 // share of its payload sent, for the order
}

// working lists the hosts at work, the slowest first: longest at it, then
// least of their payload sent.
func (r *Reporter) working(now time.Time) []busy {
	var out []busy
	connecting := r.running(StageConnecting)
	for _, h := range r.hosts {
		switch {
		case h.phase != "":
			b := busy{h: h, doing: h.phase, since: h.since}
			if h.step != "" {
				// The release is the same for all: "uploading build".
				b.doing = strings.Replace(h.step, " "+r.release, "", 1)
			}
			if n := h.sent.Load(); h.total > 0 && strings.HasPrefix(h.step, "uploading") {
				b.bytes = fmt.Sprintf("%s of %s", Bytes(n), Bytes(h.total))
				if n >= h.total {
					b.bytes = fmt.Sprintf("all %s sent, the host unpacks and checks", Bytes(h.total))
				}
				b.done = float64(n) / float64(h.total)
			}
			out = append(out, b)
		case connecting != nil && !h.connected:
			out = append(out, busy{h: h, doing: "connecting", since: connecting.at})
		}
	}
	slices.SortStableFunc(out, func(a, b busy) int {
		if c := a.since.Compare(b.since); c != 0 {
			return c
		}
		switch {
		case a.done < b.done:
			return -1
		case a.done > b.done:
			return 1
		}
		return naturalCompare(a.h.name, b.h.name)
	})
	return out
}

// running is the running stage of that name, or nil.
func (r *Reporter) running(name string) *stage {
	for _, s := range r.stages {
		if s.name == name && s.running {
			return s
		}
	}
	return nil
}

// progressLine is the fleet's progress in one line: what runs, hosts done,
// bytes sent of the total and at what rate, time since the start.
func (r *Reporter) progressLine(now time.Time) string {
	var parts []string
	if r.phase != "" {
		done := 0
		for _, h := range r.hosts {
			if _, ok := h.took(r.phase); ok && h.phase == "" {
				done++
			}
		}
		parts = append(parts, fmt.Sprintf("%s  %d/%d hosts", r.phase, done, len(r.hosts)))
	}
	for _, s := range r.stages {
		if !s.running {
			continue
		}
		p := s.name
		if s.name == StageConnecting {
			n := 0
			for _, h := range r.hosts {
				if h.connected {
					n++
				}
			}
			p = fmt.Sprintf("connecting  %d/%d hosts", n, len(r.hosts))
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		if r.ran || len(r.stages) > 0 {
			parts = append(parts, "working")
		} else {
			parts = append(parts, "starting")
		}
	}
	line := strings.Join(parts, " · ")
	var sent, total int64
	for _, h := range r.hosts {
		sent += h.sent.Load()
		total += h.total
	}
	if total > 0 {
		line += fmt.Sprintf("  %s of %s", Bytes(min(sent, total)), Bytes(total))
		if rate := r.rate(now, sent); rate > 0 {
			line += fmt.Sprintf("  %s/s", Bytes(int64(rate)))
		}
	}
	return line
}

// clockTime is the time since the start as a clock shows it: "01:05".
func clockTime(d time.Duration) string {
	d = d.Truncate(time.Second)
	return fmt.Sprintf("%02d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}

// rate is the bytes sent per second over the last few seconds.
func (r *Reporter) rate(now time.Time, sent int64) float64 {
	if n := len(r.samples); n == 0 || now.Sub(r.samples[n-1].at) >= 100*time.Millisecond {
		r.samples = append(r.samples, sample{now, sent})
	}
	for len(r.samples) > 1 && now.Sub(r.samples[0].at) > 3*time.Second {
		r.samples = r.samples[1:]
	}
	first := r.samples[0]
	dt := now.Sub(first.at)
	if dt < 500*time.Millisecond {
		return 0
	}
	return float64(sent-first.sent) / dt.Seconds()
}

// fit cuts a line to at most width columns (one per rune: host names and
// step names are sanitized, and wide characters are rare in them).
func fit(s string, width int) string {
	if width < 1 || utf8.RuneCountInString(s) <= width {
		return s
	}
	runes := []rune(s)
	if width == 1 {
		return string(runes[:1])
	}
	return string(runes[:width-1]) + "…"
}

package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/fleetdeploy/fleetdeploy/plan"
	"github.com/fleetdeploy/fleetdeploy/report"
	"golang.org/x/term"
)

// printer is what commands print through: once the flags are read, each
// line goes to the run's reporter (above a live view, or as a message event
// of --json), and before that to standard output as it is. Lines from many
// goroutines never interleave.
type printer struct {
	mu      sync.Mutex
	w       io.Writer
	rep     *report.Reporter
	partial []byte // a line not ended yet (a build command's output)
}

func newPrinter(w io.Writer) *printer { return &printer{w: w} }

func (p *printer) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rep == nil {
		return p.w.Write(b)
	}
	p.partial = append(p.partial, b...)
	if i := bytes.LastIndexByte(p.partial, '\n'); i >= 0 {
		p.rep.Message(string(p.partial[:i]))
		p.partial = append(p.partial[:0], p.partial[i+1:]...)
	}
	return len(b), nil
}

// Printf writes one formatted line (or more) at once.
func (p *printer) Printf(format string, a ...any) {
	fmt.Fprintf(p, format, a...)
}

// to sends what is printed from now on to rep.
func (p *printer) to(rep *report.Reporter) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rep = rep
}

// flush hands on a last line without its newline.
func (p *printer) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rep != nil && len(p.partial) > 0 {
		p.rep.Message(string(p.partial))
		p.partial = nil
	}
}

// newReporter makes the run's reporter from the flags: people's view on
// standard output (live when it is a terminal); with --json, the events on
// standard output, and people's view on standard error only when that is a
// terminal (live) and the events go elsewhere, so that a CI log is not the
// stream twice.
func (c *common) newReporter() *report.Reporter {
	o := report.Options{Level: report.Normal, Now: c.now, Version: buildVersion().short()}
	switch {
	case c.quiet:
		o.Level = report.Quiet
	case c.verbose:
		o.Level = report.Verbose
	}
	human := c.stdout
	if c.json {
		o.JSON = c.stdout
		human = nil
		// Not when the events go to the same terminal: a redrawn view
		// would erase them.
		if c.terminal(c.stderr) && !c.terminal(c.stdout) {
			human = c.stderr
		}
	}
	if human != nil {
		o.Human = human
		o.Live = c.terminal(human)
		o.Width = func() int { return c.width(human) }
	}
	return report.New(o)
}

// render hands a scheduler event to the reporter (and to a test's observer).
func (c *common) render(e plan.Event) {
	if c.observe != nil {
		c.observe(e)
	}
	c.rep.Event(e)
}

// isTerminal says whether w is a terminal that takes the live view: not
// with TERM=dumb (an editor's shell, some CI consoles).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb"
}

// terminalWidth is the width of the terminal w, 80 when unknown.
func terminalWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
			return cols
		}
	}
	return 80
}

func since(t time.Time, now func() time.Time) string {
	return report.Seconds(now().Sub(t))
}

// version is what `fleetdeploy version` says: the module's version, the
// commit it was built from, and the Go that built it (from the build info
// that the go command embeds).
type version struct {
	module, commit, date string
	modified             bool
	goVersion            string
}

func buildVersion() version {
	v := version{module: "(unknown)", goVersion: runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if info.Main.Version != "" {
		v.module = info.Main.Version
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v.commit = s.Value
		case "vcs.time":
			v.date = s.Value
		case "vcs.modified":
			v.modified = s.Value == "true"
		}
	}
	return v
}

// short is the version in a few words, for the JSON start event.
func (v version) short() string {
	s := v.module
	if v.commit != "" {
		s += " " + v.commit[:min(12, len(v.commit))]
		if v.modified {
			s += "+modified"
		}
	}
	return s
}

func (v version) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "fleetdeploy %s\n", v.module)
	switch {
	case v.commit == "":
		fmt.Fprintf(&b, "commit  unknown (not built from a git checkout)\n")
	default:
		fmt.Fprintf(&b, "commit  %s", v.commit)
		var notes []string
		if v.date != "" {
			notes = append(notes, v.date)
		}
		if v.modified {
			notes = append(notes, "with local changes")
		}
		if len(notes) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(notes, ", "))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "go      %s %s/%s\n", v.goVersion, runtime.GOOS, runtime.GOARCH)
	return b.String()
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/fleetdeploy/fleetdeploy/examples"
	"github.com/fleetdeploy/fleetdeploy/sandbox"
)

// demoStage is one stage of the tour: a fleetdeploy command run exactly as
// the CLI runs it, or local work such as showing a host's files.
type demoStage struct {
	title   string                // a gerund: "deploying v2 to 3 hosts"
	prepare func(io.Writer) error // local work before the command, if any
	args    []string              // the fleetdeploy command; the inventory is added
	serves  string                // the version every host serves afterwards, checked
	show    func(io.Writer) error // a local stage instead of a command
	skew    string                // label of the switch in the skew summary, if it switches
}

// demo is `sandbox --demo`: a sandbox in a temporary folder, then deploy v1,
// deploy v2, status, rollback and one host's files, each through runWith like
// a command typed at a shell, and a summary of every switch's cutover skew.
// The folder and the hosts are gone when it returns, whatever happened.
func demo(ctx context.Context, c *common, o sandboxOptions) (err error) {
	start := c.now()
	tmp, err := os.MkdirTemp("", "fleetdeploy-demo-")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer func() {
		if rmErr := os.RemoveAll(tmp); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("demo: removing %s: %w", tmp, rmErr))
		}
	}()
	sb, err := sandbox.Open(tmp, o.count)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, sb.Close()) }()

	n := len(sb.Fleet.Hosts)
	c.out.Printf("fleetdeploy sandbox --demo: %d SSH hosts on 127.0.0.1, in %s (removed at the end)\n", n, sb.Dir)
	stages := []demoStage{
		{title: fmt.Sprintf("deploying v1 to %d hosts", n), args: []string{"up", sandbox.Env}, serves: "v1", skew: "up v1"},
		{
			title: fmt.Sprintf("deploying v2 to %d hosts", n),
			prepare: func(w io.Writer) error {
				fmt.Fprintf(w, "rewriting %s as v2\n", sb.Source)
				return examples.WriteApp(sb.Source, "v2")
			},
			args: []string{"up", sandbox.Env}, serves: "v2", skew: "up v2",
		},
		{title: "showing what every host runs", args: []string{"status", sandbox.Env}},
		{title: "rolling back to v1", args: []string{"rollback", sandbox.Env}, serves: "v1", skew: "rollback"},
		{
			title: fmt.Sprintf("listing host1's files (%s, root %s)", sb.Fleet.Hosts[0].Addr(), sb.Fleet.Roots[0]),
			show: func(w io.Writer) error {
				return writeTree(w, sb.Fleet.Roots[0], "host1/www", hostTreeNote(sb.Fleet.Roots[0]))
			},
		},
	}

	var skews []string
	for i, st := range stages {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("demo stopped before %s: %w", st.title, err)
		}
		c.out.Printf("\n== %d/%d %s\n", i+1, len(stages), st.title)
		if st.prepare != nil {
			if err := st.prepare(c.out); err != nil {
				return fmt.Errorf("demo: %s: %w", st.title, err)
			}
		}
		if st.show != nil {
			if err := st.show(c.out); err != nil {
				return fmt.Errorf("demo: %s: %w", st.title, err)
			}
			continue
		}
		out, err := runStage(ctx, c, sb.Inventory, st.args, o.passOn)
		if err != nil {
			return fmt.Errorf("demo stage %d/%d, %s: %w", i+1, len(stages), st.title, err)
		}
		if st.serves != "" {
			if err := checkServing(sb.Fleet.Roots, st.serves); err != nil {
				return fmt.Errorf("demo stage %d/%d, %s: %w", i+1, len(stages), st.title, err)
			}
			c.out.Printf("checked: every host's latest/VERSION is %s\n", st.serves)
		}
		if st.skew != "" {
			skews = append(skews, fmt.Sprintf("  %-10s %s", st.skew+":", skewLine(out)))
		}
	}

	c.out.Printf("\n== cutover skew of each switch\n")
	c.out.Printf("(once every host is ready, each renames its latest link in one step; the skew is how far apart the\n")
	c.out.Printf("hosts switched, from the midpoints of their round trips, and at most the last answer minus the first request)\n")
	for _, s := range skews {
		c.out.Printf("%s\n", s)
	}
	c.out.Printf("\nstopping the sandbox and removing %s\n", sb.Dir)
	c.out.Printf("demo done in %s; `fleetdeploy sandbox` starts a sandbox that stays, to try it yourself\n", since(start, c.now))
	return nil
}

// runStage runs one fleetdeploy command through runWith, as main would, and
// returns its standard output as well as showing it.
func runStage(ctx context.Context, c *common, inventory string, args, passOn []string) (string, error) {
	line := append([]string{"fleetdeploy"}, passOn...)
	line = append(line, args...)
	line = append(line, "-i", inventory)
	quoted := make([]string, len(line))
	for i, a := range line {
		quoted[i] = shellQuote(a)
	}
	c.out.Printf("$ %s\n", strings.Join(quoted, " "))
	var out bytes.Buffer
	code := runWith(ctx, line, io.MultiWriter(c.out, &out), c.stderr, c.now)
	if code != exitOK {
		if err := ctx.Err(); err != nil {
			return out.String(), fmt.Errorf("fleetdeploy %s: %w", args[0], err)
		}
		return out.String(), &codeError{code: code, msg: fmt.Sprintf("fleetdeploy %s exited %d (its error is above)", args[0], code)}
	}
	return out.String(), nil
}

// skewLine finds the skew that up and rollback report, "cutover skew 0.12 ms
// (...)", in a command's output.
func skewLine(out string) string {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "cutover skew "); ok {
			return rest
		}
	}
	return "(none reported)"
}

// checkServing reads every host's latest/VERSION straight from disk, which
// the sandbox makes possible, so the demo proves each switch happened.
func checkServing(roots []string, want string) error {
	var errs []error
	for i, root := range roots {
		data, err := os.ReadFile(filepath.Join(root, "latest", "VERSION"))
		switch got := strings.TrimSpace(string(data)); {
		case err != nil:
			errs = append(errs, fmt.Errorf("host%d: %w", i+1, err))
		case got != want:
			errs = append(errs, fmt.Errorf("host%d serves %s, want %s", i+1, got, want))
		}
	}
	return errors.Join(errs...)
}

// hostTreeNote annotates a deploy root's tree: each build and latest with the
// version they hold, and fleetdeploy's own folder folded into one line.
func hostTreeNote(root string) func(rel string, d fs.DirEntry) (string, bool) {
	version := func(rel string) string {
		data, err := os.ReadFile(filepath.Join(root, rel, "VERSION"))
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(data))
	}
	return func(rel string, d fs.DirEntry) (string, bool) {
		switch {
		case rel == ".fleetdeploy":
			return "fleetdeploy's own: lock, live history, build markers", true
		case rel == "latest":
			return "what is served: " + version(rel), false
		case filepath.Dir(rel) == "builds" && d.IsDir():
			return version(rel), false
		}
		return "", false
	}
}

// writeTree prints the files below root the way tree(1) does: names relative
// to root (shown as name), directories with a trailing slash, symlinks with
// their targets and never followed. note, when not nil, may add a remark to
// an entry and fold a directory into that one line.
func writeTree(w io.Writer, root, name string, note func(rel string, d fs.DirEntry) (remark string, fold bool)) error {
	fmt.Fprintf(w, "%s/\n", name)
	return writeTreeDir(w, root, "", "", note)
}

func writeTreeDir(w io.Writer, root, rel, indent string, note func(string, fs.DirEntry) (string, bool)) error {
	entries, err := os.ReadDir(filepath.Join(root, rel))
	if err != nil {
		return err
	}
	for i, e := range entries {
		branch, next := "├── ", "│   "
		if i == len(entries)-1 {
			branch, next = "└── ", "    "
		}
		p := filepath.Join(rel, e.Name())
		var remark string
		var fold bool
		if note != nil {
			remark, fold = note(p, e)
		}
		label := e.Name()
		switch {
		case e.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(filepath.Join(root, p))
			if err != nil {
				return err
			}
			label += " -> " + target
		case e.IsDir():
			label += "/"
		}
		if fold && e.IsDir() {
			inside, err := os.ReadDir(filepath.Join(root, p))
			if err != nil {
				return err
			}
			remark = fmt.Sprintf("%s (%d entries, not shown)", remark, len(inside))
		}
		if remark != "" {
			label += "  # " + strings.TrimSpace(remark)
		}
		fmt.Fprintf(w, "%s%s%s\n", indent, branch, label)
		if e.IsDir() && !fold {
			if err := writeTreeDir(w, root, p, indent+next, note); err != nil {
				return err
			}
		}
	}
	return nil
}

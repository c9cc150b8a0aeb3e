package completion

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetdeploy/fleetdeploy/internal/golden"
	"github.com/urfave/cli/v2"
)

// testApp has a flag or command of every kind the scripts treat apart:
// files, folders, values, switches, aliases, hidden ones, and usage text
// with the characters zsh's specs and the shells' quoting care about.
func testApp() *cli.App {
	return &cli.App{
		Name: "fleetdeploy",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "inventory", Aliases: []string{"i"}, Usage: "the inventory file"},
			&cli.StringFlag{Name: "ssh-config", Usage: "an ssh_config [default: ~/.ssh/config]"},
			&cli.StringFlag{Name: "cache-dir", Usage: "the cache folder: manifests, links"},
			&cli.IntFlag{Name: "parallel", Usage: "at most N hosts at once"},
			&cli.BoolFlag{Name: "json", Usage: "one event per line, for `jq`"},
			&cli.BoolFlag{Name: "secret", Hidden: true, Usage: "not shown"},
		},
		Commands: []*cli.Command{
			{Name: "up", Usage: "deploy: it's atomic", Flags: []cli.Flag{
				&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "print the plan"},
				&cli.StringFlag{Name: "from", Usage: "a git ref"},
				&cli.BoolFlag{Name: "internal", Hidden: true},
			}},
			{Name: "status", Usage: "show each host's build"},
			{Name: "init", Usage: "write an inventory", Flags: []cli.Flag{&cli.StringFlag{Name: "dir", Usage: "where"}}},
			{Name: "completion", Usage: "print the completion script", Flags: []cli.Flag{&cli.BoolFlag{Name: "environments", Hidden: true}}},
			{Name: "debug", Hidden: true},
		},
	}
}

var testSpec = Spec{
	EnvCommands: []string{"up", "status"},
	FileFlags:   []string{"inventory", "ssh-config"},
	DirFlags:    []string{"cache-dir", "dir"},
}

// Each shell's script is pinned (rewritten with -update), and parses in its
// shell where the shell is installed.
func TestWrite(t *testing.T) {
	for _, c := range []struct {
		shell string
		check []string // the shell's parse-only command, the script's path appended
	}{
		{"bash", []string{"bash", "-n"}},
		{"zsh", []string{"zsh", "-n"}},
		{"fish", []string{"fish", "--no-execute"}},
	} {
		t.Run(c.shell, func(t *testing.T) {
			var b bytes.Buffer
			if err := Write(&b, testApp(), c.shell, testSpec); err != nil {
				t.Fatal(err)
			}
			got := b.String()
			golden.Check(t, c.shell, []byte(got))
			// (completion's hidden --environments is in the scripts: they call it.)
			for _, hidden := range []string{"secret", "internal", "debug"} {
				if strings.Contains(got, hidden) {
					t.Errorf("hidden %q in the script", hidden)
				}
			}
			if _, err := exec.LookPath(c.check[0]); err != nil {
				t.Skipf("%s not installed: its script is not parsed", c.check[0])
			}
			path := filepath.Join(t.TempDir(), "fleetdeploy."+c.shell)
			if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.CommandContext(t.Context(), c.check[0], append(c.check[1:], path)...)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("script does not parse: %v\n%s", err, out)
			}
		})
	}
}

// Another shell is an error and nothing is written; so is a failed write.
func TestWriteFails(t *testing.T) {
	var b bytes.Buffer
	if err := Write(&b, testApp(), "tcsh", testSpec); err == nil || b.Len() != 0 {
		t.Errorf("tcsh: %v, %d bytes written", err, b.Len())
	}
	broken := errors.New("broken pipe")
	w := &failingWriter{after: 100, err: broken}
	if err := Write(w, testApp(), "zsh", testSpec); !errors.Is(err, broken) {
		t.Errorf("a failed write: %v, want %v", err, broken)
	}
	if w.writes != 1 {
		t.Errorf("%d writes after the failure, want none", w.writes-1)
	}
}

// failingWriter fails its first write of more than after bytes in all.
type failingWriter struct {
	after, n, writes int
	err              error
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.n+len(p) > w.after {
		w.writes++
		return 0, w.err
	}
	w.n += len(p)
	return len(p), nil
}

package steps

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

// The exit statuses each host script lists at its top (EXIT_NAME=N) are the
// ones the Go code reads: a number changed on one side only fails here.
func TestExitCodesAgree(t *testing.T) {
	want := map[string]int{
		"EXIT_FAILED":         exitFailed,
		"EXIT_SHARED_MISSING": exitSharedMissing,
		"EXIT_EXISTS":         exitExists,
		"EXIT_LOCKED":         exitLocked,
		"EXIT_LOCK_LOST":      exitLockLost,
		"EXIT_CORRUPT":        exitCorrupt,
		"EXIT_DIRTY":          exitDirty,
	}
	def := regexp.MustCompile(`(?m)^(EXIT_[A-Z_]+)=([0-9]+)`)
	use := regexp.MustCompile(`\bexit [0-9]+`)
	files, _ := filepath.Glob("scripts/*.sh")
	seen := map[string]bool{}
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range def.FindAllStringSubmatch(string(body), -1) {
			n, _ := strconv.Atoi(m[2])
			w, ok := want[m[1]]
			switch {
			case !ok:
				t.Errorf("%s: %s=%d has no Go constant", f, m[1], n)
			case w != n:
				t.Errorf("%s: %s=%d, but Go reads %d", f, m[1], n, w)
			}
			seen[m[1]] = true
		}
		// Statuses other than 0 and 1 go through a named constant.
		for _, u := range use.FindAllString(string(body), -1) {
			if u != "exit 0" && u != "exit 1" {
				t.Errorf("%s: %q: name the status (EXIT_...)", f, u)
			}
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("%s is defined in Go only", name)
		}
	}
}

// Every script, as sent (with lib.sh in front where it needs it), is valid
// POSIX shell to dash, the /bin/sh of Debian and Ubuntu hosts.
func TestScriptsParse(t *testing.T) {
	dash, err := exec.LookPath("dash")
	if err != nil {
		t.Skip("no dash here")
	}
	for _, s := range []*struct{ name, body string }{
		{"prepare", prepareScript.Body}, {"unprepare", unprepareScript.Body}, {"lock", lockScript.Body},
		{"cleanup", finishScript.Body}, {"inspect", inspectScript.Body}, {"verify", verifyScript.Body},
		{"sweep", sweepScript.Body}, {"probe", probeScript.Body},
	} {
		if out, err := exec.Command(dash, "-n", "-c", s.body).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", s.name, err, out)
		}
	}
}

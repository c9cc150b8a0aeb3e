//go:build bench

package bench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// realWorldChanged are the files the redeploy variant of the real-world app
// changes: a PHP file and a large JSON message file.
var realWorldChanged = []string{"includes/Defines.php", "languages/i18n/en.json"}

// RealWorldApp puts the two variants of a real-world app into work/app-v1
// and work/app-v2: MediaWiki as Debian 12 ships it, fetched and cached by
// repo/.ci/realworld-app (apt-get download + dpkg -x, never installed),
// with its symlinks into /var/lib/mediawiki kept (outside_symlinks: keep:
// the hosts provide them, as a Debian server does). v1 is a copy of the
// cached tree with its packaged mtimes; v2 is v1 (hard-linked) with the 2
// files of realWorldChanged rewritten, one day newer, so that rsync's quick
// check sees exactly those.
func RealWorldApp(repo, work string) (v1, v2 *AppInfo, err error) {
	script := filepath.Join(repo, ".ci", "realworld-app")
	out, err := exec.Command("bash", script).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			err = fmt.Errorf("%v: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return nil, nil, fmt.Errorf("%s: %w", script, err)
	}
	cached := strings.TrimSpace(string(out))
	d1, d2 := filepath.Join(work, "app-v1"), filepath.Join(work, "app-v2")
	if out, err := exec.Command("cp", "-a", cached, d1).CombinedOutput(); err != nil {
		return nil, nil, fmt.Errorf("copying %s: %v: %s", cached, err, out)
	}
	if out, err := exec.Command("cp", "-al", d1, d2).CombinedOutput(); err != nil {
		return nil, nil, fmt.Errorf("copying %s: %v: %s", d1, err, out)
	}
	for _, rel := range realWorldChanged {
		p := filepath.Join(d2, rel)
		old, err := os.ReadFile(p)
		if err != nil {
			return nil, nil, err
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil, nil, err
		}
		var content []byte
		if strings.HasSuffix(rel, ".json") {
			content = bytes.Replace(old, []byte(`"mainpage": "Main Page"`), []byte(`"mainpage": "Main Page (redeploy)"`), 1)
		} else {
			content = append(old, "\n// redeploy: changed for the benchmark's second build\n"...)
		}
		if bytes.Equal(content, old) {
			return nil, nil, fmt.Errorf("%s: could not change it", rel)
		}
		// A new file renamed over the hard link: v1 keeps its own.
		tmp := p + ".new"
		if err := os.WriteFile(tmp, content, fi.Mode().Perm()); err != nil {
			return nil, nil, err
		}
		mt := fi.ModTime().Add(24 * time.Hour)
		if err := os.Chtimes(tmp, mt, mt); err != nil {
			return nil, nil, err
		}
		if err := os.Rename(tmp, p); err != nil {
			return nil, nil, err
		}
		if err := os.Chtimes(filepath.Dir(p), fi.ModTime(), fi.ModTime()); err != nil {
			return nil, nil, err
		}
	}
	name := "MediaWiki as Debian 12 ships it (" + filepath.Base(filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(cached))))) +
		", /usr/share/mediawiki of packages mediawiki and mediawiki-classes, apt-get download + dpkg -x)"
	for i, d := range []string{d1, d2} {
		info, err := DescribeApp(d)
		if err != nil {
			return nil, nil, err
		}
		info.Name, info.Changed, info.Probe, info.Outside = name, realWorldChanged, realWorldChanged[0], "keep"
		if i == 0 {
			v1 = info
		} else {
			v2 = info
		}
	}
	return v1, v2, nil
}

// Package scaffold writes a first inventory for a project, as `fleetdeploy
// init` does: what can be told from the project's own files is filled in,
// and everything else is a commented placeholder to edit before the first
// deploy.
package scaffold

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// FileName is the inventory `fleetdeploy init` writes by default.
const FileName = "hosts.yml"

// project is what the files of a project folder tell.
type project struct {
	name    string
	build   []string // commands to run
	hints   []string // commented suggestions, one line each
	exclude []string
}

// Inventory is a commented hosts.yml for the project in dir, with the build
// commands its files imply (composer.json, package.json, go.mod), .git
// excluded and one environment, production, whose hosts are placeholders:
// it does not load until at least one host is written in.
func Inventory(dir string) ([]byte, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s is not a folder", dir)
	}
	// The inventory itself sits in the source folder: never deployed.
	p := &project{name: filepath.Base(abs), exclude: []string{".git", FileName}}
	for _, detect := range []func(string) error{p.composer, p.node, p.golang} {
		if err := detect(abs); err != nil {
			return nil, err
		}
	}
	return p.render(), nil
}

// Create writes data to path, which must not exist yet (O_EXCL: no check
// then write): init never overwrites a file.
func Create(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s already exists: not overwriting it", path)
	}
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

func exists(dir, name string) bool {
	_, err := os.Stat(filepath.Join(dir, name))
	return err == nil
}

func (p *project) composer(dir string) error {
	if exists(dir, "composer.json") {
		p.build = append(p.build, "composer install --no-dev --prefer-dist --optimize-autoloader")
	}
	return nil
}

// node picks the package manager by its lock file; the build script runs
// only if package.json has one.
func (p *project) node(dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var pkg struct {
		Scripts map[string]any `json:"scripts"`
	}
	if err := json.Unmarshal(data, &pkg); err != nil {
		return fmt.Errorf("package.json: %w", err)
	}
	install, run := "npm ci", "npm run build"
	switch {
	case exists(dir, "pnpm-lock.yaml"):
		install, run = "pnpm install --frozen-lockfile", "pnpm run build"
	case exists(dir, "yarn.lock"):
		install, run = "yarn install --frozen-lockfile", "yarn run build"
	case !exists(dir, "package-lock.json") && !exists(dir, "npm-shrinkwrap.json"):
		install = "npm install" // npm ci needs a lock file
		p.hints = append(p.hints, "no package-lock.json: npm ci (exact versions) needs one")
	}
	p.build = append(p.build, install)
	if _, ok := pkg.Scripts["build"]; ok {
		p.build = append(p.build, run)
	}
	p.exclude = append(p.exclude, "node_modules")
	return nil
}

var moduleLine = regexp.MustCompile(`(?m)^module\s+"?([^"\s]+)"?`)

// golang suggests a build command: which binary to ship is the user's call.
func (p *project) golang(dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	bin := p.name
	if m := moduleLine.FindSubmatch(data); m != nil {
		bin = string(m[1][bytes.LastIndexByte(m[1], '/')+1:])
	}
	p.hints = append(p.hints, "  - CGO_ENABLED=0 GOOS=linux go build -o bin/"+safeName(bin)+" .    # go.mod: build the program for the hosts")
	return nil
}

// safeName keeps a name usable in a path and a command: letters, digits, . _ -.
func safeName(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 128 && (r == '.' || r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return r
		}
		return '-'
	}, s)
	for strings.Contains(s, "--") {
		s = strings.ReplaceAll(s, "--", "-")
	}
	if s = strings.Trim(s, ".-"); s == "" {
		return "app"
	}
	return s
}

// quote is a YAML scalar for s, quoted only where YAML needs it.
func quote(s string) string {
	out, err := yaml.Marshal(s)
	if err != nil {
		return fmt.Sprintf("%q", s)
	}
	return strings.TrimSuffix(string(out), "\n")
}

func (p *project) render() []byte {
	var b strings.Builder
	w := func(lines ...string) {
		for _, l := range lines {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	w("# fleetdeploy inventory, written by `fleetdeploy init`: what to deploy, and where.",
		"# Write in at least one host below and check the root, then run",
		"# `fleetdeploy plan production` to see what `fleetdeploy up production` would do.",
		"# hosts.example.yml in fleetdeploy's repository shows every setting.",
		"",
		"# Name of the application, shown in messages and the summary.",
		"app: "+quote(p.name),
		"",
		"# Local folder that becomes the build, relative to this file. It is never",
		"# changed: the build commands run in a scratch copy of it.",
		"source: .",
		"")
	w("# Commands run locally, one after another, in that scratch copy before it is",
		"# packaged, so no host sees a half-built app.")
	if len(p.build) == 0 {
		w("# build:")
		if len(p.hints) == 0 {
			w("#   - make dist")
		}
	} else {
		w("build:")
		for _, c := range p.build {
			w("  - " + quote(c))
		}
	}
	for _, h := range p.hints {
		w("# " + h)
	}
	w("",
		"# Paths (relative to source) left out of the build.",
		"exclude:")
	for _, e := range p.exclude {
		line := "  - " + quote(e)
		if e == "node_modules" {
			line += "    # only needed to build; remove this line if the app needs it at run time"
		}
		w(line)
	}
	w("",
		"# Symlinks leading outside the build: refuse (the default), copy what they",
		"# lead to, or keep them as they are when every host provides their targets.",
		"# outside_symlinks: refuse",
		"",
		"# Folder on each host that holds builds/ (one folder per build), latest (the",
		"# symlink to the live build) and shared/. Must be absolute.",
		"root: "+quote("/var/www/"+safeName(p.name)),
		"",
		"# Builds kept on each host; older ones are removed.",
		"keep: 5",
		"",
		"# Data that outlives builds (uploads, sessions, .env), linked into each build.",
		"# shared:",
		"#   - storage/",
		"#   - .env",
		"",
		"# How to log in; by default your user name, port 22 and your ssh agent or",
		"# ~/.ssh/id_*. Host keys are always checked against ~/.ssh/known_hosts.",
		"# ssh:",
		"#   user: deploy",
		"",
		"environments:",
		"  production:",
		"    # One host per line: address, address:port or user@address:port.",
		"    hosts:",
		"      # - web1.example.com",
		"      # - web2.example.com")
	return []byte(b.String())
}

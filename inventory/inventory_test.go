package inventory

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// lines joins YAML lines, so a test's line numbers can be read off its index.
func lines(ls ...string) string { return strings.Join(ls, "\n") + "\n" }

// abs is the absolute form of a path relative to the test's working directory.
func abs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// fakeHome points ~ at a fresh folder for the test.
func fakeHome(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	return home
}

// resolve parses src as file and resolves env, failing the test on any problem.
func resolve(t *testing.T, src, file, env string) *Environment {
	t.Helper()
	inv, err := Parse(strings.NewReader(src), file)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	e, err := inv.Resolve(env)
	if err != nil {
		t.Fatalf("Resolve(%q): %v", env, err)
	}
	return e
}

// problems parses src as hosts.yml and, if that succeeds, resolves env; it
// returns every problem as text, and fails unless they come as Errors.
func problems(t *testing.T, src, env string) []string {
	t.Helper()
	inv, err := Parse(strings.NewReader(src), "hosts.yml")
	if err == nil {
		if inv == nil {
			t.Fatal("Parse returned neither an inventory nor an error")
		}
		_, err = inv.Resolve(env)
	}
	if err == nil {
		return nil
	}
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error is %T, not Errors: %v", err, err)
	}
	if len(errs) == 0 {
		t.Fatal("empty Errors returned as an error")
	}
	out := make([]string, len(errs))
	for i, p := range errs {
		out[i] = p.String()
	}
	return out
}

// checkEnv compares field by field, so a failure says which setting is wrong.
func checkEnv(t *testing.T, got, want *Environment) {
	t.Helper()
	gv, wv := reflect.ValueOf(*got), reflect.ValueOf(*want)
	for i := range gv.NumField() {
		name := gv.Type().Field(i).Name
		if name == "Hosts" || !gv.Type().Field(i).IsExported() {
			continue
		}
		if g, w := gv.Field(i).Interface(), wv.Field(i).Interface(); !reflect.DeepEqual(g, w) {
			t.Errorf("%s %s:\n got  %#v\n want %#v", want.Name, name, g, w)
		}
	}
	if len(got.Hosts) != len(want.Hosts) {
		t.Fatalf("%s: %d hosts, want %d: %+v", want.Name, len(got.Hosts), len(want.Hosts), got.Hosts)
	}
	for i := range want.Hosts {
		if !reflect.DeepEqual(got.Hosts[i], want.Hosts[i]) {
			t.Errorf("%s host %d:\n got  %+v\n want %+v", want.Name, i, got.Hosts[i], want.Hosts[i])
		}
	}
}

func TestResolveFull(t *testing.T) {
	home := fakeHome(t)
	const file = "testdata/full.yml"
	inv, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := inv.Environments(), []string{"production", "staging"}; !slices.Equal(got, want) {
		t.Errorf("Environments() = %q, want %q", got, want)
	}
	dir := abs(t, "testdata")
	before := []Hook{
		{Run: "php artisan config:cache", Timeout: 2 * time.Minute, Line: 14},
		{Run: "php artisan migrate --force", Once: true, Roles: []string{"web"}, Timeout: 10 * time.Minute, Line: 15},
	}
	ssh := Host{User: "deploy", Port: 2022, Root: "/var/www/shop",
		Identity: filepath.Join(home, ".ssh/id_ed25519"), KnownHosts: filepath.Join(dir, "known_hosts"),
		Jump: "deploy@bastion.example.com:2222", StrictHostKeyChecking: StrictAcceptNew, IdentitiesOnly: new(true),
		Roles: []string{"web"}}
	host := func(name, addr string, line int, edit func(*Host)) Host {
		h := ssh
		h.Name, h.Address, h.Line = name, addr, line
		if edit != nil {
			edit(&h)
		}
		return h
	}
	tests := []*Environment{{
		Name:    "production",
		File:    file,
		App:     "shop",
		Source:  filepath.Join(dir, "app"),
		Build:   []string{"composer install --no-dev", "npm run build"},
		Exclude: []string{".git", "tests", "node_modules"},
		Root:    "/var/www/shop",
		Keep:    4,
		Shared:  []SharedPath{{Path: "storage/sessions", Dir: true}, {Path: ".env"}, {Path: "public/uploads", Dir: true}},
		Hooks: Hooks{
			BeforeCutover: before,
			AfterCutover:  []Hook{{Run: "sudo systemctl reload php8.2-fpm", Timeout: 2 * time.Minute, Line: 16}},
			AfterRollback: []Hook{{Run: "restart workers", Roles: []string{"worker"}, Timeout: 2 * time.Minute, Line: 17}},
			OnSuccess:     []Hook{{Run: "notify ok", Timeout: 2 * time.Minute, Line: 18}},
			OnFailure:     []Hook{{Run: "notify failed", Timeout: 2 * time.Minute, Line: 19}},
		},
		Hosts: []Host{
			host("web1.example.com", "web1.example.com", 36, nil),
			host("web2.example.com:2222", "web2.example.com", 37, func(h *Host) { h.Port = 2222 }),
			host("ops@web3.example.com:2200", "web3.example.com", 38, func(h *Host) { h.User, h.Port = "ops", 2200 }),
			host("[2001:db8::5]:22", "2001:db8::5", 39, func(h *Host) { h.Port = 22 }),
			host("admin@192.0.2.7:22", "192.0.2.7", 40, func(h *Host) {
				h.Port, h.User, h.Root, h.Jump, h.Roles = 22, "admin", "/srv/shop", None, []string{"worker"}
				h.Identity, h.KnownHosts = filepath.Join(dir, "keys/k"), filepath.Join(home, "kh")
			}),
		},
		HealthCheck: &HealthCheck{Run: "curl -fsS http://localhost/health", Timeout: 30 * time.Second,
			Interval: DefaultHealthInterval, Roles: []string{"web"}, Line: 21},
		OutsideSymlinks: CopyOutside,
		LockLease:       90 * time.Second,
		SSHConfig:       filepath.Join(dir, "ssh_config"),
	}, {
		Name:    "staging",
		File:    file,
		App:     "shop-staging",
		Source:  "/opt/src/shop",
		Build:   []string{},
		Exclude: []string{"docs"},
		Root:    "/srv/staging",
		Keep:    3,
		Shared:  []SharedPath{{Path: "storage", Dir: true}},
		Hooks: Hooks{
			// before_cutover is inherited, and the hook without a timeout of its own takes staging's hook_timeout.
			BeforeCutover: []Hook{{Run: "php artisan config:cache", Timeout: 30 * time.Second, Line: 14}, before[1]},
			AfterCutover:  []Hook{{Run: "echo done", Once: true, Timeout: 30 * time.Second, Line: 55}},
			AfterRollback: []Hook{{Run: "restart workers", Roles: []string{"worker"}, Timeout: 30 * time.Second, Line: 17}},
			OnSuccess:     []Hook{{Run: "notify ok", Timeout: 30 * time.Second, Line: 18}},
			OnFailure:     []Hook{},
		},
		Hosts: []Host{host("staging.example.com", "staging.example.com", 65, func(h *Host) {
			h.Port, h.Identity, h.Root = 22, "", "/srv/staging"
			h.Jump, h.StrictHostKeyChecking, h.IdentitiesOnly = "b1,ops@[2001:db8::9]:22", StrictYes, new(false)
			h.Roles = []string{"web", "worker"}
		})},
		// Each key of health_check merges on its own: run and timeout are inherited.
		HealthCheck: &HealthCheck{Run: "curl -fsS http://localhost/health", Timeout: 30 * time.Second,
			Interval: 5 * time.Second, Roles: []string{"web", "worker"}, Line: 21},
		OutsideSymlinks: KeepOutside,
		LockLease:       10 * time.Second,
		SSHConfig:       None,
	}}
	for _, want := range tests {
		t.Run(want.Name, func(t *testing.T) {
			got, err := inv.Resolve(want.Name)
			if err != nil {
				t.Fatal(err)
			}
			checkEnv(t, got, want)
		})
	}
}

// Resolve hands out copies: a caller editing one environment cannot change another.
func TestResolveCopies(t *testing.T) {
	fakeHome(t)
	inv, err := Load("testdata/full.yml")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := inv.Resolve("production")
	a.Build[0] = "rm -rf /"
	a.Hooks.BeforeCutover[0].Run = "changed"
	b, _ := inv.Resolve("production")
	if b.Build[0] != "composer install --no-dev" || b.Hooks.BeforeCutover[0].Run != "php artisan config:cache" {
		t.Errorf("second Resolve sees the first caller's edits: %q, %q", b.Build[0], b.Hooks.BeforeCutover[0].Run)
	}
}

// What the inventory leaves out stays empty, for ssh_config to supply; FillDefaults gives the old defaults.
func TestDefaults(t *testing.T) {
	home := fakeHome(t)
	src := lines(
		"app: shop",
		"source: .",
		"root: /srv/shop",
		"hooks:",
		"  after_cutover: [reload]",
		"environments:",
		"  production:",
		"    hosts: [web1, {address: web2, user: ops, port: 2200, known_hosts: /kh}]",
	)
	got := resolve(t, src, "inv.yml", "production")
	want := &Environment{
		Name: "production", File: "inv.yml", App: "shop", Source: abs(t, "."), Root: "/srv/shop", Keep: DefaultKeep,
		OutsideSymlinks: RefuseOutside,
		Hooks:           Hooks{AfterCutover: []Hook{{Run: "reload", Timeout: DefaultHookTimeout, Line: 5}}},
		Hosts: []Host{
			{Name: "web1", Address: "web1", Root: "/srv/shop", Line: 8},
			{Name: "ops@web2:2200", Address: "web2", User: "ops", Port: 2200, Root: "/srv/shop", KnownHosts: "/kh", Line: 8},
		},
	}
	checkEnv(t, got, want)
	if k, a := got.Hosts[0].Key(), got.Hosts[0].Addr(); k != "web1" || a != "web1:22" {
		t.Errorf("Key() = %q, Addr() = %q; want web1, web1:22", k, a)
	}

	me, err := DefaultUser()
	if err != nil || me == "" {
		t.Fatalf("DefaultUser() = %q, %v", me, err)
	}
	if err := got.FillDefaults(); err != nil {
		t.Fatal(err)
	}
	want.Hosts[0].User, want.Hosts[0].Port, want.Hosts[0].KnownHosts = me, 22, filepath.Join(home, ".ssh", "known_hosts")
	checkEnv(t, got, want)
}

func TestLocalPaths(t *testing.T) {
	home := fakeHome(t)
	dir := abs(t, "some/dir")
	tests := []struct {
		in, want string
	}{
		{"app", filepath.Join(dir, "app")},
		{"./app/", filepath.Join(dir, "app")},
		{"../app", abs(t, "some/app")},
		{".", dir},
		{"~", home},
		{"~/", home},
		{"~/src/shop", filepath.Join(home, "src/shop")},
		{"/abs//path/./x/", "/abs/path/x"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			src := lines(
				"app: shop",
				"source: '"+tt.in+"'",
				"root: /srv",
				"ssh: {identity: '"+tt.in+"', known_hosts: '"+tt.in+"'}",
				"environments:",
				"  production:",
				"    hosts: [web1, {address: web2, identity: '"+tt.in+"', known_hosts: '"+tt.in+"'}]",
			)
			e := resolve(t, src, "some/dir/hosts.yml", "production")
			got := []string{e.Source}
			for _, h := range e.Hosts {
				got = append(got, h.Identity, h.KnownHosts)
			}
			for _, g := range got {
				if g != tt.want {
					t.Errorf("got %q, want %q (all: %q)", g, tt.want, got)
				}
			}
		})
	}
}

func TestHostForms(t *testing.T) {
	tests := []struct {
		in   string // one YAML list item
		want Host   // Line and the inherited fields are not compared
	}{
		{"web1.example.com", Host{Name: "web1.example.com", Address: "web1.example.com", User: "deploy"}},
		{"web2.example.com:2222", Host{Name: "web2.example.com:2222", Address: "web2.example.com", Port: 2222, User: "deploy"}},
		{"127.0.0.1:22002", Host{Name: "127.0.0.1:22002", Address: "127.0.0.1", Port: 22002, User: "deploy"}},
		{"ops@web3", Host{Name: "ops@web3", Address: "web3", User: "ops"}},
		{"ops@web3.example.com:2200", Host{Name: "ops@web3.example.com:2200", Address: "web3.example.com", Port: 2200, User: "ops"}},
		{`"[::1]:2222"`, Host{Name: "[::1]:2222", Address: "::1", Port: 2222, User: "deploy"}},
		{`"[::1]"`, Host{Name: "[::1]", Address: "::1", User: "deploy"}},
		{`"ops@[2001:db8::1]:22"`, Host{Name: "ops@[2001:db8::1]:22", Address: "2001:db8::1", Port: 22, User: "ops"}},
		{`"2001:db8::1"`, Host{Name: "2001:db8::1", Address: "2001:db8::1", User: "deploy"}},
		{"{address: 10.0.0.7}", Host{Name: "10.0.0.7", Address: "10.0.0.7", User: "deploy"}},
		{"{address: 10.0.0.7, port: 2200}", Host{Name: "10.0.0.7:2200", Address: "10.0.0.7", Port: 2200, User: "deploy"}},
		{"{address: 10.0.0.7, user: admin}", Host{Name: "admin@10.0.0.7", Address: "10.0.0.7", User: "admin"}},
		{"{address: 10.0.0.7, port: 22, user: admin}", Host{Name: "admin@10.0.0.7:22", Address: "10.0.0.7", Port: 22, User: "admin"}},
		{`{address: "::1", port: 2222}`, Host{Name: "[::1]:2222", Address: "::1", Port: 2222, User: "deploy"}},
		{`{address: "[::1]"}`, Host{Name: "::1", Address: "::1", User: "deploy"}},
		{"{address: web1, jump: bastion}", Host{Name: "web1", Address: "web1", User: "deploy", Jump: "bastion"}},
		{"{address: web1, jump: none}", Host{Name: "web1", Address: "web1", User: "deploy", Jump: None}},
		{"{address: web1, strict_host_key_checking: Accept-New, identities_only: false}",
			Host{Name: "web1", Address: "web1", User: "deploy", StrictHostKeyChecking: StrictAcceptNew, IdentitiesOnly: new(false)}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			src := lines(
				"app: shop",
				"source: .",
				"root: /srv",
				"ssh: {user: deploy, known_hosts: /kh}",
				"environments:",
				"  production:",
				"    hosts:",
				"      - "+tt.in,
			)
			e := resolve(t, src, "hosts.yml", "production")
			h := e.Hosts[0]
			if h.Line != 8 {
				t.Errorf("Line = %d, want 8", h.Line)
			}
			h.Line, h.Root, h.KnownHosts = 0, "", ""
			if !reflect.DeepEqual(h, tt.want) {
				t.Errorf("got  %+v\nwant %+v", h, tt.want)
			}
		})
	}
}

// Hosts that differ in port or user are different hosts; nothing else is reported.
func TestHostsNotDuplicates(t *testing.T) {
	src := lines(
		"app: shop",
		"source: .",
		"root: /srv",
		"environments:",
		"  production:",
		"    hosts:",
		"      - web1",
		"      - web1:2222",
		"      - ops@web1",
		"      - {address: web1, port: 2200}",
		"      - 127.0.0.1:22001",
		"      - 127.0.0.1:22002",
	)
	if e := resolve(t, src, "hosts.yml", "production"); len(e.Hosts) != 6 {
		t.Errorf("%d hosts, want 6", len(e.Hosts))
	}
}

func TestErrors(t *testing.T) {
	fakeHome(t)
	// valid is a correct inventory; a case that starts with it has its own problem from line 7 on.
	valid := []string{
		"app: shop",
		"source: .",
		"root: /srv/shop",
		"environments:",
		"  production:",
		"    hosts: [web1]",
	}
	with := func(extra ...string) string { return lines(append(slices.Clone(valid), extra...)...) }
	tests := []struct {
		name string
		src  string
		env  string // resolved when Parse succeeds; "production" if empty
		want []string
	}{{
		name: "keep not a number",
		src:  lines("keep: five", "app: shop", "source: .", "root: /srv", "environments: {p: {hosts: [w]}}"),
		want: []string{`hosts.yml:1: keep: expected a whole number, got "five"`},
	}, {
		name: "keep below one",
		src:  with("keep: 0"),
		want: []string{"hosts.yml:7: keep: must be at least 1, got 0"},
	}, {
		name: "keep a list",
		src:  with("keep: [5]"),
		want: []string{"hosts.yml:7: keep: expected a whole number, got a list"},
	}, {
		name: "unknown key with a hint",
		src:  with("kep: 5"),
		want: []string{`hosts.yml:7: unknown key "kep" (did you mean keep?)`},
	}, {
		name: "unknown key without a hint",
		src:  with("colour: blue"),
		want: []string{`hosts.yml:7: unknown key "colour"`},
	}, {
		name: "unknown keys at every level",
		src: lines(
			"app: shop",
			"source: .",
			"root: /srv",
			"ssh: {usr: deploy}",
			"hooks:",
			"  before_cutover: [{run: x, onse: true}]",
			"  befor_cutover: [x]",
			"environments:",
			"  production:",
			"    host: [web1]",
			"    hosts: [{address: web1, prot: 22}]",
			"  staging:",
			"    hooks: {after: [x]}",
			"    hosts: [web2]",
		),
		want: []string{
			`hosts.yml:4: ssh: unknown key "usr" (did you mean user?)`,
			`hosts.yml:6: hooks.before_cutover: unknown key "onse" (did you mean once?)`,
			`hosts.yml:7: hooks: unknown key "befor_cutover" (did you mean before_cutover?)`,
			`hosts.yml:10: unknown key "host" (did you mean hosts?)`,
			`hosts.yml:11: hosts: unknown key "prot" (did you mean port?)`,
			`hosts.yml:13: hooks: unknown key "after"`,
		},
	}, {
		name: "hosts at the top level",
		src:  with("hosts: [web1]"),
		want: []string{`hosts.yml:7: unknown key "hosts" (hosts belong to an environment: environments.<name>.hosts)`},
	}, {
		name: "duplicate key",
		src:  with("app: again"),
		want: []string{`hosts.yml:7: duplicate key "app" (first on line 1)`},
	}, {
		name: "duplicate environment",
		src:  with("  production:", "    hosts: [web2]"),
		want: []string{`hosts.yml:7: environments: duplicate key "production" (first on line 5)`},
	}, {
		name: "merge keys",
		src:  with("  staging:", "    <<: {keep: 3}", "    hosts: [w]"),
		want: []string{"hosts.yml:8: environments.staging: merge keys (<<) are not supported; environments already inherit the top-level settings"},
	}, {
		name: "wrong types",
		src: with(
			"build: make",
			"exclude: {a: b}",
			"shared: .env",
			"hooks: [x]",
			"ssh: deploy",
			"app: [a]",
		),
		want: []string{
			`hosts.yml:7: build: expected a list, got "make"`,
			`hosts.yml:8: exclude: expected a list, got a map`,
			`hosts.yml:9: shared: expected a list, got ".env"`,
			`hosts.yml:10: hooks: expected a map, got a list`,
			`hosts.yml:11: ssh: expected a map, got "deploy"`,
			`hosts.yml:12: duplicate key "app" (first on line 1)`,
		},
	}, {
		name: "empty values",
		src:  lines("app: ''", "source:", "root: /srv", "build: ['', ok]", "environments: {p: {hosts: [w]}}"),
		want: []string{
			"hosts.yml:1: app: must not be empty",
			"hosts.yml:2: source: expected a string, got nothing",
			"hosts.yml:4: build: must not be empty",
		},
	}, {
		name: "missing environments",
		src:  lines("# a comment", "app: shop", "source: .", "root: /srv"),
		want: []string{"hosts.yml:2: environments is missing: at least one environment is required"},
	}, {
		name: "no environments",
		src:  lines("app: shop", "source: .", "root: /srv", "environments: {}"),
		want: []string{"hosts.yml:4: environments: at least one environment is required"},
	}, {
		name: "environment without hosts",
		src: with(
			"  staging:",
			"    keep: 3",
			"  dev:",
			"    hosts: []",
			"  test:",
		),
		want: []string{
			`hosts.yml:7: environment "staging" has no hosts`,
			"hosts.yml:10: hosts: at least one host is required",
			`hosts.yml:11: environment "test" has no hosts`,
		},
	}, {
		name: "environment not a map",
		src:  with("  staging: [web1]"),
		want: []string{"hosts.yml:7: environments.staging: expected a map, got a list"},
	}, {
		name: "not a map",
		src:  lines("- app: shop"),
		want: []string{"hosts.yml:1: expected a map of settings (app, source, root, environments, ...), got a list"},
	}, {
		name: "empty file",
		src:  "# nothing yet\n",
		want: []string{"hosts.yml:1: inventory is empty: expected app, source, root and environments"},
	}, {
		name: "yaml syntax",
		src:  lines("app: shop", "source: [.", "root: /srv"),
		want: []string{"hosts.yml:2: invalid YAML: did not find expected ',' or ']'"},
	}, {
		name: "yaml syntax on the first line",
		src:  lines("app: @shop", "source: ."),
		want: []string{"hosts.yml:1: invalid YAML: found character that cannot start any token"},
	}, {
		name: "yaml syntax further down",
		src:  lines("app: shop", "source: .", "root: /srv", "  keep: 3"),
		want: []string{"hosts.yml:4: invalid YAML: mapping values are not allowed in this context"},
	}, {
		name: "yaml unclosed on the first line",
		src:  lines("[app, shop", "source: ."),
		want: []string{"hosts.yml:2: invalid YAML: did not find expected ',' or ']'"},
	}, {
		name: "control character",
		src:  lines("app: shop", "source: .", "root: /srv\x01"),
		want: []string{"hosts.yml:3: invalid YAML: control characters are not allowed"},
	}, {
		name: "invalid utf-8",
		src:  lines("app: shop", "source: \xff"),
		want: []string{"hosts.yml:2: invalid YAML: invalid leading UTF-8 octet"},
	}, {
		name: "bare tilde",
		src:  lines("app: shop", "source: ~", "root: /srv", "environments: {p: {hosts: [w]}}"),
		want: []string{`hosts.yml:2: source: a bare ~ is YAML for nothing; write "~" for your home folder`},
	}, {
		name: "two documents",
		src:  lines(append(slices.Clone(valid), "---", "app: other")...),
		want: []string{"hosts.yml:7: a second YAML document: an inventory is one document"},
	}, {
		name: "relative roots",
		src: lines(
			"app: shop",
			"source: .",
			"root: var/www",
			"environments:",
			"  production:",
			"    root: ~/shop",
			"    hosts: [{address: web1, root: srv}, {address: web2, root: /}, {address: web3, root: /srv/..//}]",
		),
		want: []string{
			`hosts.yml:3: root: must be an absolute path on the hosts, got "var/www"`,
			`hosts.yml:6: root: must be an absolute path on the hosts, got "~/shop"`,
			`hosts.yml:7: hosts.root: must be an absolute path on the hosts, got "srv"`,
			`hosts.yml:7: hosts.root: must be a folder of its own, not /: fleetdeploy makes builds/, shared/, latest and .fleetdeploy/ in it (e.g. /var/www/app)`,
			`hosts.yml:7: hosts.root: must be a folder of its own, not /: fleetdeploy makes builds/, shared/, latest and .fleetdeploy/ in it (e.g. /var/www/app)`,
		},
	}, {
		name: "shared and exclude entries",
		src: with(
			"shared:",
			"  - /etc/passwd",
			"  - ''",
			"  - ../up",
			"  - storage/../../up/",
			"  - ./",
			"  - .env",
			"  - ./.env",
			"  - storage/",
			"  - storage/sessions/",
			"  - public/uploads/avatars",
			"  - public/uploads/",
			"exclude: [/abs, '', a/../.., .]",
		),
		want: []string{
			`hosts.yml:8: shared: "/etc/passwd" must be relative to the build, not absolute`,
			"hosts.yml:9: shared: an entry must not be empty",
			`hosts.yml:10: shared: "../up" must stay inside the build (no ..)`,
			`hosts.yml:11: shared: "storage/../../up/" must stay inside the build (no ..)`,
			`hosts.yml:12: shared: "./" names the whole build, not a path inside it`,
			`hosts.yml:14: shared: ".env" is already shared on line 13`,
			`hosts.yml:16: shared: "storage/sessions" is inside "storage", already shared on line 15`,
			`hosts.yml:18: shared: "public/uploads" contains "public/uploads/avatars", already shared on line 17`,
			`hosts.yml:19: exclude: "/abs" must be relative to the build, not absolute`,
			"hosts.yml:19: exclude: an entry must not be empty",
			`hosts.yml:19: exclude: "a/../.." must stay inside the build (no ..)`,
			`hosts.yml:19: exclude: "." names the whole build, not a path inside it`,
		},
	}, {
		name: "hooks",
		src: with(
			"hook_timeout: 0s",
			"hooks:",
			"  before_cutover:",
			"    - ''",
			"    - {once: true}",
			"    - {run: x, once: yes, timeout: 90}",
			"    - {run: x, timeout: -1m}",
			"    - [x]",
			"    - {run: ' '}",
		),
		want: []string{
			`hosts.yml:7: hook_timeout: must be positive, got "0s"`,
			"hosts.yml:10: hooks.before_cutover: must not be empty",
			"hosts.yml:11: hooks.before_cutover: a hook needs run: the command to run",
			`hosts.yml:12: hooks.before_cutover.once: expected true or false, got "yes"`,
			`hosts.yml:12: hooks.before_cutover.timeout: expected a duration like 90s or 10m, got "90"`,
			`hosts.yml:13: hooks.before_cutover.timeout: must be positive, got "-1m"`,
			"hosts.yml:14: hooks.before_cutover: expected a command or a map with run, once, timeout and roles, got a list",
			"hosts.yml:15: hooks.before_cutover.run: must not be empty",
		},
	}, {
		name: "ports",
		src: lines(
			"app: shop",
			"source: .",
			"root: /srv",
			"ssh: {port: 0}",
			"environments:",
			"  production:",
			"    ssh: {port: 70000}",
			"    hosts:",
			"      - web1:0",
			"      - web1:65536",
			"      - web1:ssh",
			"      - 'web1:'",
			"      - {address: web1, port: -1}",
			"      - {address: web1, port: '22x'}",
		),
		want: []string{
			"hosts.yml:4: ssh.port: must be between 1 and 65535, got 0",
			"hosts.yml:7: ssh.port: must be between 1 and 65535, got 70000",
			`hosts.yml:9: host "web1:0": port must be between 1 and 65535, got 0`,
			`hosts.yml:10: host "web1:65536": port must be between 1 and 65535, got 65536`,
			`hosts.yml:11: host "web1:ssh": port must be a whole number, got "ssh"`,
			`hosts.yml:12: host "web1:": missing port after :`,
			"hosts.yml:13: hosts.port: must be between 1 and 65535, got -1",
			`hosts.yml:14: hosts.port: expected a whole number, got "22x"`,
		},
	}, {
		name: "bad host strings",
		src: with(
			"  staging:",
			"    hosts:",
			"      - '@web1'",
			"      - '-oProxyCommand=x'",
			"      - '[::1'",
			"      - '[::1]x'",
			"      - '[web1]:22'",
			"      - '2001:db8::zz'",
			"      - 'web 1'",
			"      - 'a b@web1'",
			"      - ''",
			"      - ~",
			"      - {port: 22}",
			"      - {address: 'web1:22'}",
			"      - {address: web1, user: '-x'}",
		),
		want: []string{
			`hosts.yml:9: host "@web1": empty user before @`,
			`hosts.yml:10: host "-oProxyCommand=x": address "-oProxyCommand=x" must start with a letter or digit`,
			`hosts.yml:11: host "[::1": missing ] after the IPv6 address`,
			`hosts.yml:12: host "[::1]x": unexpected "x" after ]`,
			`hosts.yml:13: host "[web1]:22": brackets are only for IPv6 addresses`,
			`hosts.yml:14: host "2001:db8::zz": write an IPv6 address in brackets, as [2001:db8::1]:22`,
			`hosts.yml:15: host "web 1": address "web 1" has ' ', which no host name or IP address has`,
			`hosts.yml:16: host "a b@web1": user "a b" has ' '; only letters, digits, '.', '_', '-' and '+' are allowed`,
			`hosts.yml:17: host "": a host must not be empty`,
			"hosts.yml:18: hosts: expected a host like web1.example.com:22 or a map with address, got nothing",
			"hosts.yml:19: hosts: a host written as a map needs an address",
			`hosts.yml:20: hosts.address: address "web1:22" is neither a host name nor an IP address (a port goes in port:)`,
			`hosts.yml:21: hosts.user: user "-x" must not start with -`,
		},
	}, {
		name: "duplicate hosts",
		src: lines(
			"app: shop",
			"source: .",
			"root: /srv",
			"ssh: {user: deploy}",
			"environments:",
			"  production:",
			"    hosts: [web1]",
			"  staging:",
			"    hosts:",
			"      - web1",
			"      - web1:2222",
			"      - deploy@web1",
			"      - {address: WEB1.example.com}",
			"      - web1.example.com",
			"      - 10.0.0.1:22",
			"      - '[::ffff:10.0.0.1]:22'",
			"      - '[2001:db8::1]'",
			"      - 2001:db8:0::1",
			"      - {address: 10.0.0.9, jump: b1}",
			"      - {address: 10.0.0.9, jump: b2}",
			"      - {address: 10.0.0.9, jump: 'b1 '}",
		),
		env: "staging",
		want: []string{
			`hosts.yml:12: duplicate host "deploy@web1": deploy@web1 is already on line 10 as "web1"`,
			`hosts.yml:14: duplicate host "web1.example.com": deploy@web1.example.com is already on line 13 as "WEB1.example.com"`,
			`hosts.yml:16: duplicate host "[::ffff:10.0.0.1]:22": deploy@[::ffff:10.0.0.1]:22 is already on line 15 as "10.0.0.1:22"`,
			`hosts.yml:18: duplicate host "2001:db8:0::1": deploy@[2001:db8:0::1] is already on line 17 as "[2001:db8::1]"`,
			`hosts.yml:20: duplicate host name "10.0.0.9" (first on line 19): give each its own name, e.g. a Host alias in ssh_config`,
			`hosts.yml:21: duplicate host "10.0.0.9": deploy@10.0.0.9 via b1 is already on line 19 as "10.0.0.9"`,
		},
	}, {
		name: "local paths",
		src:  with("source: ~other/app", "ssh: {known_hosts: '', identity: [k]}"),
		want: []string{
			`hosts.yml:7: duplicate key "source" (first on line 2)`,
			"hosts.yml:8: ssh.known_hosts: must not be empty",
			"hosts.yml:8: ssh.identity: expected a string, got a list",
		},
	}, {
		name: "tilde user",
		src:  lines("app: shop", "source: ~other/app", "root: /srv", "environments: {p: {hosts: [w]}}"),
		want: []string{`hosts.yml:2: source: only ~ and ~/ are expanded, got "~other/app"`},
	}, {
		name: "missing app, source and root",
		src: lines(
			"environments:",
			"  production:",
			"    hosts: [web1, {address: web2, root: /srv}, web3]",
			"  staging:",
			"    app: shop",
			"    source: .",
			"    root: /srv",
			"    hosts: [web1]",
		),
		want: []string{
			`hosts.yml:2: environment "production" has no app (set it at the top level or in the environment)`,
			`hosts.yml:2: environment "production" has no source (set it at the top level or in the environment)`,
			`hosts.yml:2: environment "production" has no root for web1, web3 (set root at the top level, in the environment or on each host)`,
		},
	}, {
		name: "unknown environment",
		src:  with("  staging:", "    hosts: [web2]"),
		env:  "prod",
		want: []string{`hosts.yml:4: unknown environment "prod" (have: production, staging)`},
	}, {
		name: "aliases",
		src: with(
			"  a: &h {hosts: [web1]}",
			"  b: *h",
			"  c: {hosts: [*nope]}",
		),
		want: []string{"hosts.yml:9: invalid YAML: unknown anchor 'nope' referenced"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := tt.env
			if env == "" {
				env = "production"
			}
			got := problems(t, tt.src, env)
			if !slices.Equal(got, tt.want) {
				t.Errorf("got:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(tt.want, "\n\t"))
			}
		})
	}
}

// Anchors and aliases work, so a file can share a value between environments.
func TestAliases(t *testing.T) {
	src := lines(
		"app: shop",
		"source: .",
		"root: /srv",
		"environments:",
		"  production:",
		"    hooks: &hooks {after_cutover: [reload]}",
		"    hosts: [&web1 web1, web2]",
		"  staging:",
		"    hooks: *hooks",
		"    hosts: [*web1]",
	)
	e := resolve(t, src, "hosts.yml", "staging")
	if len(e.Hooks.AfterCutover) != 1 || e.Hooks.AfterCutover[0].Run != "reload" {
		t.Errorf("hooks = %+v", e.Hooks)
	}
	if len(e.Hosts) != 1 || e.Hosts[0].Name != "web1" || e.Hosts[0].Line != 10 {
		t.Errorf("hosts = %+v, want web1 on line 10 (where the alias is)", e.Hosts)
	}
}

// An alias bomb is cut short, not expanded.
func TestAliasBudget(t *testing.T) {
	src := lines(
		"app: shop",
		"source: .",
		"root: /srv",
		"build: &a [x, x, x, x, x, x, x, x, x, x]",
		"exclude: [*a]",
		"environments:",
		"  p:",
		"    hosts: &h [w1, w2]",
		"  q: {hosts: *h}",
	)
	for i := range 1100 {
		src += fmt.Sprintf("  e%d: {hosts: *h, build: *a}\n", i)
	}
	got := problems(t, src, "p")
	if len(got) == 0 || !strings.Contains(strings.Join(got, "\n"), "too many aliases (more than 1000)") {
		t.Errorf("got %q", got)
	}
}

func TestLoadUnreadable(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "hosts.yml")
	tests := []struct {
		path, want string
	}{
		{missing, missing + `: the inventory does not exist: write one with "fleetdeploy init", or start from a copy of hosts.example.yml`},
		{filepath.Join(dir, "nodir", "hosts.yml"), filepath.Join(dir, "nodir", "hosts.yml") +
			`: the inventory does not exist: write one with "fleetdeploy init", or start from a copy of hosts.example.yml`},
		{dir, dir + ": cannot read inventory: is a directory"},
	}
	for _, tt := range tests {
		for name, load := range map[string]func(string) error{
			"Load":            func(p string) error { _, err := Load(p); return err },
			"LoadEnvironment": func(p string) error { _, err := LoadEnvironment(p, "production"); return err },
			"LoadNames":       func(p string) error { _, err := LoadNames(p); return err },
		} {
			err := load(tt.path)
			var errs Errors
			if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Line != 0 || errs[0].File != tt.path {
				t.Fatalf("%s(%q) = %#v", name, tt.path, err)
			}
			if err.Error() != tt.want {
				t.Errorf("%s(%q):\n got  %s\n want %s", name, tt.path, err, tt.want)
			}
		}
	}
}

func TestLoadNames(t *testing.T) {
	fakeHome(t)
	names, err := LoadNames("testdata/full.yml")
	if err != nil || !slices.Equal(names, []string{"production", "staging"}) {
		t.Errorf("LoadNames = %q, %v", names, err)
	}
	bad := filepath.Join(t.TempDir(), "hosts.yml")
	if err := os.WriteFile(bad, []byte("app: [x]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadNames(bad); err == nil || !strings.HasPrefix(err.Error(), bad+":1: app: expected a string, got a list") {
		t.Errorf("LoadNames of a bad file: %v", err)
	}
}

func TestLoadEnvironment(t *testing.T) {
	fakeHome(t)
	e, err := LoadEnvironment("testdata/full.yml", "staging")
	if err != nil {
		t.Fatal(err)
	}
	if e.Name != "staging" || e.File != "testdata/full.yml" || len(e.Hosts) != 1 {
		t.Errorf("got %+v", e)
	}
}

// The example shipped to users must stay valid.
func TestExampleFile(t *testing.T) {
	fakeHome(t)
	const file = "../hosts.example.yml"
	if _, err := os.Stat(file); err != nil {
		t.Fatal(err)
	}
	inv, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	envs := inv.Environments()
	if !slices.Equal(envs, []string{"production", "staging"}) {
		t.Errorf("environments %q", envs)
	}
	// Per host: its key, roles, how many hooks it runs around the cutover, and whether it is health checked.
	hosts := map[string][]string{}
	for _, name := range envs {
		e, err := inv.Resolve(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if e.OutsideSymlinks != RefuseOutside || e.LockLease != DefaultLockLease || len(e.Hooks.OnFailure) != 1 {
			t.Errorf("%s: outside_symlinks %q, lock_lease %s, on_failure %+v", name, e.OutsideSymlinks, e.LockLease, e.Hooks.OnFailure)
		}
		for _, h := range e.Hosts {
			line := fmt.Sprintf("%s %v before=%d after=%d health=%v", h.Key(), h.Roles,
				len(e.HooksFor(BeforeCutover, h.Name)), len(e.HooksFor(AfterCutover, h.Name)), e.HealthCheckFor(h.Name) != nil)
			hosts[name] = append(hosts[name], line)
		}
	}
	want := map[string][]string{
		"production": {
			"deploy@web1.example.com:22 [web] before=3 after=1 health=true", // the migration runs once, on the first web host
			"deploy@web2.example.com:2222 [web] before=2 after=1 health=true",
			"ops@web3.example.com:2200 [web] before=2 after=1 health=true",
			"admin@192.0.2.10:22 via none [worker] before=2 after=1 health=false",
		},
		"staging": {"staging@staging.example.com:22 [web worker] before=2 after=2 health=true"},
	}
	if !reflect.DeepEqual(hosts, want) {
		t.Errorf("hosts:\n\t%s\nwant:\n\t%s", strings.Join(hosts["production"], "\n\t")+"\n\t"+strings.Join(hosts["staging"], "\n\t"),
			strings.Join(want["production"], "\n\t")+"\n\t"+strings.Join(want["staging"], "\n\t"))
	}
}

// Without a home folder, ~ cannot be expanded and the default known_hosts cannot be found: both are reported.
func TestNoHome(t *testing.T) {
	t.Setenv("HOME", "")
	got := problems(t, lines("app: shop", "source: ~/app", "root: /srv", "environments: {p: {hosts: [w]}}"), "p")
	want := []string{"hosts.yml:2: source: cannot expand ~: $HOME is not defined"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	// Resolve needs no home for what the inventory leaves to ssh_config; the old defaults do.
	e := resolve(t, lines("app: shop", "source: .", "root: /srv", "ssh: {user: me}", "environments:", "  p:", "    hosts: [w1, w2]"), "hosts.yml", "p")
	err := e.FillDefaults()
	if want := "w1: cannot locate ~/.ssh/known_hosts ($HOME is not defined); set ssh.known_hosts"; err == nil || err.Error() != want {
		t.Errorf("FillDefaults() = %v, want %s", err, want)
	}
}

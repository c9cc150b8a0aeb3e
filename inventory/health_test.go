package inventory

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestHealthCheck(t *testing.T) {
	src := lines(
		"app: shop",
		"source: .",
		"root: /srv",
		"health_check:",
		"  run: |",
		"    curl -fsS http://localhost/health",
		"  timeout: 20s",
		"environments:",
		"  production:",
		"    health_check: {interval: 1s, roles: [web]}",
		"    hosts: [{address: web1, roles: [web]}, {address: work1, roles: [worker]}]",
		"  staging:",
		"    health_check: none",
		"    hosts: [web1]",
		"  dev:",
		"    hosts: [web1]",
		"    health_check: {run: 'true'}",
	)
	inv, err := Parse(strings.NewReader(src), "hosts.yml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		env  string
		want *HealthCheck
	}{
		{"production", &HealthCheck{Run: "curl -fsS http://localhost/health\n", Timeout: 20 * time.Second,
			Interval: time.Second, Roles: []string{"web"}, Line: 5}},
		{"staging", nil},
		{"dev", &HealthCheck{Run: "true", Timeout: 20 * time.Second, Interval: DefaultHealthInterval, Line: 17}},
	}
	for _, tt := range tests {
		e, err := inv.Resolve(tt.env)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(e.HealthCheck, tt.want) {
			t.Errorf("%s: HealthCheck = %+v, want %+v", tt.env, e.HealthCheck, tt.want)
		}
	}

	e, _ := inv.Resolve("production")
	if hc := e.HealthCheckFor("web1"); !reflect.DeepEqual(hc, tests[0].want) || hc == e.HealthCheck {
		t.Errorf("HealthCheckFor(web1) = %+v", hc)
	}
	for _, host := range []string{"work1", "web9"} {
		if hc := e.HealthCheckFor(host); hc != nil {
			t.Errorf("HealthCheckFor(%s) = %+v, want nil", host, hc)
		}
	}
	// Defaults, when nothing but run is written.
	d := resolve(t, lines("app: a", "source: .", "root: /r", "health_check: {run: x}", "environments: {p: {hosts: [w]}}"), "hosts.yml", "p")
	if hc := d.HealthCheck; hc.Timeout != DefaultHealthTimeout || hc.Interval != DefaultHealthInterval || hc.Roles != nil {
		t.Errorf("defaults: %+v", hc)
	}
}

func TestSettingErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		env  string
		want []string
	}{{
		name: "health_check fields",
		src: lines(
			"app: shop",
			"source: .",
			"root: /srv",
			"health_check:",
			"  run: ''",
			"  timeout: 0s",
			"  interval: often",
			"  roles: []",
			"  retries: 3",
			"environments: {p: {hosts: [w]}}",
		),
		want: []string{
			"hosts.yml:5: health_check.run: must not be empty",
			`hosts.yml:6: health_check.timeout: must be positive, got "0s"`,
			`hosts.yml:7: health_check.interval: expected a duration like 90s or 10m, got "often"`,
			"hosts.yml:8: health_check.roles: name at least one role, or leave roles out to mean every host",
			`hosts.yml:9: health_check: unknown key "retries"`,
		},
	}, {
		name: "health_check without run",
		src: lines(
			"app: shop",
			"source: .",
			"root: /srv",
			"health_check: none",
			"environments:",
			"  production:",
			"    health_check: {timeout: 5s}",
			"    hosts: [w]",
		),
		env:  "production",
		want: []string{`hosts.yml:7: environment "production": health_check has no run (the command that checks a host)`},
	}, {
		name: "health_check interval not below timeout",
		src: lines(
			"app: shop",
			"source: .",
			"root: /srv",
			"health_check:",
			"  run: check",
			"  timeout: 5s",
			"environments:",
			"  production:",
			"    health_check: {interval: 5s}",
			"    hosts: [w]",
			"  staging:",
			"    health_check: {timeout: 1s}",
			"    hosts: [w]",
		),
		env:  "production",
		want: []string{"hosts.yml:9: health_check: interval (5s) must be shorter than timeout (5s)"},
	}, {
		name: "health_check timeout not above the default interval",
		src:  lines("app: a", "source: .", "root: /r", "health_check: {run: x, timeout: 2s}", "environments: {p: {hosts: [w]}}"),
		want: []string{"hosts.yml:4: health_check: interval (2s) must be shorter than timeout (2s)"},
	}, {
		name: "health_check roles",
		src: lines(
			"app: a",
			"source: .",
			"root: /r",
			"health_check:",
			"  run: x",
			"  roles: [web, db]",
			"environments: {p: {hosts: [{address: w, roles: [web]}]}}",
		),
		want: []string{`hosts.yml:6: health_check.roles: unknown role "db" in environment "p" (roles: web)`},
	}, {
		name: "health_check shapes",
		src:  lines("app: a", "source: .", "root: /r", "health_check: curl localhost", "environments: {p: {hosts: [w]}}"),
		want: []string{`hosts.yml:4: health_check: expected a map, got "curl localhost"`},
	}, {
		name: "outside_symlinks and lock_lease",
		src: lines(
			"app: a",
			"source: .",
			"root: /r",
			"outside_symlinks: ignore",
			"lock_lease: 9s",
			"environments:",
			"  p:",
			"    outside_symlinks: [copy]",
			"    lock_lease: 2",
			"    hosts: [w]",
		),
		want: []string{
			`hosts.yml:4: outside_symlinks: expected refuse, copy or keep, got "ignore"`,
			`hosts.yml:5: lock_lease: must be at least 10s, got "9s"`,
			"hosts.yml:8: outside_symlinks: expected a string, got a list",
			`hosts.yml:9: lock_lease: expected a duration like 90s or 10m, got "2"`,
		},
	}, {
		name: "typos",
		src:  lines("app: a", "source: .", "root: /r", "health: {run: x}", "outside_symlink: copy", "lock_leas: 1m", "environments: {p: {hosts: [w]}}"),
		want: []string{
			`hosts.yml:4: unknown key "health"`,
			`hosts.yml:5: unknown key "outside_symlink" (did you mean outside_symlinks?)`,
			`hosts.yml:6: unknown key "lock_leas" (did you mean lock_lease?)`,
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := tt.env
			if env == "" {
				env = "p"
			}
			got := problems(t, tt.src, env)
			if !slices.Equal(got, tt.want) {
				t.Errorf("got:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(tt.want, "\n\t"))
			}
		})
	}
}

func TestOutsideSymlinksAndLease(t *testing.T) {
	src := lines(
		"app: a",
		"source: .",
		"root: /r",
		"outside_symlinks: keep",
		"lock_lease: 10s",
		"environments:",
		"  p: {hosts: [w], outside_symlinks: refuse, lock_lease: 1h}",
		"  q: {hosts: [w]}",
	)
	for env, want := range map[string]struct {
		pol   SymlinkPolicy
		lease time.Duration
	}{"p": {RefuseOutside, time.Hour}, "q": {KeepOutside, 10 * time.Second}} {
		e := resolve(t, src, "hosts.yml", env)
		if e.OutsideSymlinks != want.pol || e.LockLease != want.lease {
			t.Errorf("%s: %s, %s; want %s, %s", env, e.OutsideSymlinks, e.LockLease, want.pol, want.lease)
		}
	}
}

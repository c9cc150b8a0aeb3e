package inventory

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// hooked has a hook of each kind on a fleet with roles.
const hooked = `app: shop
source: .
root: /srv
hook_timeout: 1m
hooks:
  before_cutover:
    - all
    - {run: migrate, once: true, roles: [web]}
    - {run: first, once: true}
    - {run: queue, roles: [worker, cron]}
  after_cutover:
    - {run: reload, roles: [web]}
  after_rollback:
    - {run: restart-workers, roles: [worker], once: true, timeout: 10s}
  on_success: [notify ok]
  on_failure: ["page \"$FLEETDEPLOY_ENV\"", {run: log, timeout: 5s}]
environments:
  production:
    hosts:
      - {address: db1, roles: [cron]}
      - {address: web1, roles: [web]}
      - {address: work1, roles: [worker]}
      - {address: web2, roles: [web, worker]}
`

func runs(hooks []Hook) []string {
	out := []string{}
	for _, h := range hooks {
		out = append(out, h.Run)
	}
	return out
}

func TestHooksFor(t *testing.T) {
	e := resolve(t, hooked, "hosts.yml", "production")
	type want map[HookPhase][]string
	tests := []struct {
		host string
		want want
	}{
		{"db1", want{BeforeCutover: {"all", "first", "queue"}, AfterCutover: {}, AfterRollback: {}}},
		{"web1", want{BeforeCutover: {"all", "migrate"}, AfterCutover: {"reload"}, AfterRollback: {}}},
		{"work1", want{BeforeCutover: {"all", "queue"}, AfterCutover: {}, AfterRollback: {"restart-workers"}}},
		{"web2", want{BeforeCutover: {"all", "queue"}, AfterCutover: {"reload"}, AfterRollback: {}}},
		{"web9", want{BeforeCutover: {}, AfterCutover: {}, AfterRollback: {}}},
	}
	for _, tt := range tests {
		for _, p := range []HookPhase{BeforeCutover, AfterCutover, AfterRollback, OnSuccess, OnFailure} {
			w := tt.want[p]
			if p.Local() {
				w = []string{}
			}
			if got := runs(e.HooksFor(p, tt.host)); !slices.Equal(got, w) {
				t.Errorf("HooksFor(%s, %s) = %q, want %q", p, tt.host, got, w)
			}
		}
	}
	if got := runs(e.HooksFor(OnFailure, "")); !slices.Equal(got, []string{`page "$FLEETDEPLOY_ENV"`, "log"}) {
		t.Errorf("HooksFor(on_failure, \"\") = %q", got)
	}
	if got := runs(e.HooksFor(BeforeCutover, "")); len(got) != 0 {
		t.Errorf(`HooksFor(before_cutover, "") = %q, want none`, got)
	}
	if hk := e.HooksFor(AfterRollback, "work1")[0]; hk.Timeout != 10*time.Second || !slices.Equal(hk.Roles, []string{"worker"}) || hk.Line != 14 {
		t.Errorf("after_rollback hook = %+v", hk)
	}
	if hk := e.HooksFor(OnFailure, "")[1]; hk.Timeout != 5*time.Second || e.HooksFor(OnSuccess, "")[0].Timeout != time.Minute {
		t.Errorf("local hooks' timeouts: %+v", e.Hooks.OnFailure)
	}

	// Narrowed, `once` means the first selected host among the hook's roles.
	s, err := e.Select(nil, []string{"web2", "db1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := runs(s.HooksFor(BeforeCutover, "web2")); !slices.Equal(got, []string{"all", "migrate", "queue"}) {
		t.Errorf("narrowed web2 before_cutover = %q", got)
	}
	if got := runs(s.HooksFor(AfterRollback, "web2")); !slices.Equal(got, []string{"restart-workers"}) {
		t.Errorf("narrowed web2 after_rollback = %q", got)
	}
	if got := runs(s.HooksFor(BeforeCutover, "web1")); len(got) != 0 {
		t.Errorf("a host outside the selection gets hooks: %q", got)
	}
}

// An environment replaces a phase's list and inherits the others.
func TestHookPhasesMerge(t *testing.T) {
	src := strings.Replace(hooked, "  production:\n", lines(
		"  production:",
		"    hooks:",
		"      after_rollback: []",
		"      on_success: [other]",
	), 1)
	e := resolve(t, src, "hosts.yml", "production")
	got := map[HookPhase][]string{}
	for _, p := range Phases() {
		got[p] = runs(e.Hooks.Phase(p))
	}
	want := map[HookPhase][]string{
		BeforeCutover: {"all", "migrate", "first", "queue"},
		AfterCutover:  {"reload"},
		AfterRollback: {},
		OnSuccess:     {"other"},
		OnFailure:     {`page "$FLEETDEPLOY_ENV"`, "log"},
	}
	for p, w := range want {
		if !slices.Equal(got[p], w) {
			t.Errorf("%s: %q, want %q", p, got[p], w)
		}
	}
}

func TestHookErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		env  string
		want []string
	}{{
		name: "local hooks take neither once nor roles",
		src: lines(
			"app: shop",
			"source: .",
			"root: /srv",
			"hooks:",
			"  on_success: [{run: x, once: true}]",
			"  on_failure:",
			"    - {run: x, roles: [web]}",
			"    - {run: y, once: false}",
			"environments: {p: {hosts: [{address: w, roles: [web]}]}}",
		),
		want: []string{
			"hosts.yml:5: hooks.on_success: once does not apply here: a local hook runs once, on this machine",
			"hosts.yml:7: hooks.on_failure: roles does not apply here: a local hook runs on this machine, not on hosts",
			"hosts.yml:8: hooks.on_failure: once does not apply here: a local hook runs once, on this machine",
		},
	}, {
		name: "roles of hooks",
		src: lines(
			"app: shop",
			"source: .",
			"root: /srv",
			"hooks:",
			"  before_cutover:",
			"    - {run: x, roles: []}",
			"    - {run: x, roles: web}",
			"    - {run: x, roles: [Web]}",
			"    - {run: x, rols: [web]}",
			"  after_rolback: [x]",
			"environments: {p: {hosts: [{address: w, roles: [web]}]}}",
		),
		want: []string{
			"hosts.yml:6: hooks.before_cutover.roles: name at least one role, or leave roles out to mean every host",
			`hosts.yml:7: hooks.before_cutover.roles: expected a list like [web, worker], got "web"`,
			`hosts.yml:8: hooks.before_cutover.roles: "Web" is not a role name: use lowercase letters, digits, _ and -, starting with a letter or digit`,
			`hosts.yml:9: hooks.before_cutover: unknown key "rols" (did you mean roles?)`,
			`hosts.yml:10: hooks: unknown key "after_rolback" (did you mean after_rollback?)`,
		},
	}, {
		name: "a role no host has",
		src: lines(
			"app: shop",
			"source: .",
			"root: /srv",
			"hooks:",
			"  after_cutover: [{run: x, roles: [web, wrker]}]",
			"environments:",
			"  production:",
			"    hooks: {after_rollback: [{run: y, roles: [mail]}]}",
			"    hosts: [{address: w, roles: [web]}, {address: v, roles: [worker]}]",
			"  staging:",
			"    hosts: [w]",
		),
		want: []string{
			`hosts.yml:5: hooks.after_cutover: unknown role "wrker" in environment "production" (roles: web, worker)`,
			`hosts.yml:8: hooks.after_rollback: unknown role "mail" in environment "production" (roles: web, worker)`,
		},
	}, {
		name: "an environment without roles",
		src: lines(
			"app: shop",
			"source: .",
			"root: /srv",
			"hooks:",
			"  after_cutover: [{run: x, roles: [web]}]",
			"environments:",
			"  production:",
			"    hosts: [{address: w, roles: [web]}]",
			"  staging:",
			"    hosts: [w]",
		),
		env:  "staging",
		want: []string{`hosts.yml:5: hooks.after_cutover: unknown role "web" in environment "staging" (environment "staging" has no roles)`},
	}, {
		name: "unquoted colons",
		src: lines(
			"app: shop",
			"source: .",
			"root: /srv",
			"build:",
			"  - echo building: now",
			"hooks:",
			"  after_cutover:",
			`    - echo "live: $(date)"`,
			"    - echo it's: done",
			"    - ./notify.sh:",
			"    - {rn: x}",
			"environments: {p: {hosts: [w]}}",
		),
		want: []string{
			"hosts.yml:5: build: a command with ': ' in it must be quoted: - 'echo building: now'",
			`hosts.yml:8: hooks.after_cutover: a hook with ': ' in it must be quoted: - 'echo "live: $(date)"'`,
			`hosts.yml:9: hooks.after_cutover: a hook with ': ' in it must be quoted: - 'echo it''s: done'`,
			"hosts.yml:10: hooks.after_cutover: a hook with ': ' in it must be quoted: - './notify.sh:'",
			`hosts.yml:11: hooks.after_cutover: unknown key "rn" (did you mean run?)`,
			"hosts.yml:11: hooks.after_cutover: a hook needs run: the command to run",
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := tt.env
			if env == "" {
				env = "p"
				if strings.Contains(tt.src, "  production:") {
					env = "production"
				}
			}
			got := problems(t, tt.src, env)
			if !slices.Equal(got, tt.want) {
				t.Errorf("got:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(tt.want, "\n\t"))
			}
		})
	}
}

func TestPhases(t *testing.T) {
	want := []HookPhase{BeforeCutover, AfterCutover, AfterRollback, OnSuccess, OnFailure}
	if got := Phases(); !slices.Equal(got, want) {
		t.Errorf("Phases() = %q", got)
	}
	for _, p := range want {
		if local := p == OnSuccess || p == OnFailure; p.Local() != local {
			t.Errorf("%s.Local() = %v", p, p.Local())
		}
	}
	if (Hooks{}).Phase("nope") != nil {
		t.Error("Phase of an unknown phase is not nil")
	}
}

// Where ': ' breaks the YAML itself, the error says how to quote the value.
func TestColonHint(t *testing.T) {
	tests := []struct {
		src  string
		want string
	}{
		{lines("app: shop", "hooks:", "  after_cutover:", "    - run: echo live: now"),
			"hosts.yml:4: invalid YAML: mapping values are not allowed in this context (a value with ': ' in it must be quoted: - run: 'echo live: now')"},
		{lines("hooks:", "  after_cutover:", "    - echo it's: a: b"),
			"hosts.yml:3: invalid YAML: mapping values are not allowed in this context (a value with ': ' in it must be quoted: - 'echo it''s: a: b')"},
		{lines("app: a: b"),
			"hosts.yml:1: invalid YAML: mapping values are not allowed in this context (a value with ': ' in it must be quoted: app: 'a: b')"},
		{lines("health_check:", "  run: curl -H Host: x:"),
			"hosts.yml:2: invalid YAML: mapping values are not allowed in this context (a value with ': ' in it must be quoted: run: 'curl -H Host: x:')"},
		{lines("app: shop", "  keep: 3"), "hosts.yml:2: invalid YAML: mapping values are not allowed in this context"},
	}
	for _, tt := range tests {
		got := problems(t, tt.src, "p")
		if len(got) != 1 || got[0] != tt.want {
			t.Errorf("%q:\n got  %q\n want %q", tt.src, got, tt.want)
		}
	}
}

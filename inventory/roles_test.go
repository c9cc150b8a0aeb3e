package inventory

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// fleet is an environment with roles given both ways, for the role and selection tests.
const fleet = `app: shop
source: .
root: /srv
environments:
  production:
    hosts:
      - {address: web1, roles: [web]}
      - {address: web2, roles: [web, cron, web]}
      - ops@work1:2201
      - work1:2202
      - db1
    roles:
      worker: [ops@work1:2201, work1:2202]
      cron: [db1]
      mail: []
`

func TestRoles(t *testing.T) {
	e := resolve(t, fleet, "hosts.yml", "production")
	got := map[string][]string{}
	for _, h := range e.Hosts {
		got[h.Name] = h.Roles
	}
	want := map[string][]string{
		"web1":           {"web"},
		"web2":           {"cron", "web"},
		"ops@work1:2201": {"worker"},
		"work1:2202":     {"worker"},
		"db1":            {"cron"},
	}
	for name, roles := range want {
		if !slices.Equal(got[name], roles) {
			t.Errorf("%s: roles %q, want %q", name, got[name], roles)
		}
	}
	if r := e.Roles(); !slices.Equal(r, []string{"cron", "mail", "web", "worker"}) {
		t.Errorf("Roles() = %q", r)
	}
}

// A bare address in the roles map names every host at it.
func TestRolesByAddress(t *testing.T) {
	src := lines(
		"app: shop",
		"source: .",
		"root: /srv",
		"environments:",
		"  production:",
		"    hosts: [web1, ops@work1:2201, 'WORK1:2202', '[::1]:22']",
		"    roles: {worker: [work1], web: ['[::1]', web1]}",
	)
	e := resolve(t, src, "hosts.yml", "production")
	var got []string
	for _, h := range e.Hosts {
		got = append(got, h.Name+"="+strings.Join(h.Roles, ","))
	}
	want := []string{"web1=web", "ops@work1:2201=worker", "WORK1:2202=worker", "[::1]:22=web"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestRoleErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{{
		name: "names",
		src: lines(
			"app: shop",
			"source: .",
			"root: /srv",
			"environments:",
			"  production:",
			"    hosts:",
			"      - {address: web1, roles: [Web, _x, -y, 'a b', '', web]}",
			"      - {address: web2, roles: web}",
			"    roles:",
			"      Worker: [web1]",
			"      cron: web2",
			"      mail: {web1: x}",
		),
		want: []string{
			`hosts.yml:7: hosts.roles: "Web" is not a role name: use lowercase letters, digits, _ and -, starting with a letter or digit`,
			`hosts.yml:7: hosts.roles: "_x" is not a role name: use lowercase letters, digits, _ and -, starting with a letter or digit`,
			`hosts.yml:7: hosts.roles: "-y" is not a role name: use lowercase letters, digits, _ and -, starting with a letter or digit`,
			`hosts.yml:7: hosts.roles: "a b" is not a role name: use lowercase letters, digits, _ and -, starting with a letter or digit`,
			"hosts.yml:7: hosts.roles: must not be empty",
			`hosts.yml:8: hosts.roles: expected a list like [web, worker], got "web"`,
			`hosts.yml:10: roles: "Worker" is not a role name: use lowercase letters, digits, _ and -, starting with a letter or digit`,
			`hosts.yml:11: roles.cron: expected a list of hosts like [web1, web2], got "web2"`,
			"hosts.yml:12: roles.mail: expected a list, got a map",
		},
	}, {
		name: "unknown host in the roles map",
		src: lines(
			"app: shop",
			"source: .",
			"root: /srv",
			"environments:",
			"  production:",
			"    roles:",
			"      web: [web1, web9, 'web2:22']",
			"    hosts: [web1, 'web2:2222', ops@web3]",
		),
		want: []string{`hosts.yml:7: roles.web: unknown host "web9" (hosts: web1, web2:2222, ops@web3)`,
			`hosts.yml:7: roles.web: unknown host "web2:22" (hosts: web1, web2:2222, ops@web3)`},
	}, {
		// A host written wrong is reported once, not again by the roles naming it.
		name: "roles map with a bad host",
		src: lines(
			"app: shop",
			"source: .",
			"root: /srv",
			"environments:",
			"  production:",
			"    hosts: [web1, 'web 2']",
			"    roles: {web: [web1, 'web 2']}",
		),
		want: []string{`hosts.yml:6: host "web 2": address "web 2" has ' ', which no host name or IP address has`},
	}, {
		name: "roles at the top level",
		src:  lines("app: shop", "source: .", "root: /srv", "roles: {web: [web1]}", "environments: {p: {hosts: [web1]}}"),
		want: []string{`hosts.yml:4: unknown key "roles" (roles belong to a host, or to an environment: environments.<name>.roles)`},
	}, {
		name: "role typo on a host",
		src:  lines("app: shop", "source: .", "root: /srv", "environments: {p: {hosts: [{address: web1, role: [web]}]}}"),
		want: []string{`hosts.yml:4: hosts: unknown key "role" (did you mean roles?)`},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := "production"
			if strings.Contains(tt.src, "{p:") {
				env = "p"
			}
			got := problems(t, tt.src, env)
			if !slices.Equal(got, tt.want) {
				t.Errorf("got:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(tt.want, "\n\t"))
			}
		})
	}
}

func TestSelect(t *testing.T) {
	e := resolve(t, fleet, "hosts.yml", "production")
	tests := []struct {
		name         string
		roles, hosts []string
		want         []string // host names, or the error's lines
		err          bool
	}{
		{name: "nothing selects all", want: []string{"web1", "web2", "ops@work1:2201", "work1:2202", "db1"}},
		{name: "blanks are ignored", roles: []string{" ", ""}, hosts: []string{""},
			want: []string{"web1", "web2", "ops@work1:2201", "work1:2202", "db1"}},
		{name: "one role", roles: []string{"web"}, want: []string{"web1", "web2"}},
		{name: "any of two roles, in inventory order", roles: []string{"cron", "web"}, want: []string{"web1", "web2", "db1"}},
		{name: "hosts by name", hosts: []string{"db1", "web1"}, want: []string{"web1", "db1"}},
		{name: "a bare address names every host at it", hosts: []string{"WORK1"}, want: []string{"ops@work1:2201", "work1:2202"}},
		{name: "a full name names one", hosts: []string{"work1:2202"}, want: []string{"work1:2202"}},
		{name: "roles and hosts intersect", roles: []string{"cron"}, hosts: []string{"web1", "web2"}, want: []string{"web2"}},
		{name: "unknown role and host", roles: []string{"wrker", "web"}, hosts: []string{"web9", "web1"}, err: true, want: []string{
			`unknown role "wrker" (roles: cron, mail, web, worker)`,
			`unknown host "web9" (hosts: web1, web2, ops@work1:2201, work1:2202, db1)`,
		}},
		{name: "a role with no host", roles: []string{"mail"}, err: true, want: []string{"no host has role mail"}},
		{name: "an empty intersection", roles: []string{"worker", "mail"}, hosts: []string{"web1"}, err: true,
			want: []string{"none of web1 has role worker or mail"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := e.Select(tt.roles, tt.hosts)
			if tt.err {
				var se *SelectError
				if !errors.As(err, &se) || !slices.Equal(se.Problems, tt.want) {
					t.Fatalf("Select = %v, %v; want SelectError %q", got, err, tt.want)
				}
				if err.Error() != strings.Join(tt.want, "\n") {
					t.Errorf("Error() = %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if names := got.hostNames(); !slices.Equal(names, tt.want) {
				t.Errorf("hosts %q, want %q", names, tt.want)
			}
			if r := got.Roles(); !slices.Equal(r, e.Roles()) {
				t.Errorf("Roles() of the selection = %q, want the environment's %q", r, e.Roles())
			}
		})
	}
}

// A selection is a copy: editing it leaves the environment alone.
func TestSelectCopies(t *testing.T) {
	e := resolve(t, fleet, "hosts.yml", "production")
	s, err := e.Select([]string{"web"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Hosts[1].Roles[0] = "changed"
	s.Hosts[0].Name = "changed"
	s.Build = append(s.Build, "changed")
	if e.Hosts[0].Name != "web1" || e.Hosts[1].Roles[0] != "cron" || len(e.Build) != 0 {
		t.Errorf("the environment sees the selection's edits: %+v", e)
	}
}

func TestSelectWithoutRoles(t *testing.T) {
	e := resolve(t, lines("app: shop", "source: .", "root: /srv", "environments: {p: {hosts: [web1]}}"), "hosts.yml", "p")
	_, err := e.Select([]string{"web"}, nil)
	if want := `unknown role "web" (environment "p" has no roles)`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

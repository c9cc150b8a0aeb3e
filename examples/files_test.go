package examples

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fleetdeploy/fleetdeploy/inventory"
)

// The example inventory is documentation: it must load, and deploy ./app
// with the shared paths the app relies on.
func TestHostsYAMLLoads(t *testing.T) {
	inv, err := inventory.Load("hosts.yml")
	if err != nil {
		t.Fatal(err)
	}
	app, err := filepath.Abs("app")
	if err != nil {
		t.Fatal(err)
	}
	envs := inv.Environments()
	if !slices.Contains(envs, "production") {
		t.Errorf("environments %v, want production among them", envs)
	}
	for _, name := range envs {
		env, err := inv.Resolve(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if env.Source != app {
			t.Errorf("%s: source %s, want %s", name, env.Source, app)
		}
		want := []inventory.SharedPath{{Path: "storage/sessions", Dir: true}, {Path: ".env"}}
		if !slices.Equal(env.Shared, want) {
			t.Errorf("%s: shared %+v, want %+v", name, env.Shared, want)
		}
	}
}

func TestNginxUsesRealpathRoot(t *testing.T) {
	data, err := os.ReadFile("nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	var directives []string
	for _, line := range strings.Split(string(data), "\n") {
		line, _, _ = strings.Cut(line, "#")
		if line = strings.Join(strings.Fields(line), " "); line != "" {
			directives = append(directives, line)
		}
	}
	for _, want := range []string{
		"root /var/www/shop/latest/public;",
		"fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;",
		"fastcgi_param DOCUMENT_ROOT $realpath_root;",
	} {
		if !slices.Contains(directives, want) {
			t.Errorf("nginx.conf lacks %q", want)
		}
	}
	for _, d := range directives {
		if strings.Contains(d, "$document_root") {
			t.Errorf("nginx.conf uses $document_root, which serves a stale build after a switch: %q", d)
		}
	}
}

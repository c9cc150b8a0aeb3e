package scaffold

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fleetdeploy/fleetdeploy/internal/golden"
	"github.com/fleetdeploy/fleetdeploy/inventory"
)

// projectDir makes a folder named shop with the given files.
func projectDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "shop")
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(dir, 0o755)
	return dir
}

func TestInventory(t *testing.T) {
	for _, c := range []struct {
		name    string
		files   map[string]string
		build   []string
		exclude []string
	}{
		{"empty", nil, nil, []string{".git", "hosts.yml"}},
		{"composer", map[string]string{"composer.json": "{}"}, []string{"composer install --no-dev --prefer-dist --optimize-autoloader"}, []string{".git", "hosts.yml"}},
		{"laravel", map[string]string{"composer.json": "{}", "package.json": `{"scripts": {"build": "vite build", "dev": "vite"}}`, "package-lock.json": "{}"},
			[]string{"composer install --no-dev --prefer-dist --optimize-autoloader", "npm ci", "npm run build"}, []string{".git", "hosts.yml", "node_modules"}},
		{"npm without build script", map[string]string{"package.json": `{"scripts": {"start": "node ."}}`, "package-lock.json": "{}"}, []string{"npm ci"}, []string{".git", "hosts.yml", "node_modules"}},
		{"npm without lock file", map[string]string{"package.json": `{"scripts": {"build": "x"}}`}, []string{"npm install", "npm run build"}, []string{".git", "hosts.yml", "node_modules"}},
		{"yarn", map[string]string{"package.json": `{"scripts": {"build": "x"}}`, "yarn.lock": ""}, []string{"yarn install --frozen-lockfile", "yarn run build"}, []string{".git", "hosts.yml", "node_modules"}},
		{"go", map[string]string{"go.mod": "module example.com/acme/shopd\n\ngo 1.22\n"}, nil, []string{".git", "hosts.yml"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := projectDir(t, c.files)
			got, err := Inventory(dir)
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, t.Name(), got)
			// With a host written in, it is a valid inventory saying the same.
			withHost := strings.Replace(string(got), "# - web1.example.com", "- web1.example.com", 1)
			file := filepath.Join(dir, FileName)
			t.Setenv("HOME", t.TempDir())
			inv, err := inventory.Parse(strings.NewReader(withHost), file)
			if err != nil {
				t.Fatalf("not a valid inventory: %v", err)
			}
			env, err := inv.Resolve("production")
			if err != nil {
				t.Fatal(err)
			}
			if env.Source != dir || env.App != "shop" || env.Root != "/var/www/shop" || len(env.Hosts) != 1 ||
				!slices.Equal(env.Build, c.build) || !slices.Equal(env.Exclude, c.exclude) {
				t.Errorf("resolved: source %s app %s root %s hosts %d build %q exclude %q", env.Source, env.App, env.Root, len(env.Hosts), env.Build, env.Exclude)
			}
			// As written, it names no host: it must not load.
			if _, err := inventory.Parse(strings.NewReader(string(got)), file); err == nil {
				t.Error("the inventory without hosts loaded")
			}
		})
	}
}

func TestInventoryOddName(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "yes: my app")
	os.MkdirAll(dir, 0o755)
	got, err := Inventory(dir)
	if err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.Parse(strings.NewReader(strings.Replace(string(got), "# - web1", "- web1", 1)), filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", t.TempDir())
	env, err := inv.Resolve("production")
	if err != nil || env.App != "yes: my app" || env.Root != "/var/www/yes-my-app" {
		t.Errorf("app %q root %q: %v", env.App, env.Root, err)
	}
}

func TestInventoryErrors(t *testing.T) {
	dir := projectDir(t, map[string]string{"package.json": "{not json"})
	if _, err := Inventory(dir); err == nil || !strings.Contains(err.Error(), "package.json: ") {
		t.Errorf("bad package.json: %v", err)
	}
	if _, err := Inventory(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing folder was accepted")
	}
}

func TestCreateNeverOverwrites(t *testing.T) {
	p := filepath.Join(t.TempDir(), FileName)
	if err := Create(p, []byte("first")); err != nil {
		t.Fatal(err)
	}
	err := Create(p, []byte("second"))
	if err == nil || err.Error() != p+" already exists: not overwriting it" {
		t.Errorf("got %v", err)
	}
	if data, _ := os.ReadFile(p); string(data) != "first" {
		t.Errorf("file now holds %q", data)
	}
}

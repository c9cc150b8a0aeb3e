// Package examples ships the example PHP app that demos and end-to-end tests
// deploy, so they need no files outside the binary and can produce any
// number of distinguishable versions of it.
package examples

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// app holds examples/app; "all:" keeps .env.example, .gitignore and
// storage/sessions/.gitkeep, which a plain pattern would drop.
//
//go:embed all:app
var app embed.FS

// versionedList is VERSIONED_FILES: one path a line, relative to app/, kept
// as a plain file so shell demos can read the same list.
//
//go:embed VERSIONED_FILES
var versionedList string

// sourceVersion is the version string the embedded sources carry.
const sourceVersion = "v1"

// validVersion keeps a version safe inside a PHP single-quoted literal and a
// file name.
var validVersion = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)

// VersionedFiles lists the files that carry the version (slash-separated
// paths relative to the app root), so a test can tell which build served a
// page and spot one mixing two builds.
func VersionedFiles() []string {
	return strings.Fields(versionedList)
}

// WriteApp writes the example app into dir (created if missing), with version string version (e.g. "v2") in every versioned file.
//
// Every occurrence of the token "v1" in a versioned file becomes version;
// other files are copied as they are. Files are written 0644 and directories
// 0755 whatever the umask, so a build made from dir has predictable modes.
// Files already in dir are overwritten; files the app does not have are left
// alone, so dir should be empty or hold an earlier WriteApp.
func WriteApp(dir, version string) error {
	if !validVersion.MatchString(version) {
		return fmt.Errorf("examples: invalid version %q", version)
	}
	root, err := fs.Sub(app, "app")
	if err != nil {
		return fmt.Errorf("examples: %w", err)
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("examples: %w", err)
		}
		// Only a dir WriteApp created gets its mode set; a caller's stays theirs.
		if err := os.Chmod(dir, 0o755); err != nil {
			return fmt.Errorf("examples: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("examples: %w", err)
	}
	versioned := VersionedFiles()
	return fs.WalkDir(root, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name == "." {
			return nil
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		if d.IsDir() {
			return mkdir(dst)
		}
		data, err := fs.ReadFile(root, name)
		if err != nil {
			return fmt.Errorf("examples: %w", err)
		}
		if slices.Contains(versioned, path.Clean(name)) {
			data = []byte(strings.ReplaceAll(string(data), sourceVersion, version))
		}
		return writeFile(dst, data)
	})
}

func mkdir(path string) error {
	if err := os.Mkdir(path, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("examples: %w", err)
	}
	if err := os.Chmod(path, 0o755); err != nil {
		return fmt.Errorf("examples: %w", err)
	}
	return nil
}

func writeFile(path string, data []byte) error {
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("examples: %w", err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		return fmt.Errorf("examples: %w", err)
	}
	return nil
}

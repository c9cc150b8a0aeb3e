// Package steps holds the unit of work on one host: a named step made of
// remote operations, each of which a dry run can print and a real run executes.
// It also knows the layout of a deploy root and how to read a host's state.
package steps

import (
	"path"
	"regexp"
)

// Layout names every path fleetdeploy uses under a host's root.
//
//	root/builds/<ID>/          one folder per build
//	root/latest -> builds/<ID> what is served; replaced by rename(2)
//	root/shared/               data that outlives builds
//	root/.fleetdeploy/         lock, live history, build markers, work in progress
type Layout struct{ Root string }

func (l Layout) join(p ...string) string { return path.Join(append([]string{l.Root}, p...)...) }

// Builds is the folder holding every build.
func (l Layout) Builds() string { return l.join("builds") }

// Build is one build's folder.
func (l Layout) Build(id string) string { return l.join("builds", id) }

// Latest is the symlink the web server follows.
func (l Layout) Latest() string { return l.join("latest") }

// Shared is the folder of data that outlives builds.
func (l Layout) Shared() string { return l.join("shared") }

// Meta is fleetdeploy's own folder.
func (l Layout) Meta() string { return l.join(".fleetdeploy") }

// Lock is the deploy lock: a symlink whose target describes the holder, so it
// is created atomically (symlink(2) fails if it exists) and read in one call.
func (l Layout) Lock() string { return l.join(".fleetdeploy", "lock") }

// Staging is where a build is unpacked before it becomes builds/<ID>.
func (l Layout) Staging(id string) string { return l.join(".fleetdeploy", "staging", id) }

// Pending marks a build that is complete but has never been live.
func (l Layout) Pending(id string) string { return l.join(".fleetdeploy", "pending", id) }

// Marker holds a build's release ID, checksum and the build live before it.
func (l Layout) Marker(id string) string { return l.join(".fleetdeploy", "builds", id) }

// BadMark marks a build bad: it failed its health check and the fleet was
// switched back. Beside the marker, it goes when the build goes.
func (l Layout) BadMark(id string) string { return l.join(".fleetdeploy", "builds", id+".bad") }

// History is the append-only record of every build that went live.
func (l Layout) History() string { return l.join(".fleetdeploy", "history") }

// Next is the staged symlink that the cutover renames over latest.
func (l Layout) Next() string { return l.join(".fleetdeploy", "next") }

// Back is the staged symlink that puts the old build back if the cutover fails.
func (l Layout) Back() string { return l.join(".fleetdeploy", "back") }

// LinkTarget is what latest points to for a build: relative, so the tree stays
// valid when the root is seen at another path.
func LinkTarget(id string) string { return "builds/" + id }

var releaseRE = regexp.MustCompile(`^[0-9]{8}-[0-9]{6}$`)

// IsRelease reports whether a name looks like a build made by fleetdeploy.
func IsRelease(name string) bool { return releaseRE.MatchString(name) }

// ReleaseFormat is the time layout of release IDs (UTC).
const ReleaseFormat = "20060102-150405"

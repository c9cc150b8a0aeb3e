// Package e2e is fleetdeploy's end-to-end proof suite: the claim "a deploy
// interrupts nothing and loses nothing", checked on real OpenSSH hosts that
// serve the example app with real nginx and PHP-FPM under continuous load,
// while deploys, rollbacks and faults happen.
//
// Run it, as root on a Debian 12 machine, with one command from the module root:
//
//	go test -tags e2e ./e2e/
//
// (first time on a fresh machine: .ci/e2e-deps installs nginx, PHP-FPM, PHP CLI
// and OpenSSH server from Debian packages without starting their services,
// and .ci/realworld-app fetches and caches the real-world tree the
// MediaWiki scenario deploys: Debian's packages unpacked, never installed.)
//
// It takes a few minutes on a 2-core machine. A full run (no -run filter)
// rewrites docs/RESULTS.md with one row per scenario: what was expected, what
// was observed, and whether it passed. A filtered run writes that table only
// when E2E_RESULTS names a file to write it to.
//
// fleetdeploy is driven as a black box: the suite builds the binary once
// (go build ./cmd/fleetdeploy) and runs it as a subprocess, so that SIGINT,
// SIGTERM and SIGKILL reach a real process, with inventories the tests write.
// The fleets come from internal/sshtest (one sshd per host on 127.0.0.1); on
// each host the suite starts its own nginx and php-fpm as the hosts' login
// user, from per-host folders, on free 127.0.0.1 ports, and stops them when
// the test ends. Scenarios that need root (mounts, ownership) are skipped
// without it; with CI set, missing tools fail the suite instead of skipping.
//
// Every test file carries the build tag e2e, so `go test ./...` stays fast and
// sees only this file.
package e2e

package main

import (
	"github.com/fleetdeploy/fleetdeploy/fleet"
	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/link"
)

// chooseCompression sets c.compress for this run's whole builds, unless
// --compress was given, from what earlier uploads to the hosts measured
// (package link has the model). It says so when builds go gzipped (unless
// quiet).
func (c *common) chooseCompression(env *inventory.Environment, f *fleet.Fleet, links link.Store, quiet bool) {
	if c.compressSet {
		return
	}
	gz, why := link.Choose(env, f.Conns, f.NearestRTT(), links, c.now())
	c.compress = gz
	if gz && !quiet {
		c.out.Printf("%s: a whole build is sent gzipped (--compress=false: never)\n", why)
	}
}

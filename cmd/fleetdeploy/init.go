package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/fleetdeploy/fleetdeploy/scaffold"
	"github.com/urfave/cli/v2"
)

// initOptions are what `init` takes: nothing but the global --inventory,
// the file it writes.
type initOptions struct{}

func initCommand(c *common, run func(context.Context, *common, initOptions) error) *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "write a commented hosts.yml for the project in this folder (never overwrites a file)",
		Action: func(cc *cli.Context) error {
			if cc.NArg() != 0 {
				return &usageError{"usage: fleetdeploy init (it writes hosts.yml here; -i FILE writes FILE, for the project in FILE's folder)"}
			}
			return run(cc.Context, c, initOptions{})
		},
	}
}

// runInit writes the inventory file (--inventory, hosts.yml by default) for
// the project in that file's folder, and says what to do next. An existing
// file is never overwritten.
func runInit(_ context.Context, c *common, _ initOptions) error {
	path := c.inventory
	data, err := scaffold.Inventory(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if err := scaffold.Create(path, data); err != nil {
		return fmt.Errorf("init: %w (move it away to start afresh, or write another file with -i FILE)", err)
	}
	inv := ""
	if path != scaffold.FileName {
		inv = " -i " + path
	}
	c.out.Printf("wrote %s: what it could tell from the project's files is filled in, the rest is commented.\n"+
		"Next:\n"+
		"  1. write your servers in it (environments: production: hosts:) and check root, the folder on each host\n"+
		"  2. fleetdeploy%s plan production    shows what a deploy would do, changing nothing\n"+
		"  3. fleetdeploy%s up production      deploys\n", path, inv, inv)
	return nil
}

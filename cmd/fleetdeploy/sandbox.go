package main

import "github.com/urfave/cli/v2"

func (g *globals) sandboxCommand() *cli.Command {
	return &cli.Command{Name: "sandbox", Usage: "start a local fleet of SSH hosts to try fleetdeploy on", Hidden: true,
		Action: func(c *cli.Context) error { return &usageError{"sandbox: not built yet"} }}
}

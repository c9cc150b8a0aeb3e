package main

import (
	"fmt"
	"slices"

	"github.com/fleetdeploy/fleetdeploy/internal/completion"
	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/urfave/cli/v2"
)

// completionCommand prints a shell's completion script, made from the
// app's own commands and flags so that it cannot drift from them. The
// scripts complete environments by asking `fleetdeploy completion
// --environments` (with the -i given so far), which reads only the names.
func completionCommand(c *common) *cli.Command {
	spec := completion.Spec{
		EnvCommands: []string{"up", "plan", "rollback", "status", "unlock"},
		FileFlags:   []string{"inventory", "ssh-config"},
		DirFlags:    []string{"cache-dir", "dir"},
	}
	return &cli.Command{
		Name: "completion", Usage: "print the completion script for bash, zsh or fish", ArgsUsage: "bash|zsh|fish",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "environments", Hidden: true, Usage: "list the inventory's environments, one per line (for the scripts)"}},
		Action: func(cc *cli.Context) error {
			if cc.Bool("environments") {
				names, _ := inventory.LoadNames(c.inventory) // completing: say nothing rather than an error
				for _, n := range names {
					fmt.Fprintln(c.stdout, n)
				}
				return nil
			}
			shell := cc.Args().First()
			if cc.NArg() != 1 || !slices.Contains([]string{"bash", "zsh", "fish"}, shell) {
				return &usageError{"usage: fleetdeploy completion bash|zsh|fish"}
			}
			completion.Write(c.stdout, cc.App, shell, spec) // the shell is known; stdout's errors go unreported, as every command's printing
			return nil
		},
	}
}

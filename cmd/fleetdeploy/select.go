package main

import (
	"fmt"
	"strings"

	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/urfave/cli/v2"
)

// selection narrows a command to some hosts of its environment: those with
// any of roles, and among them those named by hosts (a host's name as the
// inventory writes it, or its address). Empty: every host.
type selection struct {
	roles []string
	hosts []string
}

// selectionFlags are --roles and --hosts, for every command that acts on
// hosts (up, plan, rollback, status, unlock, check, history).
func selectionFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "roles", Usage: "only the hosts with any of these `ROLES` (comma-separated, e.g. web,worker)"},
		&cli.StringSliceFlag{Name: "hosts", Usage: "only these `HOSTS` (comma-separated names or addresses, as the inventory writes them)"},
	}
}

// selectionOf reads --roles and --hosts.
func selectionOf(cc *cli.Context) selection {
	return selection{roles: cc.StringSlice("roles"), hosts: cc.StringSlice("hosts")}
}

// narrowed says whether the selection leaves hosts out.
func (s selection) narrowed() bool { return len(s.roles)+len(s.hosts) > 0 }

// loadSelected reads the inventory, resolves one environment and narrows it
// to the selection. An unknown role or host, or a selection that leaves no
// host, is an *inventory.SelectError listing what the environment has (exit 2).
func (c *common) loadSelected(name string, s selection) (*inventory.Environment, error) {
	env, err := c.loadEnv(name)
	if err != nil || !s.narrowed() {
		return env, err
	}
	sel, err := env.Select(s.roles, s.hosts)
	if err != nil {
		return nil, err
	}
	c.out.Printf("%s\n", selectionNote(env, sel, s))
	return sel, nil
}

// selectionNote tells which hosts a narrowed run acts on, and that the rest
// of the fleet stays as it is.
func selectionNote(all, sel *inventory.Environment, s selection) string {
	names := make([]string, len(sel.Hosts))
	for i, h := range sel.Hosts {
		names[i] = h.Name
	}
	return fmt.Sprintf("selected %d of %d hosts of %s: %s", len(sel.Hosts), len(all.Hosts), all.Name, listHosts(names))
}

// listHosts joins host names for a message, at most 20 of them.
func listHosts(names []string) string {
	const most = 20
	if len(names) <= most {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:most], ", "), len(names)-most)
}

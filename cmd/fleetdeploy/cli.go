package main

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/fleetdeploy/fleetdeploy/internal/suggest"
	"github.com/urfave/cli/v2"
)

// commandHelp is a command's help: urfave/cli's, followed by the global
// flags the command takes (they may go before or after ENV) and examples.
func commandHelp(app *cli.App, cmd *cli.Command) string {
	var b strings.Builder
	b.WriteString(cli.CommandHelpTemplate)
	names := globalsOf[cmd.Name]
	if len(names) > 0 {
		b.WriteString("\nGLOBAL OPTIONS (before or after the command):")
		for _, f := range app.Flags {
			if slices.Contains(names, f.Names()[0]) {
				fmt.Fprintf(&b, "\n   %s", templateSafe(fmt.Sprint(f)))
			}
		}
		b.WriteString("\n")
	}
	if ex := helpExamples[cmd.Name]; len(ex) > 0 {
		b.WriteString("\nEXAMPLES:")
		for _, e := range ex {
			fmt.Fprintf(&b, "\n   %s", templateSafe(e))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// templateSafe keeps text from being read as a template action.
func templateSafe(s string) string {
	return strings.ReplaceAll(s, "{{", `{{"{{"}}`)
}

// globalsOf lists the global flags each command uses.
var globalsOf = map[string][]string{
	"up":         {"inventory", "parallel", "max-connects", "connect-timeout", "keepalive", "keepalive-count", "undo-timeout", "cache-dir", "compress", "ssh-config", "accept-new-host-keys", "lock-lease", "verbose", "quiet", "json"},
	"plan":       {"inventory", "max-connects", "connect-timeout", "keepalive", "keepalive-count", "cache-dir", "compress", "ssh-config", "accept-new-host-keys", "verbose", "json"},
	"rollback":   {"inventory", "parallel", "max-connects", "connect-timeout", "keepalive", "keepalive-count", "undo-timeout", "ssh-config", "accept-new-host-keys", "lock-lease", "verbose", "quiet", "json"},
	"status":     {"inventory", "max-connects", "connect-timeout", "keepalive", "keepalive-count", "ssh-config", "accept-new-host-keys", "verbose", "json"},
	"unlock":     {"inventory", "max-connects", "connect-timeout", "keepalive", "keepalive-count", "ssh-config", "accept-new-host-keys", "json"},
	"sandbox":    {"parallel", "max-connects", "connect-timeout", "keepalive", "keepalive-count", "undo-timeout", "verbose", "quiet"},
	"completion": {"inventory"},
}

// examples are shown at the end of each command's help.
var helpExamples = map[string][]string{
	"up": {
		"fleetdeploy up production",
		"fleetdeploy up production -i deploy/hosts.yml --parallel 20",
		"fleetdeploy up production --json > events.jsonl   # one JSON event per line, for CI",
	},
	"plan": {
		"fleetdeploy plan production      # per host: the build, what is sent, hooks, cleanup, problems",
		"fleetdeploy plan production -v   # and every remote operation, in order",
	},
	"rollback": {
		"fleetdeploy rollback production",
		"fleetdeploy rollback production --to 20261125-101500",
		"fleetdeploy rollback production --dry-run",
	},
	"status": {
		"fleetdeploy status production",
		"fleetdeploy status production --verify   # re-hash every live file",
	},
	"unlock": {
		"fleetdeploy unlock production",
		"fleetdeploy unlock production --force",
	},
	"sandbox": {
		"fleetdeploy sandbox --demo",
		"fleetdeploy sandbox --dir /tmp/fleet --count 5",
	},
	"version": {"fleetdeploy version"},
	"completion": {
		"source <(fleetdeploy completion bash)                               # bash, this shell",
		"fleetdeploy completion zsh > \"${fpath[1]}/_fleetdeploy\"               # zsh",
		"fleetdeploy completion fish > ~/.config/fish/completions/fleetdeploy.fish",
	},
}

func versionCommand(c *common) *cli.Command {
	return &cli.Command{
		Name: "version", Usage: "print the version, the commit it was built from and the Go that built it", ArgsUsage: " ",
		Action: func(cc *cli.Context) error {
			if cc.NArg() > 0 {
				return &usageError{"usage: fleetdeploy version (no arguments)"}
			}
			fmt.Fprint(c.stdout, buildVersion())
			return nil
		},
	}
}

// undefinedFlag reads the flag package's "flag provided but not defined: -x".
var undefinedFlag = regexp.MustCompile(`^flag provided but not defined: -+(.+)$`)

// usageErr is a flag the command line got wrong, with the flag a typo
// probably meant.
func usageErr(cc *cli.Context, err error) error {
	m := undefinedFlag.FindStringSubmatch(err.Error())
	if m == nil {
		return &usageError{err.Error()}
	}
	given := spelling(m[1])
	var known []string
	var flags []cli.Flag
	if cc.Command != nil && cc.Command.Name != "" {
		flags = append(flags, cc.Command.Flags...)
	}
	flags = append(flags, cc.App.Flags...)
	for _, f := range flags {
		for _, n := range f.Names() {
			known = append(known, spelling(n))
		}
	}
	msg := "unknown flag " + given
	if s := closest(given, known); s != "" {
		msg += ": did you mean " + s + "?"
	}
	where := "fleetdeploy --help"
	if cc.Command != nil && cc.Command.Name != "" {
		where = "fleetdeploy " + cc.Command.Name + " --help"
	}
	return &usageError{msg + " (" + where + " lists the flags)"}
}

func spelling(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// unknownCommand is a first word that names no command.
func unknownCommand(app *cli.App, name string) error {
	var known []string
	for _, c := range app.VisibleCommands() {
		known = append(known, c.Name)
	}
	msg := fmt.Sprintf("unknown command %q", name)
	if s := closest(name, known); s != "" {
		msg += ": did you mean " + s + "?"
	} else {
		msg += " (commands: " + strings.Join(known, ", ") + ")"
	}
	return &usageError{msg}
}

// closest is the one candidate close enough to what was typed to be what
// was meant: a few letters off (one per three), or the start of exactly one
// candidate. Far-fetched guesses are worse than none.
func closest(typed string, candidates []string) string {
	best, bestD, ties := "", -1, 0
	for _, c := range candidates {
		d := suggest.Distance(strings.ToLower(typed), strings.ToLower(c))
		switch {
		case bestD < 0 || d < bestD:
			best, bestD, ties = c, d, 1
		case d == bestD && c != best:
			ties++
		}
	}
	bare := strings.TrimLeft(typed, "-")
	if bestD >= 0 && bestD <= max(1, len(bare)/3) && ties == 1 {
		return best
	}
	var prefixed []string
	for _, c := range candidates {
		if len(bare) >= 2 && strings.HasPrefix(strings.TrimLeft(c, "-"), bare) && strings.HasPrefix(c, typed[:len(typed)-len(bare)]) {
			prefixed = append(prefixed, c)
		}
	}
	if len(prefixed) == 1 {
		return prefixed[0]
	}
	return ""
}

package inventory

import (
	"fmt"
	"unicode/utf8"
)

// Values reach terminals (messages, plans, summaries) and remote shells. YAML's
// double-quoted escapes ("\e", "\0", "\x9b") and block scalars let a file hold
// characters its bytes do not show, so every key and value is checked after
// decoding: control characters are refused, and only commands, which may be
// multi-line scripts, keep newlines and tabs.

// controlNames names the control characters a reader is likely to meet.
var controlNames = map[rune]string{
	0x00: "NUL", 0x07: "BEL", 0x08: "backspace", 0x09: "tab", 0x0a: "newline", 0x0c: "form feed",
	0x0d: "carriage return", 0x1b: "ESC", 0x7f: "DEL", 0x85: "NEL", 0x9b: "CSI",
}

// isControl is true for C0 controls, DEL and C1 controls (U+0080 to U+009F).
func isControl(r rune) bool {
	return r < 0x20 || r >= 0x7f && r <= 0x9f
}

// badText says what is wrong with s as inventory text, or "" when nothing is.
// A command may hold newlines and tabs; no value may hold any other control
// character, nor bytes that are not UTF-8.
func badText(s string, command bool) string {
	if !utf8.ValidString(s) {
		return "holds bytes that are not UTF-8"
	}
	for _, r := range s {
		switch {
		case !isControl(r):
		case command && (r == '\n' || r == '\t'):
		default:
			msg := "control character " + controlName(r) + " is not allowed"
			if r == '\n' || r == '\t' {
				msg += " (only hook and health_check commands may hold newlines and tabs)"
			}
			return msg
		}
	}
	return ""
}

// controlName spells r as U+001B (ESC).
func controlName(r rune) string {
	if name, ok := controlNames[r]; ok {
		return fmt.Sprintf("U+%04X (%s)", r, name)
	}
	return fmt.Sprintf("U+%04X", r)
}

package remote

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Sanitize makes remote text (a lock holder, a history line, a command's
// stderr, a file name) safe to print on a terminal: every control character,
// newlines included, is shown escaped (\n, \t, \x1b, \u009b), as are invalid
// UTF-8 bytes and the Unicode controls that reorder text on screen. What
// a host sends can then never move the cursor, recolour or retitle the
// terminal, or hide part of a message. Backslashes are left as they are: the
// result is for people to read, not to be parsed back.
func Sanitize(s string) string { return sanitize(s, false) }

// SanitizeLines is Sanitize keeping line breaks (\n) as they are, for
// multi-line text such as the tail of a command's standard error.
func SanitizeLines(s string) string { return sanitize(s, true) }

func sanitize(s string, keepNewlines bool) string {
	clean := true
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || (needsEscape(r) && !(keepNewlines && r == '\n')) {
			clean = false
			break
		}
		i += n
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case keepNewlines && r == '\n':
			b.WriteByte('\n')
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x80 && needsEscape(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case needsEscape(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// needsEscape reports the runes a terminal may act on rather than show: C0
// and C1 controls and DEL, and the bidirectional formatting characters that
// can make text display in an order other than its own.
func needsEscape(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
		return true
	}
	return false
}

package report

import (
	"fmt"
	"time"
)

// Bytes is a size for people: "812 B", "3.4 KiB", "44.8 MiB", "1.20 GiB".
func Bytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// Seconds is a duration for people: "0.35s", "12.3s", "2m05s".
func Seconds(d time.Duration) string {
	switch {
	case d < 10*time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	d = d.Round(time.Second)
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}

// Millis is a short duration in milliseconds: "0.45 ms".
func Millis(d time.Duration) string { return fmt.Sprintf("%.2f ms", ms(d)) }

// ms is a duration in milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func msp(d time.Duration) *float64 { return ptr(ms(d)) }

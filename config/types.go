package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Size is a byte count written with a unit: "35MB", "512KB", "1GiB", or a plain number of bytes.
// Decimal units (KB, MB, GB) are powers of 1000 as Postfix's message_size_limit users expect; binary units
// (KiB, MiB, GiB) are powers of 1024. Units are case-insensitive ("35mb" is 35MB).
type Size int64

var sizeUnits = []struct {
	suffix string
	factor int64
}{
	// Longest suffixes first so that "KIB" is not read as "B" after "KI".
	{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"K", 1000}, {"M", 1000 * 1000}, {"G", 1000 * 1000 * 1000},
	{"B", 1},
}

// maxSize keeps every size far below int64 overflow, so callers may add a few sizes without checking.
const maxSize = 1 << 62

// ParseSize parses a size such as "35MB". Negative sizes, fractions and overflows are errors.
func ParseSize(s string) (Size, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	if t == "" {
		return 0, fmt.Errorf("empty size: write a number with a unit, e.g. \"35MB\"")
	}
	factor := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			factor = u.factor
			t = strings.TrimSpace(strings.TrimSuffix(t, u.suffix))
			break
		}
	}
	if t == "" || strings.IndexFunc(t, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return 0, fmt.Errorf("invalid size %q: write a whole number with a unit, e.g. \"35MB\" or \"512KiB\"", s)
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n > maxSize/factor {
		return 0, fmt.Errorf("size %q is too large: write at most a few GB", s)
	}
	return Size(n * factor), nil
}

// UnmarshalText implements encoding.TextUnmarshaler for TOML strings.
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// MarshalText prints the size in its String form, which ParseSize reads back to the same value.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// String prints the size in the largest unit that divides it exactly, decimal units first ("35MB"), then
// binary ones ("1GiB"), else bytes ("1234B").
func (s Size) String() string {
	n := int64(s)
	if n > 0 {
		for _, u := range []struct {
			suffix string
			factor int64
		}{
			{"GB", 1000 * 1000 * 1000}, {"MB", 1000 * 1000}, {"KB", 1000},
			{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
		} {
			if n%u.factor == 0 {
				return strconv.FormatInt(n/u.factor, 10) + u.suffix
			}
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// Duration is a time.Duration that also accepts days ("5d") and weeks ("1w"), since queue lifetimes are
// naturally written in days and time.ParseDuration has no unit for them. "0" is zero; negative durations
// are refused because no setting of ptrelay means anything with one.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

const day = 24 * time.Hour

// ParseDuration parses "5d", "4h", "1h30m", "2w", "1.5h", "500ms", "0". Units: ns, us (µs), ms, s, m, h, d, w.
func ParseDuration(s string) (Duration, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty duration: write a number with a unit, e.g. \"5m\", \"4h\" or \"5d\"")
	}
	if t == "0" {
		return 0, nil
	}
	invalid := func(why string) error {
		return fmt.Errorf("invalid duration %q: %s", s, why)
	}
	var total time.Duration
	for rest := t; rest != ""; {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		if i == 0 {
			return 0, invalid("write a number with a unit, e.g. \"5m\", \"4h\" or \"5d\"")
		}
		j := i
		for j < len(rest) && (rest[j] < '0' || rest[j] > '9') && rest[j] != '.' {
			j++
		}
		num, unit := rest[:i], rest[i:j]
		rest = rest[j:]
		if unit == "" {
			return 0, invalid("the number " + num + " has no unit: add s, m, h or d, e.g. \"5m\"")
		}
		// Days and weeks are read as hours and scaled, which keeps fractions ("1.5d") exact to the nanosecond
		// of an hour and reuses the standard library's overflow checks.
		per := time.Duration(1)
		switch unit {
		case "d":
			unit, per = "h", 24
		case "w":
			unit, per = "h", 24*7
		case "ns", "us", "µs", "ms", "s", "m", "h":
		default:
			return 0, invalid("unknown unit " + strconv.Quote(unit) + ": use s, m, h, d or w, e.g. \"5m\" or \"5d\"")
		}
		part, err := time.ParseDuration(num + unit)
		if err != nil {
			return 0, invalid("write a number with a unit, e.g. \"5m\", \"4h\" or \"5d\"")
		}
		if part > math.MaxInt64/per {
			return 0, invalid("too large")
		}
		part *= per
		if total > math.MaxInt64-part {
			return 0, invalid("too large")
		}
		total += part
	}
	return Duration(total), nil
}

// UnmarshalText implements encoding.TextUnmarshaler for TOML strings.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalText prints the duration in its String form, which ParseDuration reads back to the same value.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// String prints days, hours, minutes and seconds without zero parts: "5d", "1d12h", "1h30m", "30s",
// "1m500ms", "500ms". Zero is "0".
func (d Duration) String() string {
	v := time.Duration(d)
	if v == 0 {
		return "0"
	}
	if v < 0 {
		return v.String()
	}
	var b strings.Builder
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"d", day}, {"h", time.Hour}, {"m", time.Minute}} {
		if n := v / u.unit; n > 0 {
			b.WriteString(strconv.FormatInt(int64(n), 10) + u.suffix)
			v -= n * u.unit
		}
	}
	if v > 0 {
		// time.Duration prints what is left below a minute exactly ("30s", "1.5s", "500ms", "1µs").
		b.WriteString(v.String())
	}
	return b.String()
}

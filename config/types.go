package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Size is a byte count written with a unit: "35MB", "512KB", "1GiB", or a plain number of bytes.
// Decimal units (KB, MB, GB) are powers of 1000 as Postfix's message_size_limit users expect; binary units
// (KiB, MiB, GiB) are powers of 1024.
type Size int64

var sizeUnits = []struct {
	suffix string
	factor int64
}{
	{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"K", 1000}, {"M", 1000 * 1000}, {"G", 1000 * 1000 * 1000},
	{"B", 1},
}

// ParseSize parses a size such as "35MB". Negative sizes and overflows are errors.
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
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid size %q: write a whole number with a unit, e.g. \"35MB\" or \"512KiB\"", s)
	}
	if n > (1<<62)/factor {
		return 0, fmt.Errorf("size %q is too large", s)
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

// MarshalText prints the size in the largest decimal unit that divides it exactly.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s Size) String() string {
	n := int64(s)
	switch {
	case n != 0 && n%(1000*1000*1000) == 0:
		return strconv.FormatInt(n/(1000*1000*1000), 10) + "GB"
	case n != 0 && n%(1000*1000) == 0:
		return strconv.FormatInt(n/(1000*1000), 10) + "MB"
	case n != 0 && n%1000 == 0:
		return strconv.FormatInt(n/1000, 10) + "KB"
	}
	return strconv.FormatInt(n, 10) + "B"
}

// Duration is a time.Duration that also accepts days ("5d") and weeks ("1w"), since queue lifetimes are
// naturally written in days and time.ParseDuration has no unit for them. "0" is zero.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// ParseDuration parses "5d", "4h", "1h30m", "2w", "0".
func ParseDuration(s string) (Duration, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty duration: write a number with a unit, e.g. \"5m\", \"4h\" or \"5d\"")
	}
	if t == "0" {
		return 0, nil
	}
	var total time.Duration
	rest := t
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("invalid duration %q: write a number with a unit, e.g. \"5m\", \"4h\" or \"5d\"", s)
		}
		j := i
		for j < len(rest) && (rest[j] < '0' || rest[j] > '9') && rest[j] != '.' {
			j++
		}
		num, unit := rest[:i], rest[i:j]
		var part time.Duration
		switch unit {
		case "d", "w":
			n, err := strconv.ParseInt(num, 10, 64)
			per := 24 * time.Hour
			if unit == "w" {
				per *= 7
			}
			if err != nil || n > int64((1<<62)/per) {
				return 0, fmt.Errorf("invalid duration %q: too large", s)
			}
			part = time.Duration(n) * per
		default:
			p, err := time.ParseDuration(num + unit)
			if err != nil {
				return 0, fmt.Errorf("invalid duration %q: units are s, m, h, d and w, e.g. \"5m\" or \"5d\"", s)
			}
			part = p
		}
		if part < 0 || total > (1<<62)-part {
			return 0, fmt.Errorf("invalid duration %q: too large", s)
		}
		total += part
		rest = rest[j:]
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

// MarshalText prints whole days as "Nd" and everything else in time.Duration's form.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

func (d Duration) String() string {
	v := time.Duration(d)
	if v == 0 {
		return "0"
	}
	if v%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(v/(24*time.Hour)), 10) + "d"
	}
	s := v.String()
	s = strings.TrimSuffix(s, "0s")
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

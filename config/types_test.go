package config

import (
	"math"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Size
		ok   bool
	}{
		{"35MB", 35_000_000, true},
		{"35mb", 35_000_000, true},
		{" 35 MB ", 35_000_000, true},
		{"512KB", 512_000, true},
		{"512K", 512_000, true},
		{"1GB", 1_000_000_000, true},
		{"1G", 1_000_000_000, true},
		{"10M", 10_000_000, true},
		{"1KiB", 1024, true},
		{"50MiB", 50 << 20, true},
		{"1GiB", 1 << 30, true},
		{"1234", 1234, true},
		{"1234B", 1234, true},
		{"0", 0, true},
		{"", 0, false},
		{"MB", 0, false},
		{"-1MB", 0, false},
		{"+1MB", 0, false},
		{"1.5MB", 0, false},
		{"35XB", 0, false},
		{"35 M B", 0, false},
		{"1TB", 0, false},
		{"0x10", 0, false},
		{"9223372036854775807", 0, false},
		{"4611686018427387904", 1 << 62, true}, // the cap
		{"4611686018427387905", 0, false},
		{"4611686018427388GB", 0, false},
	} {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestSizeString(t *testing.T) {
	for _, tc := range []struct {
		in   Size
		want string
	}{
		{0, "0B"},
		{1, "1B"},
		{999, "999B"},
		{1000, "1KB"},
		{1024, "1KiB"},
		{1536, "1536B"},
		{35_000_000, "35MB"},
		{50 << 20, "50MiB"},
		{1 << 30, "1GiB"},
		{2_000_000_000, "2GB"},
		{1_500_000, "1500KB"},
	} {
		if got := tc.in.String(); got != tc.want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(tc.in), got, tc.want)
		}
		back, err := ParseSize(tc.in.String())
		if err != nil || back != tc.in {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in.String(), back, err, int64(tc.in))
		}
	}
}

func TestParseDuration(t *testing.T) {
	const d = 24 * time.Hour
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true},
		{" 0 ", 0, true},
		{"0s", 0, true},
		{"5m", 5 * time.Minute, true},
		{"4h", 4 * time.Hour, true},
		{"5d", 5 * d, true},
		{"1w", 7 * d, true},
		{"2w3d", 17 * d, true},
		{"1d12h", 36 * time.Hour, true},
		{"1.5d", 36 * time.Hour, true},
		{"1h30m", 90 * time.Minute, true},
		{"1.5h", 90 * time.Minute, true},
		{"90s", 90 * time.Second, true},
		{"500ms", 500 * time.Millisecond, true},
		{"1us", time.Microsecond, true},
		{"1µs", time.Microsecond, true},
		{"7ns", 7, true},
		{".5s", 500 * time.Millisecond, true},
		{"", 0, false},
		{"5", 0, false},
		{"300", 0, false},
		{"-5m", 0, false},
		{"+5m", 0, false},
		{"5 m", 0, false},
		{"5 days", 0, false},
		{"5D", 0, false},
		{"5M", 0, false},
		{"5y", 0, false},
		{"d", 0, false},
		{"5d5", 0, false},
		{"1..5h", 0, false},
		{"99999999999d", 0, false},
		{"15250w", 15250 * 7 * d, true},
		{"15251w", 0, false},
		{"15000w15000w", 0, false},
		{"2562047h", 2562047 * time.Hour, true},
		{"2562048h", 0, false},
	} {
		got, err := ParseDuration(tc.in)
		if (err == nil) != tc.ok || got.D() != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, ok=%v", tc.in, got.D(), err, tc.want, tc.ok)
		}
	}
}

func TestDurationString(t *testing.T) {
	for _, tc := range []struct {
		in   time.Duration
		want string
	}{
		{0, "0"},
		{5 * time.Minute, "5m"},
		{30 * time.Second, "30s"},
		{10 * time.Second, "10s"},
		{90 * time.Second, "1m30s"},
		{time.Hour, "1h"},
		{90 * time.Minute, "1h30m"},
		{4 * time.Hour, "4h"},
		{5 * 24 * time.Hour, "5d"},
		{36 * time.Hour, "1d12h"},
		{24*time.Hour + time.Second, "1d1s"},
		{500 * time.Millisecond, "500ms"},
		{time.Minute + 500*time.Millisecond, "1m500ms"},
		{1500 * time.Millisecond, "1.5s"},
		{time.Nanosecond, "1ns"},
		{math.MaxInt64, "106751d23h47m16.854775807s"},
		{-time.Second, "-1s"},
	} {
		if got := Duration(tc.in).String(); got != tc.want {
			t.Errorf("Duration(%v).String() = %q, want %q", tc.in, got, tc.want)
		}
		if tc.in < 0 {
			continue
		}
		back, err := ParseDuration(Duration(tc.in).String())
		if err != nil || back.D() != tc.in {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", Duration(tc.in).String(), back.D(), err, tc.in)
		}
	}
}

func TestUnitsInTOML(t *testing.T) {
	var s Size
	if err := s.UnmarshalText([]byte("2MB")); err != nil || s != 2_000_000 {
		t.Fatalf("Size.UnmarshalText: %v %v", s, err)
	}
	if err := s.UnmarshalText([]byte("2XB")); err == nil || s != 2_000_000 {
		t.Fatalf("Size.UnmarshalText accepted 2XB or changed the value: %v %v", s, err)
	}
	var d Duration
	if err := d.UnmarshalText([]byte("2d")); err != nil || d.D() != 48*time.Hour {
		t.Fatalf("Duration.UnmarshalText: %v %v", d, err)
	}
	if b, _ := d.MarshalText(); string(b) != "2d" {
		t.Fatalf("Duration.MarshalText = %q", b)
	}
	if b, _ := Size(35_000_000).MarshalText(); string(b) != "35MB" {
		t.Fatalf("Size.MarshalText = %q", b)
	}
}

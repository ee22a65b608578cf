package config

import (
	"strings"

	toml "github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// The single [smarthost] table of earlier versions is refused, not read: ptrelay now takes a list of smart hosts
// ([[smarthosts]]), and reading the old table as a list of one would leave two ways to write the same thing. The
// error prints the [[smarthosts]] block that does what the old table did, so the fix is a copy and paste.

// legacyTable is the old table's name.
const legacyTable = "smarthost"

// legacyName is the name the printed block gives the host: the shipped unit's systemd credential is called
// "smarthost", so a password handed over with LoadCredential=smarthost:FILE keeps working.
const legacyName = "smarthost"

// legacy collects the old table's keys as the scan meets them ([smarthost], dotted smarthost.x keys, or an
// inline smarthost = { ... }).
type legacy struct {
	line  int
	lines []string // "key = value", in file order
}

func (l *legacy) at(line int) {
	if l.line == 0 || line < l.line {
		l.line = line
	}
}

func (l *legacy) add(parts []string, v *unstable.Node) {
	if len(parts) == 0 {
		// smarthost = { address = "...", ... }
		if v.Kind == unstable.InlineTable {
			it := v.Children()
			for it.Next() {
				if kv := it.Node(); kv.Kind == unstable.KeyValue {
					p, _ := keyParts(kv)
					l.add(p, kv.Value())
				}
			}
		}
		return
	}
	key := strings.Join(parts, ".")
	copyIt := "# " + key + " = ... (copy this value from your [smarthost] table)"
	switch v.Kind {
	case unstable.Integer:
		l.lines = append(l.lines, key+" = "+string(v.Data))
	case unstable.String:
		if plain(string(v.Data)) {
			l.lines = append(l.lines, key+" = \""+string(v.Data)+"\"")
			return
		}
		fallthrough
	case unstable.Bool:
		var val any = string(v.Data)
		if v.Kind == unstable.Bool {
			val = string(v.Data) == "true"
		}
		var b strings.Builder
		if strings.Contains(key, ".") || toml.NewEncoder(&b).Encode(map[string]any{key: val}) != nil {
			l.lines = append(l.lines, copyIt)
			return
		}
		l.lines = append(l.lines, strings.TrimRight(b.String(), "\n"))
	default:
		l.lines = append(l.lines, copyIt)
	}
}

// message is the error: what changed, and the block to write instead.
func (l *legacy) message() string {
	var b strings.Builder
	b.WriteString("[smarthost] is no longer read: ptrelay takes a list of smart hosts now, [[smarthosts]], tried " +
		"in order. Replace the [smarthost] table with this block (the name \"" + legacyName + "\" keeps " +
		"LoadCredential=smarthost:FILE and via = \"smarthost\" working):\n\n")
	b.WriteString("    [[smarthosts]]\n    name = \"" + legacyName + "\"\n")
	for _, line := range l.lines {
		b.WriteString("    " + line + "\n")
	}
	return strings.TrimRight(b.String(), "\n")
}

// dropLegacyNoise removes, when the old table was refused, the problems that only repeat it: go-toml's "unknown
// key smarthost.address" for each of its keys, and "no smart host is configured" for settings that would use it.
func dropLegacyNoise(list []*FieldError) []*FieldError {
	found := false
	for _, p := range list {
		if p.Key == legacyTable && strings.HasPrefix(p.Msg, "[smarthost] is no longer read") {
			found = true
		}
	}
	if !found {
		return list
	}
	var out []*FieldError
	for _, p := range list {
		k := stripIndexes(p.Key)
		legacyKey := k == legacyTable && !strings.HasPrefix(p.Msg, "[smarthost] is no longer read") ||
			strings.HasPrefix(k, legacyTable+".")
		consequence := strings.Contains(p.Msg, "no smart host is configured")
		if !legacyKey && !consequence {
			out = append(out, p)
		}
	}
	return out
}

// plain reports a string that is the same in TOML's double quotes as written: printable ASCII without a quote
// or a backslash.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

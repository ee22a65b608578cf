package config

import (
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// scanDocument walks the TOML document once, before go-toml decodes it, for three reasons: to learn the line of
// every key (validation messages point at it); to report every type error and every unknown key at once, where
// go-toml stops at its first type error; and to catch what go-toml accepts silently: an integer for a Duration
// decodes as nanoseconds ("retry_min = 5" would be 5ns). Syntax errors are left to the decoder, which reports them
// with their line; the scan stops there.
func scanDocument(data []byte) (map[string]int, []*FieldError) {
	s := &scan{lines: map[string]int{}, counts: map[string]int{}}
	for i, b := range data {
		if b == '\n' {
			s.newlines = append(s.newlines, i)
		}
	}
	s.p.Reset(data)
	table := ""
	tableKnown := true
	for s.p.NextExpression() {
		e := s.p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			parts, first := keyParts(e)
			line := s.lineAt(first)
			if e.Kind == unstable.Table && len(parts) == 1 && parts[0] == legacyTable {
				table, tableKnown = legacyTable, false
				s.legacy.at(line)
				continue
			}
			if e.Kind == unstable.Table {
				table = s.resolve(parts)
			} else {
				base := join(s.resolve(parts[:len(parts)-1]), parts[len(parts)-1])
				s.counts[base]++
				table = base + "[" + strconv.Itoa(s.counts[base]) + "]"
			}
			if _, ok := s.lines[table]; !ok {
				s.lines[table] = line
			}
			tableKnown = s.checkHeader(stripIndexes(table), e.Kind == unstable.ArrayTable, line)
		case unstable.KeyValue:
			parts, first := keyParts(e)
			switch {
			case table == legacyTable:
				s.legacy.add(parts, e.Value())
				continue
			case table == "" && parts[0] == legacyTable:
				s.legacy.at(s.lineAt(first))
				s.legacy.add(parts[1:], e.Value())
				continue
			case !tableKnown:
				continue // the unknown table was reported once, at its header
			}
			s.value(table, parts, s.lineAt(first), e.Value())
		}
	}
	if s.legacy.line > 0 {
		s.add(s.legacy.line, legacyTable, s.legacy.message())
	}
	return s.lines, s.problems
}

type scan struct {
	p        unstable.Parser
	lines    map[string]int
	counts   map[string]int // arrays of tables seen so far, by resolved path
	newlines []int          // offsets of '\n', so a line number costs a binary search, not a rescan
	problems []*FieldError
	legacy   legacy // the old [smarthost] table, refused with the block to write instead
}

func (s *scan) lineAt(n *unstable.Node) int {
	if n == nil || n.Raw.Length == 0 {
		return 0
	}
	return sort.SearchInts(s.newlines, int(n.Raw.Offset)) + 1
}

func (s *scan) add(line int, key, msg string) {
	s.problems = append(s.problems, &FieldError{Line: line, Key: key, Msg: msg})
}

// resolve appends the current index to every prefix that names an array of tables, as TOML does when [a.b]
// follows [[a]].
func (s *scan) resolve(parts []string) string {
	path := ""
	for _, part := range parts {
		path = join(path, part)
		if n := s.counts[path]; n > 0 {
			path += "[" + strconv.Itoa(n) + "]"
		}
	}
	return path
}

// unknown reports key as unknown, with a suggestion when it looks like a typo.
func (s *scan) unknown(line int, key string) {
	s.add(line, key, unknownKeyMsg(key))
}

func unknownKeyMsg(key string) string {
	msg := "unknown key " + key
	sug := suggestKey(key)
	switch {
	case sug == "":
		msg += ": remove it, or check its spelling and its [table] in docs/configuration.md"
	case !strings.Contains(sug, "."):
		msg += ": did you mean " + sug + "? Top-level settings must come before the first [section]"
	default:
		msg += ": did you mean " + sug + "?"
	}
	return msg
}

// checkHeader checks a [table] or [[array.of.tables]] header and reports whether keys below it are worth checking.
func (s *scan) checkHeader(key string, array bool, line int) bool {
	t, ok := schemaTypes[key]
	switch {
	case !ok:
		s.unknown(line, key)
		return false
	case t.Kind() == reflect.Struct && !array:
		return true
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		if !array {
			s.add(line, key, key+": is a list of tables: write [["+key+"]] with double brackets, once per entry")
			return false
		}
		return true
	case t.Kind() == reflect.Struct:
		s.add(line, key, key+": is a single table: write ["+key+"] with single brackets")
		return false
	}
	s.add(line, key, key+": expected "+describeType(t)+", got a table: write "+key[strings.LastIndexByte(key, '.')+1:]+
		" = ... inside its table")
	return false
}

// value checks one key = value pair, written under table with a possibly dotted key.
func (s *scan) value(table string, parts []string, line int, v *unstable.Node) {
	key := table
	for i, part := range parts {
		key = join(key, part)
		if i < len(parts)-1 {
			t, ok := schemaTypes[stripIndexes(key)]
			if !ok {
				s.unknown(line, stripIndexes(join(key, strings.Join(parts[i+1:], "."))))
				return
			}
			if t.Kind() != reflect.Struct {
				s.add(line, key, key+": expected "+describeType(t)+", got a table")
				return
			}
		}
	}
	if _, ok := s.lines[key]; !ok {
		s.lines[key] = line
	}
	t, ok := schemaTypes[stripIndexes(key)]
	if !ok {
		s.unknown(line, stripIndexes(key))
		return
	}
	s.check(key, t, line, v)
}

// check compares a value node with the Go type it decodes into.
func (s *scan) check(key string, t reflect.Type, line int, v *unstable.Node) {
	mismatch := func() {
		s.add(line, key, key+": expected "+describeType(t)+", got "+kindName(v.Kind))
	}
	switch {
	case t == sizeType:
		switch v.Kind {
		case unstable.Integer:
		case unstable.String:
			if _, err := ParseSize(string(v.Data)); err != nil {
				s.add(line, key, key+": "+err.Error())
			}
		default:
			mismatch()
		}
	case t == autoBoolType:
		if v.Kind != unstable.String && v.Kind != unstable.Bool {
			mismatch()
		}
	case t == durationType:
		switch v.Kind {
		case unstable.String:
			if _, err := ParseDuration(string(v.Data)); err != nil {
				s.add(line, key, key+": "+err.Error())
			}
		case unstable.Integer:
			s.add(line, key, key+": expected "+describeType(t)+`; a bare number has no unit, write e.g. "300s"`)
		default:
			mismatch()
		}
	case t.Kind() == reflect.String:
		if v.Kind != unstable.String {
			mismatch()
		}
	case t.Kind() == reflect.Int || t.Kind() == reflect.Int64:
		if v.Kind != unstable.Integer {
			mismatch()
		}
	case t.Kind() == reflect.Bool:
		if v.Kind != unstable.Bool {
			mismatch()
		}
	case t.Kind() == reflect.Struct:
		if v.Kind != unstable.InlineTable {
			mismatch()
			return
		}
		s.inline(key, line, v)
	case t.Kind() == reflect.Slice:
		if v.Kind != unstable.Array {
			mismatch()
			return
		}
		it := v.Children()
		for i := 1; it.Next(); i++ {
			el := it.Node()
			ek := key + "[" + strconv.Itoa(i) + "]"
			if t.Elem().Kind() == reflect.Struct {
				if el.Kind != unstable.InlineTable {
					s.add(line, ek, ek+": expected a table { ... }, got "+kindName(el.Kind))
					continue
				}
				s.lines[ek] = orLine(s.lineAt(el), line)
				s.inline(ek, s.lines[ek], el)
				continue
			}
			s.check(ek, t.Elem(), line, el)
		}
	}
}

// inline checks the pairs of an inline table { a = 1, b = 2 }.
func (s *scan) inline(key string, line int, v *unstable.Node) {
	it := v.Children()
	for it.Next() {
		kv := it.Node()
		if kv.Kind != unstable.KeyValue {
			continue
		}
		parts, first := keyParts(kv)
		s.value(key, parts, orLine(s.lineAt(first), line), kv.Value())
	}
}

func kindName(k unstable.Kind) string {
	switch k {
	case unstable.String:
		return "a string"
	case unstable.Integer:
		return "an integer"
	case unstable.Float:
		return "a decimal number"
	case unstable.Bool:
		return "true/false"
	case unstable.Array:
		return "a list"
	case unstable.InlineTable:
		return "a table"
	case unstable.LocalDate, unstable.LocalTime, unstable.LocalDateTime, unstable.DateTime:
		return "a date or time"
	}
	return k.String()
}

// keyParts returns the parts of a (possibly dotted) key and its first node, for the line.
func keyParts(n *unstable.Node) ([]string, *unstable.Node) {
	var parts []string
	var first *unstable.Node
	it := n.Key()
	for it.Next() {
		k := it.Node()
		if first == nil {
			first = k
		}
		parts = append(parts, string(k.Data))
	}
	if len(parts) == 0 {
		parts = []string{""}
	}
	return parts, first
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

func orLine(l, fallback int) int {
	if l == 0 {
		return fallback
	}
	return l
}

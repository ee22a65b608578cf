package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	toml "github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// SystemPath is the configuration file used when neither -config nor $PTRELAY_CONFIG names one.
const SystemPath = "/etc/ptrelay/ptrelay.toml"

// SourceDefaults is the source Load reports when no file was found.
const SourceDefaults = "embedded defaults"

// Load finds and reads the configuration in DESIGN.md's order: path when non-empty (the -config flag), else
// $PTRELAY_CONFIG, else /etc/ptrelay/ptrelay.toml if it exists, else the embedded defaults. It returns the
// validated configuration, the source it used (the file's path or "embedded defaults") and, on failure, every
// problem found, joined (see Problems). The configuration is nil whenever the error is not.
//
// A file named by -config or $PTRELAY_CONFIG must exist; only the system path is optional.
func Load(path string) (*Config, string, error) {
	return load(path, os.Getenv("PTRELAY_CONFIG"), SystemPath)
}

func load(flagPath, envPath, systemPath string) (*Config, string, error) {
	path := flagPath
	if path == "" {
		path = envPath
	}
	if path == "" {
		if _, err := os.Stat(systemPath); err == nil {
			path = systemPath
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, systemPath, fmt.Errorf("%s: %w: fix its permissions or name another file with -config", systemPath, err)
		}
	}
	if path == "" {
		c := Default()
		if err := c.Validate(); err != nil {
			return nil, SourceDefaults, err
		}
		return c, SourceDefaults, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, path, fmt.Errorf("reading the configuration: %w", err)
	}
	c, err := Parse(data, path)
	return c, path, err
}

// Parse reads a configuration file's content over the embedded defaults: keys the file leaves out keep their
// default. Decoding is strict: an unknown key, a value of the wrong type and a malformed size or duration are
// errors naming name, the line and the key. The result is then validated; every problem of either stage is
// reported at once. The configuration is nil whenever the error is not.
func Parse(data []byte, name string) (*Config, error) {
	c := &Config{}
	if errs := decodeInto(c, defaultTOML, "default.toml"); len(errs) > 0 {
		panic("config: embedded default.toml does not decode: " + errors.Join(errs...).Error())
	}
	lines, pre := scanDocument(data)
	decErr := decode(c, data)
	problems := merge(pre, decodeErrors(decErr))
	// go-toml decodes every known key before it reports unknown ones, and the scan's own problems do not stop it:
	// in those cases the configuration is complete enough for Validate to add its findings to the same report,
	// leaving out keys whose value was already refused (they hold their default, not what the admin wrote).
	var strict *toml.StrictMissingError
	if decErr == nil || errors.As(decErr, &strict) {
		refused := map[string]bool{}
		for _, p := range problems {
			refused[stripIndexes(p.Key)] = true
		}
		c.fillDynamic()
		for _, p := range c.problems() {
			if !underRefused(refused, stripIndexes(p.Key)) {
				p.Line = lineOf(lines, p.Key)
				problems = append(problems, p)
			}
		}
		// File order reads best in an editor; problems without a line (defaults) come last.
		sort.SliceStable(problems, func(i, j int) bool {
			a, b := problems[i].Line, problems[j].Line
			return a != 0 && (b == 0 || a < b)
		})
	}
	for _, p := range problems {
		p.File = name
	}
	if len(problems) > 0 {
		return nil, joinProblems(problems)
	}
	return c, nil
}

// underRefused reports whether key or one of its enclosing tables had its value refused by the decoding stage.
func underRefused(refused map[string]bool, key string) bool {
	for key != "" {
		if refused[key] {
			return true
		}
		i := strings.LastIndexByte(key, '.')
		if i < 0 {
			return false
		}
		key = key[:i]
	}
	return false
}

// decodeInto decodes data over c and returns its problems; used for the embedded defaults.
func decodeInto(c *Config, data []byte, name string) []error {
	_, pre := scanDocument(data)
	problems := merge(pre, decodeErrors(decode(c, data)))
	errs := make([]error, len(problems))
	for i, p := range problems {
		p.File = name
		errs[i] = p
	}
	return errs
}

func decode(c *Config, data []byte) error {
	d := toml.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	return d.Decode(c)
}

// merge combines the scan's problems with the decoder's, in file order. The scan reports every type error and
// unknown key; the decoder stops at its first error but also knows syntax errors and duplicate keys. A decoder
// problem on a line the scan already reported is the same problem in other words, and is dropped; so is one
// without a line when the scan found anything (go-toml loses the position of some errors it reports for values the
// scan refuses too).
func merge(scanned, decoded []*FieldError) []*FieldError {
	covered := map[int]bool{}
	for _, p := range scanned {
		covered[p.Line] = true
	}
	out := scanned
	for _, p := range decoded {
		if p.Line == 0 && len(scanned) == 0 || p.Line != 0 && !covered[p.Line] {
			out = append(out, p)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	return out
}

// lineOf finds the line of a key, or of the nearest enclosing table present in the file, so that a problem about
// a key left at its default still points at the section it belongs to.
func lineOf(lines map[string]int, key string) int {
	for key != "" {
		if l, ok := lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			return 0
		}
		key = key[:i]
	}
	return 0
}

var typeMismatch = regexp.MustCompile(`^cannot decode TOML (\S+) into `)

// decodeErrors translates go-toml's errors into FieldErrors with the line and the key in an admin's words.
func decodeErrors(err error) []*FieldError {
	if err == nil {
		return nil
	}
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		out := make([]*FieldError, 0, len(strict.Errors))
		for i := range strict.Errors {
			e := &strict.Errors[i]
			line, _ := e.Position()
			key := strings.Join(e.Key(), ".")
			out = append(out, &FieldError{Line: line, Key: key, Msg: unknownKeyMsg(key)})
		}
		return out
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		key := strings.Join(de.Key(), ".")
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		if m := typeMismatch.FindStringSubmatch(msg); m != nil && key != "" {
			if t, ok := schemaTypes[key]; ok {
				msg = "expected " + describeType(t) + ", got " + article(m[1])
			}
		}
		switch {
		case strings.Contains(msg, "already defined"):
			// go-toml names only the last part of the key here; the line says which one.
			key, msg = "", "a key or table is written twice ("+msg+"): keep only one of them"
		case key != "":
			msg = key + ": " + msg
		default:
			msg = "syntax error: " + msg
		}
		return []*FieldError{{Line: line, Key: key, Msg: msg}}
	}
	return []*FieldError{{Msg: err.Error()}}
}

func article(tomlKind string) string {
	switch tomlKind {
	case "integer", "inline", "array", "offset", "local":
		return "an " + tomlKind
	}
	return "a " + tomlKind
}

// scanDocument walks the TOML document once, before go-toml decodes it, for three reasons: to learn the line of
// every key (validation messages point at it); to report every type error and every unknown key at once, where
// go-toml stops at its first type error; and to catch what go-toml accepts silently: an integer for a Duration
// decodes as nanoseconds ("retry_min = 5" would be 5ns). Syntax errors are left to the decoder, which reports them
// with their line; the scan stops there.
func scanDocument(data []byte) (map[string]int, []*FieldError) {
	s := &scan{lines: map[string]int{}, counts: map[string]int{}}
	s.p.Reset(data)
	table := ""
	tableKnown := true
	for s.p.NextExpression() {
		e := s.p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			parts, first := keyParts(e)
			line := s.lineAt(first)
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
			if !tableKnown {
				continue // the unknown table was reported once, at its header
			}
			parts, first := keyParts(e)
			s.value(table, parts, s.lineAt(first), e.Value())
		}
	}
	return s.lines, s.problems
}

type scan struct {
	p        unstable.Parser
	lines    map[string]int
	counts   map[string]int // arrays of tables seen so far, by resolved path
	problems []*FieldError
}

func (s *scan) lineAt(n *unstable.Node) int {
	if n == nil || n.Raw.Length == 0 {
		return 0
	}
	return s.p.Shape(n.Raw).Start.Line
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

package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	toml "github.com/pelletier/go-toml/v2"
)

// SystemPath is the configuration file used when neither -config nor $PTRELAY_CONFIG names one.
const SystemPath = "/etc/ptrelay/ptrelay.toml"

// SourceDefaults is the source Load reports when no file was found.
const SourceDefaults = "embedded defaults"

// Load finds and reads the configuration in the documented order: path when non-empty (the -config flag), else
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
	if errors.Is(err, fs.ErrPermission) {
		// The packaged unit runs as a dynamic user, which must read the file too; it holds password hashes
		// (bcrypt), never passwords: those live in password files.
		return nil, path, fmt.Errorf("reading the configuration: %w: run this command as root (sudo), or make the "+
			"file readable: chmod 644 %s", err, path)
	}
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
	problems := merge(pre, decodeErrors(decErr, lines))
	// go-toml decodes every known key before it reports unknown ones, and the scan's own problems do not stop it:
	// in those cases the configuration is complete enough for Validate to add its findings to the same report,
	// leaving out keys whose value was already refused (they hold their default, not what the admin wrote).
	var strict *toml.StrictMissingError
	if decErr == nil || errors.As(decErr, &strict) {
		refused := map[string]bool{}
		for _, p := range problems {
			refused[stripIndexes(p.Key)] = true
		}
		c.fillSmarthostDefaults(func(key string) bool { _, ok := lines[key]; return ok })
		c.fillDynamic()
		for _, p := range c.problems() {
			if !underRefused(refused, stripIndexes(p.Key)) {
				p.Line = lineOf(lines, p.Key)
				problems = append(problems, p)
			}
		}
		problems = dropLegacyNoise(problems)
		// File order reads best in an editor; problems without a line (defaults) come last.
		sort.SliceStable(problems, func(i, j int) bool {
			a, b := problems[i].Line, problems[j].Line
			return a != 0 && (b == 0 || a < b)
		})
	}
	problems = dropLegacyNoise(problems)
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
	problems := merge(pre, decodeErrors(decode(c, data), nil))
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
	d.EnableUnmarshalerInterface() // AutoBool reads "auto" as well as true and false
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

// decodeErrors translates go-toml's errors into FieldErrors with the line and the key in an admin's words; lines
// (the scan's first line of every key and table) lets a duplicate table point at its first header.
func decodeErrors(err error, lines map[string]int) []*FieldError {
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
		case strings.Contains(msg, "already exists") && key != "":
			// go-toml: "table smtp already exists", a [table] header written twice.
			first := ""
			if l := lines[key]; l > 0 && l != line {
				first = " (first at line " + strconv.Itoa(l) + ")"
			}
			msg = "[" + key + "] is written twice" + first + ": move the keys under this header into the first [" +
				key + "] table and delete this line"
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

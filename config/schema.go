package config

import (
	"reflect"
	"sort"
	"strings"
)

// schemaKey is one dotted key of the configuration file, derived from the struct tags of Config so that the
// loader's messages, its suggestions for misspelt keys and the documentation test never drift from the schema.
type schemaKey struct {
	Key  string       // "smtp.users.password_hash": arrays of tables appear without an index
	Type reflect.Type // the Go type of the field
}

var (
	sizeType     = reflect.TypeFor[Size]()
	durationType = reflect.TypeFor[Duration]()
	autoBoolType = reflect.TypeFor[AutoBool]()
)

// schema lists every key of Config, tables included, in struct order.
func schema() []schemaKey {
	var out []schemaKey
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			key := name
			if prefix != "" {
				key = prefix + "." + name
			}
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem() // an optional table ([smarthosts.oauth2]) is written like any other
			}
			out = append(out, schemaKey{Key: key, Type: ft})
			switch {
			case ft.Kind() == reflect.Struct:
				walk(key, ft)
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
				walk(key, ft.Elem())
			}
		}
	}
	walk("", reflect.TypeFor[Config]())
	return out
}

// schemaTypes maps each dotted key to its Go type.
var schemaTypes = func() map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for _, k := range schema() {
		m[k.Key] = k.Type
	}
	return m
}()

// stripIndexes turns "smtp.users[2].name" into "smtp.users.name", the form schema uses.
func stripIndexes(key string) string {
	if !strings.Contains(key, "[") {
		return key
	}
	var b strings.Builder
	skip := false
	for _, r := range key {
		switch {
		case r == '[':
			skip = true
		case r == ']':
			skip = false
		case !skip:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// describeType says in an admin's words what a value of type t looks like.
func describeType(t reflect.Type) string {
	switch {
	case t == sizeType:
		return `a size in quotes such as "35MB"`
	case t == durationType:
		return `a duration in quotes such as "5m", "4h" or "5d"`
	case t == autoBoolType:
		return `"auto", true or false`
	}
	switch t.Kind() {
	case reflect.String:
		return "a string in quotes"
	case reflect.Int, reflect.Int64:
		return "a whole number"
	case reflect.Bool:
		return "true or false"
	case reflect.Struct:
		return "a table"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Struct {
			return "a list of tables"
		}
		return `a list of strings such as ["a", "b"]`
	}
	return t.String()
}

// suggestKey returns the known key closest to a misspelt one, preferring keys of the same table, or "" when
// nothing is close enough to be a plausible typo.
func suggestKey(unknown string) string {
	if len(unknown) > 64 {
		return "" // not a typo, and the distance is quadratic
	}
	parent, last := splitLast(unknown)
	// The right key in the wrong table: most often a top-level key written below a [section], which TOML reads as
	// part of that section. Suggest it when exactly one table has a key of that name.
	var moved []string
	for _, k := range schema() {
		if p, l := splitLast(k.Key); l == last && p != parent {
			moved = append(moved, k.Key)
		}
	}
	if len(moved) == 1 {
		return moved[0]
	}
	type cand struct {
		key  string
		dist int
	}
	var cands []cand
	for _, k := range schema() {
		d := editDistance(unknown, k.Key)
		if p, _ := splitLast(k.Key); p != parent {
			d++ // a typo in the table name is less likely than in the key
		}
		cands = append(cands, cand{k.Key, d})
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].dist < cands[j].dist })
	limit := max(2, len(unknown)/4)
	if len(cands) == 0 || cands[0].dist > limit {
		return ""
	}
	return cands[0].key
}

func splitLast(key string) (parent, last string) {
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		return key[:i], key[i+1:]
	}
	return "", key
}

// editDistance is the Levenshtein distance over bytes; keys are ASCII.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

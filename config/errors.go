package config

import (
	"errors"
	"strconv"
	"strings"
)

// FieldError is one problem of a configuration: a key that does not exist, a value of the wrong type, or a value
// that Validate refuses. Its text names the key and says how to fix it. Load, Parse and Validate return several
// of them at once, joined with errors.Join; Problems splits them again.
type FieldError struct {
	File string // the file the problem was found in; "" for a Config built in code
	Line int    // 1-based line in File; 0 when the key is not in the file (a default, or a syntax error's end)
	Key  string // dotted key such as "smtp.users[2].password_hash" (arrays of tables count from 1); "" if none
	Msg  string // what is wrong and how to fix it, starting with the key when there is one
}

// Error renders "file:line: message", as compilers do, so editors and admins can jump to the line.
func (e *FieldError) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		b.WriteString(e.File + ":" + strconv.Itoa(e.Line) + ": ")
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		b.WriteString("line " + strconv.Itoa(e.Line) + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Problems returns every *FieldError inside err (as returned by Load, Parse or Validate), in order. Errors of
// another kind, such as an unreadable file, are returned as a FieldError holding only their text.
func Problems(err error) []*FieldError {
	if err == nil {
		return nil
	}
	var out []*FieldError
	var walk func(error)
	walk = func(e error) {
		if fe, ok := e.(*FieldError); ok {
			out = append(out, fe)
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		var fe *FieldError
		if errors.As(e, &fe) {
			out = append(out, fe)
			return
		}
		out = append(out, &FieldError{Msg: e.Error()})
	}
	walk(err)
	return out
}

// joinProblems turns a list into the single error the API returns, nil when the list is empty.
func joinProblems(list []*FieldError) error {
	if len(list) == 0 {
		return nil
	}
	errs := make([]error, len(list))
	for i, p := range list {
		errs[i] = p
	}
	return errors.Join(errs...)
}

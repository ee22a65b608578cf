package docs

import (
	"regexp"
	"strings"
)

// The small part of PowerShell's grammar the guides need checking: which cmdlet each command calls, and which
// named parameters it passes. Strings are opaque, comments and backtick line continuations are honoured, and
// script blocks, sub-expressions and hash tables ({...}, (...), @{...}) hold commands of their own.

// psCommand is one command of a PowerShell line: the cmdlet (or native program) and its named parameters.
type psCommand struct {
	Name   string    // first word: "Set-SendConnector", "certutil"
	Params []psParam // -Name or -Name:value, in order
	Words  int       // words after the name, parameters and values included
	Line   int       // line number in the Markdown file
	Text   string    // the whole (joined) source line, for messages
}

type psParam struct {
	Name  string // without the dash
	Value string // the next word (or the part after ':'), unquoted; "" for a switch
}

func (c psCommand) param(name string) (psParam, bool) {
	for _, p := range c.Params {
		if strings.EqualFold(p.Name, name) {
			return p, true
		}
	}
	return psParam{}, false
}

// cmdletName matches the Verb-Noun form of a cmdlet name, in any case (PowerShell ignores case); inlineCmdlet
// only as the guides spell cmdlets, so that prose such as `systemd-analyze verify` is not taken for PowerShell.
var (
	cmdletName   = regexp.MustCompile(`^[A-Za-z]+-[A-Za-z][A-Za-z0-9]*$`)
	inlineCmdlet = regexp.MustCompile(`^[A-Z][a-z]+-[A-Z][A-Za-z0-9]*$`)
)

// psToken is a word of a command; quoted strings and nested blocks are kept apart from bare words.
type psToken struct {
	text   string
	quoted bool
}

// parsePowerShell splits a block of PowerShell source into commands. firstLine is the Markdown line number of
// the block's first line.
func parsePowerShell(src string, firstLine int) []psCommand {
	var out []psCommand
	lines := strings.Split(src, "\n")
	for i := 0; i < len(lines); i++ {
		start := i
		line := lines[i]
		// A backtick at the end of a line continues the command on the next one.
		for strings.HasSuffix(strings.TrimRight(line, " \t\r"), "`") && i+1 < len(lines) {
			line = strings.TrimSuffix(strings.TrimRight(line, " \t\r"), "`") + " " + lines[i+1]
			i++
		}
		for _, c := range splitCommands(line) {
			c.Line = firstLine + start
			c.Text = strings.TrimSpace(line)
			out = append(out, c)
		}
	}
	return out
}

// splitCommands tokenizes one logical line. Commands end at '|', ';' and the end of the line; '(' '{' start a
// nested command that ends at the matching ')' '}', after which the outer command goes on.
func splitCommands(line string) []psCommand {
	var done []psCommand
	stack := [][]psToken{nil}
	var word strings.Builder
	quotedWord := false
	flush := func() {
		if word.Len() > 0 || quotedWord {
			top := len(stack) - 1
			stack[top] = append(stack[top], psToken{text: word.String(), quoted: quotedWord})
		}
		word.Reset()
		quotedWord = false
	}
	finish := func() {
		flush()
		top := len(stack) - 1
		if c, ok := toCommand(stack[top]); ok {
			done = append(done, c)
		}
		stack[top] = nil
	}
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch {
		case ch == '"' || ch == '\'':
			// A quoted string: to its closing quote; backtick escapes in double quotes, doubled quotes in both.
			j := i + 1
			for ; j < len(line); j++ {
				if ch == '"' && line[j] == '`' {
					j++
					continue
				}
				if line[j] == ch {
					if j+1 < len(line) && line[j+1] == ch {
						j++
						continue
					}
					break
				}
			}
			word.WriteString(line[i+1 : min(j, len(line))])
			quotedWord = true
			i = j
		case ch == '#' && word.Len() == 0:
			i = len(line) // a comment to the end of the line
		case ch == ' ' || ch == '\t' || ch == '\r':
			flush()
		case ch == '|' || ch == ';':
			finish()
		case ch == '(' || ch == '{':
			// @{...}, @(...), $(...) and script blocks: the outer command sees one value, "(...)".
			flush()
			stack = append(stack, nil)
		case ch == ')' || ch == '}':
			finish()
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
				top := len(stack) - 1
				stack[top] = append(stack[top], psToken{text: "(...)", quoted: true})
			}
		default:
			word.WriteByte(ch)
		}
	}
	for len(stack) > 0 {
		finish()
		stack = stack[:len(stack)-1]
	}
	return done
}

// toCommand turns the tokens of one command into a psCommand; an assignment ("$cred = Get-Credential") counts
// as the command on its right. It reports false for an empty command or a bare expression.
func toCommand(toks []psToken) (psCommand, bool) {
	if len(toks) >= 2 && !toks[0].quoted && strings.HasPrefix(toks[0].text, "$") && !toks[1].quoted &&
		(toks[1].text == "=" || toks[1].text == "+=") {
		toks = toks[2:]
	}
	if len(toks) == 0 || toks[0].quoted || strings.HasPrefix(toks[0].text, "$") || strings.HasPrefix(toks[0].text, "-") {
		return psCommand{}, false
	}
	c := psCommand{Name: toks[0].text, Words: len(toks) - 1}
	for i := 1; i < len(toks); i++ {
		t := toks[i]
		if t.quoted || len(t.text) < 2 || t.text[0] != '-' || !isLetter(t.text[1]) {
			continue
		}
		name, value, hasValue := strings.Cut(t.text[1:], ":")
		if !hasValue && i+1 < len(toks) && !(len(toks[i+1].text) > 1 && toks[i+1].text[0] == '-' && !toks[i+1].quoted && isLetter(toks[i+1].text[1])) {
			value = toks[i+1].text
		}
		c.Params = append(c.Params, psParam{Name: name, Value: value})
	}
	return c, true
}

func isLetter(b byte) bool { return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' }

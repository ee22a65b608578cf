package docs

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

const referenceFile = "testdata/cmdlets.txt"

// cmdletRef is one cmdlet of the reference: its parameter names (aliases included) and where they come from.
type cmdletRef struct {
	Name   string
	Source string
	Common bool // supports the common parameters (-Verbose, -ErrorAction, ...)
	Params []string
}

// reference is testdata/cmdlets.txt: the cmdlets, and the common parameters under the name "@common".
type reference map[string]*cmdletRef

// loadReference reads the reference file: a header line per cmdlet ("Name source [common]"), then its parameter
// names indented, one a line; '#' starts a comment.
func loadReference(path string) (reference, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ref := reference{}
	var cur *cmdletRef
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		fields := strings.Fields(line)
		if line[0] == ' ' || line[0] == '\t' {
			if cur == nil || len(fields) != 1 {
				return nil, fmt.Errorf("%s:%d: a parameter line needs one name under a cmdlet line", path, n)
			}
			cur.Params = append(cur.Params, fields[0])
			continue
		}
		if len(fields) < 2 || len(fields) > 3 || len(fields) == 3 && fields[2] != "common" {
			return nil, fmt.Errorf("%s:%d: want \"Cmdlet source [common]\"", path, n)
		}
		cur = &cmdletRef{Name: fields[0], Source: fields[1], Common: len(fields) == 3}
		if ref[strings.ToLower(cur.Name)] != nil {
			return nil, fmt.Errorf("%s:%d: %s listed twice", path, n, cur.Name)
		}
		ref[strings.ToLower(cur.Name)] = cur
	}
	return ref, sc.Err()
}

func (r reference) cmdlet(name string) *cmdletRef { return r[strings.ToLower(name)] }

// lookup finds a parameter of c: exact spelling first; a match that differs only in case is returned with
// exact=false (PowerShell would accept it, the guide should spell it as Microsoft does).
func (r reference) lookup(c *cmdletRef, name string) (spelled string, exact, ok bool) {
	lists := [][]string{c.Params}
	if common := r["@common"]; c.Common && common != nil {
		lists = append(lists, common.Params)
	}
	for _, l := range lists {
		if slices.Contains(l, name) {
			return name, true, true
		}
	}
	for _, l := range lists {
		for _, p := range l {
			if strings.EqualFold(p, name) {
				return p, false, true
			}
		}
	}
	return "", false, false
}

// aliases of cmdlets that admins copy from forum posts: the guides spell the cmdlet out, so that the test can
// check it and readers can look it up.
var aliases = map[string]string{
	"where": "Where-Object", "?": "Where-Object", "fl": "Format-List", "ft": "Format-Table",
	"select": "Select-Object", "sort": "Sort-Object", "%": "ForEach-Object", "foreach": "ForEach-Object",
	"gc": "Get-Content", "md": "New-Item", "ni": "New-Item",
}

// rule is a requirement Microsoft's reference states in prose for one parameter value, which a parameter
// list alone cannot show.
type rule struct {
	cmdlets []string
	when    func(psCommand) bool
	needs   string // a parameter that must be on the same command line
	source  string // the reference's words
}

func value(c psCommand, name string) string {
	p, _ := c.param(name)
	return strings.ToLower(p.Value)
}

var sendConnector = []string{"Set-SendConnector", "New-SendConnector"}

var rules = []rule{
	{sendConnector, func(c psCommand) bool {
		v := value(c, "SmartHostAuthMechanism")
		return v == "basicauth" || v == "basicauthrequiretls"
	}, "AuthenticationCredential",
		"SmartHostAuthMechanism: \"If you select BasicAuth or BasicAuthRequireTLS, you must use the AuthenticationCredential parameter\""},
	{sendConnector, func(c psCommand) bool { return value(c, "DNSRoutingEnabled") == "$false" }, "SmartHosts",
		"SmartHosts: \"required if you set the DNSRoutingEnabled parameter to $false and it must be specified on the same command line\""},
	{sendConnector, func(c psCommand) bool { _, ok := c.param("TlsAuthLevel"); return ok }, "RequireTLS",
		"TlsAuthLevel: \"You can't specify a value for this parameter ... if the RequireTLS parameter is set to $false\""},
	{sendConnector, func(c psCommand) bool { return value(c, "TlsAuthLevel") == "domainvalidation" }, "TlsDomain",
		"TlsDomain: \"A value for this parameter is required if the TLSAuthLevel parameter is set to DomainValidation\" (smart host connector)"},
}

// docLine is a PowerShell command found in a guide, from a code block or from an inline code span.
type docLine struct {
	file   string
	inline bool
	cmd    psCommand
}

// fence matches the opening of a fenced code block and its language.
var fence = regexp.MustCompile("^(\\s*)```+\\s*([A-Za-z0-9_-]*)")

// inlineSpan matches one `code span` of a line.
var inlineSpan = regexp.MustCompile("`([^`]+)`")

// extractCommands returns the PowerShell commands of a Markdown file: every command of its powershell (ps1,
// pwsh) code blocks, and every inline code span that starts with a cmdlet name followed by an argument (a
// bare name such as `Message-ID` is a word, not a command).
func extractCommands(file string, md []byte) []docLine {
	var out []docLine
	lines := strings.Split(string(md), "\n")
	for i := 0; i < len(lines); i++ {
		m := fence.FindStringSubmatch(lines[i])
		if m == nil {
			for _, span := range inlineSpan.FindAllStringSubmatch(lines[i], -1) {
				for _, c := range parsePowerShell(span[1], i+1) {
					if inlineCmdlet.MatchString(c.Name) && c.Words > 0 {
						out = append(out, docLine{file: file, inline: true, cmd: c})
					}
				}
			}
			continue
		}
		indent, lang := m[1], strings.ToLower(m[2])
		var body []string
		start := i + 2
		for i++; i < len(lines) && !strings.HasPrefix(strings.TrimSpace(lines[i]), "```"); i++ {
			body = append(body, strings.TrimPrefix(lines[i], indent))
		}
		if lang == "powershell" || lang == "ps1" || lang == "pwsh" || lang == "ps" {
			for _, c := range parsePowerShell(strings.Join(body, "\n"), start) {
				out = append(out, docLine{file: file, cmd: c})
			}
		}
	}
	return out
}

// TestCmdletParameters checks every PowerShell command the guides show against Microsoft's cmdlet reference
// (testdata/cmdlets.txt): the cmdlet must be listed, every named parameter must be one of its parameters (or
// aliases, or the common parameters), spelt as the reference spells it, and the requirements the reference
// states for some values (rules) must hold on the same command line. A misspelt parameter in a guide fails CI
// instead of failing on an admin's Exchange server.
func TestCmdletParameters(t *testing.T) {
	ref, err := loadReference(referenceFile)
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	checked := map[string]int{}
	for _, file := range files {
		md, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range extractCommands(file, md) {
			where := fmt.Sprintf("%s:%d: %s", l.file, l.cmd.Line, l.cmd.Text)
			if full, ok := aliases[strings.ToLower(l.cmd.Name)]; ok && !l.inline {
				t.Errorf("%s\n\twrite %s instead of its alias %s", where, full, l.cmd.Name)
				continue
			}
			if !cmdletName.MatchString(l.cmd.Name) {
				continue // a native program (certutil, reg, ptrelay)
			}
			c := ref.cmdlet(l.cmd.Name)
			if c == nil {
				t.Errorf("%s\n\tcmdlet %s is not in %s: add its reference page there (see the file's header)", where, l.cmd.Name, referenceFile)
				continue
			}
			if c.Name != l.cmd.Name {
				t.Errorf("%s\n\tspell the cmdlet %s, as its reference does", where, c.Name)
			}
			checked[l.file]++
			for _, p := range l.cmd.Params {
				spelled, exact, ok := ref.lookup(c, p.Name)
				switch {
				case !ok:
					t.Errorf("%s\n\t%s has no parameter -%s (reference: %s)%s", where, c.Name, p.Name, c.Source, suggest(c, p.Name))
				case !exact:
					t.Errorf("%s\n\tspell -%s as the reference does: -%s", where, p.Name, spelled)
				}
			}
			for _, r := range rules {
				if slices.Contains(r.cmdlets, c.Name) && r.when(l.cmd) {
					if _, ok := l.cmd.param(r.needs); !ok {
						t.Errorf("%s\n\tneeds -%s on the same line: %s", where, r.needs, r.source)
					}
				}
			}
		}
	}
	// The guide that matters most must keep being checked: a parser that finds nothing would pass everything.
	if checked["exchange.md"] < 10 {
		t.Errorf("only %d cmdlet lines found in exchange.md; the extraction is broken", checked["exchange.md"])
	}
}

// suggest names the reference's parameters closest to a misspelt one.
func suggest(c *cmdletRef, name string) string {
	type cand struct {
		p string
		d int
	}
	var cs []cand
	for _, p := range c.Params {
		if d := editDistance(strings.ToLower(p), strings.ToLower(name)); d <= 3 {
			cs = append(cs, cand{p, d})
		}
	}
	if len(cs) == 0 {
		return ""
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].d < cs[j].d })
	return "; did you mean -" + cs[0].p + "?"
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// TestCmdletParameters_CatchesMistakes runs the same checks on a guide with known mistakes, so the test above
// cannot silently accept everything.
func TestCmdletParameters_CatchesMistakes(t *testing.T) {
	ref, err := loadReference(referenceFile)
	if err != nil {
		t.Fatal(err)
	}
	md := "Text `Set-SendConnector \"x\" -Portt 587` here.\n\n" +
		"```powershell\n" +
		"$cred = Get-Credential exchange   # a comment -NotAParam\n" +
		"Set-SendConnector \"Internet\" -DNSRoutingEnabled $false -SmartHosts \"relay.example.lan\" `\n" +
		"    -SmartHostAuthMechanism BasicAuthRequireTLS -fqdn \"mail.example.com\" -TlsDomian x\n" +
		"Get-Queue | Where-Object { $_.LastError -ne $null } | Format-Lisst Identity\n" +
		"New-SendConnector -Name \"a\" -DNSRoutingEnabled $false -AuthenticationCredential (Get-Credential -UserNam x)\n" +
		"```\n"
	lines := extractCommands("bad.md", []byte(md))
	var names []string
	for _, l := range lines {
		names = append(names, l.cmd.Name)
	}
	if want := []string{"Set-SendConnector", "Get-Credential", "Set-SendConnector", "Get-Queue", "Where-Object",
		"Format-Lisst", "Get-Credential", "New-SendConnector"}; !slices.Equal(names, want) {
		t.Fatalf("commands found: %v, want %v", names, want)
	}
	var problems []string
	for _, l := range lines {
		c := ref.cmdlet(l.cmd.Name)
		if c == nil {
			problems = append(problems, "unknown cmdlet "+l.cmd.Name)
			continue
		}
		for _, p := range l.cmd.Params {
			if _, exact, ok := ref.lookup(c, p.Name); !ok {
				problems = append(problems, "no -"+p.Name)
			} else if !exact {
				problems = append(problems, "case -"+p.Name)
			}
		}
		for _, r := range rules {
			if slices.Contains(r.cmdlets, c.Name) && r.when(l.cmd) {
				if _, ok := l.cmd.param(r.needs); !ok {
					problems = append(problems, c.Name+" needs -"+r.needs)
				}
			}
		}
	}
	want := []string{"no -Portt", "case -fqdn", "no -TlsDomian", "Set-SendConnector needs -AuthenticationCredential",
		"unknown cmdlet Format-Lisst", "no -UserNam", "New-SendConnector needs -SmartHosts"}
	if !slices.Equal(problems, want) {
		t.Errorf("problems found:\n%v\nwant:\n%v", problems, want)
	}
}

// TestReferenceFile keeps the reference readable and complete: sorted, no duplicates, and every cmdlet with
// parameters of its own.
func TestReferenceFile(t *testing.T) {
	ref, err := loadReference(referenceFile)
	if err != nil {
		t.Fatal(err)
	}
	if ref["@common"] == nil || !slices.Contains(ref["@common"].Params, "ErrorAction") {
		t.Error("the common parameters (@common) are missing")
	}
	for _, c := range ref {
		if len(c.Params) == 0 {
			t.Errorf("%s has no parameters", c.Name)
		}
		if !slices.IsSorted(c.Params) || len(slices.Compact(slices.Clone(c.Params))) != len(c.Params) {
			t.Errorf("%s: parameters not sorted or duplicated", c.Name)
		}
	}
}

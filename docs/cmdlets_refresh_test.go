package docs

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// Regenerating testdata/cmdlets.txt from local copies of Microsoft's documentation repositories:
//
//	git clone --depth 1 https://github.com/MicrosoftDocs/office-docs-powershell /tmp/office-docs-powershell
//	git clone --depth 1 https://github.com/MicrosoftDocs/PowerShell-Docs /tmp/PowerShell-Docs
//	go test ./docs -run TestRefreshCmdletReference -args \
//	    -office-docs /tmp/office-docs-powershell -powershell-docs /tmp/PowerShell-Docs
//
// It lists every cmdlet already in the file and every cmdlet the guides use, reads the "## PARAMETERS" section
// of its page (each "### -Name" heading, and the "Aliases:" of its yaml block), and writes the file with the
// repositories' commits and dates in its header. Without the flags the test is skipped: CI never needs the
// network.
var (
	officeDocs       = flag.String("office-docs", "", "a checkout of MicrosoftDocs/office-docs-powershell (Exchange cmdlets)")
	powershellDocs   = flag.String("powershell-docs", "", "a checkout of MicrosoftDocs/PowerShell-Docs (Windows PowerShell 5.1 cmdlets)")
	officeDocsRev    = flag.String("office-docs-rev", "", "commit and date of -office-docs, when it is not a git checkout")
	powershellDocRev = flag.String("powershell-docs-rev", "", "commit and date of -powershell-docs, when it is not a git checkout")
)

const (
	exchangePages   = "exchange/exchange-ps/ExchangePowerShell"
	powershellPages = "reference/5.1"
	commonPage      = "reference/5.1/Microsoft.PowerShell.Core/About/about_CommonParameters.md"
)

func TestRefreshCmdletReference(t *testing.T) {
	if *officeDocs == "" || *powershellDocs == "" {
		t.Skip("give -office-docs and -powershell-docs to regenerate " + referenceFile)
	}
	names := map[string]bool{}
	if old, err := loadReference(referenceFile); err == nil {
		for _, c := range old {
			if c.Name != "@common" {
				names[c.Name] = true
			}
		}
	}
	files, _ := filepath.Glob("*.md")
	for _, f := range files {
		md, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range extractCommands(f, md) {
			if cmdletName.MatchString(l.cmd.Name) {
				names[l.cmd.Name] = true
			}
		}
	}

	var body bytes.Buffer
	common, err := os.ReadFile(filepath.Join(*powershellDocs, commonPage))
	if err != nil {
		t.Fatal(err)
	}
	params := headings(section(string(common), "## Common parameters"))
	fmt.Fprintf(&body, "@common PowerShell-Docs:%s\n", commonPage)
	writeParams(&body, params)

	sorted := slices.Sorted(func(yield func(string) bool) {
		for n := range names {
			if !yield(n) {
				return
			}
		}
	})
	for _, name := range sorted {
		repo, rel, page, err := findPage(name)
		if err != nil {
			t.Fatal(err)
		}
		params, hasCommon := pageParameters(page)
		if len(params) == 0 {
			t.Fatalf("%s: no parameters found in %s", name, rel)
		}
		suffix := ""
		if hasCommon {
			suffix = " common"
		}
		fmt.Fprintf(&body, "\n%s %s:%s%s\n", name, repo, rel, suffix)
		writeParams(&body, params)
	}

	var out bytes.Buffer
	fmt.Fprintf(&out, `# Parameters of the PowerShell cmdlets that docs/*.md use, from Microsoft's cmdlet reference.
# TestCmdletParameters checks every cmdlet line of the guides against this file, offline.
#
# Generated on %s by TestRefreshCmdletReference (docs/cmdlets_refresh_test.go says how) from the
# "## PARAMETERS" section of each cmdlet's page (its "### -Name" headings and their Aliases) in:
#   MicrosoftDocs/office-docs-powershell %s, %s/<Cmdlet>.md
#   MicrosoftDocs/PowerShell-Docs %s, %s/<Module>/<Cmdlet>.md
# The Exchange pages cover Exchange 2010 and later (Exchange Server SE included); Exchange 2007's cmdlets are
# documented elsewhere and not checked here.
#
# Format: "Cmdlet repository:path [common]", then its parameters indented, one a line; "common" means the cmdlet
# also takes the common parameters of @common.

`, time.Now().UTC().Format(time.DateOnly), revision(*officeDocs, *officeDocsRev), exchangePages,
		revision(*powershellDocs, *powershellDocRev), powershellPages)
	out.Write(body.Bytes())
	if err := os.WriteFile(referenceFile, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s: %d cmdlets", referenceFile, len(sorted))
}

func writeParams(b *bytes.Buffer, params []string) {
	for _, p := range params {
		fmt.Fprintf(b, "    %s\n", p)
	}
}

// findPage locates a cmdlet's page: the Exchange reference first, then Windows PowerShell 5.1's modules.
func findPage(name string) (repo, rel, text string, err error) {
	rel = filepath.Join(exchangePages, name+".md")
	if b, err := os.ReadFile(filepath.Join(*officeDocs, rel)); err == nil {
		return "office-docs-powershell", rel, string(b), nil
	}
	matches, _ := filepath.Glob(filepath.Join(*powershellDocs, powershellPages, "*", name+".md"))
	if len(matches) == 1 {
		b, err := os.ReadFile(matches[0])
		rel, _ := filepath.Rel(*powershellDocs, matches[0])
		return "PowerShell-Docs", rel, string(b), err
	}
	return "", "", "", fmt.Errorf("no reference page for %s (looked in %s and %s/*/)", name, exchangePages, powershellPages)
}

// section returns the part of a Markdown page from the heading to the next heading of the same level.
func section(page, heading string) string {
	i := strings.Index(page, "\n"+heading+"\n")
	if i < 0 {
		return ""
	}
	rest := page[i+len(heading)+2:]
	if j := strings.Index(rest, "\n## "); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

var (
	paramHeading = regexp.MustCompile(`(?m)^### -([A-Za-z][A-Za-z0-9_]*)\s*$`)
	aliasLine    = regexp.MustCompile(`(?m)^Aliases:[ \t]*(.*)$`)
)

// headings returns the "### -Name" parameter names of a section, sorted.
func headings(sec string) []string {
	var out []string
	for _, m := range paramHeading.FindAllStringSubmatch(sec, -1) {
		out = append(out, m[1])
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// pageParameters returns a cmdlet page's parameters with their aliases, and whether it takes the common ones.
func pageParameters(page string) ([]string, bool) {
	sec := section(page, "## PARAMETERS")
	var out []string
	locs := paramHeading.FindAllStringSubmatchIndex(sec, -1)
	for i, loc := range locs {
		out = append(out, sec[loc[2]:loc[3]])
		end := len(sec)
		if i+1 < len(locs) {
			end = locs[i+1][0]
		}
		if m := aliasLine.FindStringSubmatch(sec[loc[1]:end]); m != nil {
			for _, a := range strings.Split(m[1], ",") {
				if a = strings.TrimSpace(a); a != "" && a != "None" {
					out = append(out, a)
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), strings.Contains(sec, "\n### CommonParameters")
}

// revision names a checkout's commit and date, from git, or from the flag for an exported tree.
func revision(dir, given string) string {
	if given != "" {
		return given
	}
	out, err := exec.Command("git", "-C", dir, "log", "-1", "--format=%h (%cs)").Output()
	if err != nil {
		return "(revision unknown)"
	}
	return strings.TrimSpace(string(out))
}

// TestPageParameters pins the page parser on the layout of Microsoft's pages (platyPS): parameters are the
// "### -Name" headings of "## PARAMETERS", aliases come from their yaml blocks, examples do not count.
func TestPageParameters(t *testing.T) {
	page := "# Set-Thing\n\n## SYNTAX\n\n```\nSet-Thing [-Identity] <Id> [-Port <Int32>]\n```\n\n" +
		"## EXAMPLES\n\n### -NotAParameter\n\n## PARAMETERS\n\n### -Identity\n\nThe identity.\n\n```yaml\n" +
		"Type: Id\nAliases:\nRequired: True\n```\n\n### -Port\n\nThe port.\n\n```yaml\nType: Int32\n" +
		"Aliases: PortNumber, P\n```\n\n### CommonParameters\n\nThis cmdlet supports the common parameters.\n\n" +
		"## INPUTS\n\n### -AlsoNotAParameter\n"
	params, common := pageParameters(page)
	if want := []string{"Identity", "P", "Port", "PortNumber"}; !slices.Equal(params, want) || !common {
		t.Errorf("pageParameters = %v, %v; want %v, true", params, common, want)
	}
}

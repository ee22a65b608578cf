package message

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

// cut splits in at two fuzzer-chosen points into three writes.
func cut(in []byte, a, b uint16) [][]byte {
	i := int(a) % (len(in) + 1)
	j := int(b) % (len(in) + 1)
	if i > j {
		i, j = j, i
	}
	return [][]byte{in[:i], in[i:j], in[j:]}
}

func stripNewlines(b []byte) string {
	return strings.NewReplacer("\r", "", "\n", "").Replace(string(b))
}

func FuzzFilter(f *testing.F) {
	for _, tc := range smugglingCases {
		f.Add([]byte(smugglingHead+tc.variant+smugglingTail), uint16(20), uint16(27))
	}
	f.Fuzz(func(t *testing.T, data []byte, a, b uint16) {
		chunks := cut(data, a, b)
		bare := hasBareNewline(string(data))

		out, _, err := runFilter(Reject, chunks)
		if bare != (err != nil) {
			t.Fatalf("Reject %q: err %v, input has bare CR/LF: %v", chunks, err, bare)
		}
		if err == nil && !bytes.Equal(out, data) {
			t.Fatalf("Reject %q: out %q, want the input unchanged", chunks, out)
		}

		out, _, err = runFilter(Normalize, chunks)
		if err != nil {
			t.Fatalf("Normalize %q: %v", chunks, err)
		}
		if hasBareNewline(string(out)) {
			t.Fatalf("Normalize %q: out %q has a bare CR or LF", chunks, out)
		}
		if stripNewlines(out) != stripNewlines(data) {
			t.Fatalf("Normalize %q: out %q changed bytes other than line ends", chunks, out)
		}
		whole, _, _ := runFilter(Normalize, [][]byte{data})
		if !bytes.Equal(out, whole) {
			t.Fatalf("Normalize: %q in one write gives %q, in %q gives %q", data, whole, chunks, out)
		}
		assertUnsplittable(t, out)

		// With a line length limit: a line is a run of bytes other than CR and LF, in either mode.
		limit := 1 + int(a%64)
		tooLong := longestLine(data) > limit
		for _, mode := range []LineEndings{Reject, Normalize} {
			_, _, err := runFilterLimited(mode, limit, chunks)
			switch {
			case tooLong && (mode == Normalize || !bare) && err != ErrLineTooLong:
				t.Fatalf("mode %d, limit %d, %q: err %v, want ErrLineTooLong", mode, limit, chunks, err)
			case !tooLong && err == ErrLineTooLong:
				t.Fatalf("mode %d, limit %d, %q: ErrLineTooLong, but no line is longer", mode, limit, chunks)
			}
		}
	})
}

// longestLine is the length of the longest run of bytes other than CR and LF.
func longestLine(b []byte) int {
	longest := 0
	for _, line := range strings.FieldsFunc(string(b), func(r rune) bool { return r == '\r' || r == '\n' }) {
		longest = max(longest, len(line))
	}
	return longest
}

// insertedRE is everything a HeaderCompleter may insert at the end of the header section: a CRLF ending a last
// header line, the two fields, and an empty line before a body that had none.
var insertedRE = regexp.MustCompile(`^(\r\n)?(Message-ID: <ID>\r\n)?(Date: ` + regexp.QuoteMeta(testDate) + `\r\n)?(\r\n)?$`)

func FuzzHeaderCompleter(f *testing.F) {
	seeds := []string{
		"", "Subject: s\r\n\r\nbody\r\n", "Hello\r\n", "Subject: s", "\r\n", " x\r\n",
		"Message-ID: <a@b>\r\nDate: d\r\n\r\nb", "Subject: a\r\n b\r\nFrom x\r\n", "DATE : x\nX: y\rZ",
	}
	for _, s := range seeds {
		f.Add([]byte(s), uint16(3), uint16(9), false)
		f.Add([]byte(s), uint16(1), uint16(1), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, a, b uint16, normalize bool) {
		in := data
		if normalize { // what the Data handler feeds it: a Filter's output
			in, _, _ = runFilter(Normalize, [][]byte{data})
		}
		got := runCompleter(t, "x", cut(in, a, b))
		if whole := runCompleter(t, "x", [][]byte{in}); got != whole {
			t.Fatalf("%q: one write gives %q, cut into three %q", in, whole, got)
		}
		rest, ok := strings.CutPrefix(got, "Received: x\r\n")
		if !ok {
			t.Fatalf("%q: output %q does not start with the Received field", in, got)
		}
		if !isInsertion(string(in), rest) {
			t.Fatalf("%q: output %q is not the input with our fields inserted at one place", in, got)
		}
		if !hasBareNewline(string(in)) {
			if hasBareNewline(got) {
				t.Fatalf("%q: output %q has a bare CR or LF", in, got)
			}
			checkHeaderSection(t, got)
		}
	})
}

// isInsertion reports whether out is in with one piece matching insertedRE inserted at some position.
func isInsertion(in, out string) bool {
	d := len(out) - len(in)
	if d < 0 {
		return false
	}
	for i := 0; i <= len(in); i++ {
		if i > 0 && in[i-1] != out[i-1] {
			return false // the common prefix ended before any insertion point that fits
		}
		if out[i+d:] == in[i:] && insertedRE.MatchString(out[i:i+d]) {
			return true
		}
	}
	return false
}

// checkHeaderSection reads the output's header section the way a receiver would (lines up to the first empty
// one) and checks it is all fields, with a Message-ID and a Date among them.
func checkHeaderSection(t *testing.T, msg string) {
	t.Helper()
	head, _, _ := strings.Cut(msg, "\r\n\r\n")
	var mid, date bool
	for i, line := range strings.Split(strings.TrimSuffix(head, "\r\n"), "\r\n") {
		if i > 0 && (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")) {
			continue
		}
		name, ok := fieldName([]byte(line))
		if !ok {
			t.Fatalf("%q: header line %q is not a field", msg, line)
		}
		mid = mid || strings.EqualFold(name, "Message-ID")
		date = date || strings.EqualFold(name, "Date")
	}
	if !mid || !date {
		t.Fatalf("%q: header section lacks Message-ID (%v) or Date (%v)", msg, mid, date)
	}
}

package web

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"
)

//go:embed templates/*.html static/style.css
var assets embed.FS

// pageNames are the templates besides layout.html; each defines "content" for the layout.
var pageNames = []string{"dashboard", "queue", "message", "confirm", "check", "error"}

// pages holds one parsed template set per page: the layout with that page's "content".
type pages map[string]*template.Template

func parsePages() (pages, error) {
	out := pages{}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("web: template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// frame is what the layout needs of every page.
type frame struct {
	Title string
	Nav   string // the navigation entry to mark: dashboard, queue, check
	User  User
	Zone  string // the server's time zone, in which every time is shown
	// Refresh: the page shows live data and asks the browser to reload it (seconds; 0: never).
	Refresh int
	Notice  *notice
}

// notice is the result of the action the admin just took, shown once above the page.
type notice struct {
	OK   bool
	Text string
}

// view is the page's own data with its frame; templates reach both (.Frame.Title, .Data...).
type view struct {
	Frame frame
	Data  any
	now   time.Time
	loc   *time.Location
}

// Now is the time the page was made, in the server's zone.
func (v view) Now() time.Time { return v.now.In(v.loc) }

// When shows a time as a stamp in the server's zone.
func (v view) When(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.In(v.loc).Format("2006-01-02 15:04:05 MST")
}

// Ago says how long ago t was, or how soon it comes ("3 h ago", "in 5 min").
func (v view) Ago(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return ago(v.now, t)
}

// render writes page name with status; a template failure answers 500 instead of half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, f frame, data any) {
	f.User = userFrom(r.Context())
	f.Zone = s.now().In(s.loc).Format("MST")
	var buf bytes.Buffer
	if err := s.pages[name].Execute(&buf, view{Frame: f, Data: data, now: s.now(), loc: s.loc}); err != nil {
		s.log.Error("rendering a page failed", "page", name, "err", err)
		http.Error(w, "internal error: the page could not be rendered (see ptrelay's log)", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// errorData is the error page's.
type errorData struct {
	Heading string
	Text    string
}

// errorPage answers status with a short page: what happened and what to do.
func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, status int, heading, text string) {
	s.render(w, r, status, "error", frame{Title: heading}, errorData{Heading: heading, Text: text})
}

// ago is the distance between now and t in one unit, rounded down: "just now", "45 s ago", "12 min ago",
// "3 h ago", "2 d ago"; for a time to come "in 5 min".
func ago(now, t time.Time) string {
	d := now.Sub(t)
	future := d < 0
	if future {
		d = -d
	}
	var s string
	switch {
	case d < 5*time.Second:
		return "just now"
	case d < time.Minute:
		s = fmt.Sprintf("%d s", int(d/time.Second))
	case d < time.Hour:
		s = fmt.Sprintf("%d min", int(d/time.Minute))
	case d < 48*time.Hour:
		s = fmt.Sprintf("%d h", int(d/time.Hour))
	default:
		s = fmt.Sprintf("%d d", int(d/(24*time.Hour)))
	}
	if future {
		return "in " + s
	}
	return s + " ago"
}

// size is a byte count for people: "812 B", "4.2 kB", "12.0 MB".
func size(n int64) string {
	switch {
	case n < 1000:
		return fmt.Sprintf("%d B", n)
	case n < 1000*1000:
		return fmt.Sprintf("%.1f kB", float64(n)/1000)
	case n < 1000*1000*1000:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.1f GB", float64(n)/1e9)
}

// classWord keeps a CSS class name to letters, digits and hyphens whatever the word it is made from.
func classWord(prefix, word string) string {
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return -1
	}, strings.ToLower(word))
	if clean == "" {
		clean = "unknown"
	}
	return prefix + "-" + clean
}

var funcs = template.FuncMap{
	"size":  size,
	"inc":   func(n int) int { return n + 1 },
	"class": classWord,
	"plural": func(n int, word string) string {
		if n == 1 {
			return word
		}
		return word + "s"
	},
}

// static serves the stylesheet.
func staticFS() http.Handler {
	sub, _ := fs.Sub(assets, "static")
	return http.StripPrefix("/static/", http.FileServerFS(sub))
}

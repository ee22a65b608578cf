package relay_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"ptrelay/internal/testkit"
	"ptrelay/queue"
	"ptrelay/relay/relaytest"
)

// ScreenshotsEnv names a directory for the browser test's screenshots (docs/images takes a few of them);
// without it they go to the test's temporary directory.
const ScreenshotsEnv = "PTRELAY_SCREENSHOTS"

// browser starts Debian's chromium headless with a fresh profile and returns a tab's context. Without
// --disable-background-networking and its companions Chromium keeps trying to reach Google's services, which
// a closed network refuses.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := relaytest.Path(t, "chromium")
	var out testkit.Buffer
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests run as root, where Chromium's sandbox refuses to start
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1024, 768),
		chromedp.CombinedOutput(&out),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		if t.Failed() {
			t.Logf("chromium output:\n%s", out.String())
		}
	})
	// The first run starts the browser: it must not carry a timeout (that would stop the browser with it).
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// bounded runs one step of the test within a bound, so that a stuck page fails the test instead of hanging it.
func bounded(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(c, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// submit clicks sel, which sends a form, and waits for the page the POST was answered with (after its 303).
func submit(t *testing.T, ctx context.Context, what string, sel chromedp.CSS) *network.Response {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := chromedp.RunResponse(c, chromedp.Click(sel))
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return resp
}

func text(t *testing.T, ctx context.Context, sel chromedp.CSS) string {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(c, chromedp.Text(sel))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// shot saves a full-page PNG of what the browser shows.
func shot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(c, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestWebBrowser_QueueActions: an admin in a real browser logs in, finds a held and a deferred message in the
// queue, releases one and retries the other, sees their new states, opens a message, deletes one after the
// confirmation page, runs the check; every page is saved as a screenshot.
func TestWebBrowser_QueueActions(t *testing.T) {
	e := startWebRelay(t, "", "")
	ctx := browser(t)
	dir := os.Getenv(ScreenshotsEnv)
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ids := e.deferred(t, "held@example.org", "waiting@example.org")
	held, waiting := ids[0], ids[1]
	if _, err := e.client.Hold(queue.Selector{IDs: []string{held}}); err != nil {
		t.Fatal(err)
	}

	// Log in: the browser sends the Basic credentials with every request, as it does after its login prompt.
	login := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+webAdminPass))
		_, err := cdp.Call(ctx, tg, network.SetExtraHTTPHeaders,
			network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}})
		return err
	})
	bounded(t, ctx, "log in and open the queue", login, chromedp.Navigate(e.url+"/queue"),
		chromedp.WaitVisible(chromedp.CSS("table.queue")))
	row := func(id string) chromedp.CSS { return chromedp.CSS("#m-" + id) }
	if s := text(t, ctx, row(held)); !strings.Contains(s, "hold") || !strings.Contains(s, "held@example.org") {
		t.Errorf("the held message's row says %q", s)
	}
	if s := text(t, ctx, row(waiting)); !strings.Contains(s, "deferred") || !strings.Contains(s, "connection refused") {
		t.Errorf("the deferred message's row says %q", s)
	}
	// The stylesheet is allowed by the CSP and applied: the header's colour comes from it.
	bg, err := chromedp.Run(ctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector("header.top")).backgroundColor`))
	if err != nil || bg != "rgb(34, 48, 63)" {
		t.Errorf("the stylesheet is not applied (header background %q, %v)", bg, err)
	}
	shot(t, ctx, dir, "queue.png")

	bounded(t, ctx, "tick the held message", chromedp.Click(chromedp.CSS(`input[value="`+held+`"]`)))
	if resp := submit(t, ctx, "release", `button[value="release"]`); resp.Status != 200 || !strings.Contains(resp.URL, "did=release") {
		t.Fatalf("release answered %d at %s", resp.Status, resp.URL)
	}
	if s := text(t, ctx, ".notice"); s != "Released: 1 message." {
		t.Errorf("after release the page says %q", s)
	}
	bounded(t, ctx, "tick the deferred message", chromedp.Click(chromedp.CSS(`input[value="`+waiting+`"]`)))
	if resp := submit(t, ctx, "retry", `button[value="retry"]`); resp.Status != 200 || !strings.Contains(resp.URL, "did=retry") {
		t.Fatalf("retry answered %d at %s", resp.Status, resp.URL)
	}
	if s := text(t, ctx, ".notice"); s != "Scheduled for an attempt now: 1 message." {
		t.Errorf("after retry the page says %q", s)
	}
	// Both were tried again at once: deferred after a second attempt (the smart host still refuses).
	var heldRow, waitingRow string
	testkit.WaitForExplained(t, 30*time.Second, func() string { return heldRow + " | " + waitingRow }, func() bool {
		bounded(t, ctx, "reload the queue", chromedp.Navigate(e.url+"/queue"), chromedp.WaitVisible(chromedp.CSS("table.queue")))
		heldRow, waitingRow = text(t, ctx, row(held)), text(t, ctx, row(waiting))
		return strings.Contains(heldRow, "deferred") && !strings.Contains(heldRow, "hold") &&
			strings.Contains(heldRow, "2 attempts") && strings.Contains(waitingRow, "2 attempts")
	})
	shot(t, ctx, dir, "queue-after-actions.png")

	if resp := submit(t, ctx, "open a message", chromedp.CSS(`a[href="/queue/`+held+`"]`)); resp.Status != 200 {
		t.Fatalf("message page: %d", resp.Status)
	}
	if s := text(t, ctx, "main"); !strings.Contains(s, "What ptrelay made of it") || !strings.Contains(s, "Subject: to held@example.org") {
		t.Errorf("the message page says %q", s)
	}
	shot(t, ctx, dir, "message.png")

	// Another site's page (another port: same site, another origin) posts a confirmed delete to the console; the
	// browser adds the credentials, as it would after a login, and says where the form came from.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!DOCTYPE html><title>prize</title><form method="post" action="%s/actions">`+
			`<input type="hidden" name="verb" value="delete"><input type="hidden" name="confirmed" value="yes">`+
			`<input type="hidden" name="id" value="%s"><button id="win">Win a prize</button></form>`, e.url, waiting)
	}))
	defer evil.Close()
	bounded(t, ctx, "a foreign page", chromedp.Navigate(evil.URL), chromedp.WaitVisible(chromedp.CSS("#win")))
	if resp := submit(t, ctx, "the foreign form", "#win"); resp.Status != http.StatusForbidden {
		t.Errorf("a form posted from another site answered %d, want 403", resp.Status)
	}
	if e.get(t, waiting) == nil {
		t.Fatalf("a form posted from another site deleted a message")
	}

	// Delete asks first.
	bounded(t, ctx, "back to the message", chromedp.Navigate(e.url+"/queue/"+held), chromedp.WaitVisible(chromedp.CSS("h1")))
	if resp := submit(t, ctx, "delete", `button[value="delete"]`); resp.Status != 200 {
		t.Fatalf("delete answered %d", resp.Status)
	}
	if s := text(t, ctx, "h1"); s != "Delete 1 message?" {
		t.Errorf("the confirmation page says %q", s)
	}
	if e.get(t, held) == nil {
		t.Fatalf("the message was deleted before the confirmation")
	}
	shot(t, ctx, dir, "confirm.png")
	if resp := submit(t, ctx, "confirm delete", `form.actions button.danger`); resp.Status != 200 || !strings.Contains(resp.URL, "did=delete") {
		t.Fatalf("confirmed delete answered %d at %s", resp.Status, resp.URL)
	}
	if e.get(t, held) != nil {
		t.Errorf("the message is still queued after the confirmed delete")
	}

	bounded(t, ctx, "the status page", chromedp.Navigate(e.url+"/"), chromedp.WaitVisible(chromedp.CSS("h1")))
	if s := text(t, ctx, "main"); !strings.Contains(s, "1 message in the queue") || !strings.Contains(s, "192.0.2.1") {
		t.Errorf("the status page says %q", s)
	}
	shot(t, ctx, dir, "status.png")
	bounded(t, ctx, "the check page", chromedp.Navigate(e.url+"/check?run=1"), chromedp.WaitVisible(chromedp.CSS("table.checks")))
	shot(t, ctx, dir, "check.png")

	// A phone: the queue still reads (the table scrolls sideways inside its box, the page does not).
	bounded(t, ctx, "a phone's screen", chromedp.EmulateViewport(390, 844), chromedp.Navigate(e.url+"/queue"),
		chromedp.WaitVisible(chromedp.CSS("table.queue")))
	width, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
	if err != nil || width > 390 {
		t.Errorf("on a phone the page is %d px wide (%v), wider than the screen", width, err)
	}
	shot(t, ctx, dir, "queue-phone.png")
	t.Logf("screenshots in %s", dir)
}

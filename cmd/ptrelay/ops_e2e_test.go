package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"ptrelay/internal/testkit"
	"ptrelay/queue"
	"ptrelay/relay/relaytest"
)

// relativeTimeRE matches the countdown in `queue list` ("in 59m58s"), which moves between two runs.
var relativeTimeRE = regexp.MustCompile(`, in [0-9hms.]+\)`)

// TestOps_QueueVerbsOnline runs every queue verb against the running daemon: the smart host (smtp-sink) is
// down at first, so mail is deferred with an hour to wait; then it comes up and each verb's effect is read at
// the sink and in the queue.
func TestOps_QueueVerbsOnline(t *testing.T) {
	relaytest.Require(t, "smtp-sink")
	t.Parallel()
	sinkAddr := loopbackAddr(t, "127.0.0.3")
	d := startDaemon(t, relaytest.DaemonOptions{Config: opsConfig(loopbackAddr(t, "127.0.0.1"), sinkAddr, "1h", "")})

	ids := map[string]string{} // subject -> ID
	for _, s := range []string{"held", "retried", "deleted", "bounced", "rest"} {
		ids[s] = inject(t, d.Addr(), "sender-"+s+"@example.com", "rcpt-"+s+"@example.org", "ops-"+s)
	}
	// A message from the null sender (a bounce from elsewhere) must never cause a DSN, even when bounced.
	null := inject(t, d.Addr(), "", "rcpt-null@example.org", "ops-null")
	all := []string{ids["held"], ids["retried"], ids["deleted"], ids["bounced"], ids["rest"], null}
	waitDeferred(t, d, all...)

	// list: the table names every message, its sender, recipient, state and the reply of the failed attempt.
	table := mustPtrelay(t, d, "queue", "list")
	for s, id := range ids {
		for _, want := range []string{id, "sender-" + s + "@example.com", "rcpt-" + s + "@example.org"} {
			if !strings.Contains(table, want) {
				t.Errorf("queue list lacks %q:\n%s", want, table)
			}
		}
	}
	if !strings.Contains(table, "connection refused") || !strings.Contains(table, "6 messages, 6 recipients: 0 queued, 0 active, 6 deferred, 0 hold") {
		t.Errorf("queue list does not show the deferral and the totals:\n%s", table)
	}
	// show: envelope, headers, history; -body adds the body; -json is the message.
	id := ids["held"]
	show := mustPtrelay(t, d, "queue", "show", id)
	for _, want := range []string{"Message:    " + id, "Sender:     sender-held@example.com", "Subject: ops-held",
		"<rcpt-held@example.org>  deferred, 1 attempt", "smarthost  deferred", "connection refused"} {
		if !strings.Contains(show, want) {
			t.Errorf("queue show lacks %q:\n%s", want, show)
		}
	}
	if strings.Contains(show, "body of ops-held") {
		t.Errorf("queue show without -body prints the body:\n%s", show)
	}
	if body := mustPtrelay(t, d, "queue", "show", id, "-body"); !strings.Contains(body, "\nbody of ops-held\n") {
		t.Errorf("queue show -body lacks the body:\n%s", body)
	}
	var m queue.Message
	if out := mustPtrelay(t, d, "queue", "show", "-json", id); json.Unmarshal([]byte(out), &m) != nil ||
		m.ID != id || m.Envelope.From != "sender-held@example.com" || len(m.Recipients) != 1 ||
		m.Recipients[0].Attempts != 1 || m.Recipients[0].History[0].Outcome != "deferred" {
		t.Errorf("queue show -json: %s", out)
	}

	// Unknown IDs: a non-zero exit and a message naming the ID, for every verb.
	for _, verb := range []string{"show", "delete", "hold", "release", "retry", "bounce"} {
		out, code := ptrelay(t, d, "queue", verb, "NOSUCHID42")
		if code == 0 || !strings.Contains(out, "NOSUCHID42") {
			t.Errorf("queue %s NOSUCHID42: exit %d, output %q; want non-zero and the ID named", verb, code, out)
		}
	}

	// Usage errors: exit 2 and nothing changed.
	for _, args := range [][]string{{"queue", "delete"}, {"queue", "delete", "-all", ids["held"]}, {"queue", "frobnicate"},
		{"queue", "show"}, {"queue", "hold", "-nosuchflag", ids["held"]}} {
		if out, code := ptrelay(t, d, args...); code != 2 {
			t.Errorf("ptrelay %s: exit %d, want 2 (usage)\n%s", strings.Join(args, " "), code, out)
		}
	}
	if q := queueList(t, d); len(q) != len(all) {
		t.Fatalf("usage errors changed the queue: %d messages, want %d", len(q), len(all))
	}

	if out := mustPtrelay(t, d, "queue", "hold", ids["held"]); !strings.Contains(out, "hold: 1 message") {
		t.Errorf("queue hold: %q", out)
	}
	if got := states(queueList(t, d)[ids["held"]]); got != "hold" {
		t.Fatalf("held message is %s", got)
	}

	sink := relaytest.StartSink(t, relaytest.SinkOptions{Addr: sinkAddr})
	// retry: the deferred message goes now, not in an hour.
	mustPtrelay(t, d, "queue", "retry", ids["retried"])
	if msgs := sink.WaitMessages(t, 1, 30*time.Second); msgs[0].Header().Get("Subject") != "ops-retried" {
		t.Fatalf("after queue retry the sink got %v", subjects(msgs))
	}
	waitStates(t, d, "gone", ids["retried"])

	// delete: gone without a trace; bounce: gone with a DSN to the sender through the same smart host.
	mustPtrelay(t, d, "queue", "delete", ids["deleted"])
	if _, ok := queueList(t, d)[ids["deleted"]]; ok {
		t.Errorf("deleted message %s still listed", ids["deleted"])
	}
	mustPtrelay(t, d, "queue", "bounce", ids["bounced"])
	msgs := sink.WaitMessages(t, 2, 30*time.Second)
	if dsns := dsnsAt(msgs); len(dsns) != 1 {
		t.Fatalf("after queue bounce: %d DSNs at the sink, want 1: %v", len(dsns), subjects(msgs))
	} else {
		assertDSN(t, dsns[0], "sender-bounced@example.com", "rcpt-bounced@example.org", "ops-bounced")
	}
	waitStates(t, d, "gone", ids["bounced"])
	mustPtrelay(t, d, "queue", "bounce", null)
	waitStates(t, d, "gone", null)

	// retry -all flushes the rest but not the held message.
	if out := mustPtrelay(t, d, "queue", "retry", "-all"); !strings.Contains(out, "retry: 1 message") {
		t.Errorf("queue retry -all: %q (only the deferred message can be retried)", out)
	}
	sink.WaitMessages(t, 3, 30*time.Second)
	waitStates(t, d, "gone", ids["rest"])
	if got := states(queueList(t, d)[ids["held"]]); got != "hold" {
		t.Errorf("held message after retry -all: %s", got)
	}
	if out := mustPtrelay(t, d, "queue", "release", "-all"); !strings.Contains(out, "release: 1 message") {
		t.Errorf("queue release -all: %q", out)
	}
	sink.WaitMessages(t, 4, 30*time.Second)
	waitStates(t, d, "gone", ids["held"])

	msgs = sink.Messages()
	if len(msgs) != 4 {
		t.Errorf("sink has %d messages, want 4 (retried, DSN, rest, held; no DSN for the null sender): %v", len(msgs), subjects(msgs))
	}
	for _, s := range []string{"ops-retried", "ops-rest", "ops-held"} {
		if m := bySubject(msgs, s); m == nil || m.To[0] != strings.Replace(s, "ops-", "rcpt-", 1)+"@example.org" {
			t.Errorf("%s not delivered to its recipient: %v", s, subjects(msgs))
		}
	}
	for _, m := range msgs {
		if strings.Contains(string(m.Data), "ops-deleted") || strings.Contains(string(m.Data), "ops-null") {
			t.Errorf("a deleted message, a bounced null-sender message or a DSN for one reached the sink:\n%s", m.Data)
		}
	}
	if len(queueList(t, d)) != 0 {
		t.Errorf("queue not empty at the end:\n%s", mustPtrelay(t, d, "queue", "list"))
	}
}

// TestOps_HoldOutlastsRetryTime: with a one-second retry_min, a held message stays held while the deferred
// message beside it is retried and delivered once the smart host is back.
func TestOps_HoldOutlastsRetryTime(t *testing.T) {
	relaytest.Require(t, "smtp-sink")
	t.Parallel()
	sinkAddr := loopbackAddr(t, "127.0.0.3")
	d := startDaemon(t, relaytest.DaemonOptions{Config: opsConfig(loopbackAddr(t, "127.0.0.1"), sinkAddr, "1s", "")})
	held := inject(t, d.Addr(), "a@example.com", "held@example.org", "hold-held")
	free := inject(t, d.Addr(), "a@example.com", "free@example.org", "hold-free")
	waitDeferred(t, d, held, free)
	var retryAt time.Time // when the held message would be retried, had it not been held
	for _, r := range queueList(t, d)[held].Recipients {
		if r.NextAttempt.After(retryAt) {
			retryAt = r.NextAttempt
		}
	}
	mustPtrelay(t, d, "queue", "hold", held)
	sink := relaytest.StartSink(t, relaytest.SinkOptions{Addr: sinkAddr})
	sink.WaitMessages(t, 1, 30*time.Second)
	// Once the held message's retry time has passed, a new message makes the scheduler read the due index
	// (a commit wakes it): had the held message been due, it would have gone in that pass, before the new one
	// was delivered.
	testkit.WaitFor(t, 30*time.Second, "the held message's retry time "+retryAt.String(), func() bool {
		return time.Now().After(retryAt)
	})
	marker := inject(t, d.Addr(), "a@example.com", "marker@example.org", "hold-marker")
	waitStates(t, d, "gone", marker)
	sink.WaitMessages(t, 2, 30*time.Second)
	if got := subjects(sink.Messages()); strings.Join(got, ",") != "hold-free,hold-marker" {
		t.Fatalf("sink has %v, want hold-free and hold-marker only", got)
	}
	if got := states(queueList(t, d)[held]); got != "hold" {
		t.Fatalf("held message is %s", got)
	}
	mustPtrelay(t, d, "queue", "release", held)
	if msgs := sink.WaitMessages(t, 3, 30*time.Second); msgs[2].Header().Get("Subject") != "hold-held" {
		t.Errorf("after release the sink got %v", subjects(msgs))
	}
}

// TestOps_QueueVerbsOffline stops the daemon and uses the queue commands on its database: list and show print
// what they printed online, the verbs change the stored queue, and the restarted daemon acts on the changes.
func TestOps_QueueVerbsOffline(t *testing.T) {
	relaytest.Require(t, "smtp-sink")
	t.Parallel()
	sinkAddr := loopbackAddr(t, "127.0.0.3")
	d := startDaemon(t, relaytest.DaemonOptions{Config: opsConfig(loopbackAddr(t, "127.0.0.1"), sinkAddr, "1h", "")})
	ids := map[string]string{}
	for _, s := range []string{"held", "deleted", "bounced", "released", "retried", "waiting"} {
		ids[s] = inject(t, d.Addr(), "sender-"+s+"@example.com", "rcpt-"+s+"@example.org", "off-"+s)
	}
	// A body large enough to live in a spool file rather than in bbolt: it streams through the socket.
	big := sendOneRaw(d.Addr(), crashMessage(0, 3))
	if big == "" {
		t.Fatal("the 300 KB message was not accepted")
	}
	all := []string{big}
	for _, id := range ids {
		all = append(all, id)
	}
	waitDeferred(t, d, all...)

	id := ids["held"]
	views := [][]string{{"queue", "list"}, {"queue", "list", "-json"}, {"queue", "show", id},
		{"queue", "show", id, "-body"}, {"queue", "show", id, "-json"}, {"queue", "show", big, "-body"},
		// The filters: the same selection, and the same words, whichever side reads the queue.
		{"queue", "list", "-state", "deferred", "-limit", "3"}, {"queue", "list", "-domain", "EXAMPLE.org", "-json"},
		{"queue", "list", "-sender", "sender-held@example.com"}, {"queue", "list", "-older", "1d"},
		{"queue", "list", "-sender", "@example.com", "-limit", "2", "-json"}}
	online := make([]string, len(views))
	for i, v := range views {
		online[i] = mustPtrelay(t, d, v...)
	}
	if body := online[5]; len(body) < 290<<10 || !strings.HasSuffix(body, "\nEND\n") {
		t.Errorf("queue show -body of the 300 KB message printed %d bytes ending %q", len(body), body[max(0, len(body)-20):])
	}
	if !strings.Contains(online[6], "more match") || !strings.Contains(online[9], "No message matches") ||
		strings.Count(online[8], "\n  deferred") != 1 {
		t.Errorf("filtered listings:\n%s\n%s\n%s", online[6], online[8], online[9])
	}
	if out, code := ptrelay(t, d, "queue", "list", "-state", "stuck"); code != 2 || !strings.Contains(out, "queued, active, deferred") {
		t.Errorf("queue list -state stuck: exit %d, %q", code, out)
	}
	if out, code := ptrelay(t, d, "queue", "compact"); code == 0 || !strings.Contains(out, "stop the daemon") {
		t.Errorf("queue compact with the daemon running: exit %d, %q", code, out)
	}
	if code := d.Stop(); code != 0 {
		t.Fatalf("SIGTERM: exit %d\n%s", code, tailLog(d))
	}
	for i, v := range views {
		off := mustPtrelay(t, d, v...)
		// "in 59m58s" counts down between the two runs; everything else must be the same.
		if relativeTimeRE.ReplaceAllString(off, ")") != relativeTimeRE.ReplaceAllString(online[i], ")") {
			t.Errorf("ptrelay %s: offline output differs from online\nonline:\n%s\noffline:\n%s", strings.Join(v, " "), online[i], off)
		}
	}

	if out := mustPtrelay(t, d, "queue", "hold", ids["held"], ids["released"]); !strings.Contains(out, "hold: 2 message") {
		t.Errorf("offline hold: %q", out)
	}
	mustPtrelay(t, d, "queue", "release", ids["released"])
	mustPtrelay(t, d, "queue", "retry", ids["retried"])
	mustPtrelay(t, d, "queue", "delete", ids["deleted"])
	mustPtrelay(t, d, "queue", "bounce", ids["bounced"])
	out, code := ptrelay(t, d, "queue", "delete", "NOSUCHID42", ids["held"]+"X")
	if code == 0 || !strings.Contains(out, "NOSUCHID42") || !strings.Contains(out, ids["held"]+"X") {
		t.Errorf("offline delete of unknown IDs: exit %d, %q", code, out)
	}
	q := queueList(t, d)
	if _, ok := q[ids["deleted"]]; ok {
		t.Errorf("offline delete left %s in the queue", ids["deleted"])
	}
	if got := states(q[ids["held"]]); got != "hold" {
		t.Errorf("held after offline hold: %s", got)
	}
	for _, s := range []string{"released", "retried", "bounced"} {
		r := q[ids[s]].Recipients[0]
		if r.State != queue.StateDeferred || !dueSoon(r, time.Minute) {
			t.Errorf("%s after offline verbs: %s, next attempt %v; want deferred and due now", s, r.State, r.NextAttempt)
		}
	}
	if r := q[ids["waiting"]].Recipients[0]; r.State != queue.StateDeferred || dueSoon(r, 30*time.Minute) {
		t.Errorf("untouched message: %s, next attempt %v; want deferred for about an hour", r.State, r.NextAttempt)
	}
	if !q[ids["bounced"]].Recipients[0].BounceNow {
		t.Errorf("offline bounce did not mark the recipient")
	}

	sink := relaytest.StartSink(t, relaytest.SinkOptions{Addr: sinkAddr})
	d.Restart()
	msgs := sink.WaitMessages(t, 3, 30*time.Second)
	waitStates(t, d, "gone", ids["released"], ids["retried"], ids["bounced"])
	for _, s := range []string{"off-released", "off-retried"} {
		if bySubject(msgs, s) == nil {
			t.Errorf("%s not delivered after the restart: %v", s, subjects(msgs))
		}
	}
	if dsns := dsnsAt(msgs); len(dsns) != 1 {
		t.Errorf("%d DSNs at the sink, want 1: %v", len(dsns), subjects(msgs))
	} else {
		assertDSN(t, dsns[0], "sender-bounced@example.com", "rcpt-bounced@example.org", "off-bounced")
	}
	q = queueList(t, d)
	if states(q[ids["held"]]) != "hold" || states(q[ids["waiting"]]) != "deferred" || len(q) != 3 {
		t.Errorf("after the restart: held %s, waiting %s, %d messages; want hold, deferred, 3 with the big one",
			states(q[ids["held"]]), states(q[ids["waiting"]]), len(q))
	}

	// -all offline: the daemon stopped again, everything left is held, then deleted; nothing more reaches the sink.
	if code := d.Stop(); code != 0 {
		t.Fatalf("second SIGTERM: exit %d", code)
	}
	if out := mustPtrelay(t, d, "queue", "hold", "-all"); !strings.Contains(out, "hold: 2 message") {
		t.Errorf("offline hold -all with one of three messages already held: %q", out)
	}
	if got := states(queueList(t, d)[ids["waiting"]]); got != "hold" {
		t.Errorf("after offline hold -all: %s", got)
	}
	if out := mustPtrelay(t, d, "queue", "delete", "-all"); !strings.Contains(out, "delete: 3 message") {
		t.Errorf("offline delete -all: %q", out)
	}
	if out := mustPtrelay(t, d, "queue", "list"); !strings.Contains(out, "Mail queue is empty") {
		t.Errorf("queue list after delete -all:\n%s", out)
	}
	if out := mustPtrelay(t, d, "queue", "compact"); !strings.Contains(out, "compacted") {
		t.Errorf("queue compact of the stopped, empty queue: %q", out)
	}
	for _, m := range sink.Messages() {
		for _, s := range []string{"off-deleted", "off-held", "off-waiting"} {
			if strings.Contains(string(m.Data), s) {
				t.Errorf("%s (or a DSN for it) reached the sink:\n%s", s, m.Data)
			}
		}
	}
	if n := len(sink.Messages()); n != 3 {
		t.Errorf("sink has %v, want 3 messages", subjects(sink.Messages()))
	}
}

// TestOps_AdminSocketRefusesOtherUsers runs the CLI as nobody (setpriv) against a running daemon: the socket's
// mode keeps it out, and when an admin loosens the mode by hand the daemon's own credential check still does.
// Neither may fall back to the database or act on the queue.
func TestOps_AdminSocketRefusesOtherUsers(t *testing.T) {
	relaytest.Require(t, "setpriv")
	testkit.RequireRoot(t, "it runs the client as another user")
	t.Parallel()
	// A directory nobody can reach: the binary, its configuration and the socket live there; the queue does not.
	pub, err := os.MkdirTemp("", "ptrelay-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pub) })
	if err := os.Chmod(pub, 0o755); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(relaytest.BuildBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	pubBin := filepath.Join(pub, "ptrelay")
	if err := os.WriteFile(pubBin, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(pub, "admin.sock")
	cfg := strings.Replace(opsConfig(loopbackAddr(t, "127.0.0.1"), "127.0.0.1:9", "1h",
		fmt.Sprintf("\n[admin]\nsocket = %q\n", sock)), "[smtp]\n",
		fmt.Sprintf("data_dir = %q\n\n[smtp]\n", filepath.Join(pub, "data")), 1)
	pubCfg := filepath.Join(pub, "ptrelay.toml")
	if err := os.WriteFile(pubCfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, relaytest.DaemonOptions{Config: cfg})
	id := inject(t, d.Addr(), "a@example.com", "b@example.org", "nobody-test")
	waitDeferred(t, d, id)

	asNobody := func(args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(relaytest.Path(t, "setpriv"), append([]string{"--reuid=65534", "--regid=65534",
			"--clear-groups", pubBin}, append(args, "-config", pubCfg)...)...)
		cmd.Dir = pub
		cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("setpriv: %v\n%s", err, out)
		}
		return string(out), cmd.ProcessState.ExitCode()
	}
	check := func(when string) {
		t.Helper()
		for _, args := range [][]string{{"queue", "list"}, {"queue", "delete", "-all"}, {"status"}} {
			out, code := asNobody(args...)
			if code == 0 || code == 3 || strings.Contains(out, id) || !strings.Contains(strings.ToLower(out), "permission denied") &&
				!strings.Contains(out, "not allowed") {
				t.Errorf("%s: nobody ran ptrelay %s: exit %d\n%s\nwant a refusal", when, strings.Join(args, " "), code, out)
			}
		}
		if states(queueList(t, d)[id]) != "deferred" {
			t.Fatalf("%s: the queue changed: %v", when, queueList(t, d))
		}
	}
	check("socket mode 0600")
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	check("socket mode loosened to 0666")
	if !strings.Contains(d.Stderr(), "uid=65534") {
		t.Errorf("the daemon did not log the refused uid:\n%s", tailLog(d))
	}
}

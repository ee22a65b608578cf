package queue

import (
	"errors"
	"testing"
)

func TestState_SurvivesReopenAndIsOpaque(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	if err := s.UpdateState("alerts", func(tb StateTable) error {
		if err := tb.Put("listed/zen/203.0.113.7", []byte(`{"state":"firing"}`)); err != nil {
			return err
		}
		return tb.Put("queue.oldest", []byte("x"))
	}); err != nil {
		t.Fatal(err)
	}
	// A failing fn commits nothing.
	boom := errors.New("boom")
	if err := s.UpdateState("alerts", func(tb StateTable) error {
		if err := tb.Put("queue.oldest", []byte("changed")); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("UpdateState error = %v, want boom", err)
	}
	s.Close()

	s = openTest(t, dir)
	got := map[string]string{}
	if err := s.ViewState("alerts", func(tb StateTable) error {
		return tb.ForEach(func(k string, v []byte) error { got[k] = string(v); return nil })
	}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"listed/zen/203.0.113.7": `{"state":"firing"}`, "queue.oldest": "x"}
	if len(got) != len(want) {
		t.Fatalf("state after reopen = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("state[%q] = %q, want %q", k, got[k], v)
		}
	}
	// Tables are separate, and one never written reads as empty.
	if err := s.ViewState("mtasts", func(tb StateTable) error {
		if v := tb.Get("queue.oldest"); v != nil {
			t.Errorf("other table sees %q", v)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The queue's own listing is untouched by state.
	if st, err := s.Stats(); err != nil || st.Messages != 0 {
		t.Fatalf("Stats = %+v, %v; want an empty queue", st, err)
	}
}

func TestState_ReadOnly(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	if err := s.UpdateState("t", func(tb StateTable) error { return tb.Put("k", []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	ro := openTest(t, dir, func(o *Options) { o.ReadOnly = true })
	var v []byte
	if err := ro.ViewState("t", func(tb StateTable) error { v = tb.Get("k"); return nil }); err != nil {
		t.Fatal(err)
	}
	if string(v) != "v" {
		t.Fatalf("read-only Get = %q, want v", v)
	}
	if err := ro.UpdateState("t", func(StateTable) error { return nil }); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("read-only UpdateState = %v, want ErrReadOnly", err)
	}
}

package queue

import (
	"errors"
	"testing"
)

func TestTransition_Table(t *testing.T) {
	allowed := map[[2]State]bool{
		{StateQueued, StateActive}:    true,
		{StateQueued, StateBounced}:   true,
		{StateQueued, StateHold}:      true,
		{StateDeferred, StateActive}:  true,
		{StateDeferred, StateBounced}: true,
		{StateDeferred, StateHold}:    true,
		{StateActive, StateDelivered}: true,
		{StateActive, StateDeferred}:  true,
		{StateActive, StateBounced}:   true,
		{StateActive, StateQueued}:    true,
		{StateHold, StateQueued}:      true,
		{StateHold, StateDeferred}:    true,
	}
	for _, from := range allStates {
		for _, to := range allStates {
			want := from == to || allowed[[2]State{from, to}]
			if got := CanTransition(from, to); got != want {
				t.Errorf("CanTransition(%s, %s) = %v, want %v", from, to, got, want)
			}
		}
	}
	for _, bad := range []State{"", "sent", "ACTIVE"} {
		if CanTransition(bad, StateQueued) || CanTransition(StateQueued, bad) {
			t.Errorf("unknown state %q accepted", bad)
		}
	}
}

func msg(states ...State) *Message {
	m := &Message{ID: "0000000000001"}
	for i, s := range states {
		m.Recipients = append(m.Recipients, Recipient{Addr: string(rune('a'+i)) + "@example.org", State: s})
	}
	return m
}

func clone(m *Message) *Message {
	c := *m
	c.Recipients = append([]Recipient(nil), m.Recipients...)
	return &c
}

func TestTransition_Settle(t *testing.T) {
	cases := []struct {
		name    string
		old     *Message
		change  func(m *Message)
		wantErr error
		check   func(t *testing.T, m *Message)
	}{
		{
			name:   "hold remembers where it came from",
			old:    msg(StateDeferred),
			change: func(m *Message) { m.Recipients[0].State = StateHold },
			check: func(t *testing.T, m *Message) {
				if r := m.Recipients[0]; r.State != StateHold || r.HeldFrom != StateDeferred {
					t.Fatalf("got %s from %q", r.State, r.HeldFrom)
				}
			},
		},
		{
			name: "release clears HeldFrom",
			old: func() *Message {
				m := msg(StateHold)
				m.Recipients[0].HeldFrom = StateDeferred
				return m
			}(),
			change: func(m *Message) { m.Recipients[0].State = StateDeferred },
			check: func(t *testing.T, m *Message) {
				if r := m.Recipients[0]; r.State != StateDeferred || r.HeldFrom != "" {
					t.Fatalf("got %s from %q", r.State, r.HeldFrom)
				}
			},
		},
		{
			name:    "release to deferred only when held from deferred",
			old:     msg(StateHold),
			change:  func(m *Message) { m.Recipients[0].State = StateDeferred },
			wantErr: ErrIllegalTransition,
		},
		{
			name:    "active cannot be held",
			old:     msg(StateActive),
			change:  func(m *Message) { m.Recipients[0].State = StateHold },
			wantErr: ErrIllegalTransition,
		},
		{
			name: "pending hold applies when the attempt defers",
			old: func() *Message {
				m := msg(StateActive)
				m.Recipients[0].HoldPending = true
				return m
			}(),
			change: func(m *Message) { m.Recipients[0].State = StateDeferred },
			check: func(t *testing.T, m *Message) {
				if r := m.Recipients[0]; r.State != StateHold || r.HeldFrom != StateDeferred || r.HoldPending {
					t.Fatalf("got %+v", r)
				}
			},
		},
		{
			name: "pending hold dropped when delivered",
			old: func() *Message {
				m := msg(StateActive)
				m.Recipients[0].HoldPending = true
				return m
			}(),
			change: func(m *Message) { m.Recipients[0].State = StateDelivered },
			check: func(t *testing.T, m *Message) {
				if r := m.Recipients[0]; r.State != StateDelivered || r.HoldPending {
					t.Fatalf("got %+v", r)
				}
			},
		},
		{
			name:    "final is final",
			old:     msg(StateActive, StateDelivered),
			change:  func(m *Message) { m.Recipients[1].State = StateQueued },
			wantErr: ErrIllegalTransition,
		},
		{
			name:   "recipient list is fixed",
			old:    msg(StateQueued),
			change: func(m *Message) { m.Recipients = append(m.Recipients, Recipient{Addr: "x", State: StateQueued}) },
		},
		{
			name:   "ID is fixed",
			old:    msg(StateQueued),
			change: func(m *Message) { m.ID = "0000000000002" },
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			nw := clone(c.old)
			c.change(nw)
			err := settle(c.old, nw)
			switch {
			case c.check == nil && err == nil:
				t.Fatal("settle accepted the change")
			case c.wantErr != nil && !errors.Is(err, c.wantErr):
				t.Fatalf("err = %v, want %v", err, c.wantErr)
			case c.check != nil:
				if err != nil {
					t.Fatalf("settle: %v", err)
				}
				c.check(t, nw)
			}
		})
	}
}

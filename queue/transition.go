package queue

import (
	"errors"
	"fmt"
)

// ErrIllegalTransition: an Update tried to move a recipient between states the table below does not connect.
var ErrIllegalTransition = errors.New("illegal recipient state transition")

// transitions is the whole state machine: from -> the states it may go to. Staying in the same state is always
// allowed (an Update that only changes NextAttempt or History). Everything not listed is refused.
//
//   - queued|deferred -> active: the delivery side claims the recipient (and records the next attempt first,
//     before dialing, so a crash means "retry later", never a tight loop).
//   - active -> delivered|deferred|bounced: the attempt's outcome.
//   - active -> queued: the attempt gave the recipient back without trying (shutdown drain, lease expiry).
//   - queued|deferred -> bounced: expiry or an admin bounce, with no attempt.
//   - queued|deferred -> hold: the admin parks it.
//   - hold -> queued|deferred: release, back to the state it was held from (HeldFrom), or queued.
//
// active -> hold is refused: the attempt in flight owns the recipient and will record an outcome, which must not
// find the recipient moved under it. Hold on an active recipient sets HoldPending instead, and settle turns the
// attempt's deferred/queued outcome into hold.
var transitions = map[State][]State{
	StateQueued:   {StateActive, StateBounced, StateHold},
	StateDeferred: {StateActive, StateBounced, StateHold},
	StateActive:   {StateDelivered, StateDeferred, StateBounced, StateQueued},
	StateHold:     {StateQueued, StateDeferred},
}

// allStates lists every state, in life-cycle order (the order of the stored counts).
var allStates = [numStates]State{StateQueued, StateActive, StateDeferred, StateHold, StateDelivered, StateBounced}

// Valid reports whether s is one of the states above.
func (s State) Valid() bool {
	for _, v := range allStates {
		if s == v {
			return true
		}
	}
	return false
}

// CanTransition reports whether a recipient may go from one state to the other.
func CanTransition(from, to State) bool {
	if !from.Valid() || !to.Valid() {
		return false
	}
	if from == to {
		return true
	}
	for _, t := range transitions[from] {
		if t == to {
			return true
		}
	}
	return false
}

// settle checks what an Update's function did to a message against the version it started from, then applies
// the bookkeeping that belongs to the queue and not to its callers: HeldFrom, HoldPending. It is the only place
// where transitions are enforced.
func settle(old, nw *Message) error {
	if nw.ID != old.ID {
		return fmt.Errorf("queue: update of %s changed the ID to %q", old.ID, nw.ID)
	}
	if len(nw.Recipients) != len(old.Recipients) {
		return fmt.Errorf("queue: update of %s changed the number of recipients (%d -> %d)", old.ID,
			len(old.Recipients), len(nw.Recipients))
	}
	for i := range nw.Recipients {
		o, n := &old.Recipients[i], &nw.Recipients[i]
		if n.Addr != o.Addr {
			return fmt.Errorf("queue: update of %s changed recipient %d from %q to %q", old.ID, i, o.Addr, n.Addr)
		}
		if !CanTransition(o.State, n.State) {
			return fmt.Errorf("%w: %s recipient %s: %s -> %s", ErrIllegalTransition, old.ID, o.Addr, o.State, n.State)
		}
		if o.State == StateHold && n.State == StateDeferred && o.HeldFrom != StateDeferred {
			return fmt.Errorf("%w: %s recipient %s: hold -> deferred, but it was held from %q", ErrIllegalTransition,
				old.ID, o.Addr, o.HeldFrom)
		}
		if o.State == StateActive && n.HoldPending && (n.State == StateDeferred || n.State == StateQueued) {
			n.HeldFrom, n.State = n.State, StateHold
		} else if n.State == StateHold && o.State != StateHold {
			n.HeldFrom = o.State
		}
		if n.State != StateHold {
			n.HeldFrom = ""
		}
		if n.State != StateActive {
			n.HoldPending = false
		}
	}
	return nil
}

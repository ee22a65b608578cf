package tlspolicy

import (
	"sync"
	"time"

	"ptrelay/dnscheck"
)

// DANEState is whether DANE can be used now: dane = "auto" needs a resolver that ptrelay trusts
// (dns.trust_ad) and that proves it validates DNSSEC. The daemon probes at start and every
// egress.check_interval (dnscheck.Resolver.ProbeDNSSEC) and records the result here. It is safe for
// concurrent use; the zero value is off and never probed.
type DANEState struct {
	mu      sync.Mutex
	status  dnscheck.DNSSECStatus
	checked time.Time
	probed  bool
}

// Set records a probe's result. A probe that failed for a temporary reason (DNS down) keeps the state known
// before it, so one lost answer does not switch DANE off and on.
func (s *DANEState) Set(st dnscheck.DNSSECStatus, at time.Time) (changed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.Temporary && s.probed {
		s.checked = at
		return false
	}
	changed = !s.probed || s.status.Validating != st.Validating
	s.status, s.checked, s.probed = st, at, true
	return changed
}

// Active reports whether the resolver validates, so TLSA records can be believed.
func (s *DANEState) Active() bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status.Validating
}

// Status returns the last probe's result and when it was made (zero before the first).
func (s *DANEState) Status() (dnscheck.DNSSECStatus, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.probed {
		return dnscheck.DNSSECStatus{Detail: "not probed yet"}, time.Time{}
	}
	return s.status, s.checked
}

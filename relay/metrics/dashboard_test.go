package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

var metricRef = regexp.MustCompile(`\bptrelay_[a-z0-9_]+`)

// TestDashboard_ReferencesExistingMetrics keeps docs/grafana-dashboard.json in step with the code: every
// ptrelay_ name in it (queries, template variables) must be a metric this package exports, and every metric the
// package exports must be shown somewhere.
func TestDashboard_ReferencesExistingMetrics(t *testing.T) {
	raw, err := os.ReadFile("../../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("docs/grafana-dashboard.json is not valid JSON: %v", err)
	}

	exported := exportedNames(t)
	used := map[string]bool{}
	exprs := 0
	walk(dash, "", func(key, s string) {
		if key == "expr" {
			exprs++
			if strings.TrimSpace(s) == "" {
				t.Error("empty expr in the dashboard")
			}
		}
		for _, ref := range metricRef.FindAllString(s, -1) {
			base, ok := resolve(ref, exported)
			if !ok {
				t.Errorf("dashboard %s %q references %s, which ptrelay does not export", key, s, ref)
				continue
			}
			used[base] = true
		}
	})
	if exprs == 0 {
		t.Fatal("the dashboard has no queries")
	}
	for name := range exported {
		if !used[name] {
			t.Errorf("metric %s is not shown on the dashboard", name)
		}
	}

	ids := map[float64]bool{}
	for _, p := range dash["panels"].([]any) {
		id := p.(map[string]any)["id"].(float64)
		if ids[id] {
			t.Errorf("panel id %v used twice", id)
		}
		ids[id] = true
	}
}

// exportedNames exercises every method so each vector has a series, then gathers the registry.
func exportedNames(t *testing.T) map[string]dto.MetricType {
	t.Helper()
	m := New()
	m.Accepted(1)
	m.Refused("x")
	m.SessionDelta(1)
	m.Delivery("direct", "sent", time.Second)
	m.Reroute("x")
	m.DKIM(true, "")
	m.DKIM(false, "no_key")
	m.SetVerdict("ipv4", "direct-ok")
	m.AlertNotice("listed", "mail", "sent")
	m.AlertsFiring(map[string]int{"listed": 1})
	m.DeliveryTLS("dane", "sent")
	m.TLSPolicySession("tlsa", "success")
	m.MTASTSFetch("ok")
	m.SetDANE(true)
	m.SetQueueStats(func() (map[string]int, time.Time) { return map[string]int{}, time.Time{} })
	m.SetSmarthosts(func() []SmarthostGauge {
		return []SmarthostGauge{{Name: "m365", Up: true, Budgets: []BudgetGauge{{Window: "msg 1m", Remaining: 30}}}}
	})
	m.SmarthostDelivery("m365", "sent")
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]dto.MetricType{}
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "ptrelay_") {
			names[f.GetName()] = f.GetType()
		}
	}
	if len(names) < 11 {
		t.Fatalf("only %d ptrelay metrics gathered: %v", len(names), names)
	}
	return names
}

// resolve maps a series name to its metric family: histograms expose _bucket, _sum and _count.
func resolve(ref string, exported map[string]dto.MetricType) (string, bool) {
	if _, ok := exported[ref]; ok {
		return ref, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base := strings.TrimSuffix(ref, suffix)
		if base != ref && exported[base] == dto.MetricType_HISTOGRAM {
			return base, true
		}
	}
	return "", false
}

func walk(v any, key string, f func(key, s string)) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			walk(x, k, f)
		}
	case []any:
		for _, x := range v {
			walk(x, key, f)
		}
	case string:
		f(key, v)
	}
}

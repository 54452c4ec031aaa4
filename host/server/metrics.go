package server

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the server's Prometheus metrics, on their own registry (not
// the global one, so tests and embedders do not collide).
type Metrics struct {
	Registry *prometheus.Registry

	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	conns       prometheus.Gauge
	refused     prometheus.Counter
	frameErrors prometheus.Counter
	panics      prometheus.Counter
	adviceBatch prometheus.Histogram
	atcEvents   *prometheus.CounterVec
}

// NewMetrics returns the metrics on a fresh registry, with the Go runtime
// and process collectors.
func NewMetrics() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "valuechip_server_requests_total",
			Help: "ISO 8583 requests answered, by request MTI and response code (DE 39).",
		}, []string{"mti", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "valuechip_server_request_duration_seconds",
			Help:    "Time from a request's frame to its response, by request MTI.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16),
		}, []string{"mti"}),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "valuechip_server_open_connections",
			Help: "Terminal connections open.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "valuechip_server_connections_refused_total",
			Help: "Connections closed at once because the connection limit was reached.",
		}),
		frameErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "valuechip_server_frame_errors_total",
			Help: "Connections closed for a bad frame (zero or oversize length).",
		}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "valuechip_server_panics_total",
			Help: "Requests whose handler panicked (answered 96).",
		}),
		adviceBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "valuechip_server_advice_batch_size",
			Help:    "Debit advices committed per database transaction (group commit).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		atcEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "valuechip_server_atc_anomalies_total",
			Help: "ATC duplicates (clone or rollback) and advices leaving gaps, docs/purse.md §9.5.",
		}, []string{"kind"}),
	}
	r.MustRegister(m.requests, m.latency, m.conns, m.refused, m.frameErrors, m.panics, m.adviceBatch, m.atcEvents,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveAdviceBatch records the size of one group commit; the advice
// batcher calls it.
func (m *Metrics) ObserveAdviceBatch(n int) { m.adviceBatch.Observe(float64(n)) }

// GaugeFunc registers a gauge computed at scrape time (e.g. the loads in
// progress, read from the database).
func (m *Metrics) GaugeFunc(name, help string, f func() float64) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// Handler serves the registry in the Prometheus text format, for /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

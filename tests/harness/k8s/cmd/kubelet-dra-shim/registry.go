package main

import (
	"sync"
	"time"

	"k8s.io/kubernetes/pkg/kubelet/pluginmanager/cache"
)

// recordingHandler sits between the kubelet's plugin manager and the DRA manager's
// plugin handler. It forwards every call unchanged and remembers the outcome, because the
// plugin manager keeps its registered-plugins state private and tests need to see
// registrations, rejections (with the kubelet's own error text) and deregistrations.
type recordingHandler struct {
	inner cache.PluginHandler

	mu         sync.Mutex
	registered map[string]driverInfo // driver name -> current registration
	events     []regEvent
}

type driverInfo struct {
	Endpoint string    `json:"endpoint"`
	Versions []string  `json:"versions"`
	Since    time.Time `json:"since"`
}

type regEvent struct {
	Time     time.Time `json:"time"`
	Op       string    `json:"op"` // validate, register, deregister
	Driver   string    `json:"driver"`
	Endpoint string    `json:"endpoint"`
	Versions []string  `json:"versions,omitempty"`
	Error    string    `json:"error,omitempty"`
}

func newRecordingHandler(inner cache.PluginHandler) *recordingHandler {
	return &recordingHandler{inner: inner, registered: map[string]driverInfo{}}
}

func (r *recordingHandler) record(ev regEvent, err error) {
	ev.Time = time.Now()
	if err != nil {
		ev.Error = err.Error()
	}
	r.events = append(r.events, ev)
}

// The cache.PluginHandler methods themselves are in compat_*.go: their signatures
// gained a context in 1.37. They call these with the inner handler's result.

func (r *recordingHandler) onValidate(name, endpoint string, versions []string, err error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.record(regEvent{Op: "validate", Driver: name, Endpoint: endpoint, Versions: versions}, err)
	return err
}

func (r *recordingHandler) onRegister(name, endpoint string, versions []string, err error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.record(regEvent{Op: "register", Driver: name, Endpoint: endpoint, Versions: versions}, err)
	if err == nil {
		r.registered[name] = driverInfo{Endpoint: endpoint, Versions: versions, Since: time.Now()}
	}
	return err
}

func (r *recordingHandler) onDeregister(name, endpoint string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.record(regEvent{Op: "deregister", Driver: name, Endpoint: endpoint}, nil)
	// A newer registration of the same driver (rolling update) stays registered.
	if cur, ok := r.registered[name]; ok && cur.Endpoint == endpoint {
		delete(r.registered, name)
	}
}

// snapshot returns the registered drivers, the rejections (failed validate or register,
// newest last) and the full event log.
func (r *recordingHandler) snapshot() map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	drivers := map[string]driverInfo{}
	for k, v := range r.registered {
		drivers[k] = v
	}
	rejections := []regEvent{}
	for _, ev := range r.events {
		if ev.Error != "" {
			rejections = append(rejections, ev)
		}
	}
	events := append([]regEvent{}, r.events...)
	return map[string]any{"drivers": drivers, "rejections": rejections, "events": events}
}

// kubelet-dra-shim runs the kubelet's own DRA code (plugin manager + DRA manager from
// k8s.io/kubernetes/pkg/kubelet) without a container runtime, bound to a kubelet root
// directory and a Node, and exposes a small HTTP+JSON control API on 127.0.0.1 so tests
// can drive prepare/unprepare of a pod's claims. See tests/harness/README.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

func main() {
	klog.InitFlags(nil)
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig for the apiserver")
	root := flag.String("root-dir", "", "kubelet root dir (plugins_registry/, plugins/, dra_manager_state)")
	node := flag.String("node-name", "", "name of the Node object this kubelet serves")
	listen := flag.String("listen", "127.0.0.1:0", "control API address")
	portFile := flag.String("port-file", "", "write the control API port here once listening")
	gates := flag.String("feature-gates", "", "feature gates, A=true,B=false (default: all DRA gates on, see --print-dra-gates)")
	printGates := flag.Bool("print-dra-gates", false, "print the DRA feature gates of this version as a --feature-gates value and exit")
	flag.Parse()

	if *printGates {
		fmt.Println(gatesFlag(draGates()))
		return
	}
	if *kubeconfig == "" || *root == "" || *node == "" {
		fmt.Fprintln(os.Stderr, "usage: kubelet-dra-shim --kubeconfig FILE --root-dir DIR --node-name NODE [--port-file FILE]")
		os.Exit(2)
	}
	if *gates == "" {
		*gates = gatesFlag(draGates())
	}
	if err := utilfeature.DefaultMutableFeatureGate.Set(*gates); err != nil {
		klog.Fatalf("--feature-gates: %v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx = klog.NewContext(ctx, klog.Background().WithName("kubelet-dra-shim"))

	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		klog.Fatalf("kubeconfig: %v", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		klog.Fatalf("client: %v", err)
	}
	k, err := startKubelet(ctx, client, *node, *root)
	if err != nil {
		klog.Fatalf("%v", err)
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		klog.Fatalf("listen: %v", err)
	}
	srv := &http.Server{Handler: k.routes(), BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() { _ = srv.Serve(ln) }()
	if *portFile != "" {
		// Write then rename, so a reader never sees a partial file.
		tmp := *portFile + ".tmp"
		port := ln.Addr().(*net.TCPAddr).Port
		if err := os.WriteFile(tmp, []byte(fmt.Sprintf("%d\n", port)), 0o644); err != nil {
			klog.Fatalf("port file: %v", err)
		}
		if err := os.Rename(tmp, *portFile); err != nil {
			klog.Fatalf("port file: %v", err)
		}
	}
	klog.FromContext(ctx).Info("kubelet-dra-shim ready", "addr", ln.Addr().String(), "root", *root, "node", *node, "gates", *gates)
	<-ctx.Done()
	_ = srv.Close()
	stopManager(k.manager)
}

type podRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

func (k *kubelet) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { reply(w, map[string]any{"ok": true}, nil) })
	mux.HandleFunc("GET /registered", func(w http.ResponseWriter, r *http.Request) { reply(w, k.handler.snapshot(), nil) })
	mux.HandleFunc("POST /prepare", withPod(func(ctx context.Context, p podRef) (any, error) { return k.prepare(ctx, p.Namespace, p.Name) }))
	mux.HandleFunc("POST /unprepare", withPod(func(ctx context.Context, p podRef) (any, error) {
		return map[string]any{}, k.unprepare(ctx, p.Namespace, p.Name)
	}))
	mux.HandleFunc("POST /resources", withPod(func(ctx context.Context, p podRef) (any, error) {
		pod, err := k.getPod(ctx, p.Namespace, p.Name)
		if err != nil {
			return nil, err
		}
		return k.resources(pod)
	}))
	mux.HandleFunc("POST /health", withPod(func(ctx context.Context, p podRef) (any, error) { return k.health(ctx, p.Namespace, p.Name) }))
	return mux
}

func withPod(f func(context.Context, podRef) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var p podRef
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil || p.Name == "" {
			reply(w, nil, errors.New(`body must be {"namespace": NS, "name": NAME}`))
			return
		}
		if p.Namespace == "" {
			p.Namespace = "default"
		}
		res, err := f(r.Context(), p)
		reply(w, res, err)
	}
}

// reply writes 200 with the result, or 500 with {"error": message}.
func reply(w http.ResponseWriter, res any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		res = map[string]string{"error": err.Error()}
	}
	_ = json.NewEncoder(w).Encode(res)
}

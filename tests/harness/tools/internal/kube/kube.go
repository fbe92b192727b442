// Package kube holds the small helpers the harness CLIs share.
package kube

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Client builds a clientset from a kubeconfig file (the harness writes an admin one).
func Client(kubeconfig string) (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", kubeconfig, err)
	}
	return kubernetes.NewForConfig(cfg)
}

// EnableAllBools sets every bool field of the struct *ptr to true and returns the names.
// Feature structs gain and lose fields between Kubernetes minors (structured.Features,
// cel.Features); reflection keeps one source file building for 1.34 to 1.37, and "all on"
// matches the harness apiserver, which runs with every DRA gate enabled.
func EnableAllBools(ptr any) []string {
	v := reflect.ValueOf(ptr).Elem()
	var names []string
	for i := 0; i < v.NumField(); i++ {
		if f := v.Field(i); f.Kind() == reflect.Bool && f.CanSet() {
			f.SetBool(true)
			names = append(names, v.Type().Field(i).Name)
		}
	}
	return names
}

// BoolField reports the bool field name of the struct *ptr, false when it does not exist.
func BoolField(ptr any, name string) bool {
	f := reflect.ValueOf(ptr).Elem().FieldByName(name)
	return f.IsValid() && f.Kind() == reflect.Bool && f.Bool()
}

// PrintJSON writes v as indented JSON to stdout.
func PrintJSON(v any) {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Fail prints a one-line message to stderr and exits with code.
func Fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(code)
}

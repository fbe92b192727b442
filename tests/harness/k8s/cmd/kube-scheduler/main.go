// kube-scheduler: the upstream main of cmd/kube-scheduler, built from the pinned
// k8s.io/kubernetes module; the DRA e2e tests use it for what only the scheduler does
// (extended resources backed by DRA, DRAExtendedResource).
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	os.Exit(cli.Run(app.NewSchedulerCommand()))
}

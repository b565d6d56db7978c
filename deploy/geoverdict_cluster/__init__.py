"""The Helm chart on a one-node Kubernetes cluster built from official sources (issue 27):
`geoverdict cluster up | proof | down`; the cluster itself is deploy/cluster/*.sh."""

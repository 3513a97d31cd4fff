"""Development tooling: the built images run as deploy/k8s runs them (podman + runc), and
kubelet's HTTP probes simulated over them; for the image tests and bench/kubelet_sim.py."""

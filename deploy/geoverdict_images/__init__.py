"""The project's container images built and exercised with podman (issue 27): stand-in bases
where registries cannot be reached, the three images, and checks that each does its job."""

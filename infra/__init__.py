"""Joey's Pulumi program: a registry, the Ops center and edge sites on Kubernetes or Docker.

`__main__.py` is the program (Pulumi.yaml: `main: infra/`); it reads the stack's settings (settings.py) and
composes the components (registry.py, ops_center.py, edge_site.py, docker_edge.py, engine_image.py), whose
Kubernetes objects come from the pure functions in k8s_args.py. policies.py holds the rules the stacks must
keep; policy/ serves them to `pulumi preview --policy-pack`. See docs/infra.md.
"""

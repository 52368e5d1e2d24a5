"""The pure, deterministic domain: models, lifecycles, the control plane, offer matching."""

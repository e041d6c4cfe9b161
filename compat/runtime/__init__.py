"""The runtime layer the backends stand on: settings and options, building the core, extensions, instance, listener,
stores, TLS and worker supervision; installed as drum_compat.runtime (the tools above the backends stay in compat)."""

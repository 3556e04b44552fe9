"""Development tools, never imported by a running service: the one-command launcher and the `atelier` CLI,
embedded PostgreSQL and NATS, protobuf code generation and migration autogeneration."""

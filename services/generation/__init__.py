"""The generation service (gRPC `atelier.generation.v1.GenerationService`).

See docs/services/generation.md.
"""

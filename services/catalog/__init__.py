"""The catalog service (gRPC `atelier.catalog.v1.CatalogService`). See docs/services/catalog.md."""

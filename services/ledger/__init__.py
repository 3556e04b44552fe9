"""The ledger service (gRPC `atelier.ledger.v1.LedgerService`). See docs/services/ledger.md."""

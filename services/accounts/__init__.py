"""The accounts service (gRPC `atelier.accounts.v1.AccountsService`). See docs/services/accounts.md."""

"""The one in-test fake per gRPC service (`catalog.py`, `ledger.py`, `generation.py`), used by every suite
that needs a stand-in, and the contract tests (`test_contract_*.py`) that run the same requests against
each fake and the real servicer so the two cannot drift. A fake grows by the RPCs a suite needs; when it
does, a contract case for the new behaviour belongs next to it."""

from kit.migrations import run_env
from services.ledger.models import metadata

run_env(metadata)

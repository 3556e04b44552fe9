from kit.migrations import run_env
from services.accounts.models import metadata

run_env(metadata)

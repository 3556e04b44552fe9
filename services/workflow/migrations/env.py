from kit.migrations import run_env
from services.workflow.models import metadata

run_env(metadata)

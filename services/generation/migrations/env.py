from kit.migrations import run_env
from services.generation.models import metadata

run_env(metadata)

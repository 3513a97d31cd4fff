"""The one-shot migration Job: apply migrations/ exactly once, safely, with exit codes that say why."""

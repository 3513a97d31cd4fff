"""What both programs know about the schema: migration files, the ledger, verdicts, snapshots, drift."""

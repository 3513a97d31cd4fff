"""What both programs know about the database schema: migration files, the ledger, verdicts."""

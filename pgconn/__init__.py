"""What the migrator and the probe share: settings, URL parsing and redaction, pooler
detection, error classification and connecting with the right options."""

"""Running the service like an IT department would: Prometheus metrics (:mod:`.metrics`) and backups (:mod:`.backup`)."""

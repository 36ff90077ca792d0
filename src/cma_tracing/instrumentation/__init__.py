"""What cma-tracing knows about CMA and OpenTelemetry: the event table, the turn tracker, names, safety."""

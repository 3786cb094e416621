"""What the gateway reports about itself to the tools operators already run: traces (OpenTelemetry) and metrics."""

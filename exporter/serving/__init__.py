"""What Prometheus sees: the collector, the exposition and the HTTP server. Reads the store;
never calls the cloud."""

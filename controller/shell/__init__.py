"""The controller's I/O shell: Twisted service, CLI, load feed, metrics, records and plots."""

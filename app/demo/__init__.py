"""The demo: a sample app, gentle traffic, and the one command that runs them with a dashboard."""

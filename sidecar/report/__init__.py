"""Reporting to the dashboard: the sample buffer, the reporter and its kept-alive client."""

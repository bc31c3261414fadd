"""The dashboard's own alerts: objectives per app, burn-rate windows, and Alertmanager or webhook notices."""

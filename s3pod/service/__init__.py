"""The daemon's service glue: systemd notification, metrics, the HTTP API, the pid file, logging."""

"""What a running gateway tells its operators: Prometheus metrics (``metrics``), access logs
and their JSON form (``access``, ``logs``), alerts (``alerts``) and optional OpenTelemetry
traces (``tracing``). Nothing here carries patient data: labels and log fields are site
ids, message types, route templates, status codes and keyed hashes."""

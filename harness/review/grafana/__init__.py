"""Grafana: dashboards as code, pushing them to a Grafana server, links to a run."""

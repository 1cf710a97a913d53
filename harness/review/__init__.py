"""Reviewing runs: the HTML report, Grafana dashboards and links, the list of runs."""

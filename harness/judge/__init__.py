"""Judging a run: SLOs, guards, the verdict, baseline comparison and JUnit output. Pure."""

"""Measuring a run: per-second windows and their exact merge, delivery, step timing, clocks. Pure."""

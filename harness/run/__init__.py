"""One run, from a loaded scenario to its verdict: Ray, placement, generators, agents, the clock."""

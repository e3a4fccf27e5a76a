"""Pollers fetch data themselves (agentless): scrape targets, probes."""

"""Benchmarks: scenarios that start the stand-ins (and the controller) and measure them."""

"""Console entry points that speak the public conformance suites' client protocols."""

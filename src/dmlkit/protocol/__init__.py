"""The Metric Learning Reality Check protocol: class-disjoint k-fold training, mean ± CI over seeds."""

"""``edgepack build``: the one-way stages of one build, and the matrix of many."""

"""Measuring alignment with human judgments (big_vision's evaluators, as pure functions).

similarity.py    pairwise similarities (cosine | dot | euclidean) and each triplet's three pair similarities
zero_shot.py     odd-one-out accuracy of raw features, with a bootstrap interval
noise_ceiling.py the human noise ceiling from repeated triplets with its interval over sets, and chance
statistics.py    bootstrap intervals of accuracies, paired comparisons (paired bootstrap, exact McNemar)
decisions.py     each method's outcome on every test triplet (DIR/decisions.npz), for paired comparisons
rsa.py           representational similarity analysis against human similarity matrices
concepts.py      triplets assigned to human concept dimensions, accuracy per concept
"""

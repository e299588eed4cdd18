"""Synthetic MovieLens-like interactions: who watched what, the rating, and whether to the end.

Users and movies have latent tastes u, v (``dim`` normal factors) and movies a
popularity b. Each interaction draws a user (activity is skewed), then the
movie with probability softmax_m(sharpness * u.v_m / sqrt(dim) + b_m) (what
retrieval learns); the rating is 3 + 1.1 a + 0.4 b + noise rounded into 1..5
with affinity a = u.v / sqrt(dim) (what the rating task learns); ``watched``
is Bernoulli(sigmoid(2 a - 0.5)), watched to the end (a binary ranking task).
Ids are strings, "u17" and "m4", as MovieLens's are in the TFRS tutorials.
"""

import numpy as np


def movielens_like(num_users=300, num_movies=400, num_interactions=8000, dim=4, sharpness=3.0, seed=0):
    """(interactions, user_ids, movie_ids): interactions a dict of arrays
    ``user_id`` (bytes), ``movie_id`` (bytes), ``user_rating`` float32 in 1..5,
    ``watched`` float32 0/1; the id vocabularies as bytes arrays.

    Example:
    >>> interactions, user_ids, movie_ids = movielens_like(num_users=5, num_movies=7, num_interactions=20)
    >>> sorted(interactions), len(user_ids), len(movie_ids), interactions["user_rating"].shape
    (['movie_id', 'user_id', 'user_rating', 'watched'], 5, 7, (20,))
    """
    rng = np.random.default_rng(seed)
    users = rng.normal(size=(num_users, dim))
    movies = rng.normal(size=(num_movies, dim))
    popularity = rng.normal(scale=0.7, size=num_movies)
    activity = rng.gamma(2.0, size=num_users)
    user = rng.choice(num_users, size=num_interactions, p=activity / activity.sum())
    logits = sharpness * users[user] @ movies.T / np.sqrt(dim) + popularity
    movie = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
    affinity = np.sum(users[user] * movies[movie], axis=1) / np.sqrt(dim)
    rating = np.clip(np.round(3 + 1.1 * affinity + 0.4 * popularity[movie] + rng.normal(scale=0.5, size=user.shape)), 1, 5)
    watched = rng.random(user.shape) < 1 / (1 + np.exp(-(2 * affinity - 0.5)))
    user_ids = np.array([f"u{i}".encode() for i in range(num_users)], dtype=object)
    movie_ids = np.array([f"m{i}".encode() for i in range(num_movies)], dtype=object)
    interactions = dict(
        user_id=user_ids[user], movie_id=movie_ids[movie],
        user_rating=rating.astype("float32"), watched=watched.astype("float32"),
    )
    return interactions, user_ids, movie_ids
